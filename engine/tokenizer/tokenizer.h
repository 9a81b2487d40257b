#ifndef OPENELM_ENGINE_TOKENIZER_TOKENIZER_H_
#define OPENELM_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/base/types.h"

namespace openelm {

// The Llama-2 SentencePiece tokenizer behind a project API. sentencepiece
// itself lives in a separate shared module loaded with dlmopen() into its own
// link-map namespace (Debian's libsentencepiece embeds a protobuf that clashes
// with the one gRPC uses); only plain data crosses that boundary.
//
// Thread-safe: all methods are const and may be called concurrently.
class Tokenizer {
 public:
  // Loads a SentencePiece model file. kNotFound / kInvalidArgument with the
  // path on failure; kFailedPrecondition when the bridge module is missing.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& model_path);
  virtual ~Tokenizer() = default;

  // Encodes UTF-8 text; prepends BOS (id 1) when add_bos. Invalid UTF-8 is
  // kInvalidArgument.
  virtual absl::StatusOr<std::vector<TokenId>> Encode(absl::string_view text,
                                                      bool add_bos) const = 0;
  // Decodes ids to text as SentencePiece does for a whole sequence (BOS/EOS
  // produce no text; the leading space of the first piece is dropped).
  virtual absl::StatusOr<std::string> Decode(absl::Span<const TokenId> ids) const = 0;
  // The piece string of one id ("▁Hello", "<0x0A>", "<s>").
  virtual std::string IdToPiece(TokenId id) const = 0;
  // Raw bytes a piece stands for when it follows other text: "▁" -> " ",
  // byte-fallback "<0xNN>" -> that byte, control tokens -> "". Used by the
  // incremental detokenizer.
  virtual const std::string& PieceBytes(TokenId id) const = 0;
  virtual bool IsControl(TokenId id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual TokenId bos_id() const = 0;
  virtual TokenId eos_id() const = 0;

  // The most input bytes one token can stand for, when that is provably
  // bounded: the model falls back to bytes (no <unk> swallowing a run of
  // unknown text) and its normalizer leaves text as it is (checked on a probe
  // at load). Text of n bytes then encodes to at least ceil(n / this) tokens,
  // which lets a caller reject a prompt that cannot fit without encoding it.
  // 0 when no such bound holds.
  virtual int32_t max_bytes_per_token() const = 0;
};

// The fewest tokens `num_bytes` of text can encode to (0 when the tokenizer
// gives no bound).
int64_t MinTokensForBytes(const Tokenizer& tokenizer, int64_t num_bytes);

}  // namespace openelm

#endif  // OPENELM_ENGINE_TOKENIZER_TOKENIZER_H_
