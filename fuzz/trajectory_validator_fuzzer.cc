// Fuzzes the learner's check of incoming trajectory groups
// (learner/group_validator.h) on TrajectoryGroup messages parsed from arbitrary
// bytes, as PushTrajectories receives them.
//
// Each message is validated under the learner's default limits and under tight ones
// (group size 2, a 64-token vocabulary, 8 steps). A group that passes must be one
// the trainer can use, because a group the learner accepted and then cannot train on
// stops the run: every trajectory has a step, every action span lies inside the
// token pool with a behaviour log-prob per token and at least one non-empty context
// span before it, whose spans add up to no more than the tokens before the action
// (what trainer.cc's packing assumes and copies), and the advantages of the
// group compute under both estimators (learner/advantages.h, as Trainer::Step
// builds their input).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "learner/advantages.h"
#include "learner/group_validator.h"
#include "nbrl/v1/learner.pb.h"

namespace {

namespace v1 = nbrl::v1;
using nbrl::learner::GroupLimits;

void Fail(const std::string& what, const v1::TrajectoryGroup& group) {
  std::fprintf(stderr, "trajectory_validator_fuzzer: %s\n--- group ---\n%s\n",
               what.c_str(), group.ShortDebugString().c_str());
  std::abort();
}

void CheckTrainable(const v1::TrajectoryGroup& g, const GroupLimits& limits) {
  std::vector<nbrl::learner::TrajectoryRewards> rewards;
  for (const v1::Trajectory& t : g.trajectories()) {
    const uint32_t n = static_cast<uint32_t>(t.token_ids_size());
    if (t.behavior_logprobs_size() != t.token_ids_size()) {
      Fail("log-probs and tokens differ in number", g);
    }
    if (t.steps_size() == 0) Fail("a trajectory without steps passed", g);
    for (const v1::Step& s : t.steps()) {
      if (!(s.action().begin() < s.action().end() && s.action().end() <= n)) {
        Fail("a bad action span passed", g);
      }
      bool context = false;
      uint64_t context_tokens = 0;
      for (const v1::TokenSpan& c : s.context()) {
        if (c.begin() > c.end() || c.end() > n) Fail("a bad context span passed", g);
        context = context || c.begin() < c.end();
        context_tokens += c.end() - c.begin();
      }
      if (!context) Fail("an action without context passed", g);
      // The context is pieces of the pool before the action, so no longer than
      // that; the trainer copies every span into its packed row, and repeated
      // spans would multiply a small message into gigabytes there.
      if (context_tokens > s.action().begin()) {
        Fail("a context longer than the tokens before its action passed", g);
      }
    }
    if (limits.vocab_size > 0) {
      for (uint32_t id : t.token_ids()) {
        if (id >= limits.vocab_size) Fail("a token outside the vocabulary passed", g);
      }
    }
    nbrl::learner::TrajectoryRewards r;
    for (const v1::Step& s : t.steps()) r.step_rewards.push_back(s.reward());
    rewards.push_back(std::move(r));
  }
  for (const char* estimator : {"reinforce++", "grpo"}) {
    nbrl::learner::AdvantageOptions options;
    options.estimator = estimator;
    absl::StatusOr<std::vector<std::vector<double>>> adv =
        nbrl::learner::ComputeAdvantages(options, rewards);
    if (!adv.ok()) {
      Fail(std::string("advantages (") + estimator +
               ") of a valid group fail: " + adv.status().ToString(),
           g);
    }
  }
  nbrl::learner::OldestPolicyVersion(g);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  // Parsing logs every string field that is not UTF-8; the parse fails, that is all.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  v1::TrajectoryGroup group;
  if (!group.ParseFromArray(data, static_cast<int>(size))) return 0;

  GroupLimits tight;
  tight.group_size = 2;
  tight.vocab_size = 64;
  tight.max_steps = 8;
  tight.max_tokens = 4096;
  for (const GroupLimits& limits : {GroupLimits(), tight}) {
    absl::Status status = nbrl::learner::ValidateGroup(group, limits);
    if (status.ok()) {
      CheckTrainable(group, limits);
    } else if (!absl::IsInvalidArgument(status) || status.message().empty()) {
      Fail("unexpected status: " + status.ToString(), group);
    }
  }
  nbrl::learner::OldestPolicyVersion(group);
  return 0;
}
