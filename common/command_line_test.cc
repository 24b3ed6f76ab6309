#include "common/command_line.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<CommandLine> Parse(std::vector<const char*> args,
                                  const CommandLineOptions& options = {}) {
  args.insert(args.begin(), "prog");
  return ParseCommandLine(static_cast<int>(args.size()), args.data(), options);
}

TEST(CommandLineTest, ConfigAndOverrides) {
  auto cl = Parse({"--config", "run.yaml", "a.b=1", "c=x=y", "--print-config"});
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config_path, "run.yaml");
  EXPECT_THAT(cl->overrides, ElementsAre("a.b=1", "c=x=y"));
  EXPECT_TRUE(cl->print_config);
  EXPECT_FALSE(cl->help);
}

TEST(CommandLineTest, EqualsFormOfFlags) {
  auto cl = Parse({"--config=run.yaml", "--version"});
  ASSERT_TRUE(cl.ok());
  EXPECT_EQ(cl->config_path, "run.yaml");
  EXPECT_TRUE(cl->version);
}

TEST(CommandLineTest, HelpFlags) {
  auto cl = Parse({"-h", "--help-config"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->help);
  EXPECT_TRUE(cl->help_config);
}

TEST(CommandLineTest, UnknownFlagIsAnError) {
  auto cl = Parse({"--confg", "x"});
  ASSERT_FALSE(cl.ok());
  EXPECT_THAT(std::string(cl.status().message()), HasSubstr("unknown flag '--confg'"));
}

TEST(CommandLineTest, MissingValueIsAnError) {
  auto cl = Parse({"--config"});
  ASSERT_FALSE(cl.ok());
  EXPECT_THAT(std::string(cl.status().message()), HasSubstr("--config needs a value"));
}

TEST(CommandLineTest, ValueOnABooleanFlagIsAnError) {
  auto cl = Parse({"--help=yes"});
  ASSERT_FALSE(cl.ok());
  EXPECT_THAT(std::string(cl.status().message()), HasSubstr("takes no value"));
}

TEST(CommandLineTest, PositionalOnlyWhenAllowed) {
  auto rejected = Parse({"cell.py"});
  ASSERT_FALSE(rejected.ok());
  EXPECT_THAT(std::string(rejected.status().message()),
              HasSubstr("unexpected argument 'cell.py'"));
  CommandLineOptions options;
  options.allow_positional = true;
  auto cl = Parse({"a.py", "k=v", "--", "x=y.py"}, options);
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_THAT(cl->positional, ElementsAre("a.py", "x=y.py"));
  EXPECT_THAT(cl->overrides, ElementsAre("k=v"));
}

TEST(CommandLineTest, ProgramFlags) {
  CommandLineOptions options;
  options.value_flags = {"--out"};
  options.bool_flags = {"--markdown"};
  auto cl = Parse({"--out", "f.txt", "--markdown", "--out=g"}, options);
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_THAT(cl->positional, ElementsAre("--out=f.txt", "--markdown", "--out=g"));
}

}  // namespace
}  // namespace nbrl::common
