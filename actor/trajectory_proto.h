// agent::TrajectoryRecord -> nbrl.v1.Trajectory, field for field (the wire form the
// learner trains on), and the group that carries a prompt's rollouts.
#ifndef NBRL_ACTOR_TRAJECTORY_PROTO_H_
#define NBRL_ACTOR_TRAJECTORY_PROTO_H_

#include <string>
#include <vector>

#include "agent/trajectory.h"
#include "nbrl/v1/learner.pb.h"

namespace nbrl::actor {

v1::EndingReason ToProto(agent::EndingReason reason);
v1::Trajectory ToProto(const agent::TrajectoryRecord& record);

// The group of `records` (the rollouts of one prompt).
v1::TrajectoryGroup MakeGroup(const std::string& group_id, const std::string& actor_id,
                              const std::string& dataset, const std::string& example_id,
                              const std::string& task_family,
                              const std::vector<agent::TrajectoryRecord>& records,
                              uint64_t data_cursor);

}  // namespace nbrl::actor

#endif  // NBRL_ACTOR_TRAJECTORY_PROTO_H_
