#include "engine/tokenizer/incremental_detokenizer.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"

namespace openelm {
namespace {

// The SentencePiece meta symbol for a space, U+2581 "▁".
constexpr absl::string_view kSpaceSymbol = "\xE2\x96\x81";

// True for byte-fallback pieces: the piece string is "<0xNN>" and it stands
// for exactly one byte. (SentencePiece piece strings are unique, so with
// byte fallback on no other piece can look like this.)
bool IsBytePiece(const Tokenizer& tokenizer, TokenId id, const std::string& bytes) {
  if (bytes.size() != 1) return false;
  const std::string piece = tokenizer.IdToPiece(id);
  return piece.size() == 6 && absl::StartsWith(piece, "<0x") && piece[5] == '>';
}

// Moves the decodable prefix of `pending` to `out`, mirroring how
// SentencePiece turns a run of byte pieces into text: each complete valid
// character is copied, and each byte that cannot start one becomes U+FFFD.
// Unless `flush_all`, a trailing incomplete character is kept in `pending` since
// later bytes may still complete it.
void DrainPending(bool flush_all, std::string& pending, std::string& out) {
  absl::string_view rest = pending;
  while (!rest.empty()) {
    const size_t length = utf8::ValidCharLength(rest);
    if (length > 0) {
      out.append(rest.data(), length);
      rest.remove_prefix(length);
    } else if (!flush_all && utf8::IsIncompletePrefix(rest)) {
      break;
    } else {
      out.append(utf8::kReplacementCharacter.data(), utf8::kReplacementCharacter.size());
      rest.remove_prefix(1);
    }
  }
  pending.erase(0, pending.size() - rest.size());
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer,
                                               bool leading_text_exists)
    : tokenizer_(tokenizer), at_start_(!leading_text_exists) {}

// Follows SentencePiece's whole-sequence Decode piece by piece:
//   * control pieces print nothing but end a run of byte pieces;
//   * byte pieces collect in `pending_` until they form whole characters;
//   * any other piece first ends the byte run, then prints its text with
//     "▁" as a space, except that the very first non-control piece of a
//     decode loses one leading "▁" (SentencePiece's dummy prefix). The
//     first non-control piece of any kind clears `at_start_`.
std::string IncrementalDetokenizer::Push(absl::Span<const TokenId> ids) {
  std::string out;
  const int32_t vocab_size = tokenizer_->vocab_size();
  for (const TokenId id : ids) {
    if (id < 0 || id >= vocab_size) continue;  // not a token: no text
    if (tokenizer_->IsControl(id)) {
      DrainPending(/*flush_all=*/true, pending_, out);
      continue;
    }
    const std::string& bytes = tokenizer_->PieceBytes(id);
    if (IsBytePiece(*tokenizer_, id, bytes)) {
      pending_.append(bytes);
      at_start_ = false;
      DrainPending(/*flush_all=*/false, pending_, out);
      continue;
    }
    DrainPending(/*flush_all=*/true, pending_, out);
    absl::string_view text = bytes;
    if (at_start_ && absl::StartsWith(text, " ") &&
        absl::StartsWith(tokenizer_->IdToPiece(id), kSpaceSymbol)) {
      text.remove_prefix(1);
    }
    at_start_ = false;
    out.append(text.data(), text.size());
  }
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  DrainPending(/*flush_all=*/true, pending_, out);
  return out;
}

}  // namespace openelm
