#ifndef OPENELM_ENGINE_CHAT_CHAT_TEMPLATE_H_
#define OPENELM_ENGINE_CHAT_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/tokenizer/tokenizer.h"

namespace openelm {

enum class ChatRole { kSystem, kUser, kAssistant };
const char* ChatRoleName(ChatRole role);  // "system", "user", "assistant"

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;
};

// Checks the shape the Instruct models were tuned on: at most one system
// message, and only as the first message; then user and assistant messages
// alternating, starting and ending with a user message. kInvalidArgument
// naming the offending message index ("messages[3].role ...").
absl::Status ValidateChat(absl::Span<const ChatMessage> messages);

// Renders a conversation in the Zephyr-style training format of the OpenELM
// Instruct models, directly as token ids:
//
//   <s> "<|system|>\n{system}" </s> "\n<|user|>\n{user}" </s>
//       "\n<|assistant|>\n{assistant}" </s> "\n<|user|>\n{user}" </s>
//       "\n<|assistant|>\n"
//
// <s> is BOS (id 1) and </s> is EOS (id 2), inserted as ids, never as text;
// each quoted text piece is encoded on its own without BOS (so, like the
// Hugging Face slow tokenizer splitting at special tokens, each piece starts
// with SentencePiece's dummy-prefix space). An empty system message is
// inserted when none is given. The result ends with the assistant header,
// ready for generation. Validates with ValidateChat() first.
//
// Thread-safe (the tokenizer is).
absl::StatusOr<std::vector<TokenId>> RenderChat(const Tokenizer& tokenizer,
                                                absl::Span<const ChatMessage> messages);

// The same conversation as one string, with "</s>" written as text; for logs
// and documentation only (encoding this string does NOT give RenderChat()'s
// ids, because "</s>" would be split into ordinary pieces).
std::string RenderChatText(absl::Span<const ChatMessage> messages);

}  // namespace openelm

#endif  // OPENELM_ENGINE_CHAT_CHAT_TEMPLATE_H_
