#ifndef OPENELM_ENGINE_KERNELS_MATMUL_H_
#define OPENELM_ENGINE_KERNELS_MATMUL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace openelm {

// dst[m, n] = src[m, k] * W^T for a fixed weight W[n, k] held in whatever
// layout the implementation packed it in. Three implementations:
//   PackedMatmul (onednn_matmul.h): oneDNN primitives per row bucket
//   (f32, bf16 or int8);
//   Bf16Matmul (bf16_matmul.h): own kernels, bf16 weights x fp32 inputs;
//   Int8Matmul (int8_matmul.h): own kernels, int8 weights x int8 rows.
// The execution plan (engine/model/execution_plan.h) picks one per model.
//
// Buffers passed to Run() must hold RowCapacity(m) rows (src readable, dst
// writable; rows past m are junk). Thread-compatible.
// The argument checks every Matmul shares: SetMaxM's bound and Run's rows.
inline absl::Status CheckMatmulMaxM(int32_t max_m) {
  if (max_m <= 0) return absl::InvalidArgumentError("matmul max_m must be positive");
  return absl::OkStatus();
}
inline absl::Status CheckMatmulRows(int32_t m, int32_t max_m) {
  if (m < 0 || m > max_m) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul rows ", m, " outside [0, ", max_m, "]"));
  }
  return absl::OkStatus();
}

class Matmul {
 public:
  virtual ~Matmul() = default;
  // Makes Run() accept up to max_m rows (setup time only; may create
  // primitives or size scratch buffers).
  virtual absl::Status SetMaxM(int32_t max_m) = 0;
  // m == 0 is a no-op; kInvalidArgument when m > max_m.
  virtual absl::Status Run(const float* src, int32_t m, float* dst) = 0;
  // Rows Run(m) may touch in src and dst.
  virtual int32_t RowCapacity(int32_t m) const = 0;
  virtual int64_t n() const = 0;
  virtual int64_t k() const = 0;
  virtual int64_t packed_weight_bytes() const = 0;
  virtual int64_t num_runs() const = 0;
  // Row `row` of W as f32 (what the packed copy holds: bf16-rounded,
  // dequantized int8), for the tied embedding's gather. Only where
  // GathersRows() (a PackedMatmul after PrepareRowGather(), the own kernels
  // always).
  virtual bool GathersRows() const = 0;
  virtual void GatherRow(int64_t row, float* out) const = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_MATMUL_H_
