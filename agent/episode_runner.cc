#include "agent/episode_runner.h"

#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "agent/action_parser.h"
#include "common/status_macros.h"
#include "common/utf8.h"
#include "glog/logging.h"

namespace nbrl::agent {
namespace {

// The state of one running episode.
struct Episode {
  const EpisodeTask* task = nullptr;
  std::unique_ptr<ContextBuilder> context;
  std::unique_ptr<SandboxSession> session;
  TrajectoryRecord record;
  std::vector<StepOutcome> outcomes;
  NotepadState notepad;
  std::vector<VariableSummary> variables;
  CellResult last_result;
  bool has_last_result = false;
  std::string last_error;
  int format_errors_in_a_row = 0;
  bool done = false;
  absl::Time start;

  // Pending between the policy call and the cell.
  ParsedAction action;
  absl::StatusOr<CellResult> cell = absl::UnknownError("not run");

  void End(EndingReason reason, std::string detail = "") {
    done = true;
    record.ending_reason = reason;
    record.ending_detail = std::move(detail);
  }
};

std::string StatusLine(int step, int max_steps) {
  return absl::StrCat("Step ", step + 1, " of ", max_steps, ".");
}

// Runs fn(i) for each index on its own thread and joins them all.
template <typename Fn>
void ForEachConcurrently(const std::vector<size_t>& indices, Fn fn) {
  std::vector<std::thread> threads;
  threads.reserve(indices.size());
  for (size_t i : indices) threads.emplace_back([&fn, i] { fn(i); });
  for (std::thread& t : threads) t.join();
}

}  // namespace

std::string CellErrorLine(const CellResult& cell) {
  constexpr size_t kMaxBytes = 120;
  std::string line;
  if (cell.end == CellEnd::kTimeout) {
    line = "the cell timed out";
  } else if (cell.end == CellEnd::kSessionKilled) {
    line = absl::StrCat("the session was killed", cell.kill_reason.empty() ? "" : ": ",
                        cell.kill_reason);
  } else if (cell.has_error) {
    absl::string_view message = cell.error_message;
    message = message.substr(0, message.find('\n'));
    line = absl::StrCat(cell.error_name.empty() ? "Error" : cell.error_name,
                        message.empty() ? "" : ": ", message);
  } else {
    return "";
  }
  line = line.substr(0, line.find('\n'));
  if (line.size() > kMaxBytes) {
    line = absl::StrCat(line.substr(0, common::Utf8CutPoint(line, kMaxBytes)), "...");
  }
  return line;
}

const char* EndingReasonName(EndingReason reason) {
  switch (reason) {
    case EndingReason::kSubmitted:
      return "submitted";
    case EndingReason::kMaxSteps:
      return "max_steps";
    case EndingReason::kContextLimit:
      return "context_limit";
    case EndingReason::kDeadline:
      return "deadline";
    case EndingReason::kSandboxFailure:
      return "sandbox_failure";
    case EndingReason::kFormatErrors:
      return "format_errors";
  }
  return "unknown";
}

EpisodeRunner::EpisodeRunner(const model::Tokenizer* tokenizer,
                             const model::ChatTemplate* chat, Policy* policy,
                             SandboxClient* sandbox, EpisodeOptions options)
    : tokenizer_(tokenizer),
      chat_(chat),
      policy_(policy),
      sandbox_(sandbox),
      options_(std::move(options)) {}

absl::StatusOr<std::vector<TrajectoryRecord>> EpisodeRunner::Run(
    const std::vector<EpisodeTask>& tasks) {
  if (options_.max_steps < 1) {
    return absl::InvalidArgumentError("episode max_steps must be >= 1");
  }
  RETURN_IF_ERROR(ValidateRewardOptions(options_.rewards));
  std::vector<Episode> episodes(tasks.size());
  std::vector<size_t> all;
  for (size_t i = 0; i < tasks.size(); ++i) {
    Episode& e = episodes[i];
    e.task = &tasks[i];
    e.start = absl::Now();
    e.record.trajectory_id = tasks[i].trajectory_id;
    e.record.example_id = tasks[i].example.id;
    ASSIGN_OR_RETURN(
        e.context, ContextBuilder::Create(tokenizer_, chat_, options_.context,
                                          options_.system_prompt, tasks[i].task_text));
    all.push_back(i);
  }
  ForEachConcurrently(all, [&](size_t i) {
    SessionOptions so;
    so.label = tasks[i].trajectory_id;
    so.tools = options_.tools;
    if (options_.family != nullptr) {
      so.tools = options_.family->tool_names();
      so.no_tools = so.tools.empty();
    }
    absl::StatusOr<std::unique_ptr<SandboxSession>> s = sandbox_->OpenSession(so);
    if (s.ok()) {
      episodes[i].session = *std::move(s);
      // The question is also a variable of the session, so code can parse it
      // instead of copying names out of the prompt (the system prompt says so).
      absl::StatusOr<CellResult> setup = episodes[i].session->Execute(
          absl::StrCat("question = ", nlohmann::json(tasks[i].example.question).dump()),
          options_.cell_timeout);
      if (!setup.ok() || setup->has_error) {
        episodes[i].End(EndingReason::kSandboxFailure,
                        absl::StrCat("defining `question` in the session: ",
                                     setup.ok() ? setup->error_message
                                                : setup.status().ToString()));
      }
    } else {
      episodes[i].End(EndingReason::kSandboxFailure,
                      absl::StrCat("opening a session: ", s.status().ToString()));
    }
  });

  for (int step = 0; step < options_.max_steps; ++step) {
    // 1. Contexts of the episodes still running.
    std::vector<size_t> active;
    std::vector<std::vector<int32_t>> contexts(episodes.size());
    std::vector<std::vector<Span>> spans(episodes.size());
    for (size_t i = 0; i < episodes.size(); ++i) {
      Episode& e = episodes[i];
      if (e.done) continue;
      if (absl::Now() - e.start > options_.episode_deadline) {
        e.End(EndingReason::kDeadline);
        continue;
      }
      absl::StatusOr<std::vector<int32_t>> ctx = e.context->NextContext(
          e.notepad, e.variables, StatusLine(step, options_.max_steps), &spans[i]);
      if (!ctx.ok()) {
        e.End(EndingReason::kContextLimit, std::string(ctx.status().message()));
        continue;
      }
      contexts[i] = *std::move(ctx);
      active.push_back(i);
    }
    if (active.empty()) break;

    // 2. One batched policy call.
    std::vector<PolicyRequest> requests;
    for (size_t i : active) {
      Episode& e = episodes[i];
      PolicyRequest r;
      r.episode_id = e.task->episode_id;
      r.context = contexts[i];
      r.view.example = &e.task->example;
      r.view.step = step;
      r.view.last_result = e.has_last_result ? &e.last_result : nullptr;
      r.view.last_action_error = e.last_error;
      r.max_new_tokens = options_.context.max_action_tokens;
      requests.push_back(r);
    }
    absl::Time gen_start = absl::Now();
    ASSIGN_OR_RETURN(std::vector<PolicyResponse> responses, policy_->Act(requests));
    absl::Duration gen_time = absl::Now() - gen_start;
    if (responses.size() != requests.size()) {
      return absl::InternalError(absl::StrCat("policy returned ", responses.size(),
                                              " actions for ", requests.size(),
                                              " requests"));
    }

    // 3. Record and parse the actions.
    std::vector<size_t> to_run;
    for (size_t k = 0; k < active.size(); ++k) {
      Episode& e = episodes[active[k]];
      PolicyResponse& resp = responses[k];
      StepRecord s;
      s.context = spans[active[k]];
      s.action = e.context->AddAction(resp.tokens, resp.logprobs);
      s.policy_version = resp.policy_version;
      s.generate_time = gen_time;
      absl::StatusOr<std::string> text = tokenizer_->Decode(resp.tokens);
      if (!text.ok()) {
        return absl::InternalError(
            absl::StrCat("policy sampled an invalid token: ", text.status().message()));
      }
      s.action_text = *text;
      e.action = ParseAction(*text);
      if (e.action.well_formed && !resp.finished &&
          FindActionEnd(*text) == std::string::npos) {
        e.action = ParsedAction{};
        e.action.error = "the action ran out of tokens before </code>";
      }
      s.well_formed = e.action.well_formed;
      if (!e.action.well_formed) s.error = e.action.error;
      e.record.steps.push_back(std::move(s));
      e.outcomes.push_back(
          {e.action.well_formed, false, static_cast<int>(resp.tokens.size())});
      if (e.action.well_formed) to_run.push_back(active[k]);
    }

    // 4. Run the cells concurrently.
    ForEachConcurrently(to_run, [&](size_t i) {
      Episode& e = episodes[i];
      absl::Time t0 = absl::Now();
      e.cell = e.session->Execute(e.action.code, options_.cell_timeout);
      e.record.steps.back().execute_time = absl::Now() - t0;
    });

    // 5. Observations and endings.
    for (size_t i : active) {
      Episode& e = episodes[i];
      StepRecord& s = e.record.steps.back();
      std::string observation;
      if (!e.action.well_formed) {
        e.last_error = e.action.error;
        e.has_last_result = false;
        observation = RenderFormatError(e.action.error);
        if (++e.format_errors_in_a_row >= options_.max_consecutive_format_errors) {
          e.End(EndingReason::kFormatErrors, e.action.error);
        }
      } else if (!e.cell.ok()) {
        s.error = "the sandbox failed";
        e.End(EndingReason::kSandboxFailure, e.cell.status().ToString());
      } else {
        e.format_errors_in_a_row = 0;
        e.last_error.clear();
        e.last_result = *e.cell;
        e.has_last_result = true;
        e.notepad = e.cell->notepad;
        e.variables = e.cell->variables;
        s.executed_ok = !e.cell->has_error && e.cell->end == CellEnd::kCompleted;
        e.outcomes.back().executed_ok = s.executed_ok;
        if (!s.executed_ok) s.error = CellErrorLine(*e.cell);
        observation = RenderObservation(*e.cell, options_.context.observation_chars,
                                        options_.cell_timeout);
        if (e.cell->has_final_answer) {
          e.record.has_final_answer = true;
          e.record.final_answer = e.cell->final_answer;
          e.End(EndingReason::kSubmitted);
        }
      }
      s.observation_text = observation;
      if (!e.done && step + 1 == options_.max_steps) e.End(EndingReason::kMaxSteps);
      // The last step has no observation in the trajectory: nothing follows it.
      if (!e.done) s.observation = e.context->AddObservation(observation);
    }
  }

  std::vector<TrajectoryRecord> out;
  for (Episode& e : episodes) {
    if (!e.done) e.End(EndingReason::kMaxSteps);
    if (e.session) {
      absl::Status st = e.session->Close();
      if (!st.ok())
        LOG(WARNING) << e.record.trajectory_id << ": closing session: " << st;
    }
    policy_->EndEpisode(e.task->episode_id);
    EpisodeOutcome outcome;
    outcome.steps = e.outcomes;
    outcome.has_final_answer = e.record.has_final_answer;
    outcome.final_answer = e.record.final_answer;
    outcome.gold_answers = e.task->example.answers;
    std::optional<double> verified;
    if (options_.family != nullptr) {
      absl::StatusOr<Verdict> verdict = options_.family->Verify(
          e.task->example, e.record.has_final_answer, e.record.final_answer, sandbox_);
      if (!verdict.ok()) return verdict.status();
      verified = verdict->score;
      e.record.verdict = verdict->detail;
    }
    RewardBreakdown rewards = ComputeRewards(options_.rewards, outcome, verified);
    for (size_t j = 0; j < e.record.steps.size(); ++j) {
      e.record.steps[j].rewards = rewards.steps[j];
      e.record.steps[j].reward = rewards.step_totals[j];
    }
    e.record.final_rewards = rewards.final;
    e.record.total_reward = rewards.total;
    e.record.steps_trimmed = e.context->steps_dropped();
    e.record.tokens = std::move(e.context->tokens());
    e.record.logprobs = std::move(e.context->logprobs());
    e.record.wall_time = absl::Now() - e.start;
    out.push_back(std::move(e.record));
  }
  return out;
}

}  // namespace nbrl::agent
