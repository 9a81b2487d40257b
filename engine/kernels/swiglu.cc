#include "engine/kernels/swiglu.h"

#include "engine/kernels/cpu_kernels.h"

namespace openelm {

void SwiGlu(const float* in, int32_t rows, int32_t ffn_dim, float* out,
            int32_t num_threads) {
  const int64_t f = ffn_dim;
  const auto row = ActiveKernels().swiglu_row;
#pragma omp parallel for num_threads(num_threads) if (rows >= 4) schedule(static)
  for (int32_t r = 0; r < rows; ++r) {
    row(in + r * 2 * f, in + r * 2 * f + f, ffn_dim, out + r * f);
  }
}

void AddInPlace(const float* x, int64_t n, float* y, int32_t num_threads) {
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const auto add = ActiveKernels().add;
#pragma omp parallel for num_threads(num_threads) if (chunks >= 4) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    const int64_t len = n - begin < kChunk ? n - begin : kChunk;
    add(x + begin, len, y + begin);
  }
}

}  // namespace openelm
