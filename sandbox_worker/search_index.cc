#include "sandbox_worker/search_index.h"

#include <xapian.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/json_util.h"
#include "common/utf8.h"
#include "glog/logging.h"

namespace nbrl::sandbox {
namespace {

// Value slots and term prefixes of the index layout.
constexpr Xapian::valueno kTitleSlot = 0;
const char kIdPrefix[] = "Q";

std::string Cut(const std::string& text, size_t n) {
  return text.substr(0, common::Utf8CutPoint(text, n));
}

}  // namespace

absl::StatusOr<int64_t> BuildSearchIndex(const std::string& corpus_path,
                                         const std::string& index_dir) {
  std::ifstream in(corpus_path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("corpus ", corpus_path, " not found"));
  try {
    std::filesystem::remove_all(index_dir);
    Xapian::WritableDatabase db(index_dir, Xapian::DB_CREATE_OR_OVERWRITE);
    Xapian::TermGenerator gen;
    gen.set_stemmer(Xapian::Stem("en"));
    std::string line;
    int64_t n = 0, lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json rec = nlohmann::json::parse(line, nullptr, false);
      if (!rec.is_object() || !rec.contains("id") || !rec.contains("text") ||
          !rec["text"].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            corpus_path, ":", lineno, ": expected a JSON object {id, title, text}"));
      }
      if (!rec["id"].is_string() && !rec["id"].is_number()) {
        return absl::InvalidArgumentError(absl::StrCat(
            corpus_path, ":", lineno, ": 'id' must be a string or a number, got ",
            common::JsonForMessage(rec["id"])));
      }
      std::string id =
          rec["id"].is_string() ? rec["id"].get<std::string>() : rec["id"].dump();
      std::string title = rec.value("title", "");
      Xapian::Document doc;
      gen.set_document(doc);
      gen.index_text(title, 2);  // title words weigh double
      gen.increase_termpos();
      gen.index_text(rec["text"].get<std::string>());
      doc.set_data(rec["text"].get<std::string>());
      doc.add_value(kTitleSlot, title);
      doc.add_boolean_term(kIdPrefix + id);
      db.replace_document(kIdPrefix + id, doc);
      ++n;
    }
    db.commit();
    return n;
  } catch (const Xapian::Error& e) {
    return absl::UnavailableError(
        absl::StrCat("xapian: ", index_dir, ": ", e.get_msg()));
  } catch (const std::filesystem::filesystem_error& e) {
    return absl::UnavailableError(e.what());
  }
}

SearchIndex::SearchIndex(std::unique_ptr<Xapian::Database> db,
                         const SearchIndexOptions& options)
    : options_(options), db_(std::move(db)) {}

SearchIndex::~SearchIndex() = default;

absl::StatusOr<std::unique_ptr<SearchIndex>> SearchIndex::Open(
    const std::string& index_dir, const SearchIndexOptions& options) {
  try {
    auto db = std::make_unique<Xapian::Database>(index_dir);
    LOG(INFO) << "sandbox: search index " << index_dir << " with " << db->get_doccount()
              << " documents";
    return std::unique_ptr<SearchIndex>(new SearchIndex(std::move(db), options));
  } catch (const Xapian::DatabaseNotFoundError& e) {
    return absl::NotFoundError(absl::StrCat("no search index at ", index_dir,
                                            " (build one with `nbrl-sandbox index`)"));
  } catch (const Xapian::Error& e) {
    return absl::UnavailableError(
        absl::StrCat("xapian: ", index_dir, ": ", e.get_msg()));
  }
}

absl::StatusOr<nlohmann::json> SearchIndex::Call(const std::string& tool,
                                                 const nlohmann::json& args,
                                                 absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  try {
    if (tool == "web_search") return Search(args, timeout);
    if (tool == "read_page") return ReadPage(args);
  } catch (const Xapian::Error& e) {
    return absl::UnavailableError(absl::StrCat("search index error: ", e.get_msg()));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad arguments: ", e.what()));
  }
  return absl::NotFoundError(absl::StrCat("unknown tool ", tool));
}

absl::StatusOr<nlohmann::json> SearchIndex::Search(const nlohmann::json& args,
                                                   absl::Duration timeout) {
  if (!args.contains("query") || !args["query"].is_string() ||
      args["query"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("web_search needs a non-empty query string");
  }
  int k = args.value("k", 5);
  if (k < 1 || k > options_.max_results) {
    return absl::InvalidArgumentError(
        absl::StrCat("web_search k must be in 1..", options_.max_results, ", got ", k));
  }
  db_->reopen();
  Xapian::QueryParser parser;
  parser.set_database(*db_);
  parser.set_stemmer(Xapian::Stem("en"));
  parser.set_stemming_strategy(Xapian::QueryParser::STEM_SOME);
  parser.set_default_op(Xapian::Query::OP_OR);
  Xapian::Enquire enquire(*db_);
  enquire.set_query(parser.parse_query(args["query"].get<std::string>()));
  if (timeout > absl::ZeroDuration())
    enquire.set_time_limit(absl::ToDoubleSeconds(timeout));
  Xapian::MSet hits = enquire.get_mset(0, static_cast<Xapian::doccount>(k));
  nlohmann::json out = nlohmann::json::array();
  for (auto it = hits.begin(); it != hits.end(); ++it) {
    Xapian::Document doc = it.get_document();
    std::string id;
    for (auto t = doc.termlist_begin(); t != doc.termlist_end(); ++t) {
      if ((*t).rfind(kIdPrefix, 0) == 0) id = (*t).substr(1);
    }
    out.push_back({{"id", id},
                   {"title", doc.get_value(kTitleSlot)},
                   {"snippet", Cut(doc.get_data(), options_.snippet_chars)}});
  }
  return out;
}

absl::StatusOr<nlohmann::json> SearchIndex::ReadPage(const nlohmann::json& args) {
  if (!args.contains("id") || !args["id"].is_string()) {
    return absl::InvalidArgumentError("read_page needs a document id string");
  }
  int max_chars = args.value("max_chars", options_.page_chars);
  if (max_chars < 1 || max_chars > options_.max_page_chars) {
    return absl::InvalidArgumentError(
        absl::StrCat("read_page max_chars must be in 1..", options_.max_page_chars));
  }
  db_->reopen();
  std::string term = kIdPrefix + args["id"].get<std::string>();
  Xapian::PostingIterator p = db_->postlist_begin(term);
  if (p == db_->postlist_end(term)) {
    return absl::NotFoundError(
        absl::StrCat("no document with id '", args["id"].get<std::string>(), "'"));
  }
  Xapian::Document doc = db_->get_document(*p);
  std::string text = doc.get_data();
  std::string page = absl::StrCat(doc.get_value(kTitleSlot), "\n\n",
                                  Cut(text, static_cast<size_t>(max_chars)));
  if (text.size() > static_cast<size_t>(max_chars)) {
    absl::StrAppend(&page, "\n...[page truncated: ", text.size(), " chars in all]");
  }
  return page;
}

}  // namespace nbrl::sandbox
