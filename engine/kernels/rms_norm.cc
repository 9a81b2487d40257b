#include "engine/kernels/rms_norm.h"

#include <cmath>

namespace openelm {
namespace {

__attribute__((target_clones("avx512f", "default")))
void NormalizeVector(const float* x, const float* w, int32_t n, float eps,
                     float* out) {
  float sum = 0.0f;
  for (int32_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (int32_t i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

}  // namespace

void RmsNorm(const float* x, const float* weight, int32_t rows, int32_t dim,
             float eps, float* out, int32_t num_threads) {
  const int64_t d = dim;
#pragma omp parallel for num_threads(num_threads) if (rows >= 8) schedule(static)
  for (int32_t r = 0; r < rows; ++r) {
    NormalizeVector(x + r * d, weight, dim, eps, out + r * d);
  }
}

void RmsNormHeads(float* x, int64_t row_stride, int32_t rows, int32_t num_heads,
                  int32_t head_dim, const float* weight, float eps,
                  int32_t num_threads) {
  const int32_t items = rows * num_heads;
#pragma omp parallel for num_threads(num_threads) if (items >= 64) schedule(static)
  for (int32_t i = 0; i < items; ++i) {
    float* v = x + (i / num_heads) * row_stride +
               static_cast<int64_t>(i % num_heads) * head_dim;
    NormalizeVector(v, weight, head_dim, eps, v);
  }
}

}  // namespace openelm
