#ifndef OPENELM_ENGINE_KERNELS_SWIGLU_H_
#define OPENELM_ENGINE_KERNELS_SWIGLU_H_

#include <cstdint>

namespace openelm {

// out[r, i] = SiLU(gate) * up with gate = in[r, i] (the FIRST half of the row)
// and up = in[r, ffn_dim + i]. in: [rows, 2 * ffn_dim]; out: [rows, ffn_dim].
void SwiGlu(const float* in, int32_t rows, int32_t ffn_dim, float* out,
            int32_t num_threads);

// y[i] += x[i] for i < n.
void AddInPlace(const float* x, int64_t n, float* y, int32_t num_threads);

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_SWIGLU_H_
