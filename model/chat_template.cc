#include "model/chat_template.h"

#include "absl/strings/str_cat.h"

namespace nbrl::model {

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(
    const Tokenizer* tokenizer, ChatTemplateOptions options) {
  auto chat = std::unique_ptr<ChatTemplate>(new ChatTemplate());
  std::optional<int32_t> start = tokenizer->TokenToId(options.start_token);
  std::optional<int32_t> end = tokenizer->TokenToId(options.end_token);
  if (!start.has_value() || !end.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ChatML needs the tokens '", options.start_token, "' and '",
                     options.end_token, "' but the tokenizer lacks '",
                     start.has_value() ? options.end_token : options.start_token,
                     "'; train it with them as special tokens"));
  }
  chat->tokenizer_ = tokenizer;
  chat->options_ = std::move(options);
  chat->start_id_ = *start;
  chat->end_id_ = *end;
  return chat;
}

absl::StatusOr<std::vector<int32_t>> ChatTemplate::Render(
    const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::vector<int32_t> ids;
  const std::vector<int32_t> newline = tokenizer_->Encode("\n");
  auto append = [&ids](const std::vector<int32_t>& more) {
    ids.insert(ids.end(), more.begin(), more.end());
  };
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role.empty() || m.role.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chat message ", i, ": role '", m.role, "' must be non-empty, one line"));
    }
    ids.push_back(start_id_);
    // One section, as a tokenizer matching the markers would see it.
    append(tokenizer_->Encode(absl::StrCat(m.role, "\n", m.content)));
    ids.push_back(end_id_);
    append(newline);
  }
  if (add_generation_prompt) {
    ids.push_back(start_id_);
    append(tokenizer_->Encode("assistant\n"));
  }
  return ids;
}

std::string ChatTemplate::RenderText(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt) const {
  std::string out;
  for (const ChatMessage& m : messages) {
    absl::StrAppend(&out, options_.start_token, m.role, "\n", m.content,
                    options_.end_token, "\n");
  }
  if (add_generation_prompt) absl::StrAppend(&out, options_.start_token, "assistant\n");
  return out;
}

}  // namespace nbrl::model
