#include "common/shutdown.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>

#include "gtest/gtest.h"

namespace nbrl::common {
namespace {

TEST(ShutdownSignalTest, SigtermRequestsShutdownAndRunsCallbacks) {
  auto s = ShutdownSignal::Install(absl::Seconds(30));
  ASSERT_TRUE(s.ok()) << s.status();
  std::atomic<int> calls{0};
  (*s)->OnShutdown([&] { calls++; });
  EXPECT_FALSE((*s)->requested());
  EXPECT_FALSE((*s)->WaitFor(absl::Milliseconds(10)));
  ASSERT_EQ(::kill(::getpid(), SIGTERM), 0);
  EXPECT_TRUE((*s)->WaitFor(absl::Seconds(10)));
  EXPECT_EQ((*s)->reason(), "SIGTERM");
  s->reset();  // joins the callback runner
  EXPECT_EQ(calls.load(), 1);
}

TEST(ShutdownSignalTest, RequestFromInsideAndLateCallbacks) {
  auto s = ShutdownSignal::Install(absl::Seconds(30));
  ASSERT_TRUE(s.ok()) << s.status();
  (*s)->Request("learner lost its store");
  (*s)->Request("second reason is ignored");
  EXPECT_TRUE((*s)->requested());
  EXPECT_EQ((*s)->reason(), "learner lost its store");
  // Wait until the watcher has started the callbacks, then register another one.
  std::atomic<bool> early{false}, late{false};
  (*s)->OnShutdown([&] { early = true; });
  for (int i = 0; i < 100 && !early; ++i) absl::SleepFor(absl::Milliseconds(20));
  (*s)->OnShutdown([&] { late = true; });
  EXPECT_TRUE(late);
}

TEST(ShutdownSignalTest, OnlyOneInstance) {
  auto a = ShutdownSignal::Install();
  ASSERT_TRUE(a.ok());
  auto b = ShutdownSignal::Install();
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  a->reset();
  auto c = ShutdownSignal::Install();
  EXPECT_TRUE(c.ok());
}

TEST(ShutdownSignalDeathTest, SecondSignalExitsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto s = ShutdownSignal::Install(absl::Seconds(30));
        ::kill(::getpid(), SIGINT);
        (*s)->WaitFor(absl::Seconds(10));
        ::kill(::getpid(), SIGINT);
        absl::SleepFor(absl::Seconds(10));
      },
      ::testing::ExitedWithCode(128 + SIGINT), "second SIGINT during shutdown");
}

TEST(ShutdownSignalDeathTest, GraceRunningOutExits) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto s = ShutdownSignal::Install(absl::Milliseconds(200));
        (*s)->Request("test");
        absl::SleepFor(absl::Seconds(10));
      },
      ::testing::ExitedWithCode(128 + SIGTERM),
      "did not finish within the shutdown grace");
}

}  // namespace
}  // namespace nbrl::common
