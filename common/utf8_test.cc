#include "common/utf8.h"

#include "gtest/gtest.h"

namespace nbrl::common {
namespace {

TEST(Utf8Test, ValidTextIsKept) {
  for (const char* s : {"", "print(1)", "caf\xC3\xA9", "\xE4\xB8\xAD\xE6\x96\x87",
                        "\xF0\x9F\x98\x80 emoji", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_TRUE(IsValidUtf8(s)) << s;
    EXPECT_EQ(SanitizeUtf8(s), s);
  }
}

TEST(Utf8Test, FirstInvalidByteIsFound) {
  EXPECT_EQ(FirstInvalidUtf8(""), absl::string_view::npos);
  EXPECT_EQ(FirstInvalidUtf8("caf\xC3\xA9"), absl::string_view::npos);
  EXPECT_EQ(FirstInvalidUtf8("id-\x80"), 3u);
  EXPECT_EQ(FirstInvalidUtf8("caf\xE2\x82"), 3u);        // truncated
  EXPECT_EQ(FirstInvalidUtf8("\xC3\xA9q\xC0\xAF"), 3u);  // overlong, after a valid one
  EXPECT_EQ(FirstInvalidUtf8("\xED\xA0\x80"), 0u);       // a surrogate
}

TEST(Utf8Test, CutPointsNeverSplitACharacter) {
  const std::string s = "ab\xC3\xA9\xE4\xB8\xAD!";  // a b é 中 !
  EXPECT_EQ(Utf8CutPoint(s, 0), 0u);
  EXPECT_EQ(Utf8CutPoint(s, 2), 2u);
  EXPECT_EQ(Utf8CutPoint(s, 3), 2u);  // inside é
  EXPECT_EQ(Utf8CutPoint(s, 4), 4u);
  EXPECT_EQ(Utf8CutPoint(s, 5), 4u);  // inside 中
  EXPECT_EQ(Utf8CutPoint(s, 6), 4u);
  EXPECT_EQ(Utf8CutPoint(s, 7), 7u);
  EXPECT_EQ(Utf8CutPoint(s, 8), 8u);
  EXPECT_EQ(Utf8CutPoint(s, 100), 8u);  // past the end: the whole text
  for (size_t n = 0; n <= s.size(); ++n) {
    EXPECT_TRUE(IsValidUtf8(s.substr(0, Utf8CutPoint(s, n)))) << n;
  }
  EXPECT_EQ(Utf8CutPoint("\x80\x80\x80", 2), 0u);  // stray continuation bytes
}

TEST(Utf8Test, InvalidBytesBecomeReplacementCharacters) {
  const std::string r = "\xEF\xBF\xBD";
  struct Case {
    std::string in, out;
  } cases[] = {
      {"a\xFF"
       "b",
       "a" + r + "b"},  // never valid
      {"\xC3", r},      // truncated at the end
      {"\xE4\xB8"
       "x",
       r + "x"},                            // truncated in the middle: one U+FFFD
      {"\xC0\xAF", r + r},                  // overlong
      {"\xED\xA0\x80", r + r + r},          // a surrogate
      {"\xF4\x90\x80\x80", r + r + r + r},  // above U+10FFFF
      {"\x80\x80", r + r},                  // stray continuation bytes
      {"ok\xF0\x9F\x98", "ok" + r},         // a torn emoji
  };
  for (const Case& c : cases) {
    EXPECT_FALSE(IsValidUtf8(c.in));
    EXPECT_EQ(SanitizeUtf8(c.in), c.out);
    EXPECT_TRUE(IsValidUtf8(SanitizeUtf8(c.in)));
  }
}

}  // namespace
}  // namespace nbrl::common
