#ifndef OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_PARITY_HARNESS_H_
#define OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_PARITY_HARNESS_H_

// Small helpers shared by the *_parity_test.cc files: running whole sequences
// through a DecoderModel with caller-managed block tables, and comparing
// logits. Header-only; test code only.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/base/status_macros.h"
#include "engine/base/types.h"
#include "engine/model/decoder_model.h"

namespace openelm::testing {

using LogitRows = std::vector<std::vector<float>>;

// Blocks needed for `num_positions` positions.
inline int32_t BlocksFor(int32_t num_positions, int32_t block_size_tokens) {
  return (num_positions + block_size_tokens - 1) / block_size_tokens;
}

// Copies the LogitsView rows [first, first + count) out of the model's buffer.
inline LogitRows CopyRows(const LogitsView& view, int32_t first, int32_t count) {
  LogitRows out;
  for (int32_t r = first; r < first + count; ++r) {
    out.emplace_back(view.row(r), view.row(r) + view.vocab_size);
  }
  return out;
}

// Runs `tokens` (a whole sequence from position 0) through `model` alone, in
// consecutive chunks of the given sizes (they must sum to tokens.size()),
// asking for every position's logits. `block_table` must cover all positions;
// each step passes only the blocks covering that step's positions.
inline absl::StatusOr<LogitRows> RunSequenceInChunks(
    DecoderModel& model, absl::Span<const TokenId> tokens,
    absl::Span<const int32_t> chunk_sizes, const std::vector<BlockId>& block_table,
    int32_t block_size_tokens) {
  LogitRows out;
  int32_t pos = 0;
  ForwardBatch batch;
  for (int32_t n : chunk_sizes) {
    batch.Clear();
    batch.tokens.assign(tokens.begin() + pos, tokens.begin() + pos + n);
    BatchRow row;
    row.request_id = 1;
    row.token_offset = 0;
    row.num_tokens = n;
    row.start_position = pos;
    row.block_table = block_table.data();
    row.num_blocks = BlocksFor(pos + n, block_size_tokens);
    row.logits = BatchRow::Logits::kAll;
    batch.rows.push_back(row);
    OPENELM_ASSIGN_OR_RETURN(LogitsView view, model.Forward(batch));
    if (view.num_rows != n) {
      return absl::InternalError(
          absl::StrCat("Forward returned ", view.num_rows, " rows, want ", n));
    }
    LogitRows rows = CopyRows(view, 0, n);
    for (auto& r : rows) out.push_back(std::move(r));
    pos += n;
  }
  if (pos != static_cast<int32_t>(tokens.size())) {
    return absl::InvalidArgumentError("chunk sizes do not cover the sequence");
  }
  return out;
}

// Chunk sizes of `chunk` tokens each (the last one shorter) covering n tokens.
inline std::vector<int32_t> EvenChunks(int32_t n, int32_t chunk) {
  std::vector<int32_t> sizes;
  for (int32_t done = 0; done < n; done += chunk)
    sizes.push_back(std::min(chunk, n - done));
  return sizes;
}

inline int32_t ArgMax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct Diff {
  double max_abs = 0.0;  // over every compared logit
  int32_t worst_row = 0;
  int32_t argmax_mismatches = 0;
  // Mismatches that are not near-ties: the other side's choice is more than
  // `tie_margin` below the best logit (in the `want` rows).
  int32_t hard_argmax_mismatches = 0;
};

// Compares `got` to `want` row by row (the same number of rows and columns).
inline Diff CompareLogits(const LogitRows& got, const LogitRows& want,
                          double tie_margin = 0.0) {
  Diff d;
  for (size_t r = 0; r < got.size() && r < want.size(); ++r) {
    for (size_t i = 0; i < got[r].size() && i < want[r].size(); ++i) {
      const double diff = std::abs(static_cast<double>(got[r][i]) - want[r][i]);
      if (!(diff <= d.max_abs)) {  // also catches NaN
        d.max_abs = std::isnan(diff) ? INFINITY : diff;
        d.worst_row = static_cast<int32_t>(r);
      }
    }
    const int32_t a = ArgMax(got[r]);
    const int32_t b = ArgMax(want[r]);
    if (a != b) {
      ++d.argmax_mismatches;
      if (want[r][b] - want[r][a] > tie_margin) ++d.hard_argmax_mismatches;
    }
  }
  return d;
}

// Prints one measured number so it shows in the test log (ctest -V) and the
// gtest XML report.
inline void ReportDiff(const std::string& what, const Diff& d) {
  std::cout << "[parity] " << what << ": max_abs_diff=" << d.max_abs << " (row "
            << d.worst_row << ") argmax_mismatches=" << d.argmax_mismatches << "\n";
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_PARITY_HARNESS_H_
