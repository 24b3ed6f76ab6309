// Checks every field of an incoming trajectory group before it can reach training:
// ids, sizes, parallel arrays, spans within bounds and in order, finite numbers,
// durations, token ids within the vocabulary, policy versions the learner has
// published. A bad group is refused with a message that names the group, the
// trajectory, the step and the field, and shows the bad value.
//
// The rules, field by field (docs/protocol.md lists them too). Every text field
// must be well-formed UTF-8 (they are proto `bytes`: learner.proto says why).
//   group_id, actor_id, trajectory_id   1..max_id_bytes, no control characters;
//                                       trajectory ids unique within the group
//   dataset, example_id, task_family    0..max_name_bytes (any text: the learner
//                                       keeps them but does not interpret them)
//   trajectories                        1..max_trajectories; == group_size if set
//   token_ids                           1..max_tokens; each < vocab_size if set
//   behavior_logprobs                   one per token; finite and <= 0
//   steps                               1..max_steps
//   step.context                        >= 1 span; each non-empty, inside the
//                                       tokens and ending at or before the action;
//                                       together no longer than the tokens before
//                                       the action (no repeats)
//   step.action                         non-empty, inside the tokens, after the
//                                       previous step's action and observation
//   step.observation                    inside the tokens; when non-empty, at or
//                                       after its action's end
//   step.reward, rewards, final_rewards,
//   total_reward                        finite; reward names 1..max_name_bytes,
//                                       unique, at most max_reward_components
//   generate_time, execute_time,
//   wall_time                           valid, non-negative, under a year
//   final_answer                        empty unless has_final_answer
//   ending_reason                       a known value, not UNSPECIFIED
//   step.policy_version                 <= the learner's current version
//                                       (ValidateVersions)
#ifndef NBRL_LEARNER_GROUP_VALIDATOR_H_
#define NBRL_LEARNER_GROUP_VALIDATOR_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nbrl/v1/learner.pb.h"

namespace nbrl::learner {

struct GroupLimits {
  // Rollouts per group: at least 1, at most this; exactly `group_size` when set.
  uint32_t max_trajectories = 256;
  uint32_t group_size = 0;
  // Tokens in one trajectory's pool.
  uint32_t max_tokens = 1 << 20;
  uint32_t max_steps = 256;
  // Token ids must be below this; 0: not checked.
  int64_t vocab_size = 0;
  // Bytes of an id (group, actor, trajectory: keys the learner keeps, e.g. in
  // checkpoints) and of a label (dataset, example id, task family, reward name;
  // nbrl's actor sends its data file's path as the dataset: PATH_MAX).
  size_t max_id_bytes = 256;
  size_t max_name_bytes = 4096;
  // Named reward components of one step, and of one trajectory's final answer.
  size_t max_reward_components = 64;
};

// InvalidArgument naming the problem.
absl::Status ValidateGroup(const v1::TrajectoryGroup& group, const GroupLimits& limits);

// InvalidArgument when a step claims a policy version newer than
// `current_version`, the newest the learner has published: such a group comes
// from another run (or a confused actor) and cannot be trained on.
absl::Status ValidateVersions(const v1::TrajectoryGroup& group,
                              uint64_t current_version);

// Checks one text field of a request: InvalidArgument naming `field` when `value`
// is empty (and `required`), longer than `max_bytes`, holds a control character
// (logs and metric labels must stay one line) or is not well-formed UTF-8.
absl::Status ValidateText(absl::string_view field, absl::string_view value,
                          size_t max_bytes, bool required);

// The oldest policy version that produced an action of the group.
uint64_t OldestPolicyVersion(const v1::TrajectoryGroup& group);

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_GROUP_VALIDATOR_H_
