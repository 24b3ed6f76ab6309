#include "actor/trajectory_proto.h"

namespace nbrl::actor {
namespace {

google::protobuf::Duration ToDuration(absl::Duration d) {
  google::protobuf::Duration out;
  out.set_seconds(absl::ToInt64Seconds(d));
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(d) % 1000000000));
  return out;
}

void SetSpan(const agent::Span& s, v1::TokenSpan* out) {
  out->set_begin(s.begin);
  out->set_end(s.end);
}

}  // namespace

v1::EndingReason ToProto(agent::EndingReason reason) {
  switch (reason) {
    case agent::EndingReason::kSubmitted:
      return v1::ENDING_REASON_SUBMITTED;
    case agent::EndingReason::kMaxSteps:
      return v1::ENDING_REASON_MAX_STEPS;
    case agent::EndingReason::kContextLimit:
      return v1::ENDING_REASON_CONTEXT_LIMIT;
    case agent::EndingReason::kDeadline:
      return v1::ENDING_REASON_DEADLINE;
    case agent::EndingReason::kSandboxFailure:
      return v1::ENDING_REASON_SANDBOX_FAILURE;
    case agent::EndingReason::kFormatErrors:
      return v1::ENDING_REASON_FORMAT_ERRORS;
  }
  return v1::ENDING_REASON_UNSPECIFIED;
}

v1::Trajectory ToProto(const agent::TrajectoryRecord& r) {
  v1::Trajectory t;
  t.set_trajectory_id(r.trajectory_id);
  t.mutable_token_ids()->Reserve(static_cast<int>(r.tokens.size()));
  for (int32_t id : r.tokens) t.add_token_ids(static_cast<uint32_t>(id));
  t.mutable_behavior_logprobs()->Add(r.logprobs.begin(), r.logprobs.end());
  for (const agent::StepRecord& s : r.steps) {
    v1::Step* out = t.add_steps();
    for (const agent::Span& c : s.context) SetSpan(c, out->add_context());
    SetSpan(s.action, out->mutable_action());
    SetSpan(s.observation, out->mutable_observation());
    out->set_policy_version(s.policy_version);
    for (const auto& [name, value] : s.rewards) {
      v1::RewardComponent* c = out->add_rewards();
      c->set_name(name);
      c->set_value(static_cast<float>(value));
    }
    out->set_reward(static_cast<float>(s.reward));
    out->set_well_formed(s.well_formed);
    out->set_executed_ok(s.executed_ok);
    *out->mutable_generate_time() = ToDuration(s.generate_time);
    *out->mutable_execute_time() = ToDuration(s.execute_time);
  }
  t.set_has_final_answer(r.has_final_answer);
  t.set_final_answer(r.final_answer);
  t.set_ending_reason(ToProto(r.ending_reason));
  for (const auto& [name, value] : r.final_rewards) {
    v1::RewardComponent* c = t.add_final_rewards();
    c->set_name(name);
    c->set_value(static_cast<float>(value));
  }
  t.set_total_reward(static_cast<float>(r.total_reward));
  *t.mutable_wall_time() = ToDuration(r.wall_time);
  return t;
}

v1::TrajectoryGroup MakeGroup(const std::string& group_id, const std::string& actor_id,
                              const std::string& dataset, const std::string& example_id,
                              const std::string& task_family,
                              const std::vector<agent::TrajectoryRecord>& records,
                              uint64_t data_cursor) {
  v1::TrajectoryGroup g;
  g.set_group_id(group_id);
  g.set_actor_id(actor_id);
  g.set_dataset(dataset);
  g.set_example_id(example_id);
  g.set_task_family(task_family);
  for (const auto& r : records) *g.add_trajectories() = ToProto(r);
  g.set_data_cursor(data_cursor);
  return g;
}

}  // namespace nbrl::actor
