#include "common/json_util.h"

#include <string>

#include "gtest/gtest.h"

namespace nbrl::common {
namespace {

using nlohmann::json;

TEST(JsonUtilTest, DepthOfScalarsAndContainers) {
  EXPECT_EQ(JsonDepth(json(3)), 0);
  EXPECT_EQ(JsonDepth(json("x")), 0);
  EXPECT_EQ(JsonDepth(json::array()), 1);
  EXPECT_EQ(JsonDepth(json::parse(R"({"a": [1, {"b": [[]]}], "c": 2})")), 5);
}

TEST(JsonUtilTest, DeeplyNestedValuesNeitherRecurseNorCrash) {
  // 200,000 levels: dump() would overflow the stack; these must not.
  const int levels = 200000;
  std::string text(levels, '[');
  text.append(levels, ']');
  json deep = json::parse(text);
  EXPECT_EQ(JsonDepth(deep), levels);
  EXPECT_EQ(JsonForMessage(deep), "an array of 1");
  json object = json::object();  // (an initializer list would copy, recursively)
  object["nested"] = std::move(deep);
  object["n"] = 1;
  EXPECT_EQ(JsonForMessage(object), "an object of 2 members");
}

TEST(JsonUtilTest, ScalarsAreShownAsJson) {
  EXPECT_EQ(JsonForMessage(json(1.5)), "1.5");
  EXPECT_EQ(JsonForMessage(json(nullptr)), "null");
  EXPECT_EQ(JsonForMessage(json("gelu")), "\"gelu\"");
  // Long strings are cut at a character boundary (here inside 'é' pairs).
  std::string accents;
  for (int i = 0; i < 150; ++i) accents += "\xc3\xa9";
  const std::string shown = JsonForMessage(json(accents));
  EXPECT_EQ(shown, json(accents.substr(0, 200)).dump() + "...");
}

}  // namespace
}  // namespace nbrl::common
