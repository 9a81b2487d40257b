#ifndef OPENELM_TESTS_TESTING_FAKE_DECODER_H_
#define OPENELM_TESTS_TESTING_FAKE_DECODER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/model/decoder_model.h"

namespace openelm::testing {

struct FakeDecoderOptions {
  int32_t vocab_size = 128;
  int32_t max_context_length = 2048;
  // When > 0, roughly one prefix in `eos_period` has EOS as its most likely
  // next token; 0: EOS is never the favourite.
  int32_t eos_period = 0;
  int64_t kv_bytes_per_token = 64;
};

// A DecoderModel for tests without oneDNN. It keeps, per KV slot, the token
// and position written there, and computes each row's logits from what it
// READS back from the cache through the row's block table: the logits are a
// deterministic function of the whole prefix (a hash of every token), with a
// clear favourite (NextToken()). So a request's outputs equal
// ReferenceGreedy() only if every block it read held its own prefix; a
// prefix-cache, fork or copy-on-write bug shows up as different tokens and
// as a recorded violation (a slot holding another position, an unwritten
// slot, two rows writing one block in a step).
//
// Every step's rows are recorded for scheduling assertions.
//
// Thread-compatible: the engine thread calls it; tests read the records when
// the engine is idle or via their own synchronisation.
class FakeDecoder : public DecoderModel {
 public:
  explicit FakeDecoder(const FakeDecoderOptions& options = {});

  // The favourite next token after `prefix` (the greedy choice).
  TokenId NextToken(absl::Span<const TokenId> prefix) const;
  // Raw logits after `prefix` (vocab_size floats).
  void Logits(absl::Span<const TokenId> prefix, float* out) const;
  // Greedy continuation of `prompt` by up to `max_tokens` tokens, stopping
  // after EOS when `stop_at_eos` (EOS included).
  std::vector<TokenId> ReferenceGreedy(std::vector<TokenId> prompt, int32_t max_tokens,
                                       bool stop_at_eos) const;

  // DecoderModel.
  const ModelInfo& info() const override { return info_; }
  int64_t KvBytesPerBlock(int32_t block_size_tokens) const override;
  absl::Status Prepare(int32_t num_blocks, int32_t block_size_tokens,
                       int32_t max_num_batched_tokens, int32_t max_num_seqs,
                       int32_t max_logits_rows) override;
  absl::StatusOr<LogitsView> Forward(const ForwardBatch& batch) override;
  void CopyBlock(BlockId src, BlockId dst) override;

  // Scripted favourites: after a prefix of length L with
  // start <= L < start + tokens.size(), the favourite is tokens[L - start].
  void SetScript(int32_t start, std::vector<TokenId> tokens) {
    script_start_ = start;
    script_ = std::move(tokens);
  }

  // Test controls and records.
  void FailNextForward(absl::Status status) { fail_next_ = std::move(status); }
  struct RecordedRow {
    RequestId request_id = 0;
    int32_t start_position = 0;
    int32_t num_tokens = 0;
    int32_t num_blocks = 0;
    BatchRow::Logits logits = BatchRow::Logits::kLast;
  };
  const std::vector<std::vector<RecordedRow>>& steps() const { return steps_; }
  const std::vector<std::string>& violations() const { return violations_; }
  int64_t num_copies() const { return num_copies_; }
  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size_tokens() const { return block_size_; }
  int32_t max_num_batched_tokens() const { return max_num_batched_tokens_; }
  int32_t max_num_seqs() const { return max_num_seqs_; }
  int32_t max_logits_rows() const { return max_logits_rows_; }
  void ClearRecords() { steps_.clear(); }

 private:
  uint64_t Extend(uint64_t hash, TokenId token) const;
  TokenId Favourite(uint64_t hash, int32_t length) const;
  void FillLogits(uint64_t hash, int32_t length, float* out) const;
  void Violation(std::string message);

  ModelInfo info_;
  FakeDecoderOptions options_;
  int32_t num_blocks_ = 0;
  int32_t block_size_ = 0;
  int32_t max_num_batched_tokens_ = 0;
  int32_t max_num_seqs_ = 0;
  int32_t max_logits_rows_ = 0;
  std::vector<TokenId> slot_token_;  // [num_blocks * block_size]
  std::vector<int32_t> slot_pos_;    // -1: never written
  std::vector<int64_t> block_writer_step_;
  std::vector<int32_t> block_writer_row_;
  std::vector<float> logits_;
  std::vector<TokenId> prefix_;  // scratch
  int64_t step_ = 0;
  absl::Status fail_next_;
  std::vector<std::vector<RecordedRow>> steps_;
  std::vector<std::string> violations_;
  int64_t num_copies_ = 0;
  int32_t script_start_ = 0;
  std::vector<TokenId> script_;
};

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_TESTING_FAKE_DECODER_H_
