// The escape suite: hostile cells against a real SessionManager (bwrap, seccomp,
// rlimits). Each attempt must end in a clear error observation, and the worker
// must go on serving the next request.
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sandbox_worker/session_manager.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::sandbox {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "nbrl-test-secret-5f2a9c";

class EscapeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { setenv("NBRL_ESCAPE_TEST_SECRET", kSecret, 1); }

  void SetUp() override {
    SessionManagerOptions o;
    o.warm_sessions = 2;
    o.launcher.workspace_bytes = 8 << 20;
    o.launcher.tmp_bytes = 4 << 20;
    o.launcher.max_file_bytes = 4 << 20;
    o.launcher.address_space_bytes = 512 << 20;
    o.launcher.max_processes = 32;
    o.session.interrupt_grace = absl::Milliseconds(500);
    o.cell_timeout = absl::Seconds(10);
    auto m = SessionManager::Create(o, nullptr, nullptr);
    ASSERT_TRUE(m.ok()) << m.status();
    manager_ = *std::move(m);
  }

  std::string Open() {
    auto id = manager_->Open(OpenRequest{"escape-test", {}, {}, ""});
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : "";
  }

  CellResult Run(const std::string& id, const std::string& code,
                 absl::Duration timeout = absl::Seconds(10)) {
    auto r = manager_->Execute(id, CellRequest{code, timeout, 8192});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CellResult();
  }

  // One cell in a fresh session: the common shape of an escape attempt.
  CellResult Attempt(const std::string& code,
                     absl::Duration timeout = absl::Seconds(10)) {
    std::string id = Open();
    CellResult r = Run(id, code, timeout);
    manager_->Close(id);
    return r;
  }

  // The worker still opens sessions and runs cells.
  void ExpectWorkerServes() {
    std::string id = Open();
    CellResult r = Run(id, "6 * 7");
    EXPECT_EQ(r.result, "42");
    EXPECT_EQ(r.termination, Termination::kCompleted);
    manager_->Close(id);
  }

  std::unique_ptr<SessionManager> manager_;
};

std::string ErrorName(const CellResult& r) { return r.error ? r.error->name : ""; }

TEST_F(EscapeTest, ForkBombHitsProcessLimit) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "RLIMIT_NPROC per session needs a worker running as root";
  }
  CellResult r = Attempt("import os\nwhile True:\n  os.fork()", absl::Seconds(5));
  EXPECT_TRUE(r.error.has_value() || r.termination != Termination::kCompleted);
  if (r.termination == Termination::kCompleted) {
    EXPECT_EQ(ErrorName(r), "BlockingIOError");
  }
  ExpectWorkerServes();
}

TEST_F(EscapeTest, ForkedChildrenAreCappedPerSession) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "RLIMIT_NPROC per session needs a worker running as root";
  }
  CellResult r = Attempt(
      "import os, time\nn = 0\ntry:\n  while True:\n    if os.fork() == 0:\n"
      "      time.sleep(30); os._exit(0)\n    n += 1\nexcept OSError:\n  "
      "print('forks', n)\n"
      "  raise\n");
  EXPECT_EQ(ErrorName(r), "BlockingIOError");
  EXPECT_THAT(r.stdout_text, HasSubstr("forks "));
  int forks = 0;
  sscanf(r.stdout_text.c_str(), "forks %d", &forks);
  EXPECT_LT(forks, 32);
  ExpectWorkerServes();
}

TEST_F(EscapeTest, MemoryBombRaisesMemoryError) {
  EXPECT_EQ(ErrorName(Attempt("x = bytearray(4 << 30)")), "MemoryError");
  CellResult r =
      Attempt("chunks = []\nwhile True:\n  chunks.append(bytearray(16 << 20))");
  EXPECT_TRUE(ErrorName(r) == "MemoryError" ||
              r.termination == Termination::kSessionKilled)
      << ErrorName(r);
  ExpectWorkerServes();
}

TEST_F(EscapeTest, InfiniteLoopTimesOutAndSessionSurvives) {
  std::string id = Open();
  Run(id, "state = 1");
  CellResult r = Run(id, "while True:\n  pass", absl::Milliseconds(500));
  EXPECT_EQ(r.termination, Termination::kTimeout);
  EXPECT_EQ(Run(id, "state + 1").result, "2");
  manager_->Close(id);
}

TEST_F(EscapeTest, KilledSessionRestartsAndSaysStateLost) {
  std::string id = Open();
  Run(id, "state = 1");
  CellResult r =
      Run(id,
          "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
          "while True:\n  time.sleep(1)",
          absl::Milliseconds(300));
  EXPECT_EQ(r.termination, Termination::kSessionKilled);
  EXPECT_EQ(r.kill_reason, "timeout");
  CellResult next = Run(id, "'state' in dir()");
  EXPECT_TRUE(next.state_lost);
  EXPECT_EQ(next.result, "False");
  EXPECT_FALSE(Run(id, "1").state_lost);  // said once
  manager_->Close(id);
}

TEST_F(EscapeTest, DiskFillStopsAtWorkspaceAndFileCaps) {
  CellResult r = Attempt(
      "f = open('/workspace/fill', 'wb')\nwhile True:\n  f.write(b'0' * (1 << 20))\n  "
      "f.flush()");
  EXPECT_EQ(ErrorName(r), "OSError") << r.stderr_text;
  CellResult t = Attempt(
      "i = 0\nwhile True:\n  open('/tmp/f%d' % i, 'wb').write(b'0' * (1 << 20))\n  i "
      "+= 1");
  EXPECT_EQ(ErrorName(t), "OSError");
  EXPECT_THAT(t.error ? t.error->message : "", HasSubstr("No space left"));
  ExpectWorkerServes();
}

TEST_F(EscapeTest, NoOutboundNetwork) {
  // A listener on the host's loopback the sandbox must not reach.
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  CellResult tcp =
      Attempt("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)");
  EXPECT_THAT(ErrorName(tcp),
              AnyOf("OSError", "TimeoutError", "ConnectionRefusedError"));
  CellResult local = Attempt(absl::StrCat(
      "import socket\nsocket.create_connection(('127.0.0.1', ", port, "), timeout=3)"));
  EXPECT_EQ(ErrorName(local), "ConnectionRefusedError");
  CellResult udp = Attempt(
      "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
      "s.sendto(b'x', ('8.8.8.8', 53))");
  EXPECT_EQ(ErrorName(udp), "OSError");
  close(listener);
  ExpectWorkerServes();
}

TEST_F(EscapeTest, CannotReachHostUnixSockets) {
  testutil::TempDir tmp("escape-sock-");
  const std::string& dir = tmp.path();
  std::string path = dir + "/worker.sock";
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  unlink(path.c_str());
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(s, 4), 0);
  // An abstract socket too: those are scoped by network namespace.
  int a = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un abstract{};
  abstract.sun_family = AF_UNIX;
  std::string name = absl::StrCat("nbrl-escape-", getpid());
  memcpy(abstract.sun_path + 1, name.data(), name.size());
  ASSERT_EQ(
      bind(a, reinterpret_cast<sockaddr*>(&abstract),
           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
      0);
  ASSERT_EQ(listen(a, 4), 0);
  CellResult r =
      Attempt(absl::StrCat("import socket\ns = socket.socket(socket.AF_UNIX)\n"
                           "s.connect('",
                           path, "')"));
  EXPECT_EQ(ErrorName(r), "FileNotFoundError");
  CellResult ab =
      Attempt(absl::StrCat("import socket\ns = socket.socket(socket.AF_UNIX)\n"
                           "s.connect('\\0",
                           name, "')"));
  EXPECT_EQ(ErrorName(ab), "ConnectionRefusedError");
  close(s);
  close(a);
  ExpectWorkerServes();
}

TEST_F(EscapeTest, CannotReadFilesOutsideTheBinds) {
  const char* src = getenv("NBRL_SOURCE_DIR");
  std::string checkout =
      src ? std::string(src) + "/CMakeLists.txt" : "/work/main/CMakeLists.txt";
  for (const std::string& path :
       {std::string("/etc/shadow"), std::string("/root/.bashrc"), std::string("/root"),
        checkout}) {
    CellResult r = Attempt(absl::StrCat("open('", path, "').read()"));
    EXPECT_THAT(ErrorName(r),
                AnyOf("FileNotFoundError", "IsADirectoryError", "PermissionError"))
        << path;
  }
  CellResult ls = Attempt("import os\nsorted(os.listdir('/'))");
  EXPECT_EQ(ls.result,
            "['bin', 'dev', 'lib', 'lib64', 'proc', 'tmp', 'usr', 'workspace']");
  ExpectWorkerServes();
}

TEST_F(EscapeTest, CannotWriteOutsideTheWorkspace) {
  for (const char* path :
       {"/usr/evil", "/usr/lib/python3.11/os.py", "/evil", "/proc/evil"}) {
    CellResult r = Attempt(absl::StrCat("open('", path, "', 'w').write('x')"));
    EXPECT_THAT(ErrorName(r), AnyOf("OSError", "PermissionError", "FileNotFoundError"))
        << path;
  }
  EXPECT_EQ(Attempt("open('/workspace/ok.txt', 'w').write('hello')").result, "5");
  ExpectWorkerServes();
}

TEST_F(EscapeTest, CannotSignalOrPtraceTheWorker) {
  std::string me = absl::StrCat(getpid());
  CellResult kill = Attempt("import os, signal\nos.kill(" + me + ", signal.SIGKILL)");
  EXPECT_EQ(ErrorName(kill), "ProcessLookupError");
  CellResult ptrace = Attempt(
      "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
      "rc = libc.ptrace(16, " +
      me + ", 0, 0)\n(rc, os.strerror(ctypes.get_errno()))");
  EXPECT_THAT(ptrace.result, HasSubstr("(-1, "));
  CellResult self = Attempt(
      "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
      "rc = libc.ptrace(0, 0, 0, 0)\n(rc, os.strerror(ctypes.get_errno()))");
  EXPECT_EQ(self.result, "(-1, 'Operation not permitted')");  // seccomp
  // kill(-1) reaches only the sandbox's own processes (none but the caller and
  // its pid 1, which kill(-1) spares, so ESRCH): this test process lives on.
  CellResult all = Attempt(
      "import os, signal\ntry:\n  os.kill(-1, signal.SIGKILL)\nexcept "
      "ProcessLookupError:\n"
      "  pass\n'alive'");
  EXPECT_EQ(all.result, "'alive'");
  ExpectWorkerServes();
}

TEST_F(EscapeTest, NamespaceAndMountCallsAreRefused) {
  CellResult r = Attempt(
      "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
      "out = []\n"
      "for flags in (0x10000000, 0x20000000, 0x40000000, 0x00020000):\n"
      "  out.append((libc.unshare(flags), ctypes.get_errno()))\n"
      "out.append((libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), "
      "ctypes.get_errno()))\n"
      "out");
  EXPECT_EQ(r.result, "[(-1, 1), (-1, 1), (-1, 1), (-1, 1), (-1, 1)]");
  ExpectWorkerServes();
}

TEST_F(EscapeTest, SessionsCannotSeeEachOther) {
  std::string a = Open();
  std::string b = Open();
  Run(a,
      "open('/workspace/secret.txt', 'w').write('a-only')\nopen('/tmp/t', "
      "'w').write('x')");
  CellResult r =
      Run(b, "import os\nos.path.exists('/workspace/secret.txt'), os.listdir('/tmp')");
  EXPECT_EQ(r.result, "(False, [])");
  CellResult procs =
      Run(b, "import os\nsorted(int(p) for p in os.listdir('/proc') if p.isdigit())");
  EXPECT_EQ(procs.result, "[1, 2]");  // bwrap's reaper and this session's driver
  manager_->Close(a);
  manager_->Close(b);
}

TEST_F(EscapeTest, SandboxRunsUnprivilegedFilteredAndLimited) {
  CellResult r = Attempt(
      "import os, resource as r\n"
      "st = dict(l.split(':', 1) for l in "
      "open('/proc/self/status').read().splitlines())\n"
      "print('seccomp=%s cap=%s nnp=%s' % tuple(st[k].strip() for k in\n"
      "      ('Seccomp', 'CapEff', 'NoNewPrivs')))\n"
      "print('as=%d fsize=%d' % (r.getrlimit(r.RLIMIT_AS)[0] >> 20,\n"
      "      r.getrlimit(r.RLIMIT_FSIZE)[0] >> 20))\n"
      "print('nproc=%d' % r.getrlimit(r.RLIMIT_NPROC)[0])\n"
      "os.getuid() != 0");
  EXPECT_EQ(r.error, std::nullopt);
  // Seccomp mode 2 (filter), no effective capabilities, no_new_privs.
  EXPECT_THAT(r.stdout_text, HasSubstr("seccomp=2 cap=0000000000000000 nnp=1\n"));
  EXPECT_THAT(r.stdout_text, HasSubstr("as=512 fsize=4\n"));
  // RLIMIT_NPROC is set only when the worker runs as root (a uid per sandbox).
  if (geteuid() == 0) {
    EXPECT_THAT(r.stdout_text, HasSubstr("nproc=32\n"));
  }
  EXPECT_EQ(r.result, "True");
}

TEST_F(EscapeTest, WorkerEnvironmentDoesNotLeak) {
  ASSERT_STREQ(getenv("NBRL_ESCAPE_TEST_SECRET"), kSecret);
  CellResult r = Attempt(
      "import os\nprint(dict(os.environ))\n"
      "for p in ('/proc/1/environ', '/proc/self/environ', '/proc/2/environ'):\n"
      "  try:\n    print(open(p, 'rb').read())\n  except OSError as e:\n"
      "    print(p, type(e).__name__)\n");
  EXPECT_EQ(r.error, std::nullopt);
  EXPECT_THAT(r.stdout_text, Not(HasSubstr(kSecret)));
  EXPECT_THAT(r.stdout_text, Not(HasSubstr("NBRL_ESCAPE_TEST_SECRET")));
  EXPECT_THAT(r.stdout_text, HasSubstr("'HOME': '/workspace'"));
}

}  // namespace
}  // namespace nbrl::sandbox
