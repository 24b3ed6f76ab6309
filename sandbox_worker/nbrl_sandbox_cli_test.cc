// The nbrl-sandbox binary as a real process: `index`, `run`, and serving
// SandboxService on a unix socket that its own sessions cannot reach.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbrl/v1/sandbox.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::sandbox {
namespace {

using ::testing::HasSubstr;
using testutil::BinaryPath;
using testutil::RunCommand;
using testutil::Subprocess;

std::string Binary() { return BinaryPath("sandbox_worker/nbrl-sandbox"); }

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(SandboxCliTest, IndexThenRunCellsPrintsOneJsonLinePerCell) {
  testutil::TempDir tmp("nbrl-sandbox-cli");
  const std::string& dir = tmp.path();
  Write(dir + "/corpus.jsonl",
        "{\"id\": \"d1\", \"title\": \"Moon\", \"text\": \"The Moon orbits the "
        "Earth.\"}\n"
        "{\"id\": \"d2\", \"title\": \"Sun\", \"text\": \"The Sun is a star.\"}\n");
  auto index = RunCommand({Binary(), "index", dir + "/corpus.jsonl", dir + "/index",
                           "run.dir=" + dir, "metrics.enabled=false"});
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ(index->exit_code, 0) << index->err;
  EXPECT_THAT(index->out, HasSubstr("indexed 2 documents"));

  Write(dir + "/a.py", "x = web_search('star')[0]['id']\nprint('found', x)\n");
  Write(dir + "/b.py", "notepad.add_facts(x)\nsubmit_final_answer(x)\nx.upper()\n");
  Write(dir + "/c.py", "while True:\n  pass\n");
  auto run = RunCommand({Binary(), "run", dir + "/a.py", dir + "/b.py", dir + "/c.py",
                         "run.dir=" + dir, "metrics.enabled=false",
                         "sandbox.tools.index=" + dir + "/index",
                         "sandbox.cell_timeout=500ms"});
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  std::vector<std::string> lines = absl::StrSplit(run->out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << run->out;
  auto a = nlohmann::json::parse(lines[0]);
  auto b = nlohmann::json::parse(lines[1]);
  auto c = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(a["stdout"], "found d2\n");
  EXPECT_EQ(a["tool_calls"][0]["tool"], "web_search");
  EXPECT_EQ(b["result"], "'D2'");
  EXPECT_EQ(b["final_answer"], "d2");
  EXPECT_EQ(b["notepad"]["facts"][0], "d2");
  EXPECT_EQ(c["timed_out"], true);
  EXPECT_EQ(c["termination"], "timeout");
  EXPECT_TRUE(c.contains("duration_s"));

  auto bad = RunCommand({Binary(), "run", dir + "/missing.py", "run.dir=" + dir,
                         "metrics.enabled=false"});
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_code, 1);
  EXPECT_THAT(bad->err, HasSubstr("missing.py"));
}

TEST(SandboxCliTest, ServesOnUnixSocketItsSessionsCannotReach) {
  testutil::TempDir tmp("nbrl-sandbox-serve");
  const std::string& dir = tmp.path();
  std::string sock = dir + "/worker.sock";
  auto p =
      Subprocess::Start({Binary(), "run.dir=" + dir, "sandbox.address=unix:" + sock,
                         "sandbox.warm_sessions=1"},
                        {{"NBRL_SANDBOX_TEST_SECRET", "s3cr3t-value"}});
  ASSERT_TRUE(p.ok()) << p.status();
  auto ready = (*p)->WaitForLine("ready address=", absl::Seconds(30));
  ASSERT_TRUE(ready.ok()) << ready.status() << (*p)->stderr_text();
  EXPECT_THAT(*ready, HasSubstr("unix:" + sock));

  auto stub = nbrl::v1::SandboxService::NewStub(
      grpc::CreateChannel("unix:" + sock, grpc::InsecureChannelCredentials()));
  nbrl::v1::OpenSessionResponse open;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    nbrl::v1::OpenSessionRequest req;
    req.set_client_id("cli-test");
    ASSERT_TRUE(stub->OpenSession(&ctx, req, &open).ok());
  }
  nbrl::v1::ExecuteResponse r;
  {
    grpc::ClientContext ctx;
    nbrl::v1::ExecuteRequest req;
    req.set_session_id(open.session_id());
    req.set_code(
        "import os, socket\nprint(os.environ.get('NBRL_SANDBOX_TEST_SECRET'))\n"
        "s = socket.socket(socket.AF_UNIX)\ns.connect('" +
        sock + "')");
    ASSERT_TRUE(stub->Execute(&ctx, req, &r).ok());
  }
  EXPECT_EQ(r.error().name(), "FileNotFoundError");
  EXPECT_EQ(r.stdout(), "None\n");
  {
    grpc::ClientContext ctx;
    nbrl::v1::HealthResponse h;
    ASSERT_TRUE(stub->Health(&ctx, nbrl::v1::HealthRequest(), &h).ok());
    EXPECT_EQ(h.status(), nbrl::v1::HealthResponse::SERVING_STATUS_SERVING);
    EXPECT_EQ(h.sessions_active(), 1u);
  }
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());
  auto status = (*p)->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << (*p)->stderr_text();
}

}  // namespace
}  // namespace nbrl::sandbox
