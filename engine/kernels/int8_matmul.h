#ifndef OPENELM_ENGINE_KERNELS_INT8_MATMUL_H_
#define OPENELM_ENGINE_KERNELS_INT8_MATMUL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/matmul.h"

namespace openelm {

// Quantized activations of one Run(), shared by every Int8Matmul of a model
// (one matmul runs at a time): int8 rows and their scales, sized at setup.
class Int8ActivationScratch {
 public:
  // Grows to hold `rows` rows of `kp` int8 values (setup time only).
  void Reserve(int32_t rows, int64_t kp);
  int8_t* q() { return q_.get(); }
  float* scales() { return scales_.get(); }

 private:
  std::unique_ptr<int8_t[]> q_;
  std::unique_ptr<float[]> scales_;
  int64_t q_size_ = 0;
  int32_t scale_size_ = 0;
};

// Symmetric per-output-channel int8 quantization of a weight W[n, k]:
// scale[j] = max_c |W[j, c]| / 127 (1 for an all-zero row), q[j, c] =
// round(W[j, c] / scale[j]) in [-127, 127], stored at Int8WeightOffset(j, c,
// kp) (cpu_kernels.h: blocks of 4 rows interleaved 32 bytes at a time, so a
// GEMV streams each block sequentially). `q` must be zero-filled; padding
// (c >= k, rows past n) stays zero. Uses `kernels`' row quantizer.
void QuantizeWeightsPerChannel(const CpuKernels& kernels, const float* weight, int64_t n,
                               int64_t k, int64_t kp, int8_t* q, float* scale,
                               int32_t num_threads);

// The same quantization into a plain row-major q[n, k] (oneDNN's int8
// matmul packs from it).
void QuantizeWeightsPerChannelPlain(const CpuKernels& kernels, const float* weight,
                                    int64_t n, int64_t k, int8_t* q, float* scale,
                                    int32_t num_threads);

// kInvalidArgument naming tensor `name` and the element when `weight` holds
// a value that has no int8 quantization (NaN or infinity).
absl::Status CheckInt8Quantizable(const float* weight, int64_t count,
                                  const std::string& name);

// Matmul with int8 weights (per output channel scales) and fp32 inputs that
// Run() quantizes per row (token) on the fly; int32 accumulation, scales
// applied in fp32. Memory holds the int8 weights and their scales only.
// Run() allocates nothing. Thread-compatible.
class Int8Matmul final : public Matmul {
 public:
  // `weight` is [n, k] row-major fp32. kInvalidArgument on bad sizes or a
  // non-finite weight (named by `name`).
  static absl::StatusOr<std::unique_ptr<Int8Matmul>> Create(
      const CpuKernels& kernels, int64_t n, int64_t k, int32_t max_m, const float* weight,
      std::shared_ptr<Int8ActivationScratch> scratch, int32_t num_threads,
      const std::string& name = "");
  ~Int8Matmul() override;

  absl::Status SetMaxM(int32_t max_m) override;
  absl::Status Run(const float* src, int32_t m, float* dst) override;
  int32_t RowCapacity(int32_t m) const override { return m; }
  int64_t n() const override { return n_; }
  int64_t k() const override { return k_; }
  int64_t packed_weight_bytes() const override { return padded_n_ * (kp_ + 4); }
  int64_t num_runs() const override { return num_runs_; }

  // Row `row` of W dequantized (q * scale): the embedding gather of a tied
  // LM head.
  bool GathersRows() const override { return true; }
  void GatherRow(int64_t row, float* out) const override;
  int8_t WeightAt(int64_t row, int64_t c) const {
    return q_[Int8WeightOffset(row, c, kp_)];
  }
  const float* scales() const { return scale_.get(); }
  int64_t padded_k() const { return kp_; }

 private:
  Int8Matmul(const CpuKernels& kernels, int64_t n, int64_t k, int32_t num_threads,
             std::shared_ptr<Int8ActivationScratch> scratch);
  const CpuKernels& kernels_;
  const int64_t n_, k_, kp_;
  const int64_t padded_n_;  // n rounded up to whole kInt8BlockRows blocks
  int32_t max_m_ = 0;
  const int32_t num_threads_;
  std::shared_ptr<Int8ActivationScratch> scratch_;
  std::unique_ptr<int8_t[]> q_;
  std::unique_ptr<float[]> scale_;
  int64_t num_runs_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_INT8_MATMUL_H_
