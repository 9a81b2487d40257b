#ifndef OPENELM_ENGINE_KERNELS_BF16_MATMUL_H_
#define OPENELM_ENGINE_KERNELS_BF16_MATMUL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/matmul.h"

namespace openelm {

// Packed layout of a bf16 weight W[n, k] for vectors of `lanes` fp32:
// columns (output features) are grouped in panels of 2 * lanes; panel p holds,
// for each input feature kk, `lanes` 32-bit words, word i =
//   bf16(W[p * 2 * lanes + i, kk]) | bf16(W[p * 2 * lanes + lanes + i, kk]) << 16
// (zero past n). So one vector load yields two registers of weights after a
// shift (low halves) and a mask (high halves), with no shuffles.
int64_t PackedBf16Words(int64_t n, int64_t k, int32_t lanes);
void PackBf16Panels(const uint16_t* weight, int64_t n, int64_t k, int32_t lanes,
                    uint32_t* packed, int32_t num_threads);
// Row `row` of W (k values) read back from the packed layout, widened to fp32.
void UnpackBf16Row(const uint32_t* packed, int64_t k, int32_t lanes, int64_t row,
                   float* out);

// Matmul with bf16 weights and fp32 inputs on our own kernels (the table's
// bf16_matmul): weights stay bf16 in memory and are widened in registers;
// accumulation is fp32. Used where oneDNN 2.6 has no bf16 x f32 matmul (every
// CPU) or no bf16 at all (below AVX-512). Run() allocates nothing.
class Bf16Matmul final : public Matmul {
 public:
  // `weight` is [n, k] row-major bf16 bit patterns, packed for `kernels`.
  static absl::StatusOr<std::unique_ptr<Bf16Matmul>> Create(const CpuKernels& kernels,
                                                            int64_t n, int64_t k,
                                                            int32_t max_m,
                                                            const uint16_t* weight,
                                                            int32_t num_threads);
  ~Bf16Matmul() override;

  absl::Status SetMaxM(int32_t max_m) override;
  absl::Status Run(const float* src, int32_t m, float* dst) override;
  int32_t RowCapacity(int32_t m) const override { return m; }
  int64_t n() const override { return n_; }
  int64_t k() const override { return k_; }
  int64_t packed_weight_bytes() const override { return words_ * 4; }
  int64_t num_runs() const override { return num_runs_; }

  // Row `row` of W as fp32 (the embedding gather of a tied LM head).
  bool GathersRows() const override { return true; }
  void GatherRow(int64_t row, float* out) const override;

 private:
  Bf16Matmul(const CpuKernels& kernels, int64_t n, int64_t k, int32_t max_m,
             int32_t num_threads);
  struct FreeDeleter {
    void operator()(uint32_t* p) const;
  };
  const CpuKernels& kernels_;
  const int64_t n_, k_;
  int32_t max_m_;
  const int32_t num_threads_;
  int64_t words_ = 0;
  std::unique_ptr<uint32_t, FreeDeleter> packed_;
  int64_t num_runs_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_BF16_MATMUL_H_
