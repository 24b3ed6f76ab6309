#include "agent/scripted_policy.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace nbrl::agent {
namespace {

using nlohmann::json;

// A Python string literal for `s`.
std::string Py(const std::string& s) { return json(s).dump(); }

// The names the question mentions, in the order it mentions them: the plan's
// literal documents (not "$i" results). Each becomes a group of the question's
// pattern, so the code reads names from the `question` variable instead of
// spelling them out.
std::vector<std::string> QuestionNames(const Example& ex, const json& plan) {
  std::vector<std::pair<size_t, std::string>> found;
  for (const json& hop : plan) {
    const std::string doc = hop.value("doc", "");
    if (doc.empty() || doc[0] == '$') continue;
    bool seen = false;
    for (const auto& f : found) seen = seen || f.second == doc;
    const size_t at = ex.question.find(doc);
    if (!seen && at != std::string::npos) found.emplace_back(at, doc);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> names;
  for (const auto& f : found) names.push_back(f.second);
  return names;
}

// A Python regular expression matching the question, with a group per name.
std::string QuestionPattern(const std::string& question,
                            const std::vector<std::string>& names) {
  std::string out;
  size_t i = 0;
  while (i < question.size()) {
    bool name = false;
    for (const std::string& n : names) {
      if (question.compare(i, n.size(), n) == 0) {
        out += "(.+)";
        i += n.size();
        name = true;
        break;
      }
    }
    if (name) continue;
    const char c = question[i++];
    if (std::strchr(".^$*+?()[]{}|\\", c) != nullptr) out += '\\';
    out += c;
  }
  return out;
}

// Group number (from 1) of a name in the question's pattern; 0 when absent.
int GroupOf(const std::vector<std::string>& names, const std::string& doc) {
  for (size_t g = 0; g < names.size(); ++g) {
    if (names[g] == doc) return static_cast<int>(g) + 1;
  }
  return 0;
}

// The document title of a hop as Python: "$i" is the value of hop i, a name of the
// question is its group, anything else a literal.
std::string TitleExpr(const std::string& doc, const std::vector<std::string>& names) {
  if (doc.rfind('$', 0) == 0) return absl::StrCat("v", doc.substr(1));
  const int g = GroupOf(names, doc);
  return g > 0 ? absl::StrCat("q.group(", g, ")") : Py(doc);
}

std::string HopCode(int i, const std::string& title, const std::string& field, int k,
                    bool broaden, bool check_title) {
  return absl::StrCat(
      "import re\n", "title = ", title, "\n", "hits = web_search(",
      broaden ? "title.split()[-1]" : "title", ", k=", broaden ? 10 : k, ")\n",
      check_title ? "hit = next((h for h in hits if h['title'] == title), hits[0] if "
                    "hits else None)\n"
                  : "hit = hits[0] if hits else None\n",
      "assert hit is not None, 'no search results for ' + title\n",
      "page = read_page(hit['id'])\n", "m = re.search(r'^", field,
      ": (.+)$', page, re.M)\n", "assert m, 'no ", field, " line in ' + hit['title']\n",
      "v", i, " = m.group(1).strip()\n", "notepad.add_facts(f'{title}: ", field,
      " = {v", i, "}')\n", "notepad.update_todo(", i + 1, ", 'done')\n",
      "print(title, '->', v", i, ")");
}

// A hop's document as people read it: "the result of todo i+1" for "$i", "name 2
// of the question" for a name the question mentions.
std::string DocName(const std::string& doc, const std::vector<std::string>& names) {
  if (!doc.empty() && doc[0] == '$') {
    return absl::StrCat("the result of todo ", std::stoi(doc.substr(1)) + 1);
  }
  const int g = GroupOf(names, doc);
  return g > 0 ? absl::StrCat("name ", g, " of the question") : doc;
}

}  // namespace

absl::StatusOr<std::vector<ScriptedFault>> ParseScriptedFaults(
    const std::vector<std::string>& names) {
  static const char* const kNames[] = {"field", "check", "copy"};
  std::vector<ScriptedFault> out;
  for (const std::string& n : names) {
    int f = 0;
    while (f < 3 && n != kNames[f]) ++f;
    if (f == 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown fault '", n, "' of the scripted expert: use field, check or copy"));
    }
    const auto fault = static_cast<ScriptedFault>(f);
    if (std::find(out.begin(), out.end(), fault) != out.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault '", n, "' of the scripted expert is listed twice"));
    }
    out.push_back(fault);
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "the scripted expert's fault list is empty: name at least one of field, "
        "check and copy");
  }
  return out;
}

ScriptedPolicy::ScriptedPolicy(const model::Tokenizer* tokenizer,
                               ScriptedPolicyOptions options)
    : tokenizer_(tokenizer), options_(options) {}

void ScriptedPolicy::EndEpisode(uint64_t episode_id) { state_.erase(episode_id); }

absl::StatusOr<std::string> ScriptedPolicy::ActionText(const PolicyRequest& r) {
  const Example* ex = r.view.example;
  if (ex == nullptr)
    return absl::FailedPreconditionError("scripted policy needs the example");
  json meta = json::parse(ex->metadata_json, nullptr, false);
  const bool plan_less =
      meta.is_discarded() || !meta.is_object() || !meta.contains("plan");
  if (!plan_less &&
      (!meta["plan"].is_array() || meta["plan"].empty() || !meta.contains("kind"))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "example ", ex->id,
        " has a malformed solution plan in its metadata (plan must be a non-empty "
        "list, with a kind beside it)"));
  }
  if (plan_less && (ex->answers.empty() || ex->answers[0].empty())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "example ", ex->id,
        " has neither a solution plan in its metadata nor an answer; the scripted "
        "policy cannot demonstrate it"));
  }
  auto [it, fresh] = state_.try_emplace(r.episode_id);
  EpisodeState& st = it->second;
  if (fresh) {
    std::mt19937_64 rng(options_.seed * 7919 + r.episode_id);
    if (!options_.faults.empty() &&
        std::uniform_real_distribution<double>(0, 1)(rng) < options_.noise) {
      const int n = static_cast<int>(options_.faults.size());
      st.fault = options_.faults[std::uniform_int_distribution<int>(0, n - 1)(rng)];
    }
  }
  if (plan_less) {
    // One action submits the gold answer. A faulty episode appends a "1": wrong
    // for any text or number (also under a numeric tolerance), and valid UTF-8.
    std::string answer = ex->answers[0];
    if (st.fault.has_value()) answer += '1';
    return absl::StrCat(
        "<think>I know the answer.</think>\n<code>\nsubmit_final_answer(", Py(answer),
        ")\n</code>");
  }
  const json& plan = meta["plan"];
  // A failed cell (or a malformed action) repeats the hop, once broadened.
  bool failed = r.view.step > 0 &&
                (r.view.last_result == nullptr || r.view.last_result->has_error ||
                 r.view.last_result->end != CellEnd::kCompleted);
  if (failed && st.hop > 0 && st.retries < 2) {
    --st.hop;
    ++st.retries;
  } else {
    st.retries = failed ? st.retries : 0;
  }

  const int hops = static_cast<int>(plan.size());
  const std::vector<std::string> names = QuestionNames(*ex, plan);
  if (st.hop < hops) {
    int i = st.hop++;
    std::string doc = plan[i]["doc"];
    std::string field = plan[i]["field"];
    if (st.fault == ScriptedFault::kField && i == hops - 1) {
      field = field == "Born" ? "Founded" : "Born";  // the wrong hop
    }
    std::string think =
        i == 0
            ? absl::StrCat("I will look up ", hops, hops == 1 ? " fact" : " facts",
                           " one at a time and note each. First: the ", field, " of ",
                           DocName(doc, names), ".")
            : absl::StrCat("Next I need the ", field, " of ", DocName(doc, names), ".");
    if (st.retries > 0)
      think =
          absl::StrCat("The last cell failed; I retry with a broader search. ", think);
    std::string code;
    if (i == 0) {
      // The names come from the question itself (the session's `question`).
      absl::StrAppend(&code, "import re\nq = re.fullmatch(",
                      Py(QuestionPattern(ex->question, names)),
                      ", question)\nassert q, 'the question has another form'\n");
      for (int h = 0; h < hops; ++h) {
        absl::StrAppend(&code, "notepad.add_todo(",
                        Py(absl::StrCat("find ", std::string(plan[h]["field"]), " of ",
                                        DocName(plan[h]["doc"], names))),
                        ")\n");
      }
    }
    // The skipped check: take the first search hit without comparing its title.
    bool check_title = !(st.fault == ScriptedFault::kCheck && i == hops - 1);
    absl::StrAppend(&code, HopCode(i, TitleExpr(doc, names), field, options_.search_k,
                                   st.retries > 0, check_title));
    return absl::StrCat("<think>", think, "</think>\n<code>\n", code, "\n</code>");
  }

  // All facts are in v0..v{hops-1}: compute the answer and submit it.
  std::string kind = meta["kind"];
  std::string code, think;
  if (kind == "comparison") {
    std::string op = meta.value("op", "min");
    think = absl::StrCat("I have both values; the answer is the one with the ",
                         op == "min" ? "smaller" : "larger", " value.");
    code = absl::StrCat(
        "a, b = float(v0.replace(',', '')), float(v1.replace(',', ''))\n",
        "answer = ", TitleExpr(plan[0]["doc"], names), " if a ",
        op == "min" ? "<" : ">", " b else ", TitleExpr(plan[1]["doc"], names), "\n");
  } else if (kind == "arithmetic") {
    std::string expr = meta.value("op", "$0");
    for (int h = hops - 1; h >= 0; --h) {
      expr = absl::StrReplaceAll(
          expr, {{absl::StrCat("$", h), absl::StrCat("int(v", h, ")")}});
    }
    think = "I have the numbers; I compute the answer in Python.";
    code = absl::StrCat("answer = ", expr, "\n");
  } else {
    think = "The last fact is the answer.";
    code = absl::StrCat("answer = v", hops - 1, "\n");
  }
  absl::StrAppend(&code, "assert str(answer).strip(), 'empty answer'\n");
  if (st.fault == ScriptedFault::kCopy) {
    absl::StrAppend(
        &code,
        "answer = str(answer)[:-1] + ('0' if str(answer)[-1:] != '0' else '1')\n");
  }
  absl::StrAppend(&code,
                  "notepad.write_draft(str(answer))\nsubmit_final_answer(str(answer))"
                  "\nprint(answer)");
  return absl::StrCat("<think>", think, "</think>\n<code>\n", code, "\n</code>");
}

absl::StatusOr<std::vector<PolicyResponse>> ScriptedPolicy::Act(
    absl::Span<const PolicyRequest> requests) {
  std::vector<PolicyResponse> out;
  for (const PolicyRequest& r : requests) {
    absl::StatusOr<std::string> text = ActionText(r);
    if (!text.ok()) return text.status();
    PolicyResponse resp;
    resp.tokens = tokenizer_->Encode(*text);
    resp.logprobs.assign(resp.tokens.size(), 0.0f);
    resp.finished = true;
    out.push_back(std::move(resp));
  }
  return out;
}

}  // namespace nbrl::agent
