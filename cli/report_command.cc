// `nbrl report`: compares two `nbrl eval` summaries, typically the warm start
// before RL and the policy after it, on the same split. Prints a before / after /
// delta table (EM and F1 with their standard errors, pass@k, reward, steps, the
// share of every ending reason, EM per question kind, errors per episode, the
// most common step errors) and
// writes it as DIR/report.md and DIR/report.json. With --steps it also turns a
// learner's step log into DIR/curve.tsv (step, reward_mean, em_mean, loss) for a
// plot (deploy/quickstart.sh draws DIR/learning.png from it with gnuplot).
#include <algorithm>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/command_line.h"
#include "common/file_util.h"
#include "common/json_util.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace nbrl::cli {
namespace {

using nlohmann::json;

constexpr char kUsage[] =
    "nbrl report: compare two evaluations (before and after training)\n"
    "\n"
    "Usage: nbrl report --before DIR|SUMMARY --after DIR|SUMMARY --out DIR\n"
    "                   [--steps STEPS.jsonl] [--label-before L] [--label-after L]\n"
    "\n"
    "  --before P        `nbrl eval` output folder (or its summary.json) before\n"
    "  --after P         the same after training, on the same questions\n"
    "  --out DIR         writes DIR/report.md and DIR/report.json\n"
    "  --steps FILE      a learner step log (<run.dir>/steps/rank-0.jsonl): also\n"
    "                    writes DIR/curve.tsv (step, reward_mean, em_mean, loss)\n"
    "  --label-before L  column title, default warm-start\n"
    "  --label-after L   column title, default RL\n"
    "\n"
    "Prints the table: EM and F1 (mean +- standard error), pass@k, mean reward,\n"
    "mean steps, the share of episodes per ending reason, EM per question kind and\n"
    "errors per episode, each before, after and the change; then the step errors\n"
    "(what a malformed action got wrong, what a failed cell raised) found in the\n"
    "most episodes, as the share of episodes with each.\n";

// One evaluation: the fields of the summary.json that `nbrl eval` writes
// (agent::SummaryJson).
struct EvalSide {
  std::string file;
  int questions = 0, episodes = 0;
  double em = 0, em_stderr = 0, f1 = 0, f1_stderr = 0;
  double pass_at_k = 0, mean_steps = 0, mean_reward = 0;
  std::map<std::string, int> endings, count_by_kind, errors;
  std::map<std::string, double> em_by_kind;
  // The most common step errors, as summary.json lists them (absent from the
  // summaries of older nbrl evals: then empty).
  struct StepError {
    std::string error;
    int episodes = 0, steps = 0;
  };
  std::vector<StepError> step_errors;
  // The list names every error of the evaluation (it is there and left none out):
  // an error missing from it did not happen.
  bool step_errors_complete = false;
};

// `field` ("em.mean") of `root`, which was read from `file`.
absl::StatusOr<const json*> Field(const json& root, const std::string& file,
                                  const std::string& field) {
  const json* j = &root;
  for (absl::string_view part : absl::StrSplit(field, '.')) {
    const std::string key(part);
    if (!j->is_object() || !j->contains(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": missing field \"", field, "\""));
    }
    j = &(*j)[key];
  }
  return j;
}

absl::StatusOr<double> Number(const json& root, const std::string& file,
                              const std::string& field) {
  ASSIGN_OR_RETURN(const json* j, Field(root, file, field));
  if (!j->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": field \"", field,
                                                   "\" must be a number, got ",
                                                   common::JsonForMessage(*j)));
  }
  return j->get<double>();
}

// An object of numbers (`"endings": {"submitted": 3}`) into `out`.
template <typename T>
absl::Status NumberMap(const json& root, const std::string& file,
                       const std::string& field, std::map<std::string, T>* out) {
  ASSIGN_OR_RETURN(const json* j, Field(root, file, field));
  if (!j->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": field \"", field,
                                                   "\" must be an object, got ",
                                                   common::JsonForMessage(*j)));
  }
  for (const auto& [key, value] : j->items()) {
    if (!value.is_number()) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": field \"", field, ".",
                                                     key, "\" must be a number, got ",
                                                     common::JsonForMessage(value)));
    }
    (*out)[key] = value.template get<T>();
  }
  return absl::OkStatus();
}

// Reads DIR/summary.json, or `path` itself when it is a file.
absl::StatusOr<EvalSide> LoadSummary(const std::string& path) {
  EvalSide s;
  s.file = absl::EndsWith(path, ".json") ? path : path + "/summary.json";
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(s.file));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        s.file, ": not a JSON object (expected the summary.json of nbrl eval)"));
  }
  double questions, episodes;
  ASSIGN_OR_RETURN(questions, Number(j, s.file, "questions"));
  ASSIGN_OR_RETURN(episodes, Number(j, s.file, "episodes"));
  s.questions = static_cast<int>(questions);
  s.episodes = static_cast<int>(episodes);
  ASSIGN_OR_RETURN(s.em, Number(j, s.file, "em.mean"));
  ASSIGN_OR_RETURN(s.em_stderr, Number(j, s.file, "em.stderr"));
  ASSIGN_OR_RETURN(s.f1, Number(j, s.file, "f1.mean"));
  ASSIGN_OR_RETURN(s.f1_stderr, Number(j, s.file, "f1.stderr"));
  ASSIGN_OR_RETURN(s.pass_at_k, Number(j, s.file, "pass_at_k"));
  ASSIGN_OR_RETURN(s.mean_steps, Number(j, s.file, "mean_steps"));
  ASSIGN_OR_RETURN(s.mean_reward, Number(j, s.file, "mean_reward"));
  RETURN_IF_ERROR(NumberMap(j, s.file, "endings", &s.endings));
  RETURN_IF_ERROR(NumberMap(j, s.file, "em_by_kind", &s.em_by_kind));
  RETURN_IF_ERROR(NumberMap(j, s.file, "count_by_kind", &s.count_by_kind));
  RETURN_IF_ERROR(NumberMap(j, s.file, "errors", &s.errors));
  if (j.contains("step_errors")) {
    double more = 0;
    if (j.contains("step_errors_not_listed")) {
      ASSIGN_OR_RETURN(more, Number(j, s.file, "step_errors_not_listed.errors"));
    }
    s.step_errors_complete = more == 0;
    const json& list = j["step_errors"];
    if (!list.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat(s.file, ": field \"step_errors\" must be a list, got ",
                       common::JsonForMessage(list)));
    }
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = absl::StrCat("step_errors.", i);
      if (!list[i].is_object() || !list[i].contains("error") ||
          !list[i]["error"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(s.file, ": field \"", where,
                         "\" must be an object with a string \"error\", got ",
                         common::JsonForMessage(list[i])));
      }
      EvalSide::StepError e;
      e.error = list[i]["error"].get<std::string>();
      double episodes, steps;
      ASSIGN_OR_RETURN(episodes, Number(list[i], s.file, "episodes"));
      ASSIGN_OR_RETURN(steps, Number(list[i], s.file, "steps"));
      e.episodes = static_cast<int>(episodes);
      e.steps = static_cast<int>(steps);
      s.step_errors.push_back(std::move(e));
    }
  }
  return s;
}

double Share(const std::map<std::string, int>& counts, const std::string& key,
             int episodes) {
  auto it = counts.find(key);
  return it == counts.end() || episodes <= 0
             ? 0.0
             : static_cast<double>(it->second) / episodes;
}

template <typename M>
std::set<std::string> Keys(const M& a, const M& b) {
  std::set<std::string> out;
  for (const auto& kv : a) out.insert(kv.first);
  for (const auto& kv : b) out.insert(kv.first);
  return out;
}

// The side as report.json holds it: summary.json's fields, plus the share of
// episodes per ending and errors per episode.
json SideJson(const EvalSide& s) {
  json j;
  j["file"] = s.file;
  j["questions"] = s.questions;
  j["episodes"] = s.episodes;
  j["em"] = {{"mean", s.em}, {"stderr", s.em_stderr}};
  j["f1"] = {{"mean", s.f1}, {"stderr", s.f1_stderr}};
  j["pass_at_k"] = s.pass_at_k;
  j["mean_steps"] = s.mean_steps;
  j["mean_reward"] = s.mean_reward;
  j["endings"] = s.endings;
  j["ending_share"] = json::object();
  for (const auto& kv : s.endings)
    j["ending_share"][kv.first] = Share(s.endings, kv.first, s.episodes);
  j["em_by_kind"] = s.em_by_kind;
  j["count_by_kind"] = s.count_by_kind;
  j["errors"] = s.errors;
  j["errors_per_episode"] = json::object();
  for (const auto& kv : s.errors)
    j["errors_per_episode"][kv.first] = Share(s.errors, kv.first, s.episodes);
  j["step_errors"] = json::array();
  for (const EvalSide::StepError& e : s.step_errors) {
    j["step_errors"].push_back(
        {{"error", e.error}, {"episodes", e.episodes}, {"steps", e.steps}});
  }
  return j;
}

json DeltaJson(const EvalSide& b, const EvalSide& a) {
  json d;
  d["em"] = a.em - b.em;
  d["em_stderr"] = std::hypot(a.em_stderr, b.em_stderr);
  d["f1"] = a.f1 - b.f1;
  d["f1_stderr"] = std::hypot(a.f1_stderr, b.f1_stderr);
  d["pass_at_k"] = a.pass_at_k - b.pass_at_k;
  d["mean_steps"] = a.mean_steps - b.mean_steps;
  d["mean_reward"] = a.mean_reward - b.mean_reward;
  d["ending_share"] = json::object();
  for (const std::string& k : Keys(b.endings, a.endings)) {
    d["ending_share"][k] =
        Share(a.endings, k, a.episodes) - Share(b.endings, k, b.episodes);
  }
  d["em_by_kind"] = json::object();
  for (const auto& [kind, em] : a.em_by_kind) {
    auto it = b.em_by_kind.find(kind);
    if (it != b.em_by_kind.end()) d["em_by_kind"][kind] = em - it->second;
  }
  d["errors_per_episode"] = json::object();
  for (const std::string& k : Keys(b.errors, a.errors)) {
    d["errors_per_episode"][k] =
        Share(a.errors, k, a.episodes) - Share(b.errors, k, b.episodes);
  }
  return d;
}

// One line of the table.
struct Row {
  std::string label, before, after, delta;
};

std::string Fixed(double v, int digits = 3) {
  return absl::StrFormat("%.*f", digits, v);
}
std::string Signed(double v, int digits = 3) {
  if (std::fabs(v) < 0.5 * std::pow(10.0, -digits)) v = 0;  // no "-0.000"
  return absl::StrFormat("%+.*f", digits, v);
}

// Step errors in the table: the most common ones, each cut to a readable width.
constexpr int kErrorRows = 6;
std::string ShortLabel(const std::string& text) {
  constexpr size_t kMaxBytes = 64;
  if (text.size() <= kMaxBytes) return text;
  return text.substr(0, common::Utf8CutPoint(text, kMaxBytes)) + "...";
}

std::vector<Row> BuildRows(const EvalSide& b, const EvalSide& a) {
  std::vector<Row> rows;
  rows.push_back({"questions / episodes", absl::StrCat(b.questions, " / ", b.episodes),
                  absl::StrCat(a.questions, " / ", a.episodes), ""});
  rows.push_back(
      {"EM", Fixed(b.em) + " ± " + Fixed(b.em_stderr),
       Fixed(a.em) + " ± " + Fixed(a.em_stderr),
       Signed(a.em - b.em) + " ± " + Fixed(std::hypot(a.em_stderr, b.em_stderr))});
  rows.push_back(
      {"F1", Fixed(b.f1) + " ± " + Fixed(b.f1_stderr),
       Fixed(a.f1) + " ± " + Fixed(a.f1_stderr),
       Signed(a.f1 - b.f1) + " ± " + Fixed(std::hypot(a.f1_stderr, b.f1_stderr))});
  rows.push_back({"pass@k", Fixed(b.pass_at_k), Fixed(a.pass_at_k),
                  Signed(a.pass_at_k - b.pass_at_k)});
  rows.push_back({"mean reward", Fixed(b.mean_reward), Fixed(a.mean_reward),
                  Signed(a.mean_reward - b.mean_reward)});
  rows.push_back({"mean steps", Fixed(b.mean_steps, 2), Fixed(a.mean_steps, 2),
                  Signed(a.mean_steps - b.mean_steps, 2)});
  auto count = [](const std::map<std::string, int>& m, const std::string& k) {
    auto it = m.find(k);
    return it == m.end() ? 0 : it->second;
  };
  for (const std::string& k : Keys(b.endings, a.endings)) {
    double sb = Share(b.endings, k, b.episodes), sa = Share(a.endings, k, a.episodes);
    rows.push_back(
        {"ending " + k, absl::StrCat(Fixed(sb), " (", count(b.endings, k), ")"),
         absl::StrCat(Fixed(sa), " (", count(a.endings, k), ")"), Signed(sa - sb)});
  }
  for (const std::string& kind : Keys(b.em_by_kind, a.em_by_kind)) {
    auto cell = [&](const EvalSide& s) -> std::string {
      auto it = s.em_by_kind.find(kind);
      if (it == s.em_by_kind.end()) return "-";
      return absl::StrCat(Fixed(it->second), " (", count(s.count_by_kind, kind), ")");
    };
    auto ib = b.em_by_kind.find(kind), ia = a.em_by_kind.find(kind);
    std::string delta = ib != b.em_by_kind.end() && ia != a.em_by_kind.end()
                            ? Signed(ia->second - ib->second)
                            : "";
    rows.push_back({"EM " + kind, cell(b), cell(a), delta});
  }
  for (const std::string& k : Keys(b.errors, a.errors)) {
    double eb = Share(b.errors, k, b.episodes), ea = Share(a.errors, k, a.episodes);
    rows.push_back(
        {"errors/episode " + k, Fixed(eb, 2), Fixed(ea, 2), Signed(ea - eb, 2)});
  }
  // The step errors that touch the most episodes on either side, as the share of
  // episodes with them. -1: not in that side's list.
  std::map<std::string, std::pair<int, int>> episodes_with;  // before, after
  for (const EvalSide::StepError& e : b.step_errors)
    episodes_with.try_emplace(e.error, -1, -1).first->second.first = e.episodes;
  for (const EvalSide::StepError& e : a.step_errors)
    episodes_with.try_emplace(e.error, -1, -1).first->second.second = e.episodes;
  std::vector<std::pair<std::string, std::pair<int, int>>> top(episodes_with.begin(),
                                                               episodes_with.end());
  std::stable_sort(top.begin(), top.end(), [](const auto& x, const auto& y) {
    return std::max(x.second.first, x.second.second) >
           std::max(y.second.first, y.second.second);
  });
  if (top.size() > static_cast<size_t>(kErrorRows)) top.resize(kErrorRows);
  // A side that did not list an error had none of it, unless its list is not
  // complete (an older summary has none; a long one leaves some out): then "-".
  auto known = [](const EvalSide& s, int listed) {
    return listed >= 0 ? listed : (s.step_errors_complete ? 0 : -1);
  };
  for (const auto& [error, counts] : top) {
    const int nb = known(b, counts.first), na = known(a, counts.second);
    auto share = [](int n, int episodes) {
      return episodes > 0 ? static_cast<double>(n) / episodes : 0.0;
    };
    auto cell = [&](int n, int episodes) -> std::string {
      return n < 0 ? "-" : absl::StrCat(Fixed(share(n, episodes)), " (", n, ")");
    };
    rows.push_back(
        {"error: " + ShortLabel(error), cell(nb, b.episodes), cell(na, a.episodes),
         nb < 0 || na < 0 ? ""
                          : Signed(share(na, a.episodes) - share(nb, b.episodes))});
  }
  return rows;
}

// Display width of UTF-8 text (code points; "±" counts one).
size_t Width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string Pad(const std::string& s, size_t width) {
  return s + std::string(width > Width(s) ? width - Width(s) : 0, ' ');
}

std::string TextTable(const std::vector<Row>& rows, const std::string& lb,
                      const std::string& la) {
  size_t w[4] = {0, Width(lb), Width(la), Width("change")};
  for (const Row& r : rows) {
    w[0] = std::max(w[0], Width(r.label));
    w[1] = std::max(w[1], Width(r.before));
    w[2] = std::max(w[2], Width(r.after));
    w[3] = std::max(w[3], Width(r.delta));
  }
  auto line = [&](const std::string& a, const std::string& b, const std::string& c,
                  const std::string& d) {
    std::string out = absl::StrCat(Pad(a, w[0]), "  ", Pad(b, w[1]), "  ", Pad(c, w[2]),
                                   "  ", Pad(d, w[3]));
    out.erase(out.find_last_not_of(' ') + 1);
    return out + "\n";
  };
  std::string out = line("", lb, la, "change");
  for (const Row& r : rows) out += line(r.label, r.before, r.after, r.delta);
  return out;
}

std::string MarkdownTable(const std::vector<Row>& rows, const std::string& lb,
                          const std::string& la) {
  std::string out =
      absl::StrCat("| | ", lb, " | ", la, " | change |\n|---|---|---|---|\n");
  for (const Row& r : rows) {
    // A step error may quote a '|' (Python code): escape it for the cell.
    absl::StrAppend(&out, "| ", absl::StrReplaceAll(r.label, {{"|", "\\|"}}), " | ",
                    r.before, " | ", r.after, " | ", r.delta, " |\n");
  }
  return out;
}

// One learner step record's numbers for the curve.
struct CurvePoint {
  int64_t step = 0;
  double reward_mean = 0, em_mean = 0, loss = 0;
};

// Reads the step log; a torn last line (no newline: the learner died mid-write) is
// skipped with a warning, any other bad line is an error naming file:line.
absl::StatusOr<std::vector<CurvePoint>> LoadSteps(const std::string& file) {
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(file));
  std::vector<CurvePoint> points;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    const std::string where = absl::StrCat(file, ":", i + 1);
    json j = json::parse(line.begin(), line.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      if (i + 1 == lines.size()) {
        std::cerr << "nbrl report: warning: " << where
                  << ": skipping a torn last line\n";
        continue;
      }
      return absl::InvalidArgumentError(absl::StrCat(where, ": not a JSON object"));
    }
    CurvePoint p;
    double step;
    ASSIGN_OR_RETURN(step, Number(j, where, "step"));
    p.step = static_cast<int64_t>(step);
    ASSIGN_OR_RETURN(p.reward_mean, Number(j, where, "reward_mean"));
    ASSIGN_OR_RETURN(p.em_mean, Number(j, where, "em_mean"));
    ASSIGN_OR_RETURN(p.loss, Number(j, where, "loss"));
    points.push_back(p);
  }
  if (points.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": no step records"));
  }
  return points;
}

std::string CurveTsv(const std::vector<CurvePoint>& points) {
  std::string out = "# step\treward_mean\tem_mean\tloss\n";
  for (const CurvePoint& p : points) {
    absl::StrAppend(&out, absl::StrFormat("%d\t%.6g\t%.6g\t%.6g\n", p.step,
                                          p.reward_mean, p.em_mean, p.loss));
  }
  return out;
}

json StepsJson(const std::string& file, const std::vector<CurvePoint>& points) {
  auto point = [](const CurvePoint& p) {
    return json{{"step", p.step},
                {"reward_mean", p.reward_mean},
                {"em_mean", p.em_mean},
                {"loss", p.loss}};
  };
  return {{"file", file},
          {"records", points.size()},
          {"curve", "curve.tsv"},
          {"first", point(points.front())},
          {"last", point(points.back())}};
}

}  // namespace

int ReportCommand(int argc, char** argv) {
  common::CommandLineOptions options;
  options.value_flags = {"--before", "--after",        "--out",
                         "--steps",  "--label-before", "--label-after"};
  auto cl = common::ParseCommandLine(argc, argv, options);
  if (!cl.ok()) {
    std::cerr << "nbrl report: " << cl.status().message() << "\n";
    return 2;
  }
  if (cl->help) {
    std::cout << kUsage;
    return 0;
  }
  std::vector<std::string> rest;
  auto flags = FlagValues(cl->positional, &rest);
  if (!rest.empty() || !cl->overrides.empty() || !cl->config_path.empty()) {
    std::cerr << "nbrl report: takes only flags, no configuration (try --help)\n";
    return 2;
  }
  for (const char* required : {"--before", "--after", "--out"}) {
    if (flags[required].empty()) {
      std::cerr << "nbrl report: " << required << " is required (try --help)\n";
      return 2;
    }
  }
  const std::string lb =
      flags.count("--label-before") ? flags["--label-before"] : "warm-start";
  const std::string la = flags.count("--label-after") ? flags["--label-after"] : "RL";
  const std::string out = flags["--out"];

  auto before = LoadSummary(flags["--before"]);
  auto after = before.ok() ? LoadSummary(flags["--after"]) : before;
  if (!after.ok()) {
    std::cerr << "nbrl report: " << after.status().message() << "\n";
    return 1;
  }
  std::vector<CurvePoint> points;
  if (!flags["--steps"].empty()) {
    auto loaded = LoadSteps(flags["--steps"]);
    if (!loaded.ok()) {
      std::cerr << "nbrl report: " << loaded.status().message() << "\n";
      return 1;
    }
    points = std::move(*loaded);
  }

  const std::vector<Row> rows = BuildRows(*before, *after);
  json report;
  report["labels"] = {{"before", lb}, {"after", la}};
  report["before"] = SideJson(*before);
  report["after"] = SideJson(*after);
  report["delta"] = DeltaJson(*before, *after);
  if (!points.empty()) report["steps"] = StepsJson(flags["--steps"], points);
  std::string md =
      absl::StrCat("# ", la, " against ", lb, "\n\n", "Before: `", before->file,
                   "`  \nAfter: `", after->file, "`\n\n", MarkdownTable(rows, lb, la));
  if (!points.empty()) {
    absl::StrAppend(&md, "\nTraining: ", points.size(), " steps in `", flags["--steps"],
                    "` (", points.front().step, " to ", points.back().step,
                    "), reward ", Fixed(points.front().reward_mean), " -> ",
                    Fixed(points.back().reward_mean), "; the curve is curve.tsv.\n");
  }
  absl::Status st = common::WriteFileAtomically(out + "/report.md", md);
  if (st.ok())
    st = common::WriteFileAtomically(out + "/report.json", report.dump(2) + "\n");
  if (st.ok() && !points.empty()) {
    st = common::WriteFileAtomically(out + "/curve.tsv", CurveTsv(points));
  }
  if (!st.ok()) {
    std::cerr << "nbrl report: " << st.message() << "\n";
    return 1;
  }
  std::cout << TextTable(rows, lb, la) << "wrote " << out << "/report.md, " << out
            << "/report.json" << (points.empty() ? "" : ", " + out + "/curve.tsv")
            << "\n";
  return 0;
}

}  // namespace nbrl::cli
