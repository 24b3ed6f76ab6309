// Issue #9: every field of every incoming message is validated and a bad one is
// refused with a clear status. One table of {name, how to corrupt a valid message,
// expected status code, expected substring of the status message} is sent over
// real gRPC on loopback to a real LearnerServiceImpl (ingestor, weight publisher)
// and a real SandboxServiceImpl (SessionManager with bubblewrap sandboxes), each
// built with its message size cap (AddTo). Valid messages in the same table must
// pass; afterwards both servers still serve, and nothing bad was counted, queued
// or left open. docs/protocol.md lists the rules.
//
// A PushTrajectories row's "status" is the stream's status, or, when the learner
// acknowledged the group, OK for RESULT_ACCEPTED and INVALID_ARGUMENT with the
// ack's message for RESULT_INVALID (the stream stays open for the next group).
// Without bwrap or python the sandbox rows cannot run: the learner rows still run
// and the test then reports SKIPPED, naming the reason.
#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/crc32c.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "learner/learner_service.h"
#include "sandbox_worker/sandbox_service.h"

namespace nbrl {
namespace {

using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
// The learner's limits in this test (the defaults are larger).
constexpr int kVocab = 100;
constexpr int kGroupSize = 2;
constexpr int kMaxTokens = 64;
constexpr int kMaxSteps = 4;
constexpr int kMaxTrajectories = 8;
constexpr int kLearnerCapBytes = 1 << 20;
// The sandbox's largest cell; its message cap is this plus 64 KiB.
constexpr size_t kMaxCodeBytes = 1000;

// One valid message of every kind the two servers receive.
struct Messages {
  v1::RegisterActorRequest register_actor;
  v1::HeartbeatRequest heartbeat;
  v1::TrajectoryGroup group;
  v1::SubscribeWeightsRequest subscribe;
  v1::OpenSessionRequest open;
  v1::ExecuteRequest execute;
  v1::CloseSessionRequest close;
  v1::AttachRequest attach;
};

enum class Rpc {
  kRegisterActor,
  kHeartbeat,
  kPushTrajectories,
  kSubscribeWeights,
  kOpenSession,
  kExecute,
  kCloseSession,
  kAttach,
};

bool IsSandbox(Rpc rpc) { return rpc >= Rpc::kOpenSession; }

void SetDuration(google::protobuf::Duration* d, int64_t seconds, int32_t nanos) {
  d->set_seconds(seconds);
  d->set_nanos(nanos);
}

// A trajectory of 16 tokens in two steps, laid out as the agent's context builder
// lays out its pool:
//   [0,4) prompt | [4,7) action 0 | [7,10) observation 0 | [10,12) notepad and
//   header | [12,16) action 1 (the last step: no observation)
void AddTrajectory(v1::TrajectoryGroup* g, const std::string& id, float reward) {
  v1::Trajectory* t = g->add_trajectories();
  t->set_trajectory_id(id);
  for (int i = 0; i < 16; ++i) {
    t->add_token_ids(static_cast<uint32_t>(i * 5 + 1));
    const bool action = (i >= 4 && i < 7) || i >= 12;
    t->add_behavior_logprobs(action ? -0.5f : 0.0f);
  }
  v1::Step* s0 = t->add_steps();
  s0->add_context()->set_end(4);
  s0->mutable_action()->set_begin(4);
  s0->mutable_action()->set_end(7);
  s0->mutable_observation()->set_begin(7);
  s0->mutable_observation()->set_end(10);
  v1::Step* s1 = t->add_steps();
  for (auto [b, e] : {std::pair{0, 4}, {4, 10}, {10, 12}}) {
    v1::TokenSpan* c = s1->add_context();
    c->set_begin(b);
    c->set_end(e);
  }
  s1->mutable_action()->set_begin(12);
  s1->mutable_action()->set_end(16);
  s1->mutable_observation()->set_begin(16);
  s1->mutable_observation()->set_end(16);
  for (v1::Step* s : {s0, s1}) {
    s->set_policy_version(1);
    v1::RewardComponent* format = s->add_rewards();
    format->set_name("format");
    format->set_value(0.1f);
    s->set_reward(0.1f);
    s->set_well_formed(true);
    s->set_executed_ok(true);
    SetDuration(s->mutable_generate_time(), 0, 250000000);
    SetDuration(s->mutable_execute_time(), 0, 5000000);
  }
  t->set_has_final_answer(reward > 0);
  if (reward > 0) t->set_final_answer("42");
  t->set_ending_reason(reward > 0 ? v1::ENDING_REASON_SUBMITTED
                                  : v1::ENDING_REASON_MAX_STEPS);
  v1::RewardComponent* em = t->add_final_rewards();
  em->set_name("em");
  em->set_value(reward);
  t->set_total_reward(reward + 0.2f);
  SetDuration(t->mutable_wall_time(), 2, 0);
}

// Valid messages; `n` makes the group's ids unique (each valid group is new).
Messages Valid(int n, const std::string& session_id) {
  Messages m;
  m.register_actor.set_actor_id("actor-0");
  m.register_actor.set_hostname("localhost");
  m.register_actor.set_pid(1234);
  m.register_actor.set_policy_version(1);
  m.register_actor.set_group_size(kGroupSize);
  m.heartbeat.set_actor_id("actor-0");
  m.heartbeat.set_policy_version(1);
  m.heartbeat.set_episodes_in_flight(2);
  m.heartbeat.set_groups_sent(7);
  const std::string id = absl::StrCat("g-", n);
  m.group.set_group_id(id);
  m.group.set_actor_id("actor-0");
  m.group.set_dataset("qa");
  m.group.set_example_id("q-17");
  m.group.set_task_family("qa_search");
  m.group.set_data_cursor(static_cast<uint64_t>(n));
  AddTrajectory(&m.group, id + "-t0", 1.0f);
  AddTrajectory(&m.group, id + "-t1", 0.0f);
  m.subscribe.set_actor_id("actor-0");
  m.open.set_client_id("actor-0");
  m.open.set_label("episode-1");
  SetDuration(m.open.mutable_idle_timeout(), 60, 0);
  m.execute.set_session_id(session_id);
  m.execute.set_code("x + 1");
  SetDuration(m.execute.mutable_timeout(), 1, 0);
  m.execute.set_max_output_bytes(4096);
  m.close.set_session_id("s-never-opened");  // closing is idempotent
  // Not the fixture session's client: an Attach that ends closes its sessions.
  m.attach.set_client_id("attach-probe");
  return m;
}

v1::Trajectory& T(Messages& m, int i = 0) { return *m.group.mutable_trajectories(i); }
v1::Step& S(Messages& m, int s, int t = 0) { return *T(m, t).mutable_steps(s); }
void AddReward(google::protobuf::RepeatedPtrField<v1::RewardComponent>* rewards,
               const std::string& name, float value) {
  v1::RewardComponent* c = rewards->Add();
  c->set_name(name);
  c->set_value(value);
}
void SetSpan(v1::TokenSpan* span, uint32_t b, uint32_t e) {
  span->set_begin(b);
  span->set_end(e);
}

struct Case {
  const char* name;
  Rpc rpc;
  std::function<void(Messages&)> corrupt;
  grpc::StatusCode code;
  const char* message;  // substring of the status message; "" checks nothing
};

using grpc::StatusCode;
const auto kValid = [](Messages&) {};
const std::string kLong(300, 'a');
// Not UTF-8: a lone continuation byte, and a truncated 3-byte sequence. Text fields
// are proto `bytes`, so these reach the validators (a proto3 `string` would fail
// gRPC's parse with an empty INTERNAL status instead).
const std::string kBadUtf8 = "id-\x80";
const std::string kTruncatedUtf8 = "caf\xe2\x82";

std::vector<Case> Table() {
  return {
      // --- LearnerService.RegisterActor
      {"register: valid", Rpc::kRegisterActor, kValid, StatusCode::OK, ""},
      {"register: empty actor_id", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.clear_actor_id(); },
       StatusCode::INVALID_ARGUMENT, "actor_id is empty"},
      {"register: actor_id of 300 bytes", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.set_actor_id(kLong); },
       StatusCode::INVALID_ARGUMENT, "has 300 bytes, at most 256"},
      {"register: actor_id with a newline", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.set_actor_id("actor\n0"); },
       StatusCode::INVALID_ARGUMENT, "actor_id 'actor\\n0' contains a control"},
      {"register: actor_id not UTF-8", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.set_actor_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "actor_id 'id-\\x80' is not valid UTF-8 (byte 3"},
      {"register: hostname not UTF-8", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.set_hostname(kTruncatedUtf8); },
       StatusCode::INVALID_ARGUMENT, "hostname 'caf\\xe2\\x82' is not valid UTF-8"},
      {"register: hostname of 300 bytes", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.set_hostname(kLong); },
       StatusCode::INVALID_ARGUMENT, "hostname"},
      {"register: group_size above the most a group may have", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.set_group_size(1000); },
       StatusCode::INVALID_ARGUMENT, "group_size 1000"},
      {"register: group_size unlike the learner's", Rpc::kRegisterActor,
       [](Messages& m) { m.register_actor.set_group_size(3); },
       StatusCode::FAILED_PRECONDITION,
       "makes groups of 3 rollouts; this learner takes 2"},
      // --- LearnerService.Heartbeat
      {"heartbeat: valid", Rpc::kHeartbeat, kValid, StatusCode::OK, ""},
      {"heartbeat: empty actor_id", Rpc::kHeartbeat,
       [](Messages& m) { m.heartbeat.clear_actor_id(); }, StatusCode::INVALID_ARGUMENT,
       "actor_id is empty"},
      {"heartbeat: actor_id of 300 bytes", Rpc::kHeartbeat,
       [](Messages& m) { m.heartbeat.set_actor_id(kLong); },
       StatusCode::INVALID_ARGUMENT, "at most 256"},
      {"heartbeat: actor_id not UTF-8", Rpc::kHeartbeat,
       [](Messages& m) { m.heartbeat.set_actor_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "is not valid UTF-8"},
      {"heartbeat: unregistered actor", Rpc::kHeartbeat,
       [](Messages& m) { m.heartbeat.set_actor_id("ghost"); },
       StatusCode::FAILED_PRECONDITION, "'ghost' is not registered"},
      // --- LearnerService.SubscribeWeights
      {"subscribe: valid", Rpc::kSubscribeWeights, kValid, StatusCode::OK, ""},
      {"subscribe: empty actor_id", Rpc::kSubscribeWeights,
       [](Messages& m) { m.subscribe.clear_actor_id(); }, StatusCode::INVALID_ARGUMENT,
       "actor_id is empty"},
      {"subscribe: actor_id not UTF-8", Rpc::kSubscribeWeights,
       [](Messages& m) { m.subscribe.set_actor_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "actor_id 'id-\\x80' is not valid UTF-8"},
      {"subscribe: unregistered actor", Rpc::kSubscribeWeights,
       [](Messages& m) { m.subscribe.set_actor_id("ghost"); },
       StatusCode::FAILED_PRECONDITION, "'ghost' is not registered"},
      // --- LearnerService.PushTrajectories: the group
      {"push: valid", Rpc::kPushTrajectories, kValid, StatusCode::OK, ""},
      {"push: empty group_id", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.clear_group_id(); }, StatusCode::INVALID_ARGUMENT,
       "group_id is empty"},
      {"push: group_id of 300 bytes", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_group_id(kLong); }, StatusCode::INVALID_ARGUMENT,
       "group_id 'aaaa"},
      {"push: group_id with a tab", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_group_id("g\t1"); }, StatusCode::INVALID_ARGUMENT,
       "contains a control character"},
      {"push: group_id not UTF-8 (and the ack still parses)", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_group_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT,
       "trajectory group id-\\x80 from actor-0: group_id 'id-\\x80' is not valid"},
      {"push: actor_id not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_actor_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "is not valid UTF-8"},
      {"push: empty actor_id", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.clear_actor_id(); }, StatusCode::INVALID_ARGUMENT,
       "actor_id is empty"},
      {"push: unregistered actor", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_actor_id("ghost"); },
       StatusCode::FAILED_PRECONDITION, "unregistered actor 'ghost'"},
      {"push: dataset of 5000 bytes", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_dataset(std::string(5000, 'd')); },
       StatusCode::INVALID_ARGUMENT, "dataset 'ddd"},
      {"push: example_id of 5000 bytes", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_example_id(std::string(5000, 'e')); },
       StatusCode::INVALID_ARGUMENT, "has 5000 bytes, at most 4096"},
      {"push: dataset not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_dataset(kTruncatedUtf8); },
       StatusCode::INVALID_ARGUMENT, "dataset 'caf\\xe2\\x82' is not valid UTF-8"},
      {"push: example_id not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_example_id("q\xc0\xaf"); },  // overlong '/'
       StatusCode::INVALID_ARGUMENT, "example_id 'q\\xc0\\xaf' is not valid UTF-8"},
      {"push: task_family not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_task_family("\xed\xa0\x80"); },  // surrogate
       StatusCode::INVALID_ARGUMENT, "task_family"},
      {"push: task_family of 5000 bytes", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.set_task_family(std::string(5000, 'f')); },
       StatusCode::INVALID_ARGUMENT, "task_family"},
      {"push: no trajectories", Rpc::kPushTrajectories,
       [](Messages& m) { m.group.clear_trajectories(); }, StatusCode::INVALID_ARGUMENT,
       "it has no trajectories"},
      {"push: more trajectories than allowed", Rpc::kPushTrajectories,
       [](Messages& m) {
         for (int i = 2; i < kMaxTrajectories + 1; ++i) {
           AddTrajectory(&m.group, absl::StrCat("extra-", i), 0.5f);
         }
       },
       StatusCode::INVALID_ARGUMENT, "9 trajectories, at most 8"},
      {"push: a group of the wrong size", Rpc::kPushTrajectories,
       [](Messages& m) { AddTrajectory(&m.group, "third", 0.5f); },
       StatusCode::INVALID_ARGUMENT, "it has 3 rollouts, expected 2"},
      // --- the trajectories
      {"push: empty trajectory_id", Rpc::kPushTrajectories,
       [](Messages& m) { T(m, 1).clear_trajectory_id(); }, StatusCode::INVALID_ARGUMENT,
       "trajectory 1: trajectory_id is empty"},
      {"push: trajectory_id not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) { T(m, 1).set_trajectory_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "trajectory_id 'id-\\x80' is not valid UTF-8"},
      {"push: a trajectory_id used twice", Rpc::kPushTrajectories,
       [](Messages& m) { T(m, 1).set_trajectory_id(T(m, 0).trajectory_id()); },
       StatusCode::INVALID_ARGUMENT, "trajectory_id is used twice"},
      {"push: no tokens", Rpc::kPushTrajectories,
       [](Messages& m) {
         T(m).clear_token_ids();
         T(m).clear_behavior_logprobs();
       },
       StatusCode::INVALID_ARGUMENT, "it has no tokens"},
      {"push: more tokens than allowed", Rpc::kPushTrajectories,
       [](Messages& m) {
         for (int i = 16; i < kMaxTokens + 1; ++i) {
           T(m).add_token_ids(1);
           T(m).add_behavior_logprobs(0);
         }
       },
       StatusCode::INVALID_ARGUMENT, "65 tokens, at most 64"},
      {"push: fewer log-probs than tokens", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).mutable_behavior_logprobs()->RemoveLast(); },
       StatusCode::INVALID_ARGUMENT, "16 token ids but 15 behaviour log-probs"},
      {"push: a token id outside the vocabulary", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_token_ids(5, kVocab); }, StatusCode::INVALID_ARGUMENT,
       "token 5 has id 100, outside the vocabulary"},
      {"push: a NaN log-prob", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_behavior_logprobs(5, kNaN); },
       StatusCode::INVALID_ARGUMENT, "log-prob of token 5 is nan"},
      {"push: a -inf log-prob", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_behavior_logprobs(5, -kInf); },
       StatusCode::INVALID_ARGUMENT, "log-prob of token 5 is -inf"},
      {"push: a positive log-prob", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_behavior_logprobs(5, 0.5f); },
       StatusCode::INVALID_ARGUMENT, "is 0.5; log-probs are finite and <= 0"},
      {"push: no steps", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).clear_steps(); }, StatusCode::INVALID_ARGUMENT,
       "it has no steps"},
      {"push: more steps than allowed", Rpc::kPushTrajectories,
       [](Messages& m) {
         for (int i = 2; i < kMaxSteps + 1; ++i) *T(m).add_steps() = S(m, 1);
       },
       StatusCode::INVALID_ARGUMENT, "5 steps, at most 4"},
      {"push: a final_answer without has_final_answer", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_has_final_answer(false); },
       StatusCode::INVALID_ARGUMENT, "final_answer is set"},
      {"push: a final_answer not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) {
         T(m).set_final_answer(
             "4\xff"
             "2");
       },
       StatusCode::INVALID_ARGUMENT,
       "final_answer '4\\xff\\x32' is not valid UTF-8 (byte 1 of 3)"},
      {"push: ending_reason unspecified", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_ending_reason(v1::ENDING_REASON_UNSPECIFIED); },
       StatusCode::INVALID_ARGUMENT, "ending_reason 0 is not known"},
      {"push: ending_reason not in the enum", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_ending_reason(static_cast<v1::EndingReason>(99)); },
       StatusCode::INVALID_ARGUMENT, "ending_reason 99 is not known"},
      {"push: a NaN total_reward", Rpc::kPushTrajectories,
       [](Messages& m) { T(m, 1).set_total_reward(kNaN); },
       StatusCode::INVALID_ARGUMENT, "-t1): total_reward is nan"},
      {"push: an infinite final reward", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).mutable_final_rewards(0)->set_value(kInf); },
       StatusCode::INVALID_ARGUMENT, "final reward 'em' is inf"},
      {"push: a final reward given twice", Rpc::kPushTrajectories,
       [](Messages& m) { AddReward(T(m).mutable_final_rewards(), "em", 0.0f); },
       StatusCode::INVALID_ARGUMENT, "final reward 'em' is given twice"},
      {"push: a final reward name not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) { AddReward(T(m).mutable_final_rewards(), kBadUtf8, 1.0f); },
       StatusCode::INVALID_ARGUMENT, "final reward name 'id-\\x80' is not valid UTF-8"},
      {"push: 65 final reward components", Rpc::kPushTrajectories,
       [](Messages& m) {
         for (int i = 0; i < 64; ++i) {
           AddReward(T(m).mutable_final_rewards(), absl::StrCat("r", i), 0.0f);
         }
       },
       StatusCode::INVALID_ARGUMENT, "65 final reward components, at most 64"},
      {"push: a negative wall_time", Rpc::kPushTrajectories,
       [](Messages& m) { SetDuration(T(m).mutable_wall_time(), -3, 0); },
       StatusCode::INVALID_ARGUMENT, "wall_time is -3 s"},
      // --- the steps
      {"push: an empty action span", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 0).mutable_action(), 4, 4); },
       StatusCode::INVALID_ARGUMENT, "step 0: action span [4, 4) is empty"},
      {"push: an action span past the tokens", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 1).mutable_action(), 12, 17); },
       StatusCode::INVALID_ARGUMENT, "action span [12, 17) is empty or outside the 16"},
      {"push: an action span that ends before it begins", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 0).mutable_action(), 7, 4); },
       StatusCode::INVALID_ARGUMENT, "action span [7, 4)"},
      {"push: an action overlapping the previous step", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 1).mutable_action(), 9, 16); },
       StatusCode::INVALID_ARGUMENT, "step 1: action span [9, 16) overlaps"},
      {"push: no context spans", Rpc::kPushTrajectories,
       [](Messages& m) { S(m, 0).clear_context(); }, StatusCode::INVALID_ARGUMENT,
       "step 0: it has no context spans"},
      {"push: an empty context span", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 1).mutable_context(1), 5, 5); },
       StatusCode::INVALID_ARGUMENT, "context span 1 [5, 5) is empty"},
      {"push: a context span past the tokens", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 1).mutable_context(2), 10, 40); },
       StatusCode::INVALID_ARGUMENT, "context span 2 [10, 40)"},
      {"push: a context span reaching into its action", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 0).mutable_context(0), 0, 6); },
       StatusCode::INVALID_ARGUMENT, "ends after its action begins"},
      {"push: an observation span past the tokens", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 0).mutable_observation(), 7, 17); },
       StatusCode::INVALID_ARGUMENT, "observation span [7, 17) is outside"},
      {"push: an observation overlapping its action", Rpc::kPushTrajectories,
       [](Messages& m) { SetSpan(S(m, 0).mutable_observation(), 6, 10); },
       StatusCode::INVALID_ARGUMENT, "observation span [6, 10) overlaps"},
      {"push: a NaN step reward", Rpc::kPushTrajectories,
       [](Messages& m) { S(m, 1, 1).set_reward(kNaN); }, StatusCode::INVALID_ARGUMENT,
       "-t1), step 1: reward is nan, not a finite number"},
      {"push: an infinite step reward", Rpc::kPushTrajectories,
       [](Messages& m) { S(m, 0).set_reward(-kInf); }, StatusCode::INVALID_ARGUMENT,
       "step 0: reward is -inf, not a finite number"},
      {"push: a NaN reward component", Rpc::kPushTrajectories,
       [](Messages& m) { S(m, 0).mutable_rewards(0)->set_value(kNaN); },
       StatusCode::INVALID_ARGUMENT, "reward 'format' is nan"},
      {"push: a reward component without a name", Rpc::kPushTrajectories,
       [](Messages& m) { AddReward(S(m, 0).mutable_rewards(), "", 1); },
       StatusCode::INVALID_ARGUMENT, "reward name is empty"},
      {"push: a reward component given twice", Rpc::kPushTrajectories,
       [](Messages& m) { AddReward(S(m, 1).mutable_rewards(), "format", 0.2f); },
       StatusCode::INVALID_ARGUMENT, "step 1: reward 'format' is given twice"},
      {"push: a reward name not UTF-8", Rpc::kPushTrajectories,
       [](Messages& m) { AddReward(S(m, 0).mutable_rewards(), "fmt\xc3", 1); },
       StatusCode::INVALID_ARGUMENT, "reward name 'fmt\\xc3' is not valid UTF-8"},
      {"push: a negative generate_time", Rpc::kPushTrajectories,
       [](Messages& m) { SetDuration(S(m, 0).mutable_generate_time(), -1, 0); },
       StatusCode::INVALID_ARGUMENT, "generate_time is -1 s"},
      {"push: execute_time nanos out of range", Rpc::kPushTrajectories,
       [](Messages& m) { SetDuration(S(m, 1).mutable_execute_time(), 0, 2000000000); },
       StatusCode::INVALID_ARGUMENT, "execute_time is 0 s 2000000000 ns"},
      {"push: a policy version the learner never published", Rpc::kPushTrajectories,
       [](Messages& m) { S(m, 1).set_policy_version(9); }, StatusCode::INVALID_ARGUMENT,
       "policy_version 9 is newer than the learner's current version 1"},
      {"push: a group over the message cap", Rpc::kPushTrajectories,
       [](Messages& m) { T(m).set_final_answer(std::string(kLearnerCapBytes, 'x')); },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
      // --- SandboxService.OpenSession
      {"open: valid", Rpc::kOpenSession, kValid, StatusCode::OK, ""},
      {"open: client_id of 300 bytes", Rpc::kOpenSession,
       [](Messages& m) { m.open.set_client_id(kLong); }, StatusCode::INVALID_ARGUMENT,
       "client_id 'aaa"},
      {"open: client_id with a newline", Rpc::kOpenSession,
       [](Messages& m) { m.open.set_client_id("a\nb"); }, StatusCode::INVALID_ARGUMENT,
       "client_id 'a\\nb' contains a control character"},
      {"open: client_id not UTF-8", Rpc::kOpenSession,
       [](Messages& m) { m.open.set_client_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "client_id 'id-\\x80' is not valid UTF-8 (byte 3"},
      {"open: label not UTF-8", Rpc::kOpenSession,
       [](Messages& m) { m.open.set_label(kTruncatedUtf8); },
       StatusCode::INVALID_ARGUMENT, "label 'caf\\xe2\\x82' is not valid UTF-8"},
      {"open: a tool name not UTF-8", Rpc::kOpenSession,
       [](Messages& m) { m.open.add_tools(kBadUtf8); }, StatusCode::INVALID_ARGUMENT,
       "tool name 'id-\\x80' is not valid UTF-8"},
      {"open: label of 2000 bytes", Rpc::kOpenSession,
       [](Messages& m) { m.open.set_label(std::string(2000, 'l')); },
       StatusCode::INVALID_ARGUMENT, "has 2000 bytes, at most 1024"},
      {"open: 65 tools", Rpc::kOpenSession,
       [](Messages& m) {
         for (int i = 0; i < 65; ++i) m.open.add_tools("web_search");
       },
       StatusCode::INVALID_ARGUMENT, "asks for 65 tools, at most 64"},
      {"open: a tool name of 300 bytes", Rpc::kOpenSession,
       [](Messages& m) { m.open.add_tools(kLong); }, StatusCode::INVALID_ARGUMENT,
       "tool name"},
      {"open: a tool the worker does not serve", Rpc::kOpenSession,
       [](Messages& m) { m.open.add_tools("web_search"); },
       StatusCode::INVALID_ARGUMENT, "tool 'web_search' is not served"},
      {"open: no_tools with tools", Rpc::kOpenSession,
       [](Messages& m) {
         m.open.set_no_tools(true);
         m.open.add_tools("read_page");
       },
       StatusCode::INVALID_ARGUMENT, "no_tools is set but tools are listed"},
      {"open: a negative idle_timeout", Rpc::kOpenSession,
       [](Messages& m) { SetDuration(m.open.mutable_idle_timeout(), -1, 0); },
       StatusCode::INVALID_ARGUMENT, "idle_timeout must be a non-negative duration"},
      {"open: idle_timeout nanos out of range", Rpc::kOpenSession,
       [](Messages& m) { SetDuration(m.open.mutable_idle_timeout(), 1, 1000000000); },
       StatusCode::INVALID_ARGUMENT, "idle_timeout"},
      // --- SandboxService.Execute
      {"execute: valid", Rpc::kExecute, kValid, StatusCode::OK, ""},
      {"execute: empty session_id", Rpc::kExecute,
       [](Messages& m) { m.execute.clear_session_id(); }, StatusCode::INVALID_ARGUMENT,
       "session_id is empty"},
      {"execute: session_id of 300 bytes", Rpc::kExecute,
       [](Messages& m) { m.execute.set_session_id(kLong); },
       StatusCode::INVALID_ARGUMENT, "has 300 bytes, at most 256"},
      {"execute: session_id not UTF-8", Rpc::kExecute,
       [](Messages& m) { m.execute.set_session_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "session_id 'id-\\x80' is not valid UTF-8"},
      {"execute: code not UTF-8", Rpc::kExecute,
       [](Messages& m) { m.execute.set_code("print('\xff')"); },
       StatusCode::INVALID_ARGUMENT,
       "code 'print(\\'\\xff\\')' is not valid UTF-8 (byte 7"},
      {"execute: an unknown session", Rpc::kExecute,
       [](Messages& m) { m.execute.set_session_id("s999-deadbeef"); },
       StatusCode::NOT_FOUND, "no open session 's999-deadbeef'"},
      {"execute: a cell over max_code_bytes", Rpc::kExecute,
       [](Messages& m) { m.execute.set_code(std::string(kMaxCodeBytes + 1, '#')); },
       StatusCode::INVALID_ARGUMENT, "cell of 1001 bytes; the limit is 1000"},
      {"execute: a request over the message cap", Rpc::kExecute,
       [](Messages& m) { m.execute.set_code(std::string(200 << 10, '#')); },
       StatusCode::RESOURCE_EXHAUSTED, "larger than max"},
      {"execute: a negative timeout", Rpc::kExecute,
       [](Messages& m) { SetDuration(m.execute.mutable_timeout(), -5, 0); },
       StatusCode::INVALID_ARGUMENT, "timeout must be a non-negative duration"},
      {"execute: negative timeout nanos", Rpc::kExecute,
       [](Messages& m) { SetDuration(m.execute.mutable_timeout(), 0, -1); },
       StatusCode::INVALID_ARGUMENT, "timeout must be a non-negative duration"},
      {"execute: a timeout over a year", Rpc::kExecute,
       [](Messages& m) { SetDuration(m.execute.mutable_timeout(), 400LL * 86400, 0); },
       StatusCode::INVALID_ARGUMENT, "under a year"},
      // --- SandboxService.CloseSession
      {"close: valid (an unknown session: idempotent)", Rpc::kCloseSession, kValid,
       StatusCode::OK, ""},
      {"close: empty session_id", Rpc::kCloseSession,
       [](Messages& m) { m.close.clear_session_id(); }, StatusCode::INVALID_ARGUMENT,
       "session_id is empty"},
      {"close: session_id of 300 bytes", Rpc::kCloseSession,
       [](Messages& m) { m.close.set_session_id(kLong); }, StatusCode::INVALID_ARGUMENT,
       "at most 256"},
      {"close: session_id not UTF-8", Rpc::kCloseSession,
       [](Messages& m) { m.close.set_session_id(kTruncatedUtf8); },
       StatusCode::INVALID_ARGUMENT, "is not valid UTF-8"},
      // --- SandboxService.Attach (a valid one is held until our deadline)
      {"attach: valid", Rpc::kAttach, kValid, StatusCode::DEADLINE_EXCEEDED, ""},
      {"attach: empty client_id", Rpc::kAttach,
       [](Messages& m) { m.attach.clear_client_id(); }, StatusCode::INVALID_ARGUMENT,
       "client_id is empty"},
      {"attach: client_id of 300 bytes", Rpc::kAttach,
       [](Messages& m) { m.attach.set_client_id(kLong); }, StatusCode::INVALID_ARGUMENT,
       "has 300 bytes, at most 256"},
      {"attach: client_id not UTF-8", Rpc::kAttach,
       [](Messages& m) { m.attach.set_client_id(kBadUtf8); },
       StatusCode::INVALID_ARGUMENT, "client_id 'id-\\x80' is not valid UTF-8"},
  };
}

std::chrono::system_clock::time_point In(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

class ValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StartLearner();
    StartSandbox();
  }
  void TearDown() override {
    if (ingestor_) ingestor_->Close();
    if (publisher_) publisher_->Close();
    if (learner_server_) learner_server_->Shutdown(In(absl::Seconds(5)));
    if (sandbox_service_) sandbox_service_->Shutdown();
    if (sandbox_server_) sandbox_server_->Shutdown(In(absl::Seconds(5)));
  }

  void StartLearner() {
    registry_ = std::make_shared<prometheus::Registry>();
    learner::IngestorOptions io;
    io.limits.vocab_size = kVocab;
    io.limits.group_size = kGroupSize;
    io.limits.max_tokens = kMaxTokens;
    io.limits.max_steps = kMaxSteps;
    io.limits.max_trajectories = kMaxTrajectories;
    ingestor_ = std::make_unique<learner::Ingestor>(io, registry_.get());
    publisher_ = std::make_unique<learner::WeightPublisher>(
        learner::WeightPublisherOptions{/*chunk_bytes=*/1000}, registry_.get());
    auto w = std::make_shared<common::WeightVersion>();
    w->bytes.assign(3000, '\x01');
    w->manifest.set_version(1);
    w->manifest.set_total_bytes(w->bytes.size());
    w->manifest.set_crc32c(common::Crc32c(w->bytes.data(), w->bytes.size()));
    publisher_->Publish(w);
    learner::LearnerServiceOptions so;
    so.run_id = "validation";
    so.queue_wait = absl::Seconds(10);
    so.max_message_bytes = kLearnerCapBytes;
    learner_ = std::make_unique<learner::LearnerServiceImpl>(so, ingestor_.get(),
                                                             publisher_.get());
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    learner_->AddTo(&b);
    learner_server_ = b.BuildAndStart();
    ASSERT_NE(learner_server_, nullptr);
    learner_stub_ = v1::LearnerService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    v1::RegisterActorResponse resp;
    ASSERT_TRUE(
        learner_stub_->RegisterActor(&ctx, Valid(0, "").register_actor, &resp).ok());
  }

  void StartSandbox() {
    sandbox::SessionManagerOptions o;
    o.warm_sessions = 2;
    o.max_sessions = 4;
    o.max_code_bytes = kMaxCodeBytes;
    o.max_cell_timeout = absl::Seconds(5);
    auto m = sandbox::SessionManager::Create(o, /*tools=*/nullptr, /*metrics=*/nullptr);
    if (!m.ok()) {
      sandbox_skip_ = absl::StrCat("no sandbox (bwrap and python3 are needed): ",
                                   m.status().ToString());
      return;
    }
    manager_ = *std::move(m);
    sandbox_service_ = std::make_unique<sandbox::SandboxServiceImpl>(manager_.get());
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    sandbox_service_->AddTo(&b);
    sandbox_server_ = b.BuildAndStart();
    ASSERT_NE(sandbox_server_, nullptr);
    sandbox_stub_ = v1::SandboxService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    // The session the Execute rows run in; its variable must survive them all.
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(30)));
    v1::OpenSessionResponse resp;
    grpc::Status st = sandbox_stub_->OpenSession(&ctx, Valid(0, "").open, &resp);
    if (!st.ok()) {
      sandbox_skip_ =
          absl::StrCat("the sandbox cannot start a session: ", st.error_message());
      return;
    }
    session_id_ = resp.session_id();
    v1::ExecuteResponse r;
    ASSERT_TRUE(ExecuteCode("x = 41", &r).ok());
  }

  grpc::Status ExecuteCode(const std::string& code, v1::ExecuteResponse* r) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(30)));
    v1::ExecuteRequest req;
    req.set_session_id(session_id_);
    req.set_code(code);
    return sandbox_stub_->Execute(&ctx, req, r);
  }

  // Sends `groups` on one stream; returns the acks and the stream's status.
  grpc::Status PushGroups(const std::vector<v1::TrajectoryGroup>& groups,
                          std::vector<v1::GroupAck>* acks) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(30)));
    auto stream = learner_stub_->PushTrajectories(&ctx);
    for (const v1::TrajectoryGroup& g : groups) {
      if (!stream->Write(g)) break;
      v1::GroupAck ack;
      if (!stream->Read(&ack)) break;
      acks->push_back(ack);
    }
    stream->WritesDone();
    return stream->Finish();
  }

  grpc::Status Push(const v1::TrajectoryGroup& group) {
    std::vector<v1::GroupAck> acks;
    grpc::Status st = PushGroups({group}, &acks);
    if (acks.empty()) return st.ok() ? grpc::Status(StatusCode::UNKNOWN, "no ack") : st;
    EXPECT_TRUE(st.ok()) << "a stream that acknowledged its group ends OK";
    switch (acks[0].result()) {
      case v1::GroupAck::RESULT_ACCEPTED:
        accepted_.push_back(group.group_id());
        return grpc::Status::OK;
      case v1::GroupAck::RESULT_INVALID:
        ++invalid_acks_;
        return grpc::Status(StatusCode::INVALID_ARGUMENT, acks[0].message());
      default:
        return grpc::Status(
            StatusCode::UNKNOWN,
            absl::StrCat("ack result ", acks[0].result(), ": ", acks[0].message()));
    }
  }

  grpc::Status Subscribe(const v1::SubscribeWeightsRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    auto reader = learner_stub_->SubscribeWeights(&ctx, req);
    v1::WeightChunk chunk;
    if (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.version(), 1u);
      ctx.TryCancel();
      (void)reader->Finish();
      return grpc::Status::OK;
    }
    return reader->Finish();
  }

  grpc::Status Attach(const v1::AttachRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Milliseconds(300)));
    auto reader = sandbox_stub_->Attach(&ctx, req);
    v1::AttachEvent event;
    while (reader->Read(&event)) {
    }
    return reader->Finish();
  }

  grpc::Status Send(Rpc rpc, const Messages& m) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(30)));
    switch (rpc) {
      case Rpc::kRegisterActor: {
        v1::RegisterActorResponse resp;
        return learner_stub_->RegisterActor(&ctx, m.register_actor, &resp);
      }
      case Rpc::kHeartbeat: {
        v1::HeartbeatResponse resp;
        return learner_stub_->Heartbeat(&ctx, m.heartbeat, &resp);
      }
      case Rpc::kPushTrajectories:
        return Push(m.group);
      case Rpc::kSubscribeWeights:
        return Subscribe(m.subscribe);
      case Rpc::kOpenSession: {
        v1::OpenSessionResponse resp;
        grpc::Status st = sandbox_stub_->OpenSession(&ctx, m.open, &resp);
        if (st.ok()) {  // a valid open: close it again, keeping the count
          grpc::ClientContext close_ctx;
          v1::CloseSessionRequest close;
          close.set_session_id(resp.session_id());
          v1::CloseSessionResponse closed;
          EXPECT_TRUE(sandbox_stub_->CloseSession(&close_ctx, close, &closed).ok());
          EXPECT_TRUE(closed.existed());
        }
        return st;
      }
      case Rpc::kExecute: {
        v1::ExecuteResponse resp;
        grpc::Status st = sandbox_stub_->Execute(&ctx, m.execute, &resp);
        if (st.ok()) {
          EXPECT_EQ(resp.result(), "42");
        }
        return st;
      }
      case Rpc::kCloseSession: {
        v1::CloseSessionResponse resp;
        grpc::Status st = sandbox_stub_->CloseSession(&ctx, m.close, &resp);
        if (st.ok()) {
          EXPECT_FALSE(resp.existed());
        }
        return st;
      }
      case Rpc::kAttach:
        return Attach(m.attach);
    }
    return grpc::Status(StatusCode::INTERNAL, "unknown rpc");
  }

  // Learner.
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<learner::Ingestor> ingestor_;
  std::unique_ptr<learner::WeightPublisher> publisher_;
  std::unique_ptr<learner::LearnerServiceImpl> learner_;
  std::unique_ptr<grpc::Server> learner_server_;
  std::unique_ptr<v1::LearnerService::Stub> learner_stub_;
  std::vector<std::string> accepted_;  // ids of the groups the learner accepted
  uint64_t invalid_acks_ = 0;
  // Sandbox.
  std::string sandbox_skip_;  // why the sandbox rows cannot run; empty: they can
  std::unique_ptr<sandbox::SessionManager> manager_;
  std::unique_ptr<sandbox::SandboxServiceImpl> sandbox_service_;
  std::unique_ptr<grpc::Server> sandbox_server_;
  std::unique_ptr<v1::SandboxService::Stub> sandbox_stub_;
  std::string session_id_;
};

TEST_F(ValidationTest, EveryBadMessageIsRefusedWithAClearStatus) {
  const std::vector<Case> table = Table();
  int n = 0, valid_rows = 0;
  for (const Case& c : table) {
    if (IsSandbox(c.rpc) && !sandbox_skip_.empty()) continue;
    SCOPED_TRACE(c.name);
    Messages m = Valid(++n, session_id_);
    c.corrupt(m);
    grpc::Status st = Send(c.rpc, m);
    EXPECT_EQ(st.error_code(), c.code) << c.name << ": " << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr(c.message)) << c.name;
    if (c.code == StatusCode::OK) ++valid_rows;
  }
  EXPECT_GE(valid_rows, 4);

  // The learner: only the valid group was queued; the refused ones were counted as
  // invalid once each (stream-level refusals not at all), nothing else.
  EXPECT_EQ(accepted_.size(), 1u);
  EXPECT_GE(invalid_acks_, 40u);
  learner::IngestorStats s = ingestor_->stats();
  EXPECT_EQ(s.accepted, accepted_.size());
  EXPECT_EQ(s.invalid, invalid_acks_);
  EXPECT_EQ(s.duplicate + s.stale + s.filtered, 0u);
  EXPECT_EQ(s.queued, accepted_.size());
  // It still serves: a stream carrying a bad group and then a good one gets an
  // INVALID ack and an ACCEPTED one; heartbeats and Status answer.
  Messages bad = Valid(++n, session_id_);
  bad.group.mutable_trajectories(0)->mutable_steps(0)->set_reward(kNaN);
  Messages good = Valid(++n, session_id_);
  std::vector<v1::GroupAck> acks;
  grpc::Status st = PushGroups({bad.group, good.group}, &acks);
  EXPECT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[0].result(), v1::GroupAck::RESULT_INVALID);
  EXPECT_EQ(acks[1].result(), v1::GroupAck::RESULT_ACCEPTED);
  accepted_.push_back(good.group.group_id());
  EXPECT_TRUE(Send(Rpc::kHeartbeat, good).ok());
  {
    grpc::ClientContext ctx;
    v1::StatusResponse status;
    ASSERT_TRUE(learner_stub_->Status(&ctx, v1::StatusRequest(), &status).ok());
    EXPECT_EQ(status.groups_accepted(), 2u);
    EXPECT_EQ(status.groups_invalid(), invalid_acks_ + 1);
    EXPECT_EQ(status.actors_alive(), 1u) << "a refused registration added an actor";
  }
  std::vector<std::string> taken;
  for (const v1::TrajectoryGroup& g : ingestor_->Take(0, 100, absl::Now())) {
    taken.push_back(g.group_id());
  }
  EXPECT_EQ(taken, accepted_);

  if (!sandbox_skip_.empty()) GTEST_SKIP() << sandbox_skip_;
  // The sandbox: its session kept its state through every bad request, and no
  // request left a session open.
  v1::ExecuteResponse r;
  ASSERT_TRUE(ExecuteCode("x + 1", &r).ok());
  EXPECT_EQ(r.result(), "42");
  grpc::ClientContext ctx;
  v1::HealthResponse health;
  ASSERT_TRUE(sandbox_stub_->Health(&ctx, v1::HealthRequest(), &health).ok());
  EXPECT_EQ(health.status(), v1::HealthResponse::SERVING_STATUS_SERVING);
  EXPECT_EQ(health.sessions_active(), 1u);
}

}  // namespace
}  // namespace nbrl
