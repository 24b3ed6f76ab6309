// The default tool backend: a local Xapian full-text index over a corpus of
// documents, serving `web_search` and `read_page` to sessions.
//
//   nbrl-sandbox index corpus.jsonl index_dir      (BuildSearchIndex)
//   ASSIGN_OR_RETURN(auto index, SearchIndex::Open(index_dir, options));
//
// The corpus is JSON Lines, one {"id", "title", "text"} object per line. This is
// the worked example of a ToolBackend: argument checking with messages meant for
// the agent, a per-call time limit, results small enough for a context.
//
// Thread safety: SearchIndex is thread-safe (calls are serialized on one
// Xapian::Database, which is not).
#ifndef NBRL_SANDBOX_WORKER_SEARCH_INDEX_H_
#define NBRL_SANDBOX_WORKER_SEARCH_INDEX_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "sandbox_worker/tool_bridge.h"

namespace Xapian {
class Database;
}

namespace nbrl::sandbox {

// Indexes `corpus_path` into a new Xapian database at `index_dir` (replaced if it
// exists). Returns the number of documents. InvalidArgument naming the line of a
// malformed record, NotFound for a missing corpus.
absl::StatusOr<int64_t> BuildSearchIndex(const std::string& corpus_path,
                                         const std::string& index_dir);

struct SearchIndexOptions {
  // Largest k web_search accepts, and the snippet length of each hit (chars).
  int max_results = 20;
  int snippet_chars = 300;
  // Default and largest read_page length (chars); longer pages are cut and marked.
  int page_chars = 8000;
  int max_page_chars = 64000;
};

class SearchIndex : public ToolBackend {
 public:
  // NotFound / Unavailable when `index_dir` is not a readable Xapian database.
  static absl::StatusOr<std::unique_ptr<SearchIndex>> Open(
      const std::string& index_dir, const SearchIndexOptions& options);
  ~SearchIndex() override;

  std::vector<std::string> tools() const override {
    return {"web_search", "read_page"};
  }
  // web_search {query: str, k: int} -> [{id, title, snippet}]
  // read_page {id: str, max_chars?: int} -> str
  absl::StatusOr<nlohmann::json> Call(const std::string& tool,
                                      const nlohmann::json& args,
                                      absl::Duration timeout) override;

 private:
  SearchIndex(std::unique_ptr<Xapian::Database> db, const SearchIndexOptions& options);
  absl::StatusOr<nlohmann::json> Search(const nlohmann::json& args,
                                        absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<nlohmann::json> ReadPage(const nlohmann::json& args)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SearchIndexOptions options_;
  absl::Mutex mu_;
  std::unique_ptr<Xapian::Database> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nbrl::sandbox

#endif  // NBRL_SANDBOX_WORKER_SEARCH_INDEX_H_
