#ifndef OPENELM_ENGINE_KERNELS_ISA_INT8_MATMUL_IMPL_H_
#define OPENELM_ENGINE_KERNELS_ISA_INT8_MATMUL_IMPL_H_

// dst[m, n] = a_scale[m] * w_scale[n] * sum_k a_q[m, k] * w_q[n, k] with
// int8 rows of length kp (a multiple of kInt8Chunk, zero-padded) and int32
// accumulation, written once over int8 ops I (isa/int8_ops_*.h).
//
// Dot-product form over W in blocks of kInt8BlockRows output channels
// (cpu_kernels.h): one block is one contiguous run of memory with its rows
// interleaved chunk by chunk, and a thread's blocks follow each other, so each
// thread reads one sequential stream (prefetched kPrefetchBytes ahead). A
// tile is MR rows of A x one block over the whole of K: MR = 2 keeps 8
// accumulators, the A chunks and their absolute values in the 16 AVX2
// registers; M = 1 uses MR = 1 (two blocks per tile, two streams, measured
// 20-25 GB/s against 25-29 for one). Threads split the blocks. No std::
// templates (see bf16_matmul_impl.h).
#include <cstdint>

#include "engine/kernels/cpu_kernels.h"

namespace openelm::kernels_internal {

template <class I>
struct Int8Gemm {
  using Reg = typename I::Reg;
  static constexpr int64_t kPrefetchBytes = 1024;

  // w: the first of NR / kInt8BlockRows blocks; `ncols` <= NR outputs stored.
  template <int MR, int NR>
  static void Tile(const int8_t* a, const float* a_scale, int64_t kp, const int8_t* w,
                   const float* w_scale, float* c, int64_t ldc, int ncols) {
    constexpr int kB = static_cast<int>(kInt8BlockRows);
    Reg acc[MR][NR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[r][j] = I::Zero();
    }
    const int64_t block_bytes = kp * kB;
    for (int64_t kk = 0; kk < kp; kk += I::kChunk) {
      // One block is one sequential stream (and the next tile of this thread
      // continues it): fetch kPrefetchBytes ahead, past the block's end too.
      __builtin_prefetch(w + kk * kB + kPrefetchBytes);
      __builtin_prefetch(w + kk * kB + kPrefetchBytes + 64);
      Reg av[MR], aa[MR];
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        av[r] = I::Load(a + r * kp + kk);
        aa[r] = I::Abs(av[r]);
      }
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        const Reg wv =
            I::Load(w + (j / kB) * block_bytes + kk * kB + (j % kB) * I::kChunk);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) acc[r][j] = I::Dot(acc[r][j], aa[r], av[r], wv);
      }
    }
    for (int r = 0; r < MR; ++r) {
      for (int j = 0; j < ncols; ++j) {
        c[r * ldc + j] =
            static_cast<float>(I::Reduce(acc[r][j])) * a_scale[r] * w_scale[j];
      }
    }
  }

  static void Run(const Int8MatmulArgs& a) {
    if (a.m <= 0) return;
    // Scales and blocks cover n rounded up to whole blocks (zero padding).
    const int64_t nr_max = kInt8BlockRows;  // one block per tile
    const int64_t groups = (a.n + nr_max - 1) / nr_max;
#pragma omp parallel for num_threads(a.num_threads) \
    schedule(static) if (groups > 1 && a.num_threads > 1)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t n0 = g * nr_max;
      const int ncols = static_cast<int>(a.n - n0 < nr_max ? a.n - n0 : nr_max);
      const int8_t* w = a.w_q + n0 * a.kp;  // blocks are contiguous: row n0's block
      for (int32_t m0 = 0; m0 < a.m; m0 += 2) {
        const int8_t* aq = a.a_q + m0 * a.kp;
        float* c = a.dst + m0 * a.n + n0;
        if (a.m - m0 >= 2) {
          Tile<2, kInt8BlockRows>(aq, a.a_scale + m0, a.kp, w, a.w_scale + n0, c, a.n,
                                  ncols);
        } else {
          Tile<1, kInt8BlockRows>(aq, a.a_scale + m0, a.kp, w, a.w_scale + n0, c, a.n,
                                  ncols);
        }
      }
    }
  }

  static void QuantizeRows(const float* x, int32_t m, int64_t k, int64_t kp, int8_t* q,
                           float* scale) {
    for (int32_t r = 0; r < m; ++r)
      I::QuantizeRow(x + r * k, k, kp, q + r * kp, scale + r);
  }
};

}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_INT8_MATMUL_IMPL_H_
