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

  // Cache blocking for large M: a pass keeps kRowsPerPass rows of A (80 KiB
  // at K = 1280) in L2 while it runs them against kBlocksPerPass weight
  // blocks (160 KiB), each block staying in L1 across the rows. Without it a
  // 512-row prefill streamed all of A (640 KiB, more than a Zen 3 core's L2)
  // from L3 once per weight block: 136-147 GOP/s against 183-242 at 64 rows.
  // For M <= kRowsPerPass the order is the plain one (one sequential stream
  // of blocks per thread).
  static constexpr int32_t kRowsPerPass = 64;
  static constexpr int64_t kBlocksPerPass = 32;

  static void Run(const Int8MatmulArgs& a) {
    if (a.m <= 0) return;
    // Scales and blocks cover n rounded up to whole blocks (zero padding).
    const int64_t groups = (a.n + kInt8BlockRows - 1) / kInt8BlockRows;
    // Each thread takes one contiguous range of blocks.
    const int64_t nt = a.num_threads < groups ? a.num_threads : groups;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t t = 0; t < nt; ++t) {
      const int64_t g_end = groups * (t + 1) / nt;
      for (int64_t g0 = groups * t / nt; g0 < g_end; g0 += kBlocksPerPass) {
        const int64_t g1 = g0 + kBlocksPerPass < g_end ? g0 + kBlocksPerPass : g_end;
        for (int32_t m0 = 0; m0 < a.m; m0 += kRowsPerPass) {
          const int32_t m1 = a.m - m0 > kRowsPerPass ? m0 + kRowsPerPass : a.m;
          for (int64_t g = g0; g < g1; ++g) RowsTimesBlock(a, g, m0, m1);
        }
      }
    }
  }

  // Rows [m0, m1) of A times weight block g, two rows per tile.
  static void RowsTimesBlock(const Int8MatmulArgs& a, int64_t g, int32_t m0, int32_t m1) {
    const int64_t n0 = g * kInt8BlockRows;
    const int ncols =
        static_cast<int>(a.n - n0 < kInt8BlockRows ? a.n - n0 : kInt8BlockRows);
    const int8_t* w = a.w_q + n0 * a.kp;  // blocks are contiguous: row n0's block
    for (int32_t m = m0; m < m1; m += 2) {
      const int8_t* aq = a.a_q + m * a.kp;
      float* c = a.dst + m * a.n + n0;
      if (m1 - m >= 2) {
        Tile<2, kInt8BlockRows>(aq, a.a_scale + m, a.kp, w, a.w_scale + n0, c, a.n,
                                ncols);
      } else {
        Tile<1, kInt8BlockRows>(aq, a.a_scale + m, a.kp, w, a.w_scale + n0, c, a.n,
                                ncols);
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
