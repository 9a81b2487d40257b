#include "engine/kernels/rope.h"

#include <cmath>

#include "engine/base/check.h"
#include "engine/kernels/cpu_kernels.h"

namespace openelm {
RopeTable::RopeTable(int32_t head_dim, int32_t max_positions, float theta)
    : head_dim_(head_dim), max_positions_(max_positions) {
  const int32_t half = head_dim / 2;
  cos_.resize(static_cast<size_t>(max_positions) * half);
  sin_.resize(static_cast<size_t>(max_positions) * half);
  std::vector<float> inv_freq(half);
  for (int32_t j = 0; j < half; ++j) {
    // Same rounding as torch: fp32 exponent, fp32 power, fp32 reciprocal.
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(head_dim);
    inv_freq[j] = 1.0f / std::pow(theta, exponent);
  }
  for (int32_t p = 0; p < max_positions; ++p) {
    for (int32_t j = 0; j < half; ++j) {
      const float angle = static_cast<float>(p) * inv_freq[j];
      cos_[static_cast<size_t>(p) * half + j] =
          static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_[static_cast<size_t>(p) * half + j] =
          static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

void RopeTable::Apply(const int32_t* positions, int32_t rows, float* x,
                      int64_t row_stride, int32_t num_heads, int32_t num_threads) const {
  const int32_t half = head_dim_ / 2;
  const auto rotate = ActiveKernels().rope_rotate_head;
#pragma omp parallel for num_threads(num_threads) if (rows >= 16) schedule(static)
  for (int32_t r = 0; r < rows; ++r) {
    const int32_t pos = positions[r];
    OPENELM_DCHECK(pos >= 0 && pos < max_positions_) << "position " << pos;
    const float* c = cos(pos);
    const float* s = sin(pos);
    for (int32_t h = 0; h < num_heads; ++h) {
      rotate(x + r * row_stride + static_cast<int64_t>(h) * head_dim_, c, s, half);
    }
  }
}

}  // namespace openelm
