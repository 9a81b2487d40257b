#include "engine/chat/chat_template.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"

namespace openelm {
namespace {

const char* RoleHeader(ChatRole role) {
  switch (role) {
    case ChatRole::kSystem:
      return "<|system|>\n";
    case ChatRole::kUser:
      return "<|user|>\n";
    case ChatRole::kAssistant:
      return "<|assistant|>\n";
  }
  return "";
}

// The text pieces between the EOS ids, in order. Piece k > 0 starts with the
// newline that follows the previous EOS; the last piece is the open assistant
// header.
std::vector<std::string> TextPieces(absl::Span<const ChatMessage> messages) {
  std::vector<std::string> pieces;
  size_t first = 0;
  std::string system;
  if (!messages.empty() && messages[0].role == ChatRole::kSystem) {
    system = messages[0].content;
    first = 1;
  }
  pieces.push_back(absl::StrCat(RoleHeader(ChatRole::kSystem), system));
  for (size_t i = first; i < messages.size(); ++i) {
    pieces.push_back(
        absl::StrCat("\n", RoleHeader(messages[i].role), messages[i].content));
  }
  pieces.push_back(absl::StrCat("\n", RoleHeader(ChatRole::kAssistant)));
  return pieces;
}

}  // namespace

const char* ChatRoleName(ChatRole role) {
  switch (role) {
    case ChatRole::kSystem:
      return "system";
    case ChatRole::kUser:
      return "user";
    case ChatRole::kAssistant:
      return "assistant";
  }
  return "unknown";
}

absl::Status ValidateChat(absl::Span<const ChatMessage> messages) {
  if (messages.empty()) {
    return absl::InvalidArgumentError("messages: at least one user message is required");
  }
  size_t first = 0;
  if (messages[0].role == ChatRole::kSystem) first = 1;
  if (first == messages.size()) {
    return absl::InvalidArgumentError(
        "messages: a system message must be followed by a user message");
  }
  for (size_t i = first; i < messages.size(); ++i) {
    // Turns alternate user, assistant, user, ... after the system message.
    const ChatRole want = (i - first) % 2 == 0 ? ChatRole::kUser : ChatRole::kAssistant;
    if (messages[i].role != want) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].role: expected ", ChatRoleName(want), ", got ",
                       ChatRoleName(messages[i].role),
                       " (an optional system message first, then user and assistant "
                       "alternating, ending with user)"));
    }
  }
  if (messages.back().role != ChatRole::kUser) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages[", messages.size() - 1,
                     "].role: the last message must be from the user"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TokenId>> RenderChat(const Tokenizer& tokenizer,
                                                absl::Span<const ChatMessage> messages) {
  OPENELM_RETURN_IF_ERROR(ValidateChat(messages));
  const std::vector<std::string> pieces = TextPieces(messages);
  std::vector<TokenId> ids = {tokenizer.bos_id()};
  for (size_t k = 0; k < pieces.size(); ++k) {
    OPENELM_ASSIGN_OR_RETURN(std::vector<TokenId> piece_ids,
                             tokenizer.Encode(pieces[k], /*add_bos=*/false));
    ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    // Every piece but the final assistant header closes its turn with EOS.
    if (k + 1 < pieces.size()) ids.push_back(tokenizer.eos_id());
  }
  return ids;
}

std::string RenderChatText(absl::Span<const ChatMessage> messages) {
  const std::vector<std::string> pieces = TextPieces(messages);
  std::string text;
  for (size_t k = 0; k < pieces.size(); ++k) {
    absl::StrAppend(&text, pieces[k], k + 1 < pieces.size() ? "</s>" : "");
  }
  return text;
}

}  // namespace openelm
