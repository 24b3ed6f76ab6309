// Notebook semantics of one session, through the real launcher (bwrap + python):
// persistence, display, output capture and budgets, tracebacks, notepad, final
// answer, variables, timeouts with recovery, and kills.
#include "sandbox_worker/session.h"

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::sandbox {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto launcher = Launcher::Create(LauncherOptions());
    ASSERT_TRUE(launcher.ok()) << launcher.status();
    launcher_ = *std::move(launcher);
    session_ = NewSession();
  }

  std::unique_ptr<Session> NewSession() {
    auto p = launcher_->Launch(absl::Now() + absl::Seconds(20));
    EXPECT_TRUE(p.ok()) << p.status();
    SessionOptions o;
    o.interrupt_grace = absl::Milliseconds(500);
    return p.ok() ? std::make_unique<Session>(*std::move(p), o) : nullptr;
  }

  CellResult Run(const std::string& code, absl::Duration timeout = absl::Seconds(20),
                 size_t budget = 4096) {
    CellRequest r{code, timeout, budget};
    return session_->Run(r, nullptr);
  }

  std::unique_ptr<Launcher> launcher_;
  std::unique_ptr<Session> session_;
};

TEST_F(SessionTest, VariablesPersistAcrossCells) {
  ASSERT_NE(session_, nullptr);
  EXPECT_EQ(Run("x = 40").termination, Termination::kCompleted);
  EXPECT_EQ(Run("def f(a):\n  return a + x\n").error, std::nullopt);
  CellResult r = Run("f(2)");
  EXPECT_EQ(r.result, "42");
  EXPECT_FALSE(r.state_lost);
}

TEST_F(SessionTest, TrailingExpressionIsDisplayedLikeJupyter) {
  ASSERT_NE(session_, nullptr);
  EXPECT_EQ(Run("a = [1, 2]\na + [3]").result, "[1, 2, 3]");
  EXPECT_EQ(Run("'text'").result, "'text'");
  EXPECT_EQ(Run("None").result, "");
  EXPECT_EQ(Run("1 + 1;").result, "");           // a trailing ';' hides it
  EXPECT_EQ(Run("y = 5").result, "");            // assignments show nothing
  EXPECT_EQ(Run("_ * 2").result, "'texttext'");  // `_`: the last value displayed
}

TEST_F(SessionTest, StdoutAndStderrAreCapturedSeparately) {
  ASSERT_NE(session_, nullptr);
  CellResult r = Run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n7");
  EXPECT_EQ(r.stdout_text, "out\n");
  EXPECT_EQ(r.stderr_text, "err\n");
  EXPECT_EQ(r.result, "7");
}

TEST_F(SessionTest, ExceptionTracebackIsTrimmedToUserCode) {
  ASSERT_NE(session_, nullptr);
  CellResult r = Run("def g():\n  return 1 / 0\nprint('before')\ng()");
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->name, "ZeroDivisionError");
  EXPECT_EQ(r.error->message, "division by zero");
  EXPECT_THAT(r.error->traceback, HasSubstr("line 2, in g"));
  EXPECT_THAT(r.error->traceback, HasSubstr("return 1 / 0"));
  EXPECT_THAT(r.error->traceback, Not(HasSubstr("<string>")));  // no driver frames
  EXPECT_EQ(r.stdout_text, "before\n");
  EXPECT_EQ(r.termination, Termination::kCompleted);
  CellResult s = Run("1 +");
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->name, "SyntaxError");
  EXPECT_EQ(Run("2 + 2").result, "4");  // the session lives on
}

TEST_F(SessionTest, OutputOverBudgetIsTruncatedWithMarker) {
  ASSERT_NE(session_, nullptr);
  CellResult r =
      Run("for i in range(10000): print('line', i)", absl::Seconds(20), 1000);
  EXPECT_TRUE(r.stdout_truncated);
  EXPECT_LE(r.stdout_text.size(), 1100u);
  EXPECT_THAT(r.stdout_text, HasSubstr("[output truncated:"));
  EXPECT_FALSE(Run("print('short')").stdout_truncated);
}

TEST_F(SessionTest, NotepadFinalAnswerAndVariablesComeBack) {
  ASSERT_NE(session_, nullptr);
  CellResult r =
      Run("t = notepad.add_todo('find the capital')\n"
          "notepad.add_todo('check population')\n"
          "notepad.update_todo(t, status='done')\n"
          "notepad.add_facts('Paris is the capital of France')\n"
          "notepad.write_draft('Paris')\n"
          "cities = ['Paris', 'Lyon']\n");
  ASSERT_EQ(r.notepad.todos.size(), 2u);
  EXPECT_EQ(r.notepad.todos[0].id, 1);
  EXPECT_EQ(r.notepad.todos[0].status, "done");
  EXPECT_EQ(r.notepad.todos[1].status, "pending");
  EXPECT_EQ(r.notepad.facts,
            std::vector<std::string>{"Paris is the capital of France"});
  EXPECT_EQ(r.notepad.draft, "Paris");
  EXPECT_FALSE(r.final_answer.has_value());
  bool found = false;
  for (const VariableInfo& v : r.variables) {
    EXPECT_NE(v.name, "notepad");  // predefined names are not the user's
    if (v.name == "cities") {
      found = true;
      EXPECT_EQ(v.type, "list");
      EXPECT_EQ(v.size, "len=2");
      EXPECT_EQ(v.preview, "['Paris', 'Lyon']");
    }
  }
  EXPECT_TRUE(found);
  CellResult bad = Run("notepad.update_todo(9, status='done')");
  ASSERT_TRUE(bad.error.has_value());
  EXPECT_EQ(bad.error->name, "ValueError");
  CellResult f = Run("submit_final_answer('Paris')");
  ASSERT_TRUE(f.final_answer.has_value());
  EXPECT_EQ(*f.final_answer, "Paris");
}

TEST_F(SessionTest, TimeoutInterruptsCellAndKeepsSession) {
  ASSERT_NE(session_, nullptr);
  Run("kept = 'still here'");
  CellResult r = Run("while True:\n  pass", absl::Milliseconds(300));
  EXPECT_EQ(r.termination, Termination::kTimeout);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->name, "KeyboardInterrupt");
  EXPECT_FALSE(r.state_lost);
  EXPECT_TRUE(session_->alive());
  CellResult next = Run("kept");
  EXPECT_EQ(next.result, "'still here'");
  EXPECT_FALSE(next.state_lost);
}

TEST_F(SessionTest, CellIgnoringInterruptGetsSessionKilled) {
  ASSERT_NE(session_, nullptr);
  CellResult r =
      Run("import time\n"
          "while True:\n"
          "  try:\n"
          "    time.sleep(10)\n"
          "  except KeyboardInterrupt:\n"
          "    pass\n",
          absl::Milliseconds(300));
  EXPECT_EQ(r.termination, Termination::kSessionKilled);
  EXPECT_EQ(r.kill_reason, "timeout");
  EXPECT_TRUE(r.state_lost);
  EXPECT_FALSE(session_->alive());
  EXPECT_EQ(Run("1").termination, Termination::kSessionKilled);  // dead stays dead
}

TEST_F(SessionTest, DriverExitIsReportedAsKilled) {
  ASSERT_NE(session_, nullptr);
  CellResult r = Run("import os\nos._exit(3)");
  EXPECT_EQ(r.termination, Termination::kSessionKilled);
  EXPECT_EQ(r.kill_reason, "exited");
  CellResult s =
      NewSession()->Run({"import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)",
                         absl::Seconds(10), 1024},
                        nullptr);
  EXPECT_EQ(s.kill_reason, "crashed");
}

TEST_F(SessionTest, CpuTimeLimitKillsTheSession) {
  LauncherOptions o;
  o.cpu_time = absl::Seconds(1);
  auto launcher = Launcher::Create(o);
  ASSERT_TRUE(launcher.ok());
  auto p = (*launcher)->Launch(absl::Now() + absl::Seconds(20));
  ASSERT_TRUE(p.ok()) << p.status();
  Session s(*std::move(p), SessionOptions());
  CellResult r = s.Run({"while True:\n  pass", absl::Seconds(20), 1024}, nullptr);
  EXPECT_EQ(r.termination, Termination::kSessionKilled);
  EXPECT_EQ(r.kill_reason, "cpu_time");
}

TEST_F(SessionTest, CellBreakingTheProtocolGetsItsSessionKilled) {
  ASSERT_NE(session_, nullptr);
  // A frame header announcing 4 GiB: refused without allocating it.
  CellResult r = Run(
      "import os\nos.write(4, b'\\xff\\xff\\xff\\xff')\nimport time\ntime.sleep(5)");
  EXPECT_EQ(r.termination, Termination::kSessionKilled);
  EXPECT_EQ(r.kill_reason, "protocol");
  EXPECT_FALSE(session_->alive());
}

TEST_F(SessionTest, SystemExitDoesNotEndTheSession) {
  ASSERT_NE(session_, nullptr);
  CellResult r = Run("import sys\nsys.exit(1)");
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->name, "SystemExit");
  EXPECT_EQ(Run("3").result, "3");
}

}  // namespace
}  // namespace nbrl::sandbox
