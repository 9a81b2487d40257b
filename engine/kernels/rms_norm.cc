#include "engine/kernels/rms_norm.h"

#include "engine/kernels/cpu_kernels.h"

namespace openelm {

void RmsNorm(const float* x, const float* weight, int32_t rows, int32_t dim, float eps,
             float* out, int32_t num_threads) {
  const int64_t d = dim;
  const auto norm = ActiveKernels().rms_norm_row;
#pragma omp parallel for num_threads(num_threads) if (rows >= 8) schedule(static)
  for (int32_t r = 0; r < rows; ++r) {
    norm(x + r * d, weight, dim, eps, out + r * d);
  }
}

void RmsNormHeads(float* x, int64_t row_stride, int32_t rows, int32_t num_heads,
                  int32_t head_dim, const float* weight, float eps, int32_t num_threads) {
  const int32_t items = rows * num_heads;
  const auto norm = ActiveKernels().rms_norm_row;
#pragma omp parallel for num_threads(num_threads) if (items >= 64) schedule(static)
  for (int32_t i = 0; i < items; ++i) {
    float* v =
        x + (i / num_heads) * row_stride + static_cast<int64_t>(i % num_heads) * head_dim;
    norm(v, weight, head_dim, eps, v);
  }
}

}  // namespace openelm
