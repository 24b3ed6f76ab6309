// ChatML, the conversation layout of the Qwen models, rendered natively to ids:
//
//   <|im_start|>system\nYou are ...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n
//   <|im_start|>assistant\n          <- the generation prompt
//
// The markers become their ids; roles and contents are encoded as plain text, so a
// message that contains "<|im_end|>" cannot close its turn early (Hugging Face's
// Jinja rendering would match it as the special token). Otherwise the ids equal
// those of tokenizing the rendered text with special tokens matched.
#ifndef NBRL_MODEL_CHAT_TEMPLATE_H_
#define NBRL_MODEL_CHAT_TEMPLATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace nbrl::model {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", "tool", ...
  std::string content;
};

struct ChatTemplateOptions {
  std::string start_token = "<|im_start|>";  // opens a turn
  std::string end_token = "<|im_end|>";      // closes a turn
};

// Thread-safe (const); does not own the tokenizer, which must outlive it.
class ChatTemplate {
 public:
  // FailedPrecondition when the tokenizer lacks the start or end token.
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(
      const Tokenizer* tokenizer, ChatTemplateOptions options = {});

  // The ids of `messages`, followed by "<|im_start|>assistant\n" when
  // `add_generation_prompt`. InvalidArgument for an empty role or one containing a
  // newline.
  absl::StatusOr<std::vector<int32_t>> Render(const std::vector<ChatMessage>& messages,
                                              bool add_generation_prompt) const;
  // The same layout as text (for logs and for comparing with other renderers).
  std::string RenderText(const std::vector<ChatMessage>& messages,
                         bool add_generation_prompt) const;

  int32_t end_id() const { return end_id_; }

 private:
  ChatTemplate() = default;

  // Constant after construction.
  const Tokenizer* tokenizer_ = nullptr;
  ChatTemplateOptions options_;
  int32_t start_id_ = -1;
  int32_t end_id_ = -1;
};

}  // namespace nbrl::model

#endif  // NBRL_MODEL_CHAT_TEMPLATE_H_
