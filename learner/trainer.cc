#include "learner/trainer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "model/scorer.h"

namespace nbrl::learner {
namespace {

// One action to score: its context followed by its tokens.
struct ActionSample {
  std::vector<int64_t> sequence;  // context + action tokens
  int64_t action_tokens = 0;      // the last ones of `sequence`
  std::vector<float> behaviour;   // per action token
  double advantage = 0;
};

absl::StatusOr<std::vector<ActionSample>> BuildSamples(
    const std::vector<v1::TrajectoryGroup>& groups,
    const std::vector<std::vector<double>>& advantages) {
  std::vector<ActionSample> out;
  size_t t_index = 0;
  for (const v1::TrajectoryGroup& g : groups) {
    for (const v1::Trajectory& t : g.trajectories()) {
      const auto& adv = advantages[t_index++];
      const int n = t.token_ids_size();
      for (int s = 0; s < t.steps_size(); ++s) {
        const v1::Step& step = t.steps(s);
        ActionSample a;
        for (const v1::TokenSpan& c : step.context()) {
          if (c.end() > static_cast<uint32_t>(n) || c.begin() > c.end()) {
            return absl::InvalidArgumentError(
                absl::StrCat("trajectory ", t.trajectory_id(), " step ", s,
                             ": context span out of range"));
          }
          for (uint32_t i = c.begin(); i < c.end(); ++i)
            a.sequence.push_back(t.token_ids(i));
        }
        const v1::TokenSpan& act = step.action();
        if (act.end() > static_cast<uint32_t>(n) || act.begin() >= act.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "trajectory ", t.trajectory_id(), " step ", s, ": bad action span"));
        }
        for (uint32_t i = act.begin(); i < act.end(); ++i) {
          a.sequence.push_back(t.token_ids(i));
          a.behaviour.push_back(t.behavior_logprobs(i));
        }
        a.action_tokens = act.end() - act.begin();
        a.advantage = adv[s];
        out.push_back(std::move(a));
      }
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(model::Transformer* policy,
                                                         model::Transformer* reference,
                                                         DataParallel* dp,
                                                         TrainerOptions options) {
  if (options.mode != "rl" && options.mode != "sft") {
    return absl::InvalidArgumentError(
        absl::StrCat("trainer mode '", options.mode, "' is not one of: rl, sft"));
  }
  if (!(options.lr > 0) || options.microbatch_tokens < 1 || options.max_grad_norm < 0) {
    return absl::InvalidArgumentError(
        "trainer needs lr > 0, microbatch_tokens >= 1 and max_grad_norm >= 0");
  }
  if (options.schedule != "constant" && options.schedule != "cosine") {
    return absl::InvalidArgumentError(absl::StrCat(
        "schedule '", options.schedule, "' is not one of: constant, cosine"));
  }
  std::unique_ptr<Trainer> t(new Trainer());
  t->policy_ = policy;
  t->reference_ = reference;
  t->dp_ = dp;
  t->options_ = options;
  for (auto& p : policy->parameters()) t->params_.push_back(p);
  if (dp != nullptr && dp->world_size() > 1) {
    torch::NoGradGuard no_grad;
    RETURN_IF_ERROR(dp->Broadcast(t->params_, /*root=*/0));
  }
  torch::optim::AdamWOptions ao(options.lr);
  ao.betas({options.beta1, options.beta2})
      .eps(options.adam_eps)
      .weight_decay(options.weight_decay);
  t->optimizer_ = std::make_unique<torch::optim::AdamW>(t->params_, ao);
  return t;
}

double Trainer::LearningRate(int64_t step) const {
  const double lr = options_.lr;
  if (options_.warmup_steps > 0 && step < options_.warmup_steps) {
    return lr * static_cast<double>(step + 1) /
           static_cast<double>(options_.warmup_steps);
  }
  if (options_.schedule == "cosine" && options_.total_steps > options_.warmup_steps) {
    double progress = static_cast<double>(step - options_.warmup_steps) /
                      static_cast<double>(options_.total_steps - options_.warmup_steps);
    progress = std::min(1.0, std::max(0.0, progress));
    return lr * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress)));
  }
  return lr;
}

absl::StatusOr<StepStats> Trainer::Step(
    const std::vector<v1::TrajectoryGroup>& groups) {
  StepStats stats;
  stats.step = step_;
  const bool distributed = dp_ != nullptr && dp_->world_size() > 1;

  // 1. Advantages (host). reinforce++ whitens over every rank's actions.
  std::vector<TrajectoryRewards> rewards;
  for (size_t g = 0; g < groups.size(); ++g) {
    for (const v1::Trajectory& t : groups[g].trajectories()) {
      TrajectoryRewards r;
      r.group = static_cast<int>(g);
      for (const v1::Step& s : t.steps()) r.step_rewards.push_back(s.reward());
      if (r.step_rewards.empty()) r.step_rewards.push_back(0);
      stats.reward_mean += t.total_reward();
      rewards.push_back(std::move(r));
    }
  }
  stats.trajectories = static_cast<int64_t>(rewards.size());
  if (stats.trajectories > 0)
    stats.reward_mean /= static_cast<double>(stats.trajectories);
  AdvantageOptions ao = options_.advantages;
  const bool global_whiten = distributed && ao.estimator == "reinforce++" && ao.whiten;
  if (global_whiten) ao.whiten = false;
  ASSIGN_OR_RETURN(std::vector<std::vector<double>> adv,
                   ComputeAdvantages(ao, rewards));
  if (global_whiten) {
    double sum = 0, sumsq = 0, count = 0;
    for (const auto& steps : adv) {
      for (double a : steps) {
        sum += a;
        sumsq += a * a;
        count += 1;
      }
    }
    torch::Tensor moments = torch::tensor({sum, sumsq, count}, torch::kFloat64);
    RETURN_IF_ERROR(dp_->AllReduceSum({moments}));
    double n = moments[2].item<double>();
    double mean = n > 0 ? moments[0].item<double>() / n : 0;
    double var = n > 0 ? std::max(0.0, moments[1].item<double>() / n - mean * mean) : 0;
    double denom = std::sqrt(var) + ao.eps;
    for (auto& steps : adv) {
      for (double& a : steps) a = denom > 0 ? (a - mean) / denom : 0;
    }
  }
  ASSIGN_OR_RETURN(std::vector<ActionSample> samples, BuildSamples(groups, adv));

  // 2. Global normalisers: tokens or actions over all ranks.
  int64_t local_tokens = 0;
  for (const auto& s : samples) local_tokens += s.action_tokens;
  stats.tokens = local_tokens;
  stats.actions = static_cast<int64_t>(samples.size());
  torch::Tensor counts = torch::tensor(
      {static_cast<double>(local_tokens), static_cast<double>(samples.size())},
      torch::kFloat64);
  if (distributed) RETURN_IF_ERROR(dp_->AllReduceSum({counts}));
  const bool action_mean = options_.loss.aggregation == "action-mean";
  const double global_norm = std::max(1.0, counts[action_mean ? 1 : 0].item<double>());
  {
    double s = 0, s2 = 0;
    for (const auto& a : samples) {
      s += a.advantage;
      s2 += a.advantage * a.advantage;
    }
    if (!samples.empty()) {
      stats.advantage_mean = s / samples.size();
      stats.advantage_std = std::sqrt(std::max(
          0.0, s2 / samples.size() - stats.advantage_mean * stats.advantage_mean));
    }
  }

  // 3. Forward and backward per microbatch (gradient accumulation).
  absl::Time t0 = absl::Now();
  optimizer_->zero_grad();
  double loss_sum = 0, pg_sum = 0, kl_sum = 0, entropy_sum = 0, clip_sum = 0;
  size_t i = 0;
  while (i < samples.size()) {
    // Greedy packing by padded size.
    size_t j = i;
    int64_t longest = 0;
    while (j < samples.size()) {
      int64_t len = static_cast<int64_t>(samples[j].sequence.size());
      int64_t next_longest = std::max(longest, len);
      if (j > i &&
          next_longest * static_cast<int64_t>(j - i + 1) > options_.microbatch_tokens)
        break;
      longest = next_longest;
      ++j;
    }
    std::vector<std::vector<int64_t>> seqs;
    for (size_t k = i; k < j; ++k) seqs.push_back(samples[k].sequence);
    model::PaddedBatch batch = model::PadSequences(seqs);
    ASSIGN_OR_RETURN(torch::Tensor logp,
                     model::ScoreTokens(*policy_, batch.tokens, batch.mask));
    // Positions of the action tokens in each row (right padding: they end the row).
    std::vector<int64_t> rows, cols, action_ids;
    std::vector<float> behaviour;
    std::vector<double> advantages;
    for (size_t k = i; k < j; ++k) {
      const ActionSample& s = samples[k];
      int64_t len = static_cast<int64_t>(s.sequence.size());
      for (int64_t p = len - s.action_tokens; p < len; ++p) {
        rows.push_back(static_cast<int64_t>(k - i));
        cols.push_back(p);
        action_ids.push_back(static_cast<int64_t>(k));
        advantages.push_back(s.advantage);
      }
      behaviour.insert(behaviour.end(), s.behaviour.begin(), s.behaviour.end());
    }
    auto dev = logp.device();
    torch::Tensor r = torch::tensor(rows, torch::kInt64).to(dev);
    torch::Tensor c = torch::tensor(cols, torch::kInt64).to(dev);
    torch::Tensor lp = logp.index({r, c});  // [N_mb]
    torch::Tensor ids = torch::tensor(action_ids, torch::kInt64).to(dev);
    const double mb_units =
        action_mean ? static_cast<double>(j - i) : static_cast<double>(lp.size(0));
    torch::Tensor loss;
    if (options_.mode == "sft") {
      ASSIGN_OR_RETURN(loss, SftLoss(lp, ids, options_.loss.aggregation));
      pg_sum += loss.item<double>() * mb_units;
    } else {
      PolicyLossInputs in;
      in.logp = lp;
      in.logp_behaviour = torch::tensor(behaviour, torch::kFloat32).to(dev);
      in.advantages = torch::tensor(advantages, torch::kFloat64).to(dev).to(lp.dtype());
      in.action_index = ids;
      in.entropy = (-lp).detach();  // an estimate: -log p of the sampled tokens
      if (reference_ != nullptr && options_.loss.kl_coef > 0) {
        torch::NoGradGuard no_grad;
        ASSIGN_OR_RETURN(torch::Tensor ref,
                         model::ScoreTokens(*reference_, batch.tokens, batch.mask));
        in.logp_reference = ref.index({r, c}).to(lp.dtype());
      }
      ASSIGN_OR_RETURN(PolicyLossResult res, PolicyLoss(options_.loss, in));
      loss = res.loss;
      pg_sum += res.pg_loss * mb_units;
      kl_sum += res.kl * mb_units;
      entropy_sum += res.entropy * mb_units;
      clip_sum += res.clip_fraction * static_cast<double>(lp.size(0));
    }
    // Scale so that summing over microbatches and ranks gives the global mean.
    torch::Tensor scaled = loss * (mb_units / global_norm);
    scaled.backward();
    loss_sum += scaled.item<double>();
    i = j;
  }
  stats.forward_backward_seconds = absl::ToDoubleSeconds(absl::Now() - t0);

  // 4. All-reduce gradients (sum: the loss is already globally normalised).
  absl::Time t1 = absl::Now();
  std::vector<torch::Tensor> grads;
  for (auto& p : params_) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  if (distributed) RETURN_IF_ERROR(dp_->AllReduceSum(grads));
  stats.allreduce_seconds = absl::ToDoubleSeconds(absl::Now() - t1);

  // 5. Clip, schedule, step.
  absl::Time t2 = absl::Now();
  if (options_.max_grad_norm > 0) {
    stats.grad_norm =
        torch::nn::utils::clip_grad_norm_(params_, options_.max_grad_norm);
  } else {
    double sq = 0;
    for (auto& g : grads) sq += g.pow(2).sum().item<double>();
    stats.grad_norm = std::sqrt(sq);
  }
  stats.lr = LearningRate(step_);
  for (auto& group : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(stats.lr);
  }
  optimizer_->step();
  optimizer_->zero_grad();
  stats.optimizer_seconds = absl::ToDoubleSeconds(absl::Now() - t2);

  // 6. Metrics (this rank's view; the loss is the global mean's local share).
  stats.loss = loss_sum;
  const double local_units = action_mean ? static_cast<double>(samples.size())
                                         : static_cast<double>(local_tokens);
  if (local_units > 0) {
    stats.pg_loss = pg_sum / local_units;
    stats.kl = kl_sum / local_units;
    stats.entropy = entropy_sum / local_units;
  }
  if (local_tokens > 0)
    stats.clip_fraction = clip_sum / static_cast<double>(local_tokens);
  ++step_;
  return stats;
}

}  // namespace nbrl::learner
