#include "agent/dataset.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace nbrl::agent {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& where, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", why));
}

// Applies the bad-line policy; returns a non-OK status only when it is fatal.
absl::Status HandleBadLine(const absl::Status& error, const LoadOptions& options,
                           LoadReport* report) {
  if (options.on_bad_line == BadLinePolicy::kFail) return error;
  LOG(WARNING) << "skipping " << error.message();
  if (report) report->skipped.push_back(std::string(error.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AnswerList(const json& value,
                                                    const std::string& where,
                                                    const std::string& field) {
  std::vector<std::string> answers;
  if (value.is_string()) {
    answers.push_back(value.get<std::string>());
  } else if (value.is_array()) {
    for (const json& a : value) {
      if (a.is_string()) {
        answers.push_back(a.get<std::string>());
      } else if (a.is_number()) {
        answers.push_back(a.dump());
      } else {
        return Bad(where, absl::StrCat("'", field, "' must hold strings"));
      }
    }
  } else {
    return Bad(where, absl::StrCat("'", field, "' must be a list of strings"));
  }
  if (answers.empty()) return Bad(where, absl::StrCat("'", field, "' is empty"));
  return answers;
}

// An example's id: a string, or a number as written.
absl::StatusOr<std::string> IdOf(const json& value, const std::string& where,
                                 const std::string& field) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number()) return value.dump();
  return Bad(where, absl::StrCat("'", field, "' must be a string or a number, got ",
                                 common::JsonForMessage(value)));
}

// A value kept with an example (metadata) is refused when it nests deeper than
// common::kMaxJsonDumpDepth: copying or dumping it recurses once per level. Checked
// before any copy.
absl::Status CheckDepth(const json& value, const std::string& where,
                        const std::string& field) {
  if (common::JsonDepth(value) >= common::kMaxJsonDumpDepth) {
    return Bad(where, absl::StrCat("'", field, "' nests deeper than ",
                                   common::kMaxJsonDumpDepth - 1, " levels"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MetadataJson(const json& meta, const std::string& where) {
  RETURN_IF_ERROR(CheckDepth(meta, where, "metadata"));
  return meta.dump();
}

// Reads JSONL and turns each object into an Example with `convert`.
template <typename Convert>
absl::StatusOr<std::vector<Example>> ReadJsonLines(const std::string& path,
                                                   const LoadOptions& options,
                                                   LoadReport* report,
                                                   Convert convert) {
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  std::vector<Example> out;
  std::set<std::string> ids;
  int64_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    if (report) report->lines++;
    std::string where = absl::StrCat(path, ":", line_no);
    absl::StatusOr<Example> ex;
    json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      ex = Bad(where, "not valid JSON");
    } else if (!j.is_object()) {
      ex = Bad(where, "expected a JSON object");
    } else {
      ex = convert(j, where);
    }
    if (ex.ok() && !ids.insert(ex->id).second) {
      ex = Bad(where, absl::StrCat("duplicate id '", ex->id, "'"));
    }
    if (!ex.ok()) {
      RETURN_IF_ERROR(HandleBadLine(ex.status(), options, report));
      continue;
    }
    out.push_back(*std::move(ex));
  }
  if (report) report->loaded = static_cast<int64_t>(out.size());
  return out;
}

absl::StatusOr<Example> FromNbrl(const json& j, const std::string& where) {
  Example ex;
  if (!j.contains("id")) return Bad(where, "missing 'id'");
  ASSIGN_OR_RETURN(ex.id, IdOf(j["id"], where, "id"));
  if (!j.contains("question") || !j["question"].is_string()) {
    return Bad(where, "missing or non-string 'question'");
  }
  ex.question = j["question"].get<std::string>();
  if (!j.contains("answers")) return Bad(where, "missing 'answers'");
  ASSIGN_OR_RETURN(ex.answers, AnswerList(j["answers"], where, "answers"));
  if (j.contains("metadata")) {
    if (!j["metadata"].is_object()) return Bad(where, "'metadata' must be an object");
    ASSIGN_OR_RETURN(ex.metadata_json, MetadataJson(j["metadata"], where));
  }
  return ex;
}

absl::StatusOr<Example> FromFlashRag(const json& j, const std::string& where) {
  Example ex;
  if (!j.contains("question") || !j["question"].is_string()) {
    return Bad(where, "missing or non-string 'question'");
  }
  ex.question = j["question"].get<std::string>();
  const char* field = j.contains("golden_answers") ? "golden_answers" : "answers";
  if (!j.contains(field)) return Bad(where, "missing 'golden_answers'");
  ASSIGN_OR_RETURN(ex.answers, AnswerList(j[field], where, field));
  if (j.contains("id")) {
    ASSIGN_OR_RETURN(ex.id, IdOf(j["id"], where, "id"));
  } else {
    ex.id = where.substr(where.rfind(':') + 1);
  }
  for (const char* key : {"metadata", "data_source"}) {
    if (j.contains(key)) RETURN_IF_ERROR(CheckDepth(j[key], where, key));
  }
  json meta = j.contains("metadata") && j["metadata"].is_object() ? j["metadata"]
                                                                  : json::object();
  if (j.contains("data_source")) meta["data_source"] = j["data_source"];
  ASSIGN_OR_RETURN(ex.metadata_json, MetadataJson(meta, where));
  return ex;
}

absl::StatusOr<std::vector<Example>> FromHotpotQa(const std::string& path,
                                                  const LoadOptions& options,
                                                  LoadReport* report) {
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_array()) {
    return Bad(path, "expected a JSON array of HotpotQA examples");
  }
  std::vector<Example> out;
  for (size_t i = 0; i < root.size(); ++i) {
    const json& j = root[i];
    if (report) report->lines++;
    std::string where = absl::StrCat(path, ": example ", i);
    absl::StatusOr<Example> ex;
    if (!j.is_object() || !j.contains("_id") || !j.contains("question") ||
        !j["question"].is_string() || !j.contains("answer") ||
        !j["answer"].is_string()) {
      ex = Bad(where, "needs string '_id', 'question' and 'answer'");
    } else {
      Example e;
      absl::StatusOr<std::string> id = IdOf(j["_id"], where, "_id");
      e.question = j["question"].get<std::string>();
      e.answers = {j["answer"].get<std::string>()};
      json meta = json::object();
      absl::Status deep;
      for (const char* key : {"type", "level"}) {
        if (!j.contains(key)) continue;
        if (deep = CheckDepth(j[key], where, key); !deep.ok()) break;
        meta[key] = j[key];
      }
      absl::StatusOr<std::string> meta_json = MetadataJson(meta, where);
      if (!id.ok()) {
        ex = id.status();
      } else if (!deep.ok()) {
        ex = deep;
      } else if (!meta_json.ok()) {
        ex = meta_json.status();
      } else {
        e.id = *std::move(id);
        e.metadata_json = *std::move(meta_json);
        ex = std::move(e);
      }
    }
    if (!ex.ok()) {
      RETURN_IF_ERROR(HandleBadLine(ex.status(), options, report));
      continue;
    }
    out.push_back(*std::move(ex));
  }
  if (report) report->loaded = static_cast<int64_t>(out.size());
  return out;
}

// RFC 4180 CSV: quoted fields may hold commas, newlines and doubled quotes.
absl::StatusOr<std::vector<std::vector<std::string>>> ParseCsv(
    const std::string& text, const std::string& path) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  int line = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        if (c == '\n') ++line;
        field.push_back(c);
      }
      continue;
    }
    if (c == '"' && field.empty()) {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      any = false;
      ++line;
    } else {
      field.push_back(c);
      any = true;
    }
  }
  if (quoted) {
    return Bad(path,
               absl::StrCat("unterminated quoted field at the end (line ", line, ")"));
  }
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<std::vector<Example>> FromSimpleQa(const std::string& path,
                                                  const LoadOptions& options,
                                                  LoadReport* report) {
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  ASSIGN_OR_RETURN(auto rows, ParseCsv(text, path));
  if (rows.empty()) return Bad(path, "empty CSV; expected a header row");
  const auto& header = rows[0];
  auto column = [&](const std::string& name) -> int {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : static_cast<int>(it - header.begin());
  };
  int problem = column("problem"), answer = column("answer"), meta = column("metadata");
  if (problem < 0 || answer < 0) {
    return Bad(path, "the header must have 'problem' and 'answer' columns");
  }
  std::vector<Example> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    if (report) report->lines++;
    const auto& row = rows[r];
    std::string where = absl::StrCat(path, ": row ", r);
    if (static_cast<int>(row.size()) != static_cast<int>(header.size())) {
      RETURN_IF_ERROR(HandleBadLine(
          Bad(where,
              absl::StrCat("has ", row.size(), " fields, the header ", header.size())),
          options, report));
      continue;
    }
    if (row[problem].empty() || row[answer].empty()) {
      RETURN_IF_ERROR(
          HandleBadLine(Bad(where, "empty problem or answer"), options, report));
      continue;
    }
    Example ex;
    ex.id = absl::StrCat("simpleqa-", r);
    ex.question = row[problem];
    ex.answers = {row[answer]};
    json m = json::object();
    if (meta >= 0) m["simpleqa"] = row[meta];
    ex.metadata_json = m.dump();
    out.push_back(std::move(ex));
  }
  if (report) report->loaded = static_cast<int64_t>(out.size());
  return out;
}

}  // namespace

absl::StatusOr<Example> ParseExampleLine(const std::string& line,
                                         const std::string& where) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(where, "not valid JSON");
  if (!j.is_object()) return Bad(where, "expected a JSON object");
  return FromNbrl(j, where);
}

absl::StatusOr<std::vector<Example>> LoadJsonl(const std::string& path,
                                               const LoadOptions& options,
                                               LoadReport* report) {
  return ReadJsonLines(path, options, report, FromNbrl);
}

std::string ExampleToJson(const Example& example) {
  json j;
  j["id"] = example.id;
  j["question"] = example.question;
  j["answers"] = example.answers;
  json meta = json::parse(example.metadata_json, nullptr, false);
  j["metadata"] = meta.is_discarded() ? json::object() : meta;
  return j.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

absl::Status WriteJsonl(const std::vector<Example>& examples, const std::string& path) {
  std::string out;
  for (const Example& ex : examples) absl::StrAppend(&out, ExampleToJson(ex), "\n");
  return common::WriteFileAtomically(path, out);
}

absl::StatusOr<std::vector<Example>> ConvertDataset(const std::string& format,
                                                    const std::string& path,
                                                    const LoadOptions& options,
                                                    LoadReport* report) {
  if (format == "nbrl") return LoadJsonl(path, options, report);
  if (format == "hotpotqa") return FromHotpotQa(path, options, report);
  if (format == "simpleqa") return FromSimpleQa(path, options, report);
  if (format == "flashrag" || format == "search-r1") {
    return ReadJsonLines(path, options, report, FromFlashRag);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dataset format '", format,
                   "'; one of: nbrl, hotpotqa, simpleqa, flashrag (also search-r1)"));
}

absl::StatusOr<std::vector<Example>> Shard(const std::vector<Example>& examples,
                                           int index, int count) {
  if (count < 1 || index < 0 || index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", index, " of ", count, ": need 0 <= index < count"));
  }
  std::vector<Example> out;
  for (size_t i = static_cast<size_t>(index); i < examples.size();
       i += static_cast<size_t>(count)) {
    out.push_back(examples[i]);
  }
  return out;
}

ExampleStream::ExampleStream(std::vector<Example> examples, uint64_t seed,
                             DataCursor start)
    : examples_(std::move(examples)), seed_(seed), cursor_(start) {
  CHECK(!examples_.empty()) << "ExampleStream over an empty shard";
  cursor_.position %= examples_.size();
  Shuffle();
}

void ExampleStream::Shuffle() {
  order_.resize(examples_.size());
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + cursor_.epoch);
  std::shuffle(order_.begin(), order_.end(), rng);
}

const Example& ExampleStream::Next() {
  const Example& ex = examples_[order_[cursor_.position]];
  if (++cursor_.position == examples_.size()) {
    cursor_.position = 0;
    ++cursor_.epoch;
    Shuffle();
  }
  return ex;
}

}  // namespace nbrl::agent
