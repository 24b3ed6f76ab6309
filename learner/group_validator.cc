#include "learner/group_validator.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace nbrl::learner {
namespace {

absl::Status Bad(const v1::TrajectoryGroup& g, const std::string& where,
                 const std::string& why) {
  return absl::InvalidArgumentError(
      absl::StrCat("trajectory group ", g.group_id().empty() ? "<no id>" : g.group_id(),
                   " from ", g.actor_id().empty() ? "<no actor>" : g.actor_id(),
                   where.empty() ? "" : ", ", where, ": ", why));
}

bool SpanOk(const v1::TokenSpan& s, int n, bool allow_empty) {
  return s.begin() <= s.end() && s.end() <= static_cast<uint32_t>(n) &&
         (allow_empty || s.begin() < s.end());
}

}  // namespace

absl::Status ValidateGroup(const v1::TrajectoryGroup& g, const GroupLimits& limits) {
  if (g.group_id().empty()) return Bad(g, "", "group_id is empty");
  if (g.actor_id().empty()) return Bad(g, "", "actor_id is empty");
  const int n_traj = g.trajectories_size();
  if (n_traj == 0) return Bad(g, "", "it has no trajectories");
  if (static_cast<uint32_t>(n_traj) > limits.max_trajectories) {
    return Bad(g, "",
               absl::StrCat("it has ", n_traj, " trajectories, at most ",
                            limits.max_trajectories, " are allowed"));
  }
  if (limits.group_size != 0 && static_cast<uint32_t>(n_traj) != limits.group_size) {
    return Bad(
        g, "",
        absl::StrCat("it has ", n_traj, " rollouts, expected ", limits.group_size));
  }
  for (int i = 0; i < n_traj; ++i) {
    const v1::Trajectory& t = g.trajectories(i);
    std::string where =
        absl::StrCat("trajectory ", i, t.trajectory_id().empty() ? "" : " (",
                     t.trajectory_id(), t.trajectory_id().empty() ? "" : ")");
    if (t.trajectory_id().empty()) return Bad(g, where, "trajectory_id is empty");
    const int n = t.token_ids_size();
    if (n == 0) return Bad(g, where, "it has no tokens");
    if (static_cast<uint32_t>(n) > limits.max_tokens) {
      return Bad(g, where, absl::StrCat(n, " tokens, at most ", limits.max_tokens));
    }
    if (t.behavior_logprobs_size() != n) {
      return Bad(g, where,
                 absl::StrCat(n, " token ids but ", t.behavior_logprobs_size(),
                              " behaviour log-probs"));
    }
    if (limits.vocab_size > 0) {
      for (int k = 0; k < n; ++k) {
        if (t.token_ids(k) >= limits.vocab_size) {
          return Bad(g, where,
                     absl::StrCat("token ", k, " has id ", t.token_ids(k),
                                  ", outside the vocabulary of ", limits.vocab_size));
        }
      }
    }
    for (int k = 0; k < n; ++k) {
      float lp = t.behavior_logprobs(k);
      if (!std::isfinite(lp) || lp > 1e-3f) {
        return Bad(g, where,
                   absl::StrCat("behaviour log-prob of token ", k, " is ", lp,
                                "; log-probs are finite and <= 0"));
      }
    }
    if (t.steps_size() == 0) return Bad(g, where, "it has no steps");
    if (static_cast<uint32_t>(t.steps_size()) > limits.max_steps) {
      return Bad(g, where,
                 absl::StrCat(t.steps_size(), " steps, at most ", limits.max_steps));
    }
    for (int s = 0; s < t.steps_size(); ++s) {
      const v1::Step& step = t.steps(s);
      std::string sw = absl::StrCat(where, ", step ", s);
      if (!SpanOk(step.action(), n, /*allow_empty=*/false)) {
        return Bad(g, sw,
                   absl::StrCat("action span [", step.action().begin(), ", ",
                                step.action().end(), ") is empty or outside the ", n,
                                " tokens"));
      }
      if (!SpanOk(step.observation(), n, /*allow_empty=*/true)) {
        return Bad(g, sw, "observation span is outside the tokens");
      }
      if (step.context_size() == 0) return Bad(g, sw, "it has no context spans");
      for (const v1::TokenSpan& c : step.context()) {
        if (!SpanOk(c, n, /*allow_empty=*/false)) {
          return Bad(g, sw, "a context span is empty or outside the tokens");
        }
      }
      for (const auto& [name, value] : step.rewards()) {
        if (!std::isfinite(value)) {
          return Bad(g, sw, absl::StrCat("reward '", name, "' is not finite"));
        }
      }
    }
    if (!std::isfinite(t.total_reward()))
      return Bad(g, where, "total_reward is not finite");
    for (const auto& [name, value] : t.final_rewards()) {
      if (!std::isfinite(value)) {
        return Bad(g, where, absl::StrCat("final reward '", name, "' is not finite"));
      }
    }
    if (!v1::EndingReason_IsValid(t.ending_reason()) ||
        t.ending_reason() == v1::ENDING_REASON_UNSPECIFIED) {
      return Bad(g, where,
                 absl::StrCat("ending_reason ", t.ending_reason(), " is not known"));
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
