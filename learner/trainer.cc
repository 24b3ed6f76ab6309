#include "learner/trainer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "model/scorer.h"

namespace nbrl::learner {
namespace {

// The actions of one trajectory, packed for teacher-forced scoring. Each step's
// sequence is its context spans followed by its action span; steps share prefixes
// (the system prompt and task, then the kept history), so the sequences form a
// prefix tree over spans. The row lays the tree out node by node, each node's tokens
// once; a token attends to its own node up to itself and to its ancestors, at its
// position within its own sequence. Scoring the row gives every action token the
// log-prob it has given its exact context, for about the tokens of the pool rather
// than the sum of every step's context.
struct PackedRow {
  std::vector<int64_t> tokens, positions;
  // Per node: first row index, token count, parent node (-1: none).
  std::vector<int64_t> node_begin, node_size;
  std::vector<int> node_parent;
  std::vector<int> node_of;  // per row index
  // Per scored action token: its row index and the row index that predicts it.
  std::vector<int64_t> target, predictor;
  std::vector<float> behaviour;
  std::vector<double> advantage;
  std::vector<int64_t> action;  // per target: the action's index within the row
  int64_t actions = 0;
};

absl::StatusOr<PackedRow> PackTrajectory(const v1::Trajectory& t,
                                         const std::vector<double>& adv) {
  PackedRow row;
  const uint32_t n = static_cast<uint32_t>(t.token_ids_size());
  // Children of each node by span; node -1 is the root.
  std::map<std::tuple<int, uint32_t, uint32_t>, int> child;
  auto node_for = [&](int parent, uint32_t b, uint32_t e) {
    auto key = std::make_tuple(parent, b, e);
    auto it = child.find(key);
    if (it != child.end()) return it->second;
    const int id = static_cast<int>(row.node_begin.size());
    const int64_t base =
        parent < 0
            ? 0
            : row.positions[row.node_begin[parent] + row.node_size[parent] - 1] + 1;
    row.node_begin.push_back(static_cast<int64_t>(row.tokens.size()));
    row.node_size.push_back(e - b);
    row.node_parent.push_back(parent);
    for (uint32_t i = b; i < e; ++i) {
      row.tokens.push_back(t.token_ids(i));
      row.positions.push_back(base + (i - b));
      row.node_of.push_back(id);
    }
    child.emplace(key, id);
    return id;
  };
  for (int s = 0; s < t.steps_size(); ++s) {
    const v1::Step& step = t.steps(s);
    int node = -1;
    for (const v1::TokenSpan& c : step.context()) {
      if (c.end() > n || c.begin() > c.end()) {
        return absl::InvalidArgumentError(absl::StrCat("trajectory ", t.trajectory_id(),
                                                       " step ", s,
                                                       ": context span out of range"));
      }
      if (c.begin() < c.end()) node = node_for(node, c.begin(), c.end());
    }
    const v1::TokenSpan& act = step.action();
    if (act.end() > n || act.begin() >= act.end()) {
      return absl::InvalidArgumentError(absl::StrCat("trajectory ", t.trajectory_id(),
                                                     " step ", s, ": bad action span"));
    }
    if (node < 0) {
      return absl::InvalidArgumentError(absl::StrCat("trajectory ", t.trajectory_id(),
                                                     " step ", s,
                                                     ": an action without context"));
    }
    const int64_t parent_last = row.node_begin[node] + row.node_size[node] - 1;
    const int a = node_for(node, act.begin(), act.end());
    for (uint32_t i = 0; i < act.end() - act.begin(); ++i) {
      const int64_t r = row.node_begin[a] + i;
      row.target.push_back(r);
      row.predictor.push_back(i == 0 ? parent_last : r - 1);
      row.behaviour.push_back(t.behavior_logprobs(act.begin() + i));
      row.advantage.push_back(adv[s]);
      row.action.push_back(row.actions);
    }
    ++row.actions;
  }
  return row;
}

absl::StatusOr<std::vector<PackedRow>> BuildSamples(
    const std::vector<v1::TrajectoryGroup>& groups,
    const std::vector<std::vector<double>>& advantages) {
  std::vector<PackedRow> out;
  size_t t_index = 0;
  for (const v1::TrajectoryGroup& g : groups) {
    for (const v1::Trajectory& t : g.trajectories()) {
      ASSIGN_OR_RETURN(PackedRow row, PackTrajectory(t, advantages[t_index++]));
      if (row.actions > 0) out.push_back(std::move(row));
    }
  }
  return out;
}

// Tokens, positions and the attention mask of a microbatch of rows, padded to the
// longest (padding attends to itself only).
struct PackedBatch {
  torch::Tensor tokens, positions, attend;
};

PackedBatch MakeBatch(const std::vector<PackedRow>& rows, size_t begin, size_t end) {
  int64_t L = 0;
  for (size_t k = begin; k < end; ++k)
    L = std::max<int64_t>(L, static_cast<int64_t>(rows[k].tokens.size()));
  const int64_t B = static_cast<int64_t>(end - begin);
  PackedBatch out{torch::zeros({B, L}, torch::kInt64),
                  torch::zeros({B, L}, torch::kInt64),
                  torch::zeros({B, L, L}, torch::kBool)};
  auto tok = out.tokens.accessor<int64_t, 2>();
  auto pos = out.positions.accessor<int64_t, 2>();
  bool* attend = out.attend.data_ptr<bool>();
  for (int64_t b = 0; b < B; ++b) {
    const PackedRow& r = rows[begin + b];
    const int64_t len = static_cast<int64_t>(r.tokens.size());
    for (int64_t i = 0; i < len; ++i) {
      tok[b][i] = r.tokens[i];
      pos[b][i] = r.positions[i];
    }
    bool* plane = attend + b * L * L;
    for (int64_t i = 0; i < len; ++i) {
      bool* q = plane + i * L;
      const int node = r.node_of[i];
      std::fill(q + r.node_begin[node], q + i + 1, true);  // own node, up to itself
      for (int p = r.node_parent[node]; p >= 0; p = r.node_parent[p]) {
        std::fill(q + r.node_begin[p], q + r.node_begin[p] + r.node_size[p], true);
      }
    }
    for (int64_t i = len; i < L; ++i) plane[i * L + i] = true;
  }
  return out;
}

// Log-probs of the microbatch's targets: [N] in fp32, gradients flowing to `model`.
torch::Tensor ScoreTargets(model::Transformer& model, const PackedBatch& batch,
                           const torch::Tensor& row, const torch::Tensor& predictor,
                           const torch::Tensor& target_token, double temperature) {
  torch::Tensor hidden =
      model.ForwardPacked(batch.tokens, batch.positions, batch.attend);
  torch::Tensor h = hidden.index({row, predictor});  // [N, D]
  return model::TargetLogProbs(model, h, target_token, temperature);
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
  if (!(options.temperature > 0) || !std::isfinite(options.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "trainer temperature must be a finite number > 0, got ", options.temperature));
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
  t->optimizer_ = std::make_unique<model::FusedAdamW>(t->params_, ao);
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
  ScaleNegativeAdvantages(ao.negative_scale, &adv);
  ASSIGN_OR_RETURN(std::vector<PackedRow> samples, BuildSamples(groups, adv));
  // Microbatches of rows of similar lengths pad less: on the quickstart's episodes
  // (rows of 1,000 to 3,300 tokens, 16 per step) sorting cuts the padded tokens by
  // 11% and the attention work, quadratic in the padded length, by 19%. The
  // gradient is a sum over rows, so their order does not change the update.
  std::stable_sort(samples.begin(), samples.end(),
                   [](const PackedRow& a, const PackedRow& b) {
                     return a.tokens.size() < b.tokens.size();
                   });

  // 2. Global normalisers: tokens or actions over all ranks.
  int64_t local_tokens = 0, local_actions = 0;
  for (const auto& r : samples) {
    local_tokens += static_cast<int64_t>(r.target.size());
    local_actions += r.actions;
  }
  stats.tokens = local_tokens;
  stats.actions = local_actions;
  torch::Tensor counts = torch::tensor(
      {static_cast<double>(local_tokens), static_cast<double>(local_actions)},
      torch::kFloat64);
  if (distributed) RETURN_IF_ERROR(dp_->AllReduceSum({counts}));
  const bool action_mean = options_.loss.aggregation == "action-mean";
  const double global_norm = std::max(1.0, counts[action_mean ? 1 : 0].item<double>());
  {
    // Over actions (each action's advantage once).
    double s = 0, s2 = 0;
    for (const auto& r : samples) {
      for (size_t k = 0; k < r.target.size(); ++k) {
        if (k > 0 && r.action[k] == r.action[k - 1]) continue;
        s += r.advantage[k];
        s2 += r.advantage[k] * r.advantage[k];
      }
    }
    if (local_actions > 0) {
      const double n = static_cast<double>(local_actions);
      stats.advantage_mean = s / n;
      stats.advantage_std = std::sqrt(
          std::max(0.0, s2 / n - stats.advantage_mean * stats.advantage_mean));
    }
  }

  // 3. Forward and backward per microbatch (gradient accumulation).
  absl::Time t0 = absl::Now();
  optimizer_->ClearGradients();
  double loss_sum = 0, pg_sum = 0, kl_sum = 0, entropy_sum = 0, clip_sum = 0;
  size_t i = 0;
  while (i < samples.size()) {
    // Greedy packing by padded size.
    size_t j = i;
    int64_t longest = 0;
    while (j < samples.size()) {
      int64_t len = static_cast<int64_t>(samples[j].tokens.size());
      int64_t next_longest = std::max(longest, len);
      if (j > i &&
          next_longest * static_cast<int64_t>(j - i + 1) > options_.microbatch_tokens)
        break;
      longest = next_longest;
      ++j;
    }
    PackedBatch batch = MakeBatch(samples, i, j);
    std::vector<int64_t> rows, preds, targets, action_ids;
    std::vector<float> behaviour;
    std::vector<double> advantages;
    int64_t mb_actions = 0;
    for (size_t k = i; k < j; ++k) {
      const PackedRow& r = samples[k];
      for (size_t x = 0; x < r.target.size(); ++x) {
        rows.push_back(static_cast<int64_t>(k - i));
        preds.push_back(r.predictor[x]);
        targets.push_back(r.tokens[r.target[x]]);
        action_ids.push_back(mb_actions + r.action[x]);
        advantages.push_back(r.advantage[x]);
      }
      behaviour.insert(behaviour.end(), r.behaviour.begin(), r.behaviour.end());
      mb_actions += r.actions;
    }
    auto dev = policy_->device();
    torch::Tensor r = torch::tensor(rows, torch::kInt64).to(dev);
    torch::Tensor c = torch::tensor(preds, torch::kInt64).to(dev);
    torch::Tensor tt = torch::tensor(targets, torch::kInt64).to(dev);
    const double temperature = options_.mode == "sft" ? 1.0 : options_.temperature;
    torch::Tensor lp;
    try {
      lp = ScoreTargets(*policy_, batch, r, c, tt, temperature);  // [N_mb]
    } catch (const c10::Error& e) {
      return absl::InternalError(
          absl::StrCat("scoring failed: ", e.what_without_backtrace()));
    }
    torch::Tensor ids = torch::tensor(action_ids, torch::kInt64).to(dev);
    const double mb_units =
        action_mean ? static_cast<double>(mb_actions) : static_cast<double>(lp.size(0));
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
        try {
          in.logp_reference =
              ScoreTargets(*reference_, batch, r, c, tt, temperature).to(lp.dtype());
        } catch (const c10::Error& e) {
          return absl::InternalError(absl::StrCat("scoring with the reference failed: ",
                                                  e.what_without_backtrace()));
        }
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
  optimizer_->ClearGradients();
  stats.optimizer_seconds = absl::ToDoubleSeconds(absl::Now() - t2);

  // 6. Metrics (this rank's view; the loss is the global mean's local share).
  stats.loss = loss_sum;
  const double local_units = action_mean ? static_cast<double>(local_actions)
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
