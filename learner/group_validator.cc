#include "learner/group_validator.h"

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace nbrl::learner {
namespace {

// At most this many bytes of a client's string go into a message, escaped.
constexpr size_t kPreviewBytes = 64;
// Durations are non-negative and under a year.
constexpr int64_t kMaxDurationSeconds = 365LL * 24 * 3600;

bool HasControl(absl::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// `s` as it may appear in an error message (and in GroupAck.message, a proto
// string): short, one line, valid UTF-8.
std::string Preview(absl::string_view s) {
  if (s.size() <= kPreviewBytes && !HasControl(s) && common::IsValidUtf8(s)) {
    return std::string(s);
  }
  std::string out = absl::CHexEscape(s.substr(0, kPreviewBytes));
  if (s.size() > kPreviewBytes) absl::StrAppend(&out, "...");
  return out;
}

// InvalidArgument naming `field` when `value` is not well-formed UTF-8. Text
// fields are proto `bytes` (learner.proto says why), so this is where invalid
// UTF-8 is refused.
absl::Status CheckUtf8(absl::string_view field, absl::string_view value) {
  const size_t bad = common::FirstInvalidUtf8(value);
  if (bad == absl::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " '", Preview(value),
                                                 "' is not valid UTF-8 (byte ", bad,
                                                 " of ", value.size(), ")"));
}

// A label the learner keeps but does not interpret (dataset, example id, reward
// name): any UTF-8 text, within a length.
absl::Status CheckLabel(absl::string_view field, absl::string_view value,
                        size_t max_bytes, bool required) {
  if (value.empty() && required) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  }
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " '", Preview(value),
                                                   "' has ", value.size(),
                                                   " bytes, at most ", max_bytes));
  }
  return CheckUtf8(field, value);
}

// What went wrong where, prefixed with the group and its actor.
struct Where {
  const v1::TrajectoryGroup& g;
  std::string place;  // "", "trajectory 1 (t1)", "trajectory 1 (t1), step 0"

  absl::Status Bad(absl::string_view why) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "trajectory group ", g.group_id().empty() ? "<no id>" : Preview(g.group_id()),
        " from ", g.actor_id().empty() ? "<no actor>" : Preview(g.actor_id()),
        place.empty() ? "" : ", ", place, ": ", why));
  }
  Where In(absl::string_view more) const {
    return Where{g,
                 place.empty() ? std::string(more) : absl::StrCat(place, ", ", more)};
  }
};

std::string SpanText(const v1::TokenSpan& s) {
  return absl::StrCat("[", s.begin(), ", ", s.end(), ")");
}

bool SpanOk(const v1::TokenSpan& s, int n, bool allow_empty) {
  return s.begin() <= s.end() && s.end() <= static_cast<uint32_t>(n) &&
         (allow_empty || s.begin() < s.end());
}

absl::Status CheckDuration(const Where& w, absl::string_view field,
                           const google::protobuf::Duration& d) {
  if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() >= 1000000000 ||
      d.seconds() > kMaxDurationSeconds) {
    return w.Bad(absl::StrCat(field, " is ", d.seconds(), " s ", d.nanos(),
                              " ns; durations are non-negative and under a year, "
                              "with nanos in [0, 1e9)"));
  }
  return absl::OkStatus();
}

absl::Status CheckRewards(
    const Where& w, absl::string_view field,
    const google::protobuf::RepeatedPtrField<v1::RewardComponent>& rewards,
    const GroupLimits& limits) {
  // Names are unique (the field replaced a map): a few per step, so pairwise.
  if (static_cast<size_t>(rewards.size()) > limits.max_reward_components) {
    return w.Bad(absl::StrCat(rewards.size(), " ", field, " components, at most ",
                              limits.max_reward_components));
  }
  for (int i = 0; i < rewards.size(); ++i) {
    const std::string& name = rewards[i].name();
    const float value = rewards[i].value();
    if (absl::Status st = CheckLabel(absl::StrCat(field, " name"), name,
                                     limits.max_name_bytes, /*required=*/true);
        !st.ok()) {
      return w.Bad(st.message());
    }
    if (!std::isfinite(value)) {
      return w.Bad(absl::StrCat(field, " '", Preview(name), "' is ", value,
                                ", not a finite number"));
    }
    for (int j = 0; j < i; ++j) {
      if (rewards[j].name() == name) {
        return w.Bad(absl::StrCat(field, " '", Preview(name), "' is given twice"));
      }
    }
  }
  return absl::OkStatus();
}

// Spans of one step; `*seen_end` is where the previous step's action or
// observation ended (actions and observations follow each other in the pool).
absl::Status CheckSpans(const Where& w, const v1::Step& step, int n,
                        uint32_t* seen_end) {
  const v1::TokenSpan& act = step.action();
  if (!SpanOk(act, n, /*allow_empty=*/false)) {
    return w.Bad(absl::StrCat("action span ", SpanText(act),
                              " is empty or outside the ", n, " tokens"));
  }
  if (act.begin() < *seen_end) {
    return w.Bad(absl::StrCat("action span ", SpanText(act),
                              " overlaps or precedes the previous step's action or "
                              "observation (ending at ",
                              *seen_end, "); steps are in pool order"));
  }
  if (step.context_size() == 0) return w.Bad("it has no context spans");
  uint64_t context_tokens = 0;
  for (int c = 0; c < step.context_size(); ++c) {
    const v1::TokenSpan& span = step.context(c);
    if (!SpanOk(span, n, /*allow_empty=*/false)) {
      return w.Bad(absl::StrCat("context span ", c, " ", SpanText(span),
                                " is empty or outside the ", n, " tokens"));
    }
    if (span.end() > act.begin()) {
      return w.Bad(absl::StrCat("context span ", c, " ", SpanText(span),
                                " ends after its action begins (", act.begin(),
                                "); the context precedes the action"));
    }
    // Distinct pieces of the pool before the action, so no longer than that in
    // all: the trainer copies every span, and repeated ones would multiply a small
    // message into gigabytes.
    context_tokens += span.end() - span.begin();
    if (context_tokens > act.begin()) {
      return w.Bad(absl::StrCat("context spans 0..", c, " hold ", context_tokens,
                                " tokens, more than the ", act.begin(),
                                " before the action; spans repeat or overlap"));
    }
  }
  const v1::TokenSpan& obs = step.observation();
  if (!SpanOk(obs, n, /*allow_empty=*/true)) {
    return w.Bad(absl::StrCat("observation span ", SpanText(obs), " is outside the ", n,
                              " tokens"));
  }
  *seen_end = act.end();
  if (obs.begin() < obs.end()) {
    if (obs.begin() < act.end()) {
      return w.Bad(absl::StrCat("observation span ", SpanText(obs),
                                " overlaps or precedes its action ", SpanText(act)));
    }
    *seen_end = obs.end();
  }
  return absl::OkStatus();
}

absl::Status CheckStep(const Where& w, const v1::Step& step, int n,
                       const GroupLimits& limits, uint32_t* seen_end) {
  if (absl::Status st = CheckSpans(w, step, n, seen_end); !st.ok()) return st;
  if (!std::isfinite(step.reward())) {
    return w.Bad(absl::StrCat("reward is ", step.reward(), ", not a finite number"));
  }
  if (absl::Status st = CheckRewards(w, "reward", step.rewards(), limits); !st.ok()) {
    return st;
  }
  if (absl::Status st = CheckDuration(w, "generate_time", step.generate_time());
      !st.ok()) {
    return st;
  }
  return CheckDuration(w, "execute_time", step.execute_time());
}

absl::Status CheckTokens(const Where& w, const v1::Trajectory& t,
                         const GroupLimits& limits) {
  const int n = t.token_ids_size();
  if (n == 0) return w.Bad("it has no tokens");
  if (static_cast<uint32_t>(n) > limits.max_tokens) {
    return w.Bad(
        absl::StrCat(n, " tokens, at most ", limits.max_tokens,
                     " (the learner's actor.context_tokens x (actor.max_steps + 1))"));
  }
  if (t.behavior_logprobs_size() != n) {
    return w.Bad(absl::StrCat(n, " token ids but ", t.behavior_logprobs_size(),
                              " behaviour log-probs"));
  }
  for (int k = 0; limits.vocab_size > 0 && k < n; ++k) {
    if (t.token_ids(k) >= limits.vocab_size) {
      return w.Bad(absl::StrCat("token ", k, " has id ", t.token_ids(k),
                                ", outside the vocabulary of ", limits.vocab_size));
    }
  }
  for (int k = 0; k < n; ++k) {
    float lp = t.behavior_logprobs(k);
    if (!std::isfinite(lp) || lp > 1e-3f) {
      return w.Bad(absl::StrCat("behaviour log-prob of token ", k, " is ", lp,
                                "; log-probs are finite and <= 0"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTrajectory(const Where& w, const v1::Trajectory& t,
                             const GroupLimits& limits) {
  if (absl::Status st = CheckTokens(w, t, limits); !st.ok()) return st;
  if (t.steps_size() == 0) return w.Bad("it has no steps");
  if (static_cast<uint32_t>(t.steps_size()) > limits.max_steps) {
    return w.Bad(absl::StrCat(t.steps_size(), " steps, at most ", limits.max_steps,
                              " (the learner's actor.max_steps)"));
  }
  uint32_t seen_end = 0;
  for (int s = 0; s < t.steps_size(); ++s) {
    if (absl::Status st = CheckStep(w.In(absl::StrCat("step ", s)), t.steps(s),
                                    t.token_ids_size(), limits, &seen_end);
        !st.ok()) {
      return st;
    }
  }
  if (!std::isfinite(t.total_reward())) {
    return w.Bad(
        absl::StrCat("total_reward is ", t.total_reward(), ", not a finite number"));
  }
  if (absl::Status st = CheckRewards(w, "final reward", t.final_rewards(), limits);
      !st.ok()) {
    return st;
  }
  if (!t.has_final_answer() && !t.final_answer().empty()) {
    return w.Bad("final_answer is set but has_final_answer is false");
  }
  if (absl::Status st = CheckUtf8("final_answer", t.final_answer()); !st.ok()) {
    return w.Bad(st.message());
  }
  if (!v1::EndingReason_IsValid(t.ending_reason()) ||
      t.ending_reason() == v1::ENDING_REASON_UNSPECIFIED) {
    return w.Bad(absl::StrCat("ending_reason ", t.ending_reason(), " is not known"));
  }
  return CheckDuration(w, "wall_time", t.wall_time());
}

absl::Status CheckGroupFields(const Where& w, const GroupLimits& limits) {
  const v1::TrajectoryGroup& g = w.g;
  for (const auto& [field, value] :
       {std::pair{"group_id", &g.group_id()}, std::pair{"actor_id", &g.actor_id()}}) {
    if (absl::Status st = ValidateText(field, *value, limits.max_id_bytes,
                                       /*required=*/true);
        !st.ok()) {
      return w.Bad(st.message());
    }
  }
  for (const auto& [field, value] :
       {std::pair{"dataset", &g.dataset()}, std::pair{"example_id", &g.example_id()},
        std::pair{"task_family", &g.task_family()}}) {
    if (absl::Status st =
            CheckLabel(field, *value, limits.max_name_bytes, /*required=*/false);
        !st.ok()) {
      return w.Bad(st.message());
    }
  }
  const int n_traj = g.trajectories_size();
  if (n_traj == 0) return w.Bad("it has no trajectories");
  if (static_cast<uint32_t>(n_traj) > limits.max_trajectories) {
    return w.Bad(absl::StrCat("it has ", n_traj, " trajectories, at most ",
                              limits.max_trajectories, " are allowed"));
  }
  if (limits.group_size != 0 && static_cast<uint32_t>(n_traj) != limits.group_size) {
    return w.Bad(
        absl::StrCat("it has ", n_traj, " rollouts, expected ", limits.group_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateText(absl::string_view field, absl::string_view value,
                          size_t max_bytes, bool required) {
  if (value.empty()) {
    return required ? absl::InvalidArgumentError(absl::StrCat(field, " is empty"))
                    : absl::OkStatus();
  }
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, " '", Preview(value),
                                                   "' has ", value.size(),
                                                   " bytes, at most ", max_bytes));
  }
  if (HasControl(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " '", Preview(value), "' contains a control character"));
  }
  return CheckUtf8(field, value);
}

absl::Status ValidateGroup(const v1::TrajectoryGroup& g, const GroupLimits& limits) {
  const Where group{g, ""};
  if (absl::Status st = CheckGroupFields(group, limits); !st.ok()) return st;
  std::set<absl::string_view> ids;
  for (int i = 0; i < g.trajectories_size(); ++i) {
    const v1::Trajectory& t = g.trajectories(i);
    const Where w = group.In(
        absl::StrCat("trajectory ", i, t.trajectory_id().empty() ? "" : " (",
                     Preview(t.trajectory_id()), t.trajectory_id().empty() ? "" : ")"));
    if (absl::Status st = ValidateText("trajectory_id", t.trajectory_id(),
                                       limits.max_id_bytes, /*required=*/true);
        !st.ok()) {
      return w.Bad(st.message());
    }
    if (!ids.insert(t.trajectory_id()).second) {
      return w.Bad("trajectory_id is used twice in the group");
    }
    if (absl::Status st = CheckTrajectory(w, t, limits); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status ValidateVersions(const v1::TrajectoryGroup& g, uint64_t current_version) {
  for (int i = 0; i < g.trajectories_size(); ++i) {
    const v1::Trajectory& t = g.trajectories(i);
    for (int s = 0; s < t.steps_size(); ++s) {
      if (t.steps(s).policy_version() > current_version) {
        return Where{g, absl::StrCat("trajectory ", i, " (", Preview(t.trajectory_id()),
                                     "), step ", s)}
            .Bad(absl::StrCat("policy_version ", t.steps(s).policy_version(),
                              " is newer than the learner's current version ",
                              current_version,
                              "; the actor follows another run or learner"));
      }
    }
  }
  return absl::OkStatus();
}

uint64_t OldestPolicyVersion(const v1::TrajectoryGroup& g) {
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  for (const v1::Trajectory& t : g.trajectories()) {
    for (const v1::Step& s : t.steps()) oldest = std::min(oldest, s.policy_version());
  }
  return oldest == std::numeric_limits<uint64_t>::max() ? 0 : oldest;
}

}  // namespace nbrl::learner
