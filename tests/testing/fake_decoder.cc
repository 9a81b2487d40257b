#include "tests/testing/fake_decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace openelm::testing {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr uint64_t kEmptyHash = 0x1234567ULL;
constexpr size_t kMaxViolations = 100;

}  // namespace

FakeDecoder::FakeDecoder(const FakeDecoderOptions& options) : options_(options) {
  info_.name = "fake";
  info_.size_name = "fake";
  info_.vocab_size = options.vocab_size;
  info_.max_context_length = options.max_context_length;
  info_.num_layers = 1;
  info_.weight_dtype = "f32";
  info_.kv_dtype = "f32";
  info_.kv_bytes_per_token = options.kv_bytes_per_token;
}

uint64_t FakeDecoder::Extend(uint64_t hash, TokenId token) const {
  return Mix(hash ^ (static_cast<uint64_t>(static_cast<uint32_t>(token)) << 17));
}

TokenId FakeDecoder::Favourite(uint64_t hash, int32_t length) const {
  const int64_t k = int64_t{length} - script_start_;
  if (k >= 0 && k < static_cast<int64_t>(script_.size())) return script_[k];
  if (options_.eos_period > 0 && (hash >> 40) % options_.eos_period == 0) {
    return kEosTokenId;
  }
  return static_cast<TokenId>(3 + hash % static_cast<uint64_t>(options_.vocab_size - 3));
}

void FakeDecoder::FillLogits(uint64_t hash, int32_t length, float* out) const {
  for (int32_t v = 0; v < options_.vocab_size; ++v) {
    out[v] = static_cast<float>(Mix(hash + v) >> 40) * 0x1.0p-24f;  // [0, 1)
  }
  out[Favourite(hash, length)] += 5.0f;
}

TokenId FakeDecoder::NextToken(absl::Span<const TokenId> prefix) const {
  uint64_t h = kEmptyHash;
  for (TokenId t : prefix) h = Extend(h, t);
  return Favourite(h, static_cast<int32_t>(prefix.size()));
}

void FakeDecoder::Logits(absl::Span<const TokenId> prefix, float* out) const {
  uint64_t h = kEmptyHash;
  for (TokenId t : prefix) h = Extend(h, t);
  FillLogits(h, static_cast<int32_t>(prefix.size()), out);
}

std::vector<TokenId> FakeDecoder::ReferenceGreedy(std::vector<TokenId> prompt,
                                                  int32_t max_tokens,
                                                  bool stop_at_eos) const {
  std::vector<TokenId> out;
  uint64_t h = kEmptyHash;
  for (TokenId t : prompt) h = Extend(h, t);
  while (static_cast<int32_t>(out.size()) < max_tokens) {
    const TokenId t = Favourite(h, static_cast<int32_t>(prompt.size() + out.size()));
    out.push_back(t);
    if (stop_at_eos && t == kEosTokenId) break;
    h = Extend(h, t);
  }
  return out;
}

int64_t FakeDecoder::KvBytesPerBlock(int32_t block_size_tokens) const {
  return options_.kv_bytes_per_token * block_size_tokens;
}

absl::Status FakeDecoder::Prepare(int32_t num_blocks, int32_t block_size_tokens,
                                  int32_t max_num_batched_tokens, int32_t max_num_seqs,
                                  int32_t max_logits_rows) {
  num_blocks_ = num_blocks;
  max_logits_rows_ = max_logits_rows;
  block_size_ = block_size_tokens;
  max_num_batched_tokens_ = max_num_batched_tokens;
  max_num_seqs_ = max_num_seqs;
  const size_t slots = static_cast<size_t>(num_blocks) * block_size_tokens;
  slot_token_.assign(slots, -1);
  slot_pos_.assign(slots, -1);
  block_writer_step_.assign(num_blocks, -1);
  block_writer_row_.assign(num_blocks, -1);
  logits_.clear();  // grown on demand: tests rarely need the worst case
  return absl::OkStatus();
}

void FakeDecoder::Violation(std::string message) {
  if (violations_.size() < kMaxViolations) violations_.push_back(std::move(message));
}

absl::StatusOr<LogitsView> FakeDecoder::Forward(const ForwardBatch& batch) {
  ++step_;
  auto& record = steps_.emplace_back();
  for (const BatchRow& row : batch.rows) {
    record.push_back(
        {row.request_id, row.start_position, row.num_tokens, row.num_blocks, row.logits});
  }
  if (!fail_next_.ok()) {
    absl::Status status = std::move(fail_next_);
    fail_next_ = absl::OkStatus();
    return status;
  }
  if (batch.num_tokens() > max_num_batched_tokens_) {
    Violation(absl::StrCat("step ", step_, " has ", batch.num_tokens(), " tokens"));
  }
  if (static_cast<int32_t>(batch.rows.size()) > max_num_seqs_) {
    Violation(absl::StrCat("step ", step_, " has ", batch.rows.size(), " rows"));
  }
  // Pass 1: write every row's K/V (as a real model does per layer).
  for (size_t r = 0; r < batch.rows.size(); ++r) {
    const BatchRow& row = batch.rows[r];
    const int64_t end = int64_t{row.start_position} + row.num_tokens;
    if (row.num_tokens <= 0 || end > int64_t{row.num_blocks} * block_size_) {
      Violation(absl::StrCat("request ", row.request_id, ": table of ", row.num_blocks,
                             " blocks does not cover ", end, " positions"));
      return absl::InternalError("bad block table");
    }
    for (int32_t j = 0; j < row.num_tokens; ++j) {
      const int32_t pos = row.start_position + j;
      const BlockId b = row.block_table[pos / block_size_];
      if (b < 0 || b >= num_blocks_) {
        Violation(absl::StrCat("request ", row.request_id, ": block id ", b));
        return absl::InternalError("bad block id");
      }
      if (block_writer_step_[b] == step_ &&
          block_writer_row_[b] != static_cast<int32_t>(r)) {
        Violation(absl::StrCat("block ", b, " written by two rows in step ", step_));
      }
      block_writer_step_[b] = step_;
      block_writer_row_[b] = static_cast<int32_t>(r);
      const size_t slot = static_cast<size_t>(b) * block_size_ + pos % block_size_;
      slot_token_[slot] = batch.tokens[row.token_offset + j];
      slot_pos_[slot] = pos;
    }
  }
  // Pass 2: read each row's whole prefix back from the cache.
  size_t needed_rows = 0;
  for (const BatchRow& row : batch.rows) needed_rows += row.num_logits_rows();
  if (needed_rows > static_cast<size_t>(max_logits_rows_)) {
    Violation(absl::StrCat("step ", step_, " asks for ", needed_rows,
                           " rows of logits; prepared for ", max_logits_rows_));
  }
  if (logits_.size() < needed_rows * options_.vocab_size) {
    logits_.resize(needed_rows * options_.vocab_size);
  }
  int32_t out_rows = 0;
  for (const BatchRow& row : batch.rows) {
    const int32_t end = row.start_position + row.num_tokens;
    uint64_t h = kEmptyHash;
    for (int32_t pos = 0; pos < end; ++pos) {
      const BlockId b = row.block_table[pos / block_size_];
      const size_t slot = static_cast<size_t>(b) * block_size_ + pos % block_size_;
      if (slot_pos_[slot] != pos) {
        Violation(absl::StrCat("request ", row.request_id, " reads position ", pos,
                               " from block ", b, " which holds position ",
                               slot_pos_[slot]));
      }
      h = Extend(h, slot_token_[slot]);
      const bool emit = row.logits == BatchRow::Logits::kAll
                            ? pos >= row.start_position
                            : (row.logits == BatchRow::Logits::kLast && pos == end - 1);
      if (emit) {
        FillLogits(h, pos + 1,
                   logits_.data() + static_cast<size_t>(out_rows) * options_.vocab_size);
        ++out_rows;
      }
    }
  }
  LogitsView view;
  view.data = logits_.data();
  view.num_rows = out_rows;
  view.vocab_size = options_.vocab_size;
  return view;
}

void FakeDecoder::CopyBlock(BlockId src, BlockId dst) {
  ++num_copies_;
  for (int32_t i = 0; i < block_size_; ++i) {
    slot_token_[static_cast<size_t>(dst) * block_size_ + i] =
        slot_token_[static_cast<size_t>(src) * block_size_ + i];
    slot_pos_[static_cast<size_t>(dst) * block_size_ + i] =
        slot_pos_[static_cast<size_t>(src) * block_size_ + i];
  }
}

}  // namespace openelm::testing
