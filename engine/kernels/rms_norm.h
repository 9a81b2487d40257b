#ifndef OPENELM_ENGINE_KERNELS_RMS_NORM_H_
#define OPENELM_ENGINE_KERNELS_RMS_NORM_H_

#include <cstdint>

namespace openelm {

// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * weight, in fp32.
// x and out: [rows, dim] row-major (may alias). weight: [dim].
void RmsNorm(const float* x, const float* weight, int32_t rows, int32_t dim, float eps,
             float* out, int32_t num_threads);

// In place, per head: for each row r and head h, the head_dim values at
// x + r * row_stride + h * head_dim are normalised as above with the shared
// `weight` [head_dim]. OpenELM applies it to Q and K before RoPE.
void RmsNormHeads(float* x, int64_t row_stride, int32_t rows, int32_t num_heads,
                  int32_t head_dim, const float* weight, float eps, int32_t num_threads);

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_RMS_NORM_H_
