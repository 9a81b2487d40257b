#ifndef OPENELM_ENGINE_MODEL_DECODER_MODEL_H_
#define OPENELM_ENGINE_MODEL_DECODER_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/types.h"

namespace openelm {

// One sequence's part of a step: `num_tokens` new tokens at positions
// start_position .. start_position + num_tokens - 1 (a prefill chunk of any
// length, or one decode token). Its K/V are written into the blocks of
// `block_table` (block b holds positions [b*block_size, (b+1)*block_size)),
// which must already cover start_position + num_tokens positions. Positions
// below start_position are read from the cache (the cached prefix).
struct BatchRow {
  RequestId request_id = 0;
  int32_t token_offset = 0;  // index of the first token in ForwardBatch::tokens
  int32_t num_tokens = 0;
  int32_t start_position = 0;  // = tokens already in the cache for this sequence
  const BlockId* block_table = nullptr;  // not owned; valid for the step
  int32_t num_blocks = 0;
  // Logits wanted: kNone (a non-final prefill chunk with no prompt logprobs),
  // kLast (the last token only) or kAll (every token of the row).
  enum class Logits : uint8_t { kNone, kLast, kAll };
  Logits logits = Logits::kLast;
  // Rows of logits a row of `tokens` tokens asks for.
  static int32_t NumLogitsRows(Logits logits, int32_t tokens) {
    return logits == Logits::kAll ? tokens : logits == Logits::kLast ? 1 : 0;
  }
  int32_t num_logits_rows() const { return NumLogitsRows(logits, num_tokens); }
};

// What one step runs. Plain data; the scheduler reuses the vectors between
// steps (clear() keeps capacity) so building a batch allocates nothing.
struct ForwardBatch {
  std::vector<TokenId> tokens;  // all rows' new tokens, concatenated
  std::vector<BatchRow> rows;
  void Clear() {
    tokens.clear();
    rows.clear();
  }
  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
};

// Logits of a step, owned by the model and valid until the next Forward().
// Rows in batch order: for each BatchRow, 0 (kNone), 1 (kLast) or num_tokens
// (kAll) rows of `vocab_size` floats.
struct LogitsView {
  const float* data = nullptr;
  int32_t num_rows = 0;
  int32_t vocab_size = 0;
  const float* row(int32_t i) const {
    return data + static_cast<int64_t>(i) * vocab_size;
  }
};

// Static facts about the loaded model, for model info and admission.
struct ModelInfo {
  std::string name;       // e.g. "OpenELM-270M" or the directory name
  std::string size_name;  // "270M", "tiny", ...
  int32_t vocab_size = 0;
  int32_t max_context_length = 0;
  int32_t num_layers = 0;
  int64_t num_parameters = 0;
  std::string weight_dtype;      // "bf16" | "f32" | "int8"
  std::string kv_dtype;          // "bf16" | "f32"
  std::string activation_dtype;  // matmul input precision: "bf16" | "f32"
  std::string cpu_isa;           // ISA level the kernels run at (cpu_isa.h), e.g. "avx2"
  std::string plan;              // ExecutionPlan::Describe() and the attention kernel
  int64_t kv_bytes_per_token = 0;
  int64_t weight_bytes = 0;
  TokenId bos_token_id = kBosTokenId;
  TokenId eos_token_id = kEosTokenId;
};

// A decoder that runs one step over a ragged batch against its own paged KV
// storage. Implementations: OpenElmModel (oneDNN) and, in tests, FakeDecoder.
//
// Thread-compatible: only the engine thread calls it (oneDNN's OpenMP team
// must be entered from one thread).
class DecoderModel {
 public:
  virtual ~DecoderModel() = default;

  virtual const ModelInfo& info() const = 0;

  // KV storage bytes one block of `block_size_tokens` needs.
  virtual int64_t KvBytesPerBlock(int32_t block_size_tokens) const = 0;

  // Allocates the KV storage (called once, before the first Forward) and the
  // workspace for batches of up to `max_num_batched_tokens` tokens,
  // `max_num_seqs` rows and `max_logits_rows` rows of logits (1 per kLast
  // row, num_tokens per kAll row; 1 <= max_logits_rows <=
  // max_num_batched_tokens). kInvalidArgument for sizes out of range,
  // kResourceExhausted if memory cannot be had.
  virtual absl::Status Prepare(int32_t num_blocks, int32_t block_size_tokens,
                               int32_t max_num_batched_tokens, int32_t max_num_seqs,
                               int32_t max_logits_rows) = 0;

  // Runs one step. The batch must respect the limits given to Prepare().
  // Allocates nothing and creates no primitives. kInternal on kernel failure.
  virtual absl::StatusOr<LogitsView> Forward(const ForwardBatch& batch) = 0;

  // Copies block `src`'s K/V (all layers) into block `dst` (copy-on-write for
  // n > 1 completions sharing a partial last block).
  virtual void CopyBlock(BlockId src, BlockId dst) = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_DECODER_MODEL_H_
