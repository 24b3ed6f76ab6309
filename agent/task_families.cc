// The task families that ship: qa_search, math and code (see task_family.h).
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/answer_match.h"
#include "agent/task_family.h"
#include "common/status_macros.h"

namespace nbrl::agent {
namespace {

using nlohmann::json;

// Questions answered from the search tools: exact match, with F1 in the detail.
class QaSearchFamily : public TaskFamily {
 public:
  std::string name() const override { return "qa_search"; }
  std::vector<ToolDescription> tools() const override { return SearchTools(); }
  std::vector<std::string> tool_names() const override {
    return {"web_search", "read_page"};
  }
  std::string TaskText(const Example& ex) const override {
    return absl::StrCat(ex.question,
                        "\nSearch the documents for the facts you need. Submit a short "
                        "answer (a name, a number, a few words) with "
                        "submit_final_answer(answer).");
  }
  absl::StatusOr<Verdict> Verify(const Example& ex, bool has_answer,
                                 const std::string& answer,
                                 SandboxClient*) const override {
    Verdict v;
    if (!has_answer) return Verdict{0, "no answer"};
    v.score = ExactMatch(answer, ex.answers);
    v.detail =
        absl::StrFormat("EM %.0f, F1 %.2f", v.score, F1Score(answer, ex.answers));
    return v;
  }
};

// Numeric answers computed in Python, compared with a relative tolerance.
class MathFamily : public TaskFamily {
 public:
  std::string name() const override { return "math"; }
  std::vector<ToolDescription> tools() const override { return {}; }
  std::vector<std::string> tool_names() const override { return {}; }
  std::string TaskText(const Example& ex) const override {
    return absl::StrCat(
        ex.question,
        "\nCompute the answer with Python and submit only the number with "
        "submit_final_answer(number).");
  }
  absl::StatusOr<Verdict> Verify(const Example& ex, bool has_answer,
                                 const std::string& answer,
                                 SandboxClient*) const override {
    if (!has_answer) return Verdict{0, "no answer"};
    double s = NumericMatch(answer, ex.answers, /*rel_tol=*/1e-4, /*abs_tol=*/1e-6);
    return Verdict{s, s == 1.0 ? "within tolerance" : "wrong number"};
  }
};

// The agent writes a function; the score is the fraction of hidden tests it passes,
// each run as its own cell in a fresh session (the agent's session never sees them).
// Example metadata: {"entry_point": "name", "tests": ["assert name(1) == 2", ...]}.
class CodeFamily : public TaskFamily {
 public:
  std::string name() const override { return "code"; }
  std::vector<ToolDescription> tools() const override { return {}; }
  std::vector<std::string> tool_names() const override { return {}; }
  std::string TaskText(const Example& ex) const override {
    json meta = json::parse(ex.metadata_json, nullptr, false);
    std::string entry =
        meta.is_object() ? meta.value("entry_point", "solution") : "solution";
    return absl::StrCat(
        "Write a Python function `", entry, "`. ", ex.question,
        "\nDefine it, test it in the notebook, then call submit_final_answer(source) "
        "with "
        "the complete source code of the function (and any imports it needs) as a "
        "string, for example: src = '''def ",
        entry, "(...): ...'''; exec(src); submit_final_answer(src)");
  }
  absl::StatusOr<Verdict> Verify(const Example& ex, bool has_answer,
                                 const std::string& answer,
                                 SandboxClient* sandbox) const override {
    json meta = json::parse(ex.metadata_json, nullptr, false);
    if (!meta.is_object() || !meta.contains("tests") || !meta["tests"].is_array() ||
        meta["tests"].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("code example ", ex.id, " has no metadata.tests"));
    }
    if (!has_answer) return Verdict{0, "no answer"};
    if (sandbox == nullptr) {
      return absl::FailedPreconditionError("the code family needs a sandbox to verify");
    }
    SessionOptions so;
    so.label = absl::StrCat("verify-", ex.id);
    so.no_tools = true;
    ASSIGN_OR_RETURN(std::unique_ptr<SandboxSession> session, sandbox->OpenSession(so));
    const absl::Duration timeout = absl::Seconds(meta.value("timeout_seconds", 5.0));
    ASSIGN_OR_RETURN(CellResult defined, session->Execute(answer, timeout));
    const size_t total = meta["tests"].size();
    if (defined.has_error || defined.end != CellEnd::kCompleted) {
      (void)session->Close();
      return Verdict{0,
                     absl::StrCat("the submitted code does not run: ",
                                  defined.has_error ? defined.error_name : "timeout")};
    }
    size_t passed = 0;
    for (const json& t : meta["tests"]) {
      if (!t.is_string()) continue;
      ASSIGN_OR_RETURN(CellResult r, session->Execute(t.get<std::string>(), timeout));
      if (!r.has_error && r.end == CellEnd::kCompleted && !r.state_lost) ++passed;
    }
    (void)session->Close();
    return Verdict{static_cast<double>(passed) / static_cast<double>(total),
                   absl::StrCat(passed, " of ", total, " tests passed")};
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<TaskFamily>> MakeTaskFamily(const std::string& name) {
  if (name == "qa_search") return std::unique_ptr<TaskFamily>(new QaSearchFamily());
  if (name == "math") return std::unique_ptr<TaskFamily>(new MathFamily());
  if (name == "code") return std::unique_ptr<TaskFamily>(new CodeFamily());
  if (name == "minimal") return MakeMinimalTaskFamily();
  return absl::InvalidArgumentError(absl::StrCat(
      "task family '", name, "' is not one of: qa_search, math, code, minimal"));
}

std::vector<Example> MakeMathProblems(uint64_t seed, int count) {
  std::mt19937_64 rng(seed);
  auto n = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<Example> out;
  for (int i = 0; i < count; ++i) {
    Example ex;
    ex.id = absl::StrFormat("math-%05d", i);
    int a = n(12, 97), b = n(13, 89), c = n(101, 999), d = n(3, 9);
    std::string kind;
    long long answer;
    switch (n(0, 3)) {
      case 0:
        kind = "warehouse";
        ex.question = absl::StrFormat(
            "A warehouse holds %d crates of %d boxes each. %d boxes are shipped out. "
            "How "
            "many boxes remain?",
            a, b, c);
        answer = static_cast<long long>(a) * b - c;
        break;
      case 1:
        kind = "series";
        ex.question =
            absl::StrFormat("What is the sum of the integers from %d to %d?", a, a + c);
        answer = static_cast<long long>(c + 1) * (2LL * a + c) / 2;
        break;
      case 2:
        kind = "power";
        ex.question = absl::StrFormat("What is %d to the power %d, minus %d?", a, d, c);
        answer = 1;
        for (int k = 0; k < d; ++k) answer *= a;
        answer -= c;
        break;
      default:
        kind = "remainder";
        ex.question =
            absl::StrFormat("What is the remainder when %d * %d * %d is divided by %d?",
                            a, b, c, d + 7);
        answer = (static_cast<long long>(a) * b % (d + 7)) * c % (d + 7);
    }
    ex.answers = {std::to_string(answer)};
    ex.metadata_json = json{{"kind", kind}, {"family", "math"}}.dump();
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace nbrl::agent
