#include "agent/task_world.h"

#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/answer_match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::agent {
namespace {

using ::testing::HasSubstr;

TaskWorldOptions Small() {
  TaskWorldOptions o;
  o.seed = 5;
  o.train_questions = 300;
  o.val_questions = 60;
  o.test_questions = 60;
  return o;
}

// Follows a question's plan over the documents' "Field: value" lines, as a solver
// with perfect search would, and computes the answer.
std::string Solve(const TaskWorld& world, const Example& ex) {
  std::map<std::string, std::map<std::string, std::string>> fields;
  for (const auto& d : world.documents) {
    for (absl::string_view line : absl::StrSplit(d.text, '\n')) {
      size_t colon = line.find(": ");
      if (colon != absl::string_view::npos &&
          line.find('.') == absl::string_view::npos) {
        fields[d.title][std::string(line.substr(0, colon))] =
            std::string(line.substr(colon + 2));
      }
    }
  }
  auto meta = nlohmann::json::parse(ex.metadata_json);
  std::vector<std::string> values;
  for (const auto& hop : meta["plan"]) {
    std::string doc = hop["doc"];
    if (doc[0] == '$') doc = values[std::stoi(doc.substr(1))];
    EXPECT_TRUE(fields.count(doc)) << "no document titled " << doc;
    values.push_back(fields[doc][hop["field"].get<std::string>()]);
  }
  std::string kind = meta["kind"];
  if (kind == "lookup" || kind == "bridge") return values.back();
  std::string op = meta["op"];
  if (kind == "comparison") {
    double a = std::stod(values[0]), b = std::stod(values[1]);
    bool first = op == "min" ? a < b : a > b;
    // The entity names are the plan's document titles.
    return first ? meta["plan"][0]["doc"].get<std::string>()
                 : meta["plan"][1]["doc"].get<std::string>();
  }
  std::vector<std::string> parts = absl::StrSplit(op, ' ');
  auto val = [&](const std::string& ref) {
    return std::stoll(values[std::stoi(ref.substr(1))]);
  };
  long long r =
      parts[1] == "+" ? val(parts[0]) + val(parts[2]) : val(parts[0]) - val(parts[2]);
  return std::to_string(r);
}

TEST(TaskWorldTest, SameSeedSameWorld) {
  auto a = BuildTaskWorld(Small());
  auto b = BuildTaskWorld(Small());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->documents.size(), b->documents.size());
  for (size_t i = 0; i < a->documents.size(); ++i) {
    EXPECT_EQ(a->documents[i].text, b->documents[i].text);
  }
  for (size_t i = 0; i < a->test.size(); ++i) {
    EXPECT_EQ(a->test[i].question, b->test[i].question);
  }
  TaskWorldOptions other = Small();
  other.seed = 6;
  auto c = BuildTaskWorld(other);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->documents[0].title, c->documents[0].title);
}

TEST(TaskWorldTest, SizesAndIdsAreAsAsked) {
  auto w = BuildTaskWorld(Small());
  ASSERT_TRUE(w.ok());
  TaskWorldOptions o = Small();
  EXPECT_EQ(w->documents.size(),
            static_cast<size_t>(o.people + o.organisations + o.cities + o.works));
  EXPECT_EQ(w->train.size(), 300u);
  EXPECT_EQ(w->test.size(), 60u);
  EXPECT_EQ(w->test[7].id, "test-00007");
  std::set<std::string> titles;
  for (const auto& d : w->documents) titles.insert(d.title);
  EXPECT_EQ(titles.size(), w->documents.size()) << "document titles must be unique";
}

TEST(TaskWorldTest, EveryAnswerFollowsFromTheDocuments) {
  auto w = BuildTaskWorld(Small());
  ASSERT_TRUE(w.ok());
  for (const auto* split : {&w->train, &w->val, &w->test}) {
    for (const Example& ex : *split) {
      EXPECT_EQ(ExactMatch(Solve(*w, ex), ex.answers), 1.0)
          << ex.id << ": " << ex.question << " expected " << ex.answers[0];
    }
  }
}

TEST(TaskWorldTest, AllKindsAppearAndSplitsAskAboutDifferentSubjects) {
  auto w = BuildTaskWorld(Small());
  ASSERT_TRUE(w.ok());
  std::map<std::string, int> kinds;
  std::set<std::string> train_subjects;
  for (const Example& ex : w->train) {
    auto meta = nlohmann::json::parse(ex.metadata_json);
    kinds[meta["kind"]]++;
    train_subjects.insert(meta["plan"][0]["doc"].get<std::string>());
  }
  for (const char* k : {"lookup", "bridge", "comparison", "arithmetic"}) {
    EXPECT_GT(kinds[k], 20) << k;
  }
  for (const Example& ex : w->test) {
    auto meta = nlohmann::json::parse(ex.metadata_json);
    EXPECT_EQ(train_subjects.count(meta["plan"][0]["doc"].get<std::string>()), 0u)
        << ex.id << " asks about a training subject: " << ex.question;
  }
}

// The smallest world asks every kind of question in every split, for many seeds.
TEST(TaskWorldTest, TheSmallestWorldWorks) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    TaskWorldOptions o;
    o.seed = seed;
    o.people = 8;
    o.organisations = o.cities = o.works = 6;
    o.train_questions = 40;
    o.val_questions = o.test_questions = 10;
    auto w = BuildTaskWorld(o);
    ASSERT_TRUE(w.ok()) << w.status();
    for (const auto* split : {&w->train, &w->val, &w->test}) {
      for (const Example& ex : *split) {
        EXPECT_EQ(ExactMatch(Solve(*w, ex), ex.answers), 1.0)
            << "seed " << seed << " " << ex.id << ": " << ex.question;
      }
    }
  }
}

TEST(TaskWorldTest, TooSmallWorldsAndBadWeightsAreRejected) {
  TaskWorldOptions o = Small();
  o.people = 3;
  EXPECT_THAT(std::string(BuildTaskWorld(o).status().message()),
              HasSubstr("too small"));
  // One short of the minimum of each kind: refused, not a crash (an empty split).
  for (int kind = 0; kind < 4; ++kind) {
    o = Small();
    int* sizes[] = {&o.people, &o.organisations, &o.cities, &o.works};
    const int least[] = {8, 6, 6, 6};
    *sizes[kind] = least[kind] - 1;
    EXPECT_THAT(std::string(BuildTaskWorld(o).status().message()),
                HasSubstr("too small"))
        << kind;
  }
  o = Small();
  o.weight_lookup = o.weight_bridge = o.weight_comparison = o.weight_arithmetic = 0;
  EXPECT_EQ(BuildTaskWorld(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TaskWorldTest, WritesCorpusAndSplits) {
  auto w = BuildTaskWorld(Small());
  ASSERT_TRUE(w.ok());
  testutil::TempDir tmp("world-");
  const std::string& dir = tmp.path();
  ASSERT_TRUE(WriteTaskWorld(*w, dir).ok());
  auto test = LoadJsonl(dir + "/test.jsonl");
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->size(), w->test.size());
}

}  // namespace
}  // namespace nbrl::agent
