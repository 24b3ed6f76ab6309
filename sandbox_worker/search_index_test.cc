// The search index and the tool bridge: building from JSONL, web_search and
// read_page called directly and from cells in a real session, quotas, and
// errors.
#include "sandbox_worker/search_index.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sandbox_worker/session_manager.h"
#include "tests/testing/temp_dir.h"

namespace nbrl::sandbox {
namespace {

using ::testing::HasSubstr;

// A path in this test process's scratch directory, removed when it exits.
std::string TempPath(const std::string& name) {
  static const testutil::TempDir dir("nbrl-search-");
  return dir.path() + "/" + name;
}

std::string WriteCorpus() {
  std::string path = TempPath("corpus.jsonl");
  std::ofstream out(path);
  out << R"({"id": "paris", "title": "Paris", "text": "Paris is the capital of France. )"
      << std::string(200, 'x') << R"("})"
      << "\n"
      << R"({"id": "berlin", "title": "Berlin", "text": "Berlin is the capital of Germany."})"
      << "\n\n"
      << R"({"id": 7, "title": "Rivers", "text": "The Seine flows through Paris."})"
      << "\n";
  return path;
}

class SearchIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempPath("index");
    auto n = BuildSearchIndex(WriteCorpus(), dir_);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 3);
    SearchIndexOptions o;
    o.snippet_chars = 60;
    o.page_chars = 50;
    auto index = SearchIndex::Open(dir_, o);
    ASSERT_TRUE(index.ok()) << index.status();
    index_ = *std::move(index);
  }

  std::string dir_;
  std::unique_ptr<SearchIndex> index_;
};

TEST_F(SearchIndexTest, SearchRanksMatchingDocuments) {
  auto hits = index_->Call("web_search", {{"query", "capital of Germany"}, {"k", 2}},
                           absl::Seconds(5));
  ASSERT_TRUE(hits.ok()) << hits.status();
  ASSERT_GE(hits->size(), 1u);
  EXPECT_EQ((*hits)[0]["id"], "berlin");
  EXPECT_EQ((*hits)[0]["title"], "Berlin");
  auto seine = index_->Call("web_search", {{"query", "seine"}}, absl::Seconds(5));
  ASSERT_TRUE(seine.ok());
  ASSERT_EQ(seine->size(), 1u);
  EXPECT_EQ((*seine)[0]["id"], "7");  // numeric ids become strings
  EXPECT_LE((*index_->Call("web_search", {{"query", "paris"}},
                           absl::Seconds(5)))[0]["snippet"]
                .get<std::string>()
                .size(),
            60u);
}

TEST_F(SearchIndexTest, ReadPageCutsToBudget) {
  auto page = index_->Call("read_page", {{"id", "paris"}}, absl::Seconds(5));
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(page->get<std::string>(), HasSubstr("Paris is the capital"));
  EXPECT_THAT(page->get<std::string>(), HasSubstr("[page truncated:"));
  auto full = index_->Call("read_page", {{"id", "berlin"}, {"max_chars", 1000}},
                           absl::Seconds(5));
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->get<std::string>(), "Berlin\n\nBerlin is the capital of Germany.");
}

TEST_F(SearchIndexTest, BadCallsAreRefusedWithReasons) {
  EXPECT_TRUE(absl::IsNotFound(
      index_->Call("read_page", {{"id", "nowhere"}}, absl::Seconds(5)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->Call("web_search", {{"query", ""}}, absl::Seconds(5)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->Call("web_search", {{"query", "x"}, {"k", 1000}}, absl::Seconds(5))
          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      index_->Call("web_search", {{"query", "x"}, {"k", "many"}}, absl::Seconds(5))
          .status()));
  EXPECT_TRUE(absl::IsNotFound(SearchIndex::Open(TempPath("missing"), {}).status()));
}

TEST_F(SearchIndexTest, MalformedCorpusNamesTheLine) {
  std::string path = TempPath("bad.jsonl");
  std::ofstream(path) << R"({"id": "a", "text": "ok"})"
                      << "\n"
                      << "not json\n";
  auto n = BuildSearchIndex(path, TempPath("bad-index"));
  EXPECT_TRUE(absl::IsInvalidArgument(n.status()));
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("bad.jsonl:2"));
}

TEST_F(SearchIndexTest, StructuredIdsAreRefusedNotDumped) {
  std::string path = TempPath("objid.jsonl");
  std::ofstream(path) << R"({"id": )" << std::string(100000, '[')
                      << std::string(100000, ']') << R"(, "text": "ok"})"
                      << "\n";
  auto n = BuildSearchIndex(path, TempPath("objid-index"));
  EXPECT_TRUE(absl::IsInvalidArgument(n.status()));
  EXPECT_THAT(
      std::string(n.status().message()),
      HasSubstr("objid.jsonl:1: 'id' must be a string or a number, got an array"));
}

TEST_F(SearchIndexTest, CellsCallToolsThroughTheBridge) {
  SessionManagerOptions o;
  o.warm_sessions = 1;
  o.tools.max_calls_per_session = 3;
  auto m = SessionManager::Create(o, index_.get(), nullptr);
  ASSERT_TRUE(m.ok()) << m.status();
  auto id = (*m)->Open(OpenRequest{"t", {}, {}, ""});
  ASSERT_TRUE(id.ok()) << id.status();
  auto r = (*m)->Execute(*id, {"hits = web_search('capital Germany', k=1)\n"
                               "page = read_page(hits[0]['id'], max_chars=100)\n"
                               "hits[0]['id'], page.splitlines()[0]",
                               absl::Seconds(10), 4096});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->result, "('berlin', 'Berlin')");
  ASSERT_EQ(r->tool_calls.size(), 2u);
  EXPECT_EQ(r->tool_calls[0].tool, "web_search");
  EXPECT_TRUE(r->tool_calls[0].ok);
  // A failing call raises ToolError in the cell, with the reason.
  auto missing = (*m)->Execute(*id, {"read_page('nowhere')", absl::Seconds(10), 4096});
  ASSERT_TRUE(missing.ok());
  ASSERT_TRUE(missing->error.has_value());
  EXPECT_EQ(missing->error->name, "ToolError");
  EXPECT_THAT(missing->error->message, HasSubstr("no document with id 'nowhere'"));
  // The quota (3 calls) is spent now.
  auto quota = (*m)->Execute(*id, {"web_search('paris')", absl::Seconds(10), 4096});
  ASSERT_TRUE(quota.ok());
  ASSERT_TRUE(quota->error.has_value());
  EXPECT_THAT(quota->error->message, HasSubstr("quota"));
  // A session opened with only web_search cannot read pages.
  auto only = (*m)->Open(OpenRequest{"t", {}, {"web_search"}, ""});
  ASSERT_TRUE(only.ok());
  auto denied = (*m)->Execute(*only, {"read_page('paris')", absl::Seconds(10), 4096});
  ASSERT_TRUE(denied.ok());
  ASSERT_TRUE(denied->error.has_value());
  EXPECT_THAT(denied->error->message, HasSubstr("not enabled"));
}

}  // namespace
}  // namespace nbrl::sandbox
