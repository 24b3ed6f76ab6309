#include "agent/action_parser.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nbrl::agent {
namespace {

using ::testing::HasSubstr;

TEST(ActionParserTest, WellFormedAction) {
  ParsedAction a = ParseAction(
      "<think>Search first.</think>\n<code>\nhits = "
      "web_search('x')\nprint(hits)\n</code>");
  ASSERT_TRUE(a.well_formed) << a.error;
  EXPECT_EQ(a.think, "Search first.");
  EXPECT_EQ(a.code, "hits = web_search('x')\nprint(hits)");
}

TEST(ActionParserTest, IndentationOfTheFirstLineIsKept) {
  ParsedAction a = ParseAction("<think>t</think><code>\n\n  x = 1\n</code>");
  ASSERT_TRUE(a.well_formed);
  EXPECT_EQ(a.code, "  x = 1");
}

TEST(ActionParserTest, TextAfterTheCodeIsIgnored) {
  ParsedAction a = ParseAction("<think>t</think><code>x=1</code> trailing <output>");
  ASSERT_TRUE(a.well_formed);
  EXPECT_EQ(a.code, "x=1");
}

struct BadCase {
  std::string text;
  std::string error;
};

class MalformedActionTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(MalformedActionTest, IsRejectedWithAReason) {
  ParsedAction a = ParseAction(GetParam().text);
  EXPECT_FALSE(a.well_formed);
  EXPECT_THAT(a.error, HasSubstr(GetParam().error));
  EXPECT_TRUE(a.code.empty());
}

INSTANTIATE_TEST_SUITE_P(
    EdgeCases, MalformedActionTest,
    ::testing::Values(
        BadCase{"", "must be <think>"}, BadCase{"just words", "must be <think>"},
        BadCase{"<code>x=1</code>", "must start with <think>"},
        BadCase{"<think>no end <code>x=1</code>", "no </think>"},
        BadCase{"<think>a <think>b</think></think><code>x</code>", "cannot be nested"},
        BadCase{"<think>t</think> print(1)", "expected <code>"},
        BadCase{"<think>t</think><code>x = 1", "not closed with </code>"},
        BadCase{"<think>t</think><code>   \n  </code>", "is empty"},
        BadCase{"<think>t</think><code>x=1\n<code>y=2</code>", "cannot be nested"},
        BadCase{"<think>t</think><code>print('</code>", "not closed"}));

TEST(ActionParserTest, MarkerInsideAStringDoesNotEndTheCode) {
  std::string text =
      "<think>t</think><code>s = \"</code>\"\nt = '''a\n</code>'''\nprint(s)</code>";
  ParsedAction a = ParseAction(text);
  ASSERT_TRUE(a.well_formed) << a.error;
  EXPECT_EQ(a.code, "s = \"</code>\"\nt = '''a\n</code>'''\nprint(s)");
  EXPECT_EQ(FindActionEnd(text), text.size());
}

TEST(ActionParserTest, EscapedQuotesAndCommentsAreHandled) {
  std::string text =
      "<think>t</think><code>s = 'it\\'s </code> still'\n# don't stop\nx = "
      "1</code>tail";
  ParsedAction a = ParseAction(text);
  ASSERT_TRUE(a.well_formed) << a.error;
  EXPECT_EQ(a.code, "s = 'it\\'s </code> still'\n# don't stop\nx = 1");
  EXPECT_EQ(FindActionEnd(text), text.size() - 4);
}

TEST(ActionParserTest, MarkerInACommentEndsTheCode) {
  std::string text = "<think>t</think><code>x = 1  # done</code>";
  EXPECT_EQ(FindActionEnd(text), text.size());
  EXPECT_EQ(ParseAction(text).code, "x = 1  # done");
}

TEST(ActionParserTest, FindActionEndOnPartialText) {
  EXPECT_EQ(FindActionEnd("<think>t</think><code>x = 1"), std::string::npos);
  EXPECT_EQ(FindActionEnd("<think>t</think><code>x = '</code>"), std::string::npos);
  EXPECT_EQ(FindActionEnd("<think>mentions </code> early"), std::string::npos);
  std::string done = "<think>a</think><code>x</code>";
  EXPECT_EQ(FindActionEnd(done + "more"), done.size());
}

}  // namespace
}  // namespace nbrl::agent
