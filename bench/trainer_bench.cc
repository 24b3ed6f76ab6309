// nbrl-trainer-bench: the learner's step on notebook-agent trajectories, packed
// (one row per trajectory: a prefix tree over its steps' context spans) against
// the limit it replaces, scoring every action with its own full context (each
// step as a separate sequence). Both take the same optimizer step (SFT loss, so no
// advantages differ); the ratio is how many times faster the packed step is.
//
// The trajectories have the layout the context builder makes: a prompt, then per
// step a fresh Notepad, the action, the observation, and for later steps the kept
// history (a header, the action, the observation) before the next Notepad.
#include <iostream>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/harness.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "learner/trainer.h"

namespace nbrl::bench {
namespace {

struct Shape {
  int trajectories = 16, steps = 6;
  int prompt = 300, notepad = 40, action = 60, observation = 120, header = 3;
};

// One trajectory in the notebook layout, and the same actions as one-step
// trajectories with their contexts spelled out.
void MakeTrajectory(const Shape& sh, std::mt19937& rng, int vocab,
                    v1::Trajectory* packed, std::vector<v1::Trajectory>* split) {
  std::uniform_int_distribution<int> tok(0, vocab - 1);
  auto append = [&](int n) {
    const uint32_t b = static_cast<uint32_t>(packed->token_ids_size());
    for (int i = 0; i < n; ++i) {
      packed->add_token_ids(tok(rng));
      packed->add_behavior_logprobs(-2.0f);
    }
    return std::make_pair(b, static_cast<uint32_t>(packed->token_ids_size()));
  };
  auto prompt = append(sh.prompt);
  std::vector<std::pair<uint32_t, uint32_t>> history;  // spans of kept history
  for (int s = 0; s < sh.steps; ++s) {
    auto notepad = append(sh.notepad);
    auto action = append(sh.action);
    v1::Step* step = packed->add_steps();
    std::vector<std::pair<uint32_t, uint32_t>> ctx = {prompt};
    ctx.insert(ctx.end(), history.begin(), history.end());
    ctx.push_back(notepad);
    for (auto [b, e] : ctx) {
      v1::TokenSpan* sp = step->add_context();
      sp->set_begin(b);
      sp->set_end(e);
    }
    step->mutable_action()->set_begin(action.first);
    step->mutable_action()->set_end(action.second);
    // The same action as a one-step trajectory.
    v1::Trajectory one;
    one.set_trajectory_id(absl::StrCat(packed->trajectory_id(), "-", s));
    for (auto [b, e] : ctx) {
      for (uint32_t i = b; i < e; ++i) {
        one.add_token_ids(packed->token_ids(i));
        one.add_behavior_logprobs(0);
      }
    }
    v1::Step* os = one.add_steps();
    os->add_context()->set_end(static_cast<uint32_t>(one.token_ids_size()));
    os->mutable_action()->set_begin(static_cast<uint32_t>(one.token_ids_size()));
    for (uint32_t i = action.first; i < action.second; ++i) {
      one.add_token_ids(packed->token_ids(i));
      one.add_behavior_logprobs(-2.0f);
    }
    os->mutable_action()->set_end(static_cast<uint32_t>(one.token_ids_size()));
    one.set_ending_reason(v1::ENDING_REASON_SUBMITTED);
    split->push_back(one);
    auto observation = append(sh.observation);
    auto header = append(sh.header);
    history.push_back(header);
    history.push_back(action);
    history.push_back(observation);
  }
  packed->set_ending_reason(v1::ENDING_REASON_SUBMITTED);
}

absl::Status Run(int rounds, bool quick) {
  Shape sh;
  if (quick) {
    sh.trajectories = 4;
    sh.steps = 4;
  }
  model::ModelConfig mc;
  mc.vocab_size = 2048;
  mc.hidden_size = 128;
  mc.intermediate_size = 512;
  mc.num_hidden_layers = 2;
  mc.num_attention_heads = 4;
  mc.num_key_value_heads = 2;
  mc.head_dim = 32;
  mc.max_position_embeddings = 8192;
  std::mt19937 rng(1);
  v1::TrajectoryGroup packed, split;
  packed.set_group_id("packed");
  split.set_group_id("split");
  int64_t pool = 0, contexts = 0;
  for (int t = 0; t < sh.trajectories; ++t) {
    v1::Trajectory* p = packed.add_trajectories();
    p->set_trajectory_id(absl::StrCat("t", t));
    std::vector<v1::Trajectory> ones;
    MakeTrajectory(sh, rng, static_cast<int>(mc.vocab_size), p, &ones);
    pool += p->token_ids_size();
    for (auto& o : ones) {
      contexts += o.token_ids_size();
      *split.add_trajectories() = o;
    }
  }
  std::cout << "trainer step: " << sh.trajectories << " trajectories x " << sh.steps
            << " steps; " << pool << " pool tokens, " << contexts
            << " tokens when every action is scored with its own context\n";

  auto probe = [&](const v1::TrajectoryGroup& g) -> Probe {
    return [&, g]() -> absl::StatusOr<double> {
      ASSIGN_OR_RETURN(auto m, model::Transformer::Create(mc, {}));
      learner::TrainerOptions o;
      o.mode = "sft";
      o.lr = 1e-4;
      o.microbatch_tokens = 16384;
      ASSIGN_OR_RETURN(auto trainer,
                       learner::Trainer::Create(m.get(), nullptr, nullptr, o));
      absl::Time t0 = absl::Now();
      ASSIGN_OR_RETURN(learner::StepStats s, trainer->Step({g}));
      (void)s;
      return absl::ToDoubleSeconds(absl::Now() - t0);
    };
  };
  SideBySideOptions opts;
  opts.name = "trainer_packed_step";
  opts.rounds = rounds;
  opts.measured_label = "packed";
  opts.baseline_label = "per-action contexts";
  ASSIGN_OR_RETURN(SideBySideResult r,
                   RunSideBySide(opts, probe(packed), probe(split)));
  std::cout << FormatResult(r);
  return WriteResultJson(r, "bench-results/trainer_packed_step.json");
}

}  // namespace
}  // namespace nbrl::bench

int main(int argc, char** argv) {
  nbrl::common::KeepFreedMemoryForReuse();
  int rounds = 3;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
    } else if (a == "--rounds" && i + 1 < argc &&
               absl::SimpleAtoi(argv[i + 1], &rounds)) {
      ++i;
    } else {
      std::cerr << "usage: nbrl-trainer-bench [--rounds N] [--quick]\n"
                   "Times the learner's step on notebook-agent trajectories, packed\n"
                   "against scoring each action with its own context.\n";
      return a == "--help" ? 0 : 2;
    }
  }
  if (absl::Status s = nbrl::bench::Run(rounds, quick); !s.ok()) {
    std::cerr << "nbrl-trainer-bench: " << s << "\n";
    return 1;
  }
  return 0;
}
