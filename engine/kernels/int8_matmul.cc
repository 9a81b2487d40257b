#include "engine/kernels/int8_matmul.h"

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"

namespace openelm {

void Int8ActivationScratch::Reserve(int32_t rows, int64_t kp) {
  if (int64_t{rows} * kp > q_size_) {
    q_size_ = int64_t{rows} * kp;
    q_ = std::make_unique<int8_t[]>(q_size_);
  }
  if (rows > scale_size_) {
    scale_size_ = rows;
    scales_ = std::make_unique<float[]>(scale_size_);
  }
}

namespace {

// Quantizes each row of weight [n, k] through the kernels' per-row quantizer
// (vectorized; the activations' rounding) into kp values (zero-padded past
// k) and hands it to place(j, row).
template <class Place>
void QuantizeWeightRows(const CpuKernels& kernels, const float* weight, int64_t n,
                        int64_t k, int64_t kp, float* scale, int32_t num_threads,
                        Place place) {
#pragma omp parallel num_threads(num_threads)
  {
    std::vector<int8_t> row(kp);
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      kernels.quantize_rows_s8(weight + j * k, 1, k, kp, row.data(), scale + j);
      place(j, row.data());
    }
  }
}

}  // namespace

void QuantizeWeightsPerChannel(const CpuKernels& kernels, const float* weight, int64_t n,
                               int64_t k, int64_t kp, int8_t* q, float* scale,
                               int32_t num_threads) {
  // Each row's chunks move to their places in the blocked layout.
  const int64_t chunks = kp / kInt8Chunk;
  QuantizeWeightRows(kernels, weight, n, k, kp, scale, num_threads,
                     [&](int64_t j, const int8_t* row) {
                       for (int64_t c = 0; c < chunks; ++c) {
                         std::memcpy(q + Int8WeightOffset(j, c * kInt8Chunk, kp),
                                     row + c * kInt8Chunk, kInt8Chunk);
                       }
                     });
}

void QuantizeWeightsPerChannelPlain(const CpuKernels& kernels, const float* weight,
                                    int64_t n, int64_t k, int8_t* q, float* scale,
                                    int32_t num_threads) {
  const int64_t kp = Int8PaddedK(k);
  QuantizeWeightRows(
      kernels, weight, n, k, kp, scale, num_threads,
      [&](int64_t j, const int8_t* row) { std::memcpy(q + j * k, row, k); });
}

absl::Status CheckInt8Quantizable(const float* weight, int64_t count,
                                  const std::string& name) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(weight[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor ", name.empty() ? "(unnamed)" : name,
                       " cannot be quantized to int8: element ", i, " is ", weight[i]));
    }
  }
  return absl::OkStatus();
}

Int8Matmul::Int8Matmul(const CpuKernels& kernels, int64_t n, int64_t k,
                       int32_t num_threads,
                       std::shared_ptr<Int8ActivationScratch> scratch)
    : kernels_(kernels),
      n_(n),
      k_(k),
      kp_(Int8PaddedK(k)),
      padded_n_((n + kInt8BlockRows - 1) / kInt8BlockRows * kInt8BlockRows),
      num_threads_(num_threads),
      scratch_(std::move(scratch)) {}

Int8Matmul::~Int8Matmul() = default;

absl::StatusOr<std::unique_ptr<Int8Matmul>> Int8Matmul::Create(
    const CpuKernels& kernels, int64_t n, int64_t k, int32_t max_m, const float* weight,
    std::shared_ptr<Int8ActivationScratch> scratch, int32_t num_threads,
    const std::string& name) {
  if (n <= 0 || k <= 0 || max_m <= 0 || weight == nullptr || scratch == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad int8 matmul: n=", n, " k=", k, " max_m=", max_m));
  }
  OPENELM_RETURN_IF_ERROR(CheckInt8Quantizable(weight, n * k, name));
  std::unique_ptr<Int8Matmul> mm(new Int8Matmul(
      kernels, n, k, num_threads > 0 ? num_threads : 1, std::move(scratch)));
  mm->q_ = std::make_unique<int8_t[]>(mm->padded_n_ * mm->kp_);  // zero-filled
  mm->scale_ = std::make_unique<float[]>(mm->padded_n_);         // zero-filled
  QuantizeWeightsPerChannel(kernels, weight, n, k, mm->kp_, mm->q_.get(),
                            mm->scale_.get(), mm->num_threads_);
  OPENELM_RETURN_IF_ERROR(mm->SetMaxM(max_m));
  return mm;
}

absl::Status Int8Matmul::SetMaxM(int32_t max_m) {
  OPENELM_RETURN_IF_ERROR(CheckMatmulMaxM(max_m));
  max_m_ = max_m;
  scratch_->Reserve(max_m, kp_);
  return absl::OkStatus();
}

absl::Status Int8Matmul::Run(const float* src, int32_t m, float* dst) {
  if (m == 0) return absl::OkStatus();
  OPENELM_RETURN_IF_ERROR(CheckMatmulRows(m, max_m_));
  kernels_.quantize_rows_s8(src, m, k_, kp_, scratch_->q(), scratch_->scales());
  kernels_.int8_matmul({.a_q = scratch_->q(),
                        .a_scale = scratch_->scales(),
                        .m = m,
                        .kp = kp_,
                        .w_q = q_.get(),
                        .w_scale = scale_.get(),
                        .n = n_,
                        .dst = dst,
                        .num_threads = num_threads_});
  ++num_runs_;
  return absl::OkStatus();
}

void Int8Matmul::GatherRow(int64_t row, float* out) const {
  const float s = scale_[row];
  for (int64_t c = 0; c < k_; ++c) out[c] = static_cast<float>(WeightAt(row, c)) * s;
}

}  // namespace openelm
