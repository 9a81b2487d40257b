#ifndef OPENELM_ENGINE_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
#define OPENELM_ENGINE_TOKENIZER_INCREMENTAL_DETOKENIZER_H_

#include <string>

#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/tokenizer/tokenizer.h"

namespace openelm {

// Turns generated ids into text deltas for streaming. Concatenating every
// Push() result and Flush() equals Tokenizer::Decode of all pushed ids with
// the prompt's context taken into account (`leading_text_exists`: the output
// continues a prompt, so a leading "▁" of the first generated piece is a real
// space). Never returns a partial UTF-8 sequence: bytes of an incomplete
// multi-byte character (byte-fallback tokens) are held until complete.
//
// Thread-compatible; one per output stream.
class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer* tokenizer, bool leading_text_exists);
  // Returns the new complete text (possibly empty).
  std::string Push(absl::Span<const TokenId> ids);
  // Returns held bytes at the end of the stream; incomplete UTF-8 sequences
  // become U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool at_start_;
  std::string pending_;  // bytes of an incomplete UTF-8 character
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_TOKENIZER_INCREMENTAL_DETOKENIZER_H_
