#include "common/config.h"

#include <fstream>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::common {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

ConfigSchema TestSchema() {
  ConfigSchema s;
  s.Int("learner.batch_size", 64, "Prompts per step.", 1, 4096);
  s.Double("learner.lr", 1e-6, "Learning rate.", 0.0);
  s.Bool("learner.sync", true, "Synchronous mode.");
  s.String("learner.advantage", "reinforce++", "Estimator.", {"reinforce++", "grpo"});
  s.Duration("actor.heartbeat", absl::Seconds(5), "Heartbeat interval.");
  s.StringList("actor.tools", {"web_search"}, "Tools.");
  s.String("run.dir", "runs/x", "Run directory.");
  return s;
}

absl::StatusOr<Config> FromYaml(const ConfigSchema& s, const std::string& yaml,
                                std::vector<std::string> overrides = {}) {
  return Config::FromYaml(s, yaml, "run.yaml", overrides);
}

TEST(ConfigTest, DefaultsApplyWhenNothingIsGiven) {
  ConfigSchema s = TestSchema();
  auto c = Config::Load(s, "", {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->GetInt("learner.batch_size"), 64);
  EXPECT_DOUBLE_EQ(c->GetDouble("learner.lr"), 1e-6);
  EXPECT_TRUE(c->GetBool("learner.sync"));
  EXPECT_EQ(c->GetString("learner.advantage"), "reinforce++");
  EXPECT_EQ(c->GetDuration("actor.heartbeat"), absl::Seconds(5));
  EXPECT_EQ(c->GetStringList("actor.tools"), std::vector<std::string>{"web_search"});
  EXPECT_FALSE(c->IsSet("learner.lr"));
  EXPECT_EQ(c->SourceOf("learner.lr"), "default");
}

TEST(ConfigTest, FileValuesAreTypedAndCarryTheirLine) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s,
                    "learner:\n"
                    "  batch_size: 8\n"
                    "  lr: 3e-4\n"
                    "  sync: no\n"
                    "actor:\n"
                    "  heartbeat: 250ms\n"
                    "  tools: [web_search, read_page]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->GetInt("learner.batch_size"), 8);
  EXPECT_DOUBLE_EQ(c->GetDouble("learner.lr"), 3e-4);
  EXPECT_FALSE(c->GetBool("learner.sync"));
  EXPECT_EQ(c->GetDuration("actor.heartbeat"), absl::Milliseconds(250));
  EXPECT_EQ(c->GetStringList("actor.tools"),
            (std::vector<std::string>{"web_search", "read_page"}));
  EXPECT_EQ(c->SourceOf("learner.batch_size"), "run.yaml:2");
  EXPECT_EQ(c->SourceOf("actor.heartbeat"), "run.yaml:6");
}

TEST(ConfigTest, IntegerAcceptedWhereANumberIsExpected) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  lr: 1\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->GetDouble("learner.lr"), 1.0);
}

TEST(ConfigTest, UnknownKeyNamesTheNearestValidKey) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  batchsize: 8\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("run.yaml:2"), HasSubstr("unknown key learner.batchsize"),
                    HasSubstr("did you mean learner.batch_size?")));
}

TEST(ConfigTest, UnknownSectionIsRejected) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "lerner:\n  lr: 0.1\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("unknown key lerner"), HasSubstr("did you mean")));
}

TEST(ConfigTest, RepeatedKeyIsRejectedWithBothLines) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  lr: 0.5\n  sync: false\n  lr: 0.1\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("run.yaml:4"), HasSubstr("learner.lr is given twice"),
                    HasSubstr("first on line 2")));
}

TEST(ConfigTest, RepeatedSectionIsRejected) {
  ConfigSchema s = TestSchema();
  auto c =
      FromYaml(s, "learner:\n  lr: 0.5\nrun:\n  dir: x\nlearner:\n  sync: false\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("run.yaml:5"), HasSubstr("learner is given twice")));
}

TEST(ConfigTest, SameNameInTwoSectionsIsFine) {
  ConfigSchema s;
  s.Int("learner.max_steps", 1, "Steps.", 1);
  s.Int("actor.max_steps", 1, "Steps.", 1);
  auto c = FromYaml(s, "learner:\n  max_steps: 3\nactor:\n  max_steps: 4\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->GetInt("learner.max_steps"), 3);
  EXPECT_EQ(c->GetInt("actor.max_steps"), 4);
}

TEST(ConfigTest, WrongTypeNamesFileLineKeyAndExpectation) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "run:\n  dir: x\nlearner:\n  batch_size: eight\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("run.yaml:4"), HasSubstr("learner.batch_size"),
                    HasSubstr("expected an integer, got 'eight'")));
}

TEST(ConfigTest, FractionIsNotAnInteger) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  batch_size: 1.5\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("expected an integer"));
}

TEST(ConfigTest, ListWhereAScalarIsExpectedIsATypeError) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  lr: [1, 2]\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("learner.lr"), HasSubstr("got a list")));
}

TEST(ConfigTest, ScalarWhereAListIsExpectedIsATypeError) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "actor:\n  tools: web_search\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("expected a list of strings"));
}

TEST(ConfigTest, SectionGivenAScalarIsRejected) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner: 5\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("learner is a section; expected a mapping"));
}

TEST(ConfigTest, EmptyValueIsRejected) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  lr:\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("learner.lr"), HasSubstr("has no value")));
}

TEST(ConfigTest, RangesAndChoicesAreEnforced) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  batch_size: 0\n  lr: -1\n  advantage: ppo\n");
  ASSERT_FALSE(c.ok());
  std::string msg(c.status().message());
  EXPECT_THAT(msg, HasSubstr("learner.batch_size: 0 is out of range [1, 4096]"));
  EXPECT_THAT(msg, HasSubstr("learner.lr: -1 is out of range"));
  EXPECT_THAT(msg, HasSubstr("'ppo' is not one of: reinforce++, grpo"));
}

TEST(ConfigTest, DurationNeedsAUnit) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "actor:\n  heartbeat: 5\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("duration with a unit"));
}

TEST(ConfigTest, AllProblemsAreReportedTogether) {
  ConfigSchema s = TestSchema();
  auto c =
      FromYaml(s, "learner:\n  batch_size: x\n  lrr: 1\nactor:\n  heartbeat: soon\n");
  ASSERT_FALSE(c.ok());
  std::string msg(c.status().message());
  EXPECT_THAT(msg, HasSubstr("run.yaml:2"));
  EXPECT_THAT(msg, HasSubstr("run.yaml:3"));
  EXPECT_THAT(msg, HasSubstr("run.yaml:5"));
}

TEST(ConfigTest, MalformedYamlNamesTheLine) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "learner:\n  batch_size: 8\n   lr: [1, 2\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("run.yaml:"), HasSubstr("not valid YAML")));
}

TEST(ConfigTest, TopLevelMustBeAMapping) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "- a\n- b\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("top level must be a mapping"));
}

TEST(ConfigTest, EmptyFileMeansDefaults) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "# nothing here\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->GetInt("learner.batch_size"), 64);
}

TEST(ConfigTest, MissingFileIsNotFoundAndNamesThePath) {
  ConfigSchema s = TestSchema();
  auto c = Config::Load(s, "/nonexistent/run.yaml", {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("/nonexistent/run.yaml"));
}

TEST(ConfigTest, OverridesApplyAfterTheFileInOrder) {
  ConfigSchema s = TestSchema();
  auto c =
      FromYaml(s, "learner:\n  batch_size: 8\n",
               {"learner.batch_size=16", "actor.tools=[a, b]", "learner.batch_size=32",
                "run.dir=/tmp/x=y", "actor.heartbeat=1m"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->GetInt("learner.batch_size"), 32);
  EXPECT_EQ(c->GetStringList("actor.tools"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c->GetString("run.dir"), "/tmp/x=y");
  EXPECT_EQ(c->GetDuration("actor.heartbeat"), absl::Minutes(1));
  EXPECT_EQ(c->SourceOf("learner.batch_size"), "override");
}

TEST(ConfigTest, OverrideSyntaxErrorsAreClear) {
  ConfigSchema s = TestSchema();
  struct Case {
    std::string override_text;
    std::string expected;
  };
  for (const Case& k : std::vector<Case>{
           {"learner.batch_size", "is not of the form key=value"},
           {"=3", "is not a key"},
           {"learner..lr=1", "is not a key"},
           {"learner lr=1", "is not a key"},
           {"learner.lrate=1", "did you mean learner.lr?"},
           {"learner.batch_size=abc", "expected an integer, got 'abc'"},
           {"learner.sync=maybe", "expected a boolean"},
           {"actor.tools=[a, b", "not valid YAML"},
       }) {
    auto c = FromYaml(s, "", {k.override_text});
    ASSERT_FALSE(c.ok()) << k.override_text;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(k.expected))
        << k.override_text;
  }
}

TEST(ConfigTest, StringOverridesAreTakenAsWritten) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "", {"run.dir=yes", "learner.advantage=grpo"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->GetString("run.dir"), "yes");
  EXPECT_EQ(c->GetString("learner.advantage"), "grpo");
}

TEST(ConfigTest, ResolvedYamlReadsBackToTheSameValues) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(
      s, "learner:\n  lr: 0.1\n",
      {"actor.tools=[\"a b\", 'c: d']", "run.dir=we\"ird", "learner.sync=false"});
  ASSERT_TRUE(c.ok()) << c.status();
  std::string yaml = c->ToYaml();
  EXPECT_THAT(yaml, HasSubstr("# run.yaml:2"));
  EXPECT_THAT(yaml, HasSubstr("# override"));
  auto back = FromYaml(s, yaml);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << yaml;
  EXPECT_DOUBLE_EQ(back->GetDouble("learner.lr"), 0.1);
  EXPECT_EQ(back->GetStringList("actor.tools"),
            (std::vector<std::string>{"a b", "c: d"}));
  EXPECT_EQ(back->GetString("run.dir"), "we\"ird");
  EXPECT_FALSE(back->GetBool("learner.sync"));
  EXPECT_EQ(back->GetDuration("actor.heartbeat"), absl::Seconds(5));
}

TEST(ConfigTest, WriteResolvedCreatesDirectoriesAndWritesAtomically) {
  ConfigSchema s = TestSchema();
  auto c = FromYaml(s, "", {"learner.batch_size=3"});
  ASSERT_TRUE(c.ok());
  testutil::TempDir tmp("cfg");
  const std::string& dir = tmp.path();
  std::string path = dir + "/a/b/resolved.yaml";
  ASSERT_TRUE(c->WriteResolved(path).ok());
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(*text, HasSubstr("batch_size: 3  # override"));
  auto back = Config::Load(s, path, {});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->GetInt("learner.batch_size"), 3);
}

TEST(ConfigTest, NearestUsesEditDistance) {
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  ConfigSchema s = TestSchema();
  EXPECT_EQ(s.Nearest("actor.heartbeet"), "actor.heartbeat");
  EXPECT_EQ(s.Nearest("learner.tools"), "actor.tools");
}

TEST(ConfigTest, DescribeListsEveryKey) {
  ConfigSchema s = TestSchema();
  std::string text = s.Describe();
  std::string md = s.DescribeMarkdown();
  for (const auto& [key, entry] : s.entries()) {
    EXPECT_THAT(text, HasSubstr(key));
    EXPECT_THAT(md, HasSubstr("`" + key + "`"));
  }
}

TEST(ConfigSchemaDeathTest, DeclaringAKeyTwiceIsABug) {
  ConfigSchema s;
  s.Int("a.b", 1, "x");
  EXPECT_DEATH(s.Int("a.b", 2, "y"), "declared twice");
  EXPECT_DEATH(s.Int("a", 2, "y"), "also a section");
  EXPECT_DEATH(s.Int("a.b.c", 2, "y"), "under the key");
}

}  // namespace
}  // namespace nbrl::common
