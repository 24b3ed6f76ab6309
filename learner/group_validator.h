// Checks every field of an incoming trajectory group before it can reach training:
// ids, sizes, parallel arrays, spans within bounds, finite numbers, token ids within
// the vocabulary. A bad group is refused with a message that names the group, the
// trajectory and the field.
#ifndef NBRL_LEARNER_GROUP_VALIDATOR_H_
#define NBRL_LEARNER_GROUP_VALIDATOR_H_

#include <cstdint>

#include "absl/status/status.h"
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
};

// InvalidArgument naming the problem.
absl::Status ValidateGroup(const v1::TrajectoryGroup& group, const GroupLimits& limits);

// The oldest policy version that produced an action of the group.
uint64_t OldestPolicyVersion(const v1::TrajectoryGroup& group);

}  // namespace nbrl::learner

#endif  // NBRL_LEARNER_GROUP_VALIDATOR_H_
