// Authentication with real processes (docs/security.md): nbrl-learner and a TCP
// nbrl-sandbox serve with mutual TLS and the run's token, from credentials made by
// deploy/make-certs.sh. Every RPC of LearnerService and SandboxService refuses a
// caller without the token, with a wrong one, without a client certificate, with
// another CA's certificate, or in plaintext, and does nothing for it (no weight
// bytes, no code run, no session closed); the run's own clients (raw stubs,
// nbrl-actor, nbrl eval) are served; unusable auth files stop a process at start
// with exit 2. Skips without openssl.
#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <functional>
#include <memory>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/grpc_auth.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nbrl/v1/learner.grpc.pb.h"
#include "nbrl/v1/sandbox.grpc.pb.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tiny_run.h"

namespace nbrl {
namespace {

using ::testing::HasSubstr;
using testutil::BinaryPath;
using testutil::RunCommand;
using testutil::Subprocess;

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

// What one call did.
struct Outcome {
  grpc::Status status;
  int messages = 0;    // stream messages received
  size_t bytes = 0;    // weight bytes received
  std::string result;  // Execute's result
};

Outcome Of(grpc::Status status) {
  Outcome out;
  out.status = std::move(status);
  return out;
}

// The channels of one client to both servers.
struct Client {
  common::ClientAuth auth;
  std::unique_ptr<v1::LearnerService::Stub> learner;
  std::unique_ptr<v1::SandboxService::Stub> sandbox;
  std::unique_ptr<grpc::ClientContext> Context(int deadline_s = 20) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    auth.Apply(ctx.get());
    ctx->set_deadline(In(deadline_s));
    return ctx;
  }
};

// State the probes share: the session the run's client opened.
struct Probe {
  std::string session_id;
  std::string session_owner = "auth-owner";
  // An actor the run registered (Heartbeat, SubscribeWeights: a missing check
  // would serve a stranger), and the one RegisterActor tries to add.
  std::string actor_id = "auth-actor";
  std::string new_actor_id = "auth-new-actor";
};

// One RPC, called as a probe that would change something if it got through.
struct Rpc {
  std::string service;
  std::string method;
  std::function<Outcome(const Client&, const Probe&)> call;
};

std::vector<Rpc> Rpcs() {
  std::vector<Rpc> rpcs;
  rpcs.push_back(
      {"nbrl.v1.LearnerService", "RegisterActor", [](const Client& c, const Probe& p) {
         auto ctx = c.Context();
         v1::RegisterActorRequest req;
         req.set_actor_id(p.new_actor_id);
         req.set_hostname("auth-test");
         v1::RegisterActorResponse resp;
         return Of(c.learner->RegisterActor(ctx.get(), req, &resp));
       }});
  rpcs.push_back(
      {"nbrl.v1.LearnerService", "Heartbeat", [](const Client& c, const Probe& p) {
         auto ctx = c.Context();
         v1::HeartbeatRequest req;
         req.set_actor_id(p.actor_id);
         v1::HeartbeatResponse resp;
         return Of(c.learner->Heartbeat(ctx.get(), req, &resp));
       }});
  rpcs.push_back(
      {"nbrl.v1.LearnerService", "PushTrajectories", [](const Client& c, const Probe&) {
         auto ctx = c.Context();
         auto stream = c.learner->PushTrajectories(ctx.get());
         Outcome out;
         v1::GroupAck ack;
         stream->WritesDone();
         while (stream->Read(&ack)) ++out.messages;
         out.status = stream->Finish();
         return out;
       }});
  rpcs.push_back({"nbrl.v1.LearnerService", "SubscribeWeights",
                  [](const Client& c, const Probe& p) {
                    auto ctx = c.Context(60);
                    v1::SubscribeWeightsRequest req;
                    req.set_actor_id(p.actor_id);
                    auto reader = c.learner->SubscribeWeights(ctx.get(), req);
                    Outcome out;
                    v1::WeightChunk chunk;
                    while (reader->Read(&chunk)) {
                      ++out.messages;
                      out.bytes += chunk.data().size();
                      if (chunk.last()) ctx->TryCancel();  // one version is enough
                    }
                    out.status = reader->Finish();
                    return out;
                  }});
  rpcs.push_back(
      {"nbrl.v1.LearnerService", "Status", [](const Client& c, const Probe&) {
         auto ctx = c.Context();
         v1::StatusResponse resp;
         return Of(c.learner->Status(ctx.get(), v1::StatusRequest(), &resp));
       }});
  rpcs.push_back(
      {"nbrl.v1.SandboxService", "OpenSession", [](const Client& c, const Probe&) {
         auto ctx = c.Context();
         v1::OpenSessionRequest req;
         req.set_client_id("auth-probe");
         v1::OpenSessionResponse resp;
         Outcome out = Of(c.sandbox->OpenSession(ctx.get(), req, &resp));
         if (out.status.ok()) {  // leave no session behind
           auto close = c.Context();
           v1::CloseSessionRequest creq;
           creq.set_session_id(resp.session_id());
           v1::CloseSessionResponse cresp;
           (void)c.sandbox->CloseSession(close.get(), creq, &cresp);
         }
         return out;
       }});
  rpcs.push_back(
      {"nbrl.v1.SandboxService", "Execute", [](const Client& c, const Probe& p) {
         auto ctx = c.Context();
         v1::ExecuteRequest req;
         req.set_session_id(p.session_id);
         req.set_code("x = 'pwned'\nx");
         v1::ExecuteResponse resp;
         Outcome out = Of(c.sandbox->Execute(ctx.get(), req, &resp));
         out.result = resp.result();
         return out;
       }});
  rpcs.push_back(
      {"nbrl.v1.SandboxService", "CloseSession", [](const Client& c, const Probe& p) {
         auto ctx = c.Context();
         v1::CloseSessionRequest req;
         req.set_session_id(p.session_id + "-not-this-one");
         v1::CloseSessionResponse resp;
         Outcome out = Of(c.sandbox->CloseSession(ctx.get(), req, &resp));
         // A stranger also tries the real session.
         if (!out.status.ok()) {
           auto again = c.Context();
           req.set_session_id(p.session_id);
           (void)c.sandbox->CloseSession(again.get(), req, &resp);
         }
         return out;
       }});
  rpcs.push_back(
      {"nbrl.v1.SandboxService", "Health", [](const Client& c, const Probe&) {
         auto ctx = c.Context();
         v1::HealthResponse resp;
         return Of(c.sandbox->Health(ctx.get(), v1::HealthRequest(), &resp));
       }});
  rpcs.push_back(
      {"nbrl.v1.SandboxService", "Attach", [](const Client& c, const Probe& p) {
         // As the session's owner: ending an accepted Attach stream
         // would close the owner's sessions.
         auto ctx = c.Context(/*deadline_s=*/1);
         v1::AttachRequest req;
         req.set_client_id(p.session_owner);
         auto reader = c.sandbox->Attach(ctx.get(), req);
         Outcome out;
         v1::AttachEvent e;
         while (reader->Read(&e)) ++out.messages;
         out.status = reader->Finish();
         return out;
       }});
  return rpcs;
}

// "name{labels} value" from a /metrics page; -1 when absent.
double Metric(const std::string& page, const std::string& series) {
  size_t at = page.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  size_t begin = at + series.size() + 2;
  double v = -1;
  (void)absl::SimpleAtod(page.substr(begin, page.find('\n', begin) - begin), &v);
  return v;
}

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
      skip_ = "openssl is not installed (deploy/setup.sh installs it)";
      return;
    }
    tmp_ = std::make_unique<testutil::TempDir>("nbrl-auth");
    dir_ = tmp_->path();
    const std::string script =
        std::string(std::getenv("NBRL_SOURCE_DIR")) + "/deploy/make-certs.sh";
    for (const char* run : {"certs", "other"}) {
      auto r = RunCommand({"/bin/bash", script, "--out", dir_ + "/" + run});
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(r->exit_code, 0) << r->err;
    }
    auto tiny = testutil::MakeTinyRun(dir_ + "/tiny");
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    run_ = *tiny;
    config_ = dir_ + "/run.yaml";
    const std::string c = dir_ + "/certs/";
    std::ofstream(config_) << "run:\n  dir: " << dir_ << "/run\n"
                           << "auth:\n  token_file: " << c << "token\n"
                           << "  tls_cert: " << c << "server.crt\n"
                           << "  tls_key: " << c << "server.key\n"
                           << "  tls_ca: " << c << "ca.crt\n"
                           << "model:\n  path: " << run_.model << "\n";

    auto sandbox = Subprocess::Start(
        {BinaryPath("sandbox_worker/nbrl-sandbox"), "serve", "--config", config_,
         "sandbox.address=127.0.0.1:0", "sandbox.tools.index=" + run_.index,
         "sandbox.warm_sessions=2", "log.level=warning"});
    ASSERT_TRUE(sandbox.ok()) << sandbox.status();
    sandbox_ = sandbox->release();
    auto ready = sandbox_->WaitForLine("ready address=", absl::Seconds(60));
    ASSERT_TRUE(ready.ok()) << ready.status() << sandbox_->stderr_text();
    // "ready address=HOST:PORT metrics_port=N"
    sandbox_address_ = ready->substr(14, ready->find(' ', 14) - 14);
    ASSERT_TRUE(
        absl::SimpleAtoi(ready->substr(ready->rfind('=') + 1), &sandbox_metrics_port_));

    auto learner =
        Subprocess::Start({BinaryPath("learner/nbrl-learner"), "--config", config_,
                           "learner.batch_groups=1", "learner.max_staleness=8",
                           "learner.checkpoint_every=0", "learner.journal_sync=false"});
    ASSERT_TRUE(learner.ok()) << learner.status();
    learner_ = learner->release();
    ready = learner_->WaitForLine("ready address=", absl::Seconds(120));
    ASSERT_TRUE(ready.ok()) << ready.status() << learner_->stderr_text();
    learner_address_ = ready->substr(ready->find('=') + 1);
    auto target = common::ReadFile(dir_ + "/run/prometheus/learner-0.json");
    ASSERT_TRUE(target.ok()) << target.status();
    size_t colon = target->find(':', target->find("127.0.0.1"));
    ASSERT_TRUE(absl::SimpleAtoi(
        target->substr(colon + 1, target->find('"', colon) - colon - 1),
        &learner_metrics_port_))
        << *target;
  }
  static void TearDownTestSuite() {
    for (Subprocess* p : {learner_, sandbox_}) {
      if (p == nullptr) continue;
      (void)p->Signal(SIGTERM);
      (void)p->Wait(absl::Seconds(60));
      delete p;
    }
    learner_ = sandbox_ = nullptr;
    tmp_.reset();  // after the processes that wrote into it
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_NE(learner_, nullptr);
    ASSERT_NE(sandbox_, nullptr);
  }

  // The run's options for a client; tweak them for strangers.
  static common::AuthOptions RunOptions() {
    const std::string c = dir_ + "/certs/";
    common::AuthOptions o;
    o.token_file = c + "token";
    o.tls_cert = c + "client.crt";
    o.tls_key = c + "client.key";
    o.tls_ca = c + "ca.crt";
    return o;
  }
  static Client Connect(const common::AuthOptions& options) {
    auto auth = common::ClientAuth::Load(options);
    EXPECT_TRUE(auth.ok()) << auth.status();
    Client c;
    if (auth.ok()) c.auth = *auth;
    c.learner = v1::LearnerService::NewStub(
        c.auth.CreateChannel(learner_address_, grpc::ChannelArguments()));
    c.sandbox = v1::SandboxService::NewStub(
        c.auth.CreateChannel(sandbox_address_, grpc::ChannelArguments()));
    return c;
  }
  static std::string Metrics(int port) {
    auto page = testutil::HttpGet("127.0.0.1", port, "/metrics");
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? *page : "";
  }
  // Runs `code` in the run's session; returns the result (or the error).
  static std::string RunCell(const Client& c, const Probe& p, const std::string& code) {
    auto ctx = c.Context();
    v1::ExecuteRequest req;
    req.set_session_id(p.session_id);
    req.set_code(code);
    v1::ExecuteResponse resp;
    grpc::Status st = c.sandbox->Execute(ctx.get(), req, &resp);
    if (!st.ok()) return "rpc failed: " + st.error_message();
    return resp.has_error() ? resp.error().name() : resp.result();
  }

  static inline std::string skip_;
  static inline std::unique_ptr<testutil::TempDir> tmp_;
  static inline std::string dir_;
  static inline std::string config_;
  static inline testutil::TinyRun run_;
  static inline Subprocess* sandbox_ = nullptr;
  static inline Subprocess* learner_ = nullptr;
  static inline std::string sandbox_address_;
  static inline std::string learner_address_;
  static inline int sandbox_metrics_port_ = 0;
  static inline int learner_metrics_port_ = 0;
};

TEST_F(AuthTest, TheTableCoversEveryRpc) {
  std::set<std::string> declared, probed;
  for (const char* name : {"nbrl.v1.LearnerService", "nbrl.v1.SandboxService"}) {
    const auto* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      declared.insert(absl::StrCat(name, "/", service->method(i)->name()));
    }
  }
  for (const Rpc& rpc : Rpcs()) probed.insert(rpc.service + "/" + rpc.method);
  EXPECT_EQ(declared, probed) << "a new RPC needs an entry in Rpcs() and an "
                                 "Authenticate call at the top of its handler";
}

TEST_F(AuthTest, StrangersAreRefusedOnEveryRpcAndChangeNothing) {
  // The run's client holds a session with some state.
  Client run = Connect(RunOptions());
  Probe probe;
  {
    auto ctx = run.Context();
    v1::OpenSessionRequest req;
    req.set_client_id(probe.session_owner);
    v1::OpenSessionResponse resp;
    grpc::Status st = run.sandbox->OpenSession(ctx.get(), req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    probe.session_id = resp.session_id();
  }
  ASSERT_EQ(RunCell(run, probe, "x = 'mine'\nx"), "'mine'");
  {
    auto ctx = run.Context();
    v1::RegisterActorRequest req;
    req.set_actor_id(probe.actor_id);
    v1::RegisterActorResponse resp;
    ASSERT_TRUE(run.learner->RegisterActor(ctx.get(), req, &resp).ok());
  }
  const std::string learner_before = Metrics(learner_metrics_port_);
  const std::string sandbox_before = Metrics(sandbox_metrics_port_);
  for (const std::string& page : {learner_before, sandbox_before}) {
    for (const char* reason :
         {"missing_token", "wrong_token", "no_client_certificate"}) {
      EXPECT_THAT(page, HasSubstr(absl::StrCat("_auth_failures_total{reason=\"", reason,
                                               "\"}")));
    }
  }

  struct Stranger {
    std::string name;
    common::AuthOptions options;
    grpc::StatusCode expected;
  };
  std::vector<Stranger> strangers;
  common::AuthOptions o = RunOptions();
  o.token_file.clear();
  strangers.push_back({"no token", o, grpc::StatusCode::UNAUTHENTICATED});
  o = RunOptions();
  o.token_file = dir_ + "/other/token";
  strangers.push_back({"a wrong token", o, grpc::StatusCode::UNAUTHENTICATED});
  o = RunOptions();
  o.tls_cert.clear();
  o.tls_key.clear();
  strangers.push_back({"no client certificate", o, grpc::StatusCode::UNAVAILABLE});
  o = RunOptions();
  o.tls_cert = dir_ + "/other/client.crt";
  o.tls_key = dir_ + "/other/client.key";
  strangers.push_back({"another CA's certificate", o, grpc::StatusCode::UNAVAILABLE});
  o = common::AuthOptions();
  o.token_file = RunOptions().token_file;
  strangers.push_back({"plaintext with the token", o, grpc::StatusCode::UNAVAILABLE});

  const std::vector<Rpc> rpcs = Rpcs();
  for (const Stranger& s : strangers) {
    Client c = Connect(s.options);
    for (const Rpc& rpc : rpcs) {
      Outcome out = rpc.call(c, probe);
      EXPECT_EQ(out.status.error_code(), s.expected)
          << rpc.method << " with " << s.name << ": " << out.status.error_message();
      EXPECT_EQ(out.messages, 0) << rpc.method << " with " << s.name;
      EXPECT_EQ(out.bytes, 0u) << rpc.method << " with " << s.name;
      EXPECT_TRUE(out.result.empty()) << rpc.method << " with " << s.name;
      if (s.expected == grpc::StatusCode::UNAUTHENTICATED) {
        EXPECT_THAT(out.status.error_message(), HasSubstr("token")) << rpc.method;
      }
    }
  }

  // Nothing changed: the session lives (not closed by a stranger's CloseSession
  // or Attach) and kept its state (no stranger's code ran).
  EXPECT_EQ(RunCell(run, probe, "x"), "'mine'");
  // No actor was registered by a stranger.
  {
    auto ctx = run.Context();
    v1::HeartbeatRequest req;
    req.set_actor_id(probe.new_actor_id);
    v1::HeartbeatResponse resp;
    EXPECT_EQ(run.learner->Heartbeat(ctx.get(), req, &resp).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  // Token refusals are counted (one per call: the CloseSession probe calls twice);
  // handshake failures never reach the servers' handlers.
  const std::string learner_after = Metrics(learner_metrics_port_);
  const std::string sandbox_after = Metrics(sandbox_metrics_port_);
  struct Count {
    const std::string* before;
    const std::string* after;
    std::string component;
    int rpcs;
  };
  for (const Count& c : {Count{&learner_before, &learner_after, "learner", 5},
                         Count{&sandbox_before, &sandbox_after, "sandbox", 6}}) {
    for (const char* reason : {"missing_token", "wrong_token"}) {
      const std::string series = absl::StrCat(
          "nbrl_", c.component, "_auth_failures_total{reason=\"", reason, "\"}");
      EXPECT_EQ(Metric(*c.after, series) - Metric(*c.before, series), c.rpcs) << series;
    }
  }
}

TEST_F(AuthTest, TheRunsCredentialsAreServedOnEveryRpc) {
  Client run = Connect(RunOptions());
  Probe probe;
  probe.actor_id = probe.new_actor_id = "auth-served";
  {
    auto ctx = run.Context();
    v1::OpenSessionRequest req;
    req.set_client_id(probe.session_owner + "-served");
    v1::OpenSessionResponse resp;
    ASSERT_TRUE(run.sandbox->OpenSession(ctx.get(), req, &resp).ok());
    probe.session_id = resp.session_id();
  }
  for (const Rpc& rpc : Rpcs()) {
    Outcome out = rpc.call(run, probe);
    if (rpc.method == "SubscribeWeights") {
      // A whole version arrived; then the test cancelled the stream.
      EXPECT_EQ(out.status.error_code(), grpc::StatusCode::CANCELLED)
          << out.status.error_message();
      EXPECT_GT(out.bytes, 0u);
    } else if (rpc.method == "Attach") {
      // Held open until the call's deadline: the stream was accepted.
      EXPECT_EQ(out.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
          << out.status.error_message();
    } else {
      EXPECT_TRUE(out.status.ok()) << rpc.method << ": " << out.status.error_message();
    }
    if (rpc.method == "Execute") {
      EXPECT_EQ(out.result, "'pwned'");
    }
  }
  // The server certificate is a client certificate too (one YAML for a run).
  common::AuthOptions as_server = RunOptions();
  as_server.tls_cert = dir_ + "/certs/server.crt";
  as_server.tls_key = dir_ + "/certs/server.key";
  Client same_yaml = Connect(as_server);
  for (const Rpc& rpc : Rpcs()) {
    if (rpc.method == "Status" || rpc.method == "Health") {
      EXPECT_TRUE(rpc.call(same_yaml, probe).status.ok()) << rpc.method;
    }
  }
}

TEST_F(AuthTest, ARealActorWorksWithTheRunsCredentials) {
  auto actor = Subprocess::Start(
      {BinaryPath("actor/nbrl-actor"), "--config", config_,
       "actor.learner=" + learner_address_, "actor.sandbox=" + sandbox_address_,
       "actor.data=" + run_.train, "actor.id=auth-actor-ok", "actor.group_size=2",
       "actor.groups_per_batch=1", "actor.max_groups=1", "actor.max_steps=2",
       "actor.max_action_tokens=32", "actor.context_tokens=2048",
       "metrics.enabled=false"});
  ASSERT_TRUE(actor.ok()) << actor.status();
  auto status = (*actor)->Wait(absl::Seconds(150));
  ASSERT_TRUE(status.ok()) << status.status() << (*actor)->stderr_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << (*actor)->stderr_text();
  EXPECT_THAT((*actor)->stderr_text(), HasSubstr("now sampling with weight version"));
  // The learner took the group.
  Client run = Connect(RunOptions());
  auto ctx = run.Context();
  v1::StatusResponse resp;
  ASSERT_TRUE(run.learner->Status(ctx.get(), v1::StatusRequest(), &resp).ok());
  EXPECT_GE(resp.groups_accepted() + resp.groups_filtered(), 1u);
}

TEST_F(AuthTest, AnActorWithAWrongTokenStopsWithAClearError) {
  auto r = RunCommand(
      {BinaryPath("actor/nbrl-actor"), "--config", config_,
       "auth.token_file=" + dir_ + "/other/token", "actor.learner=" + learner_address_,
       "actor.sandbox=" + sandbox_address_, "actor.data=" + run_.train,
       "actor.id=auth-actor-bad", "metrics.enabled=false"},
      absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << r->err;
  EXPECT_THAT(r->err, HasSubstr("token is not this run's")) << r->err;
}

TEST_F(AuthTest, EvalReachesTheSandboxOnlyWithTheRunsCredentials) {
  const std::vector<std::string> eval = {BinaryPath("cli/nbrl"),
                                         "eval",
                                         "--policy",
                                         "scripted",
                                         "--tokenizer",
                                         run_.model,
                                         "--data",
                                         run_.train,
                                         "--sandbox",
                                         sandbox_address_,
                                         "--limit",
                                         "1",
                                         "--max-steps",
                                         "3"};
  std::vector<std::string> good = eval;
  good.insert(good.end(), {"--out", dir_ + "/eval-ok", "--config", config_});
  auto r = RunCommand(good, absl::Seconds(120));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_TRUE(common::ReadFile(dir_ + "/eval-ok/summary.json").ok());

  std::vector<std::string> bad = eval;
  bad.insert(bad.end(), {"--out", dir_ + "/eval-bad", "--config", config_,
                         "auth.token_file=" + dir_ + "/other/token"});
  r = RunCommand(bad, absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << r->err;
  EXPECT_THAT(r->err, HasSubstr("token is not this run's")) << r->err;
  EXPECT_FALSE(common::ReadFile(dir_ + "/eval-bad/summary.json").ok());
}

TEST_F(AuthTest, UnusableAuthFilesStopAProcessAtStart) {
  const std::string c = dir_ + "/certs/";
  struct Case {
    std::vector<std::string> argv;
    std::string expected;
  };
  const std::string learner = BinaryPath("learner/nbrl-learner");
  const std::string sandbox = BinaryPath("sandbox_worker/nbrl-sandbox");
  const std::string run_dir = "run.dir=" + dir_ + "/bad";
  for (const Case& k : std::vector<Case>{
           {{learner, run_dir, "auth.tls_key=" + c + "server.key"},
            "auth.tls_key is set"},
           {{learner, run_dir, "auth.token_file=" + c + "missing"},
            "auth.token_file: cannot read " + c + "missing"},
           {{learner, run_dir, "auth.tls_cert=" + c + "token",
             "auth.tls_key=" + c + "server.key"},
            "auth.tls_cert: " + c + "token is not a PEM certificate"},
           {{learner, run_dir, "auth.tls_ca=" + c + "ca.crt"},
            "a server on 127.0.0.1:0 needs its own certificate"},
           {{sandbox, "serve", run_dir, "sandbox.address=127.0.0.1:0",
             "auth.tls_ca=" + c + "ca.crt"},
            "needs its own certificate"},
       }) {
    auto r = RunCommand(k.argv, absl::Seconds(60));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 2) << k.expected << "\n" << r->err;
    EXPECT_THAT(r->err, HasSubstr(k.expected));
  }
  // TLS does not apply to a unix socket: the same settings serve there.
  auto unix_sandbox = Subprocess::Start(
      {sandbox, "serve", run_dir, "sandbox.address=unix:" + dir_ + "/bad/s.sock",
       "auth.tls_ca=" + c + "ca.crt", "auth.token_file=" + c + "token",
       "sandbox.warm_sessions=0", "metrics.enabled=false"});
  ASSERT_TRUE(unix_sandbox.ok());
  auto ready = (*unix_sandbox)->WaitForLine("ready address=", absl::Seconds(30));
  ASSERT_TRUE(ready.ok()) << ready.status() << (*unix_sandbox)->stderr_text();
  // ... and the token still guards it.
  common::AuthOptions no_token = RunOptions();
  no_token.token_file.clear();
  for (const auto& [options, code] :
       std::vector<std::pair<common::AuthOptions, grpc::StatusCode>>{
           {no_token, grpc::StatusCode::UNAUTHENTICATED},
           {RunOptions(), grpc::StatusCode::OK}}) {
    auto auth = common::ClientAuth::Load(options);
    ASSERT_TRUE(auth.ok());
    auto stub = v1::SandboxService::NewStub(
        auth->CreateChannel("unix:" + dir_ + "/bad/s.sock", grpc::ChannelArguments()));
    grpc::ClientContext ctx;
    auth->Apply(&ctx);
    ctx.set_deadline(In(20));
    v1::HealthResponse resp;
    EXPECT_EQ(stub->Health(&ctx, v1::HealthRequest(), &resp).error_code(), code);
  }
  ASSERT_TRUE((*unix_sandbox)->Signal(SIGTERM).ok());
  EXPECT_TRUE((*unix_sandbox)->Wait(absl::Seconds(30)).ok());
}

}  // namespace
}  // namespace nbrl
