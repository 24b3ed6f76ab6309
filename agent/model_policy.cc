#include "agent/model_policy.h"

#include "absl/strings/str_cat.h"
#include "agent/action_parser.h"
#include "common/status_macros.h"

namespace nbrl::agent {

absl::StatusOr<std::unique_ptr<ModelPolicy>> ModelPolicy::Create(
    model::Transformer* model, const model::Tokenizer* tokenizer,
    ModelPolicyOptions options) {
  if (options.max_episodes < 1) {
    return absl::InvalidArgumentError("model policy max_episodes must be >= 1");
  }
  std::unique_ptr<ModelPolicy> p(new ModelPolicy());
  p->model_ = model;
  p->tokenizer_ = tokenizer;
  p->options_ = options;
  ASSIGN_OR_RETURN(p->batch_,
                   model::SequenceBatch::Create(model, options.max_episodes));
  p->row_used_.assign(options.max_episodes, false);
  if (tokenizer->eos_id() >= 0) p->eos_ids_.push_back(tokenizer->eos_id());
  if (auto end = tokenizer->TokenToId("<|im_end|>");
      end && *end != tokenizer->eos_id()) {
    p->eos_ids_.push_back(*end);
  }
  return p;
}

absl::Status ModelPolicy::ResetAll() {
  for (int64_t row = 0; row < batch_->batch_size(); ++row) {
    RETURN_IF_ERROR(batch_->Reset(row, {}));
  }
  row_of_.clear();
  row_used_.assign(row_used_.size(), false);
  return absl::OkStatus();
}

void ModelPolicy::EndEpisode(uint64_t episode_id) {
  auto it = row_of_.find(episode_id);
  if (it == row_of_.end()) return;
  row_used_[it->second] = false;
  (void)batch_->Reset(it->second, {});
  row_of_.erase(it);
}

absl::StatusOr<std::vector<PolicyResponse>> ModelPolicy::Act(
    absl::Span<const PolicyRequest> requests) {
  std::vector<bool> active(batch_->batch_size(), false);
  std::vector<std::vector<int64_t>> appends(batch_->batch_size());
  std::vector<int64_t> rows;
  int64_t max_new = 1;
  for (const PolicyRequest& r : requests) {
    auto it = row_of_.find(r.episode_id);
    if (it == row_of_.end()) {
      int64_t free_row = -1;
      for (int64_t i = 0; i < static_cast<int64_t>(row_used_.size()); ++i) {
        if (!row_used_[i]) {
          free_row = i;
          break;
        }
      }
      if (free_row < 0) {
        return absl::ResourceExhaustedError(
            absl::StrCat("more than ", options_.max_episodes,
                         " episodes at once in the model policy"));
      }
      row_used_[free_row] = true;
      it = row_of_.emplace(r.episode_id, free_row).first;
    }
    const int64_t row = it->second;
    if (active[row])
      return absl::InvalidArgumentError("an episode appears twice in one batch");
    active[row] = true;
    rows.push_back(row);
    max_new = std::max<int64_t>(max_new, r.max_new_tokens);
    // Keep the longest prefix the row shares with the new context (its cached keys
    // and values stay), and compute only the rest.
    const std::vector<int64_t>& have = batch_->tokens(row);
    size_t common = 0;
    while (common < have.size() && common < r.context.size() &&
           have[common] == r.context[common]) {
      ++common;
    }
    if (common < have.size()) {
      // Truncate re-feeds the last kept token, so it is computed again.
      RETURN_IF_ERROR(batch_->Truncate(row, static_cast<int64_t>(common)));
      if (common > 0) ++context_tokens_computed_;
    }
    appends[row].assign(r.context.begin() + common, r.context.end());
    context_tokens_computed_ += static_cast<int64_t>(r.context.size() - common);
  }
  RETURN_IF_ERROR(batch_->Append(appends));

  model::SamplingOptions so;
  so.temperature = options_.temperature;
  so.top_k = options_.top_k;
  so.top_p = options_.top_p;
  so.max_new_tokens = max_new;
  so.eos_ids = eos_ids_;
  so.seed = options_.seed * 1000003 + calls_++;
  const model::Tokenizer* tok = tokenizer_;
  so.stop_predicate = [tok](int64_t, const std::vector<int64_t>& generated) {
    // Only a token that ends with '>' can complete "</code>".
    std::vector<int32_t> last = {static_cast<int32_t>(generated.back())};
    absl::StatusOr<std::string> piece = tok->Decode(last);
    if (!piece.ok() || piece->find('>') == std::string::npos) return false;
    std::vector<int32_t> ids(generated.begin(), generated.end());
    absl::StatusOr<std::string> text = tok->Decode(ids);
    return text.ok() && FindActionEnd(*text) != absl::string_view::npos;
  };
  ASSIGN_OR_RETURN(std::vector<model::Generation> gens, batch_->Generate(so, active));

  std::vector<PolicyResponse> out;
  for (size_t k = 0; k < requests.size(); ++k) {
    const model::Generation& g = gens[rows[k]];
    PolicyResponse resp;
    size_t n = std::min<size_t>(g.tokens.size(),
                                static_cast<size_t>(requests[k].max_new_tokens));
    for (size_t i = 0; i < n; ++i) {
      resp.tokens.push_back(static_cast<int32_t>(g.tokens[i]));
      resp.logprobs.push_back(g.logprobs[i]);
    }
    resp.finished = g.finish_reason != model::FinishReason::kLength &&
                    g.finish_reason != model::FinishReason::kContextLimit;
    resp.policy_version = version_;
    out.push_back(std::move(resp));
  }
  return out;
}

}  // namespace nbrl::agent
