#include "bench/harness.h"

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A probe that returns the given values in turn.
Probe Sequence(std::vector<double> values) {
  auto i = std::make_shared<size_t>(0);
  return [values, i]() -> absl::StatusOr<double> {
    return values[(*i)++ % values.size()];
  };
}

TEST(HarnessTest, MediansAndRatioForTimes) {
  SideBySideOptions o;
  o.name = "t";
  o.rounds = 3;
  o.warmup = 1;
  // First value of each side is the warm-up and must be ignored.
  auto r = RunSideBySide(o, Sequence({100, 1, 3, 2}), Sequence({100, 4, 8, 6}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->measured.values, ElementsAre(1, 3, 2));
  EXPECT_DOUBLE_EQ(r->measured.median, 2);
  EXPECT_DOUBLE_EQ(r->baseline.median, 6);
  EXPECT_DOUBLE_EQ(r->ratio, 3);  // measured takes a third of the time
  EXPECT_THAT(FormatResult(*r), HasSubstr("ratio 3.00x"));
}

TEST(HarnessTest, RatioForRates) {
  SideBySideOptions o;
  o.name = "rate";
  o.rounds = 2;
  o.warmup = 0;
  o.unit = "tokens/s";
  o.higher_is_better = true;
  auto r = RunSideBySide(o, Sequence({300, 500}), Sequence({100, 100}));
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->measured.median, 400);
  EXPECT_DOUBLE_EQ(r->ratio, 4);
}

TEST(HarnessTest, RoundsAlternateWhichSideGoesFirst) {
  std::string order;
  Probe a = [&]() -> absl::StatusOr<double> {
    order += "a";
    return 1.0;
  };
  Probe b = [&]() -> absl::StatusOr<double> {
    order += "b";
    return 1.0;
  };
  SideBySideOptions o;
  o.name = "order";
  o.rounds = 4;
  o.warmup = 0;
  ASSERT_TRUE(RunSideBySide(o, a, b).ok());
  EXPECT_EQ(order, "abbaabba");
}

TEST(HarnessTest, ProbeErrorNamesSideAndRound) {
  SideBySideOptions o;
  o.name = "fails";
  o.rounds = 2;
  o.warmup = 0;
  o.baseline_label = "python";
  Probe bad = []() -> absl::StatusOr<double> {
    return absl::UnavailableError("peer down");
  };
  auto r = RunSideBySide(o, Sequence({1}), bad);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("benchmark fails, python, round 1: peer down"));
  o.rounds = 0;
  EXPECT_EQ(RunSideBySide(o, Sequence({1}), Sequence({1})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(HarnessTest, JsonRecordHasEveryValue) {
  SideBySideOptions o;
  o.name = "json";
  o.rounds = 2;
  o.warmup = 0;
  auto r = RunSideBySide(o, Sequence({1, 2}), Sequence({4, 4}));
  ASSERT_TRUE(r.ok());
  testutil::TempDir tmp("bench-json");
  std::string path = tmp.path() + "/bench-json/record.json";
  ASSERT_TRUE(WriteResultJson(*r, path).ok());
  auto text = common::ReadFile(path);
  ASSERT_TRUE(text.ok());
  auto j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["name"], "json");
  EXPECT_EQ(j["measured"]["values"].size(), 2u);
  EXPECT_DOUBLE_EQ(j["measured"]["median"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["ratio"].get<double>(), 4 / 1.5);
}

TEST(HarnessTest, CommandProbeTimesOrReadsAValue) {
  auto timed = CommandProbe("true")();
  ASSERT_TRUE(timed.ok()) << timed.status();
  EXPECT_GE(*timed, 0);
  auto value = CommandProbe("echo warming; echo NBRL_BENCH_VALUE=123.5")();
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_DOUBLE_EQ(*value, 123.5);
  auto failed = CommandProbe("echo oops >&2; exit 3")();
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(std::string(failed.status().message()),
              AllOf(HasSubstr("exit 3"), HasSubstr("oops")));
  auto garbage = CommandProbe("echo NBRL_BENCH_VALUE=fast")();
  EXPECT_FALSE(garbage.ok());
}

}  // namespace
}  // namespace nbrl::bench
