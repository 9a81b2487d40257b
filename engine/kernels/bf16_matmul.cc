#include "engine/kernels/bf16_matmul.h"

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/kernels/bf16.h"

namespace openelm {

int64_t PackedBf16Words(int64_t n, int64_t k, int32_t lanes) {
  const int64_t panel = 2 * int64_t{lanes};
  return (n + panel - 1) / panel * k * lanes;
}

void PackBf16Panels(const uint16_t* weight, int64_t n, int64_t k, int32_t lanes,
                    uint32_t* packed, int32_t num_threads) {
  const int64_t panel = 2 * int64_t{lanes};
  const int64_t panels = (n + panel - 1) / panel;
#pragma omp parallel for num_threads(num_threads) schedule(static)
  for (int64_t p = 0; p < panels; ++p) {
    uint32_t* out = packed + p * k * lanes;
    for (int32_t i = 0; i < lanes; ++i) {
      const int64_t lo_row = p * panel + i;
      const int64_t hi_row = lo_row + lanes;
      const uint16_t* lo = lo_row < n ? weight + lo_row * k : nullptr;
      const uint16_t* hi = hi_row < n ? weight + hi_row * k : nullptr;
      for (int64_t kk = 0; kk < k; ++kk) {
        const uint32_t l = lo != nullptr ? lo[kk] : 0u;
        const uint32_t h = hi != nullptr ? hi[kk] : 0u;
        out[kk * lanes + i] = l | (h << 16);
      }
    }
  }
}

void UnpackBf16Row(const uint32_t* packed, int64_t k, int32_t lanes, int64_t row,
                   float* out) {
  const int64_t panel = 2 * int64_t{lanes};
  const int64_t p = row / panel;
  const int32_t i = static_cast<int32_t>(row % panel);
  const int32_t lane = i % lanes;
  const int shift = i >= lanes ? 16 : 0;
  const uint32_t* base = packed + p * k * lanes + lane;
  for (int64_t kk = 0; kk < k; ++kk) {
    out[kk] = Bf16ToF32(static_cast<uint16_t>(base[kk * lanes] >> shift));
  }
}

void Bf16Matmul::FreeDeleter::operator()(uint32_t* p) const { std::free(p); }

Bf16Matmul::Bf16Matmul(const CpuKernels& kernels, int64_t n, int64_t k, int32_t max_m,
                       int32_t num_threads)
    : kernels_(kernels), n_(n), k_(k), max_m_(max_m), num_threads_(num_threads) {}

Bf16Matmul::~Bf16Matmul() = default;

absl::StatusOr<std::unique_ptr<Bf16Matmul>> Bf16Matmul::Create(const CpuKernels& kernels,
                                                               int64_t n, int64_t k,
                                                               int32_t max_m,
                                                               const uint16_t* weight,
                                                               int32_t num_threads) {
  if (n <= 0 || k <= 0 || max_m <= 0 || weight == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad bf16 matmul: n=", n, " k=", k, " max_m=", max_m));
  }
  std::unique_ptr<Bf16Matmul> mm(
      new Bf16Matmul(kernels, n, k, max_m, num_threads > 0 ? num_threads : 1));
  mm->words_ = PackedBf16Words(n, k, kernels.matmul_lanes);
  const int64_t bytes = (mm->words_ * 4 + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, static_cast<size_t>(bytes));
  if (p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes of packed bf16 weights"));
  }
  mm->packed_.reset(static_cast<uint32_t*>(p));
  PackBf16Panels(weight, n, k, kernels.matmul_lanes, mm->packed_.get(), mm->num_threads_);
  return mm;
}

absl::Status Bf16Matmul::SetMaxM(int32_t max_m) {
  OPENELM_RETURN_IF_ERROR(CheckMatmulMaxM(max_m));
  max_m_ = max_m;
  return absl::OkStatus();
}

absl::Status Bf16Matmul::Run(const float* src, int32_t m, float* dst) {
  if (m == 0) return absl::OkStatus();
  OPENELM_RETURN_IF_ERROR(CheckMatmulRows(m, max_m_));
  kernels_.bf16_matmul({.src = src,
                        .m = m,
                        .k = k_,
                        .n = n_,
                        .packed = packed_.get(),
                        .dst = dst,
                        .num_threads = num_threads_});
  ++num_runs_;
  return absl::OkStatus();
}

void Bf16Matmul::GatherRow(int64_t row, float* out) const {
  UnpackBf16Row(packed_.get(), k_, kernels_.matmul_lanes, row, out);
}

}  // namespace openelm
