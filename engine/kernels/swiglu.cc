#include "engine/kernels/swiglu.h"

#include "engine/kernels/fast_math.h"

namespace openelm {
namespace {

__attribute__((target_clones("avx512f", "default")))
void SwiGluRow(const float* gate, const float* up, int32_t n, float* out) {
  for (int32_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + FastExp(-g)) * up[i];
  }
}

__attribute__((target_clones("avx512f", "default")))
void AddChunk(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace

void SwiGlu(const float* in, int32_t rows, int32_t ffn_dim, float* out,
            int32_t num_threads) {
  const int64_t f = ffn_dim;
#pragma omp parallel for num_threads(num_threads) if (rows >= 4) schedule(static)
  for (int32_t r = 0; r < rows; ++r) {
    SwiGluRow(in + r * 2 * f, in + r * 2 * f + f, ffn_dim, out + r * f);
  }
}

void AddInPlace(const float* x, int64_t n, float* y, int32_t num_threads) {
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for num_threads(num_threads) if (chunks >= 4) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    const int64_t len = n - begin < kChunk ? n - begin : kChunk;
    AddChunk(x + begin, len, y + begin);
  }
}

}  // namespace openelm
