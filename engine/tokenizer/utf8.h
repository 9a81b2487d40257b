#ifndef OPENELM_ENGINE_TOKENIZER_UTF8_H_
#define OPENELM_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

// Small UTF-8 helpers shared by the tokenizer and the incremental
// detokenizer. "Valid" follows RFC 3629 (no overlong forms, no surrogates,
// nothing above U+10FFFF), which is also the rule SentencePiece applies when
// it turns byte-fallback pieces back into text.
namespace openelm::utf8 {

// U+FFFD REPLACEMENT CHARACTER, encoded.
inline constexpr absl::string_view kReplacementCharacter = "\xEF\xBF\xBD";

// Length in bytes (1..4) of the valid character that starts `text`, or 0 when
// `text` is empty or does not start with a complete valid character.
size_t ValidCharLength(absl::string_view text);

// True when `text` is a proper prefix of some valid multi-byte character:
// a lead byte followed by fewer continuation bytes than it announces (so more
// bytes could still complete it). Overlong/out-of-range forms may also be
// reported as incomplete while they are too short to tell.
bool IsIncompletePrefix(absl::string_view text);

// True when all of `text` is valid UTF-8.
bool IsValid(absl::string_view text);

// `text` with every byte that does not begin a valid character replaced by
// U+FFFD (what JsonDump writes anyway; done early where text is compared or
// quoted).
std::string ReplaceInvalid(absl::string_view text);

// The longest prefix of `text` of at most `max_bytes` that does not end
// inside a multi-byte character (for quoting client strings in messages).
absl::string_view Prefix(absl::string_view text, size_t max_bytes);

}  // namespace openelm::utf8

#endif  // OPENELM_ENGINE_TOKENIZER_UTF8_H_
