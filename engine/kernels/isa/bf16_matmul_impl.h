#ifndef OPENELM_ENGINE_KERNELS_ISA_BF16_MATMUL_IMPL_H_
#define OPENELM_ENGINE_KERNELS_ISA_BF16_MATMUL_IMPL_H_

// dst[m, n] = src[m, k] * W^T with W held as bf16 in panels (bf16_matmul.h)
// and widened to fp32 in registers: one vector load gives 2 * kLanes weight
// columns (a shift and an AND), so a decode step streams exactly the bf16
// bytes. Written once over a vector type V; built per ISA by isa/kernels_*.cc.
//
// Blocking (per OpenMP thread, which owns a range of column panels):
//   for each group of NP panels (2 * kLanes columns each):
//     for each slice of kKc input features (the slice of B, kKc * NP * 2 *
//     kLanes bf16, stays in L1 while every row of A passes over it):
//       for each MR rows of A: an MR x NP tile of MR * NP * 2 accumulators.
// M = 1 uses NP = 4 (eight independent accumulator chains, four weight
// streams); up to 3 rows NP = 2; more rows MR = 6, NP = 1 (12 accumulators,
// the register file of AVX2).
//
// No std:: templates here (nor in the other isa/ headers): an out-of-line
// copy of one, built with this TU's -m flags, could be picked by the linker
// for the whole program and run on a CPU without those instructions.
#include <cstdint>

#include "engine/kernels/cpu_kernels.h"

namespace openelm::kernels_internal {

template <class V>
struct Bf16Gemm {
  static constexpr int L = V::kLanes;
  static constexpr int P = 2 * L;  // columns per panel
  static constexpr int64_t kKc = 256;
  using Reg = typename V::Reg;

  // Rows [0, MR) x the NP panels at `b`, over kc input features. a: row r at
  // a + r * lda; b: panel p at b + p * panel_stride, feature kk at + kk * L;
  // c: row r at c + r * ldc; `ncols` columns are valid (<= NP * P).
  template <int MR, int NP>
  static void Tile(const float* a, int64_t lda, const uint32_t* b, int64_t panel_stride,
                   int64_t kc, float* c, int64_t ldc, int32_t ncols, bool accumulate) {
    Reg acc[MR][NP][2];
    const bool full = ncols == NP * P;
    alignas(64) float edge[MR][NP * P];
    if (!full) {
      for (int r = 0; r < MR; ++r) {
        for (int j = 0; j < NP * P; ++j)
          edge[r][j] = accumulate && j < ncols ? c[r * ldc + j] : 0.0f;
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        if (!accumulate && full) {
          acc[r][p][0] = V::Zero();
          acc[r][p][1] = V::Zero();
        } else {
          const float* src = full ? c + r * ldc + p * P : &edge[r][p * P];
          acc[r][p][0] = V::Load(src);
          acc[r][p][1] = V::Load(src + L);
        }
      }
    }
    for (int64_t kk = 0; kk < kc; ++kk) {
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        const typename V::Raw raw = V::LoadRaw(b + p * panel_stride + kk * L);
        const Reg lo = V::RawLo(raw);
        const Reg hi = V::RawHi(raw);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const Reg av = V::Set1(a[r * lda + kk]);
          acc[r][p][0] = V::Fma(av, lo, acc[r][p][0]);
          acc[r][p][1] = V::Fma(av, hi, acc[r][p][1]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) {
        float* dst = full ? c + r * ldc + p * P : &edge[r][p * P];
        V::Store(dst, acc[r][p][0]);
        V::Store(dst + L, acc[r][p][1]);
      }
    }
    if (!full) {
      for (int r = 0; r < MR; ++r)
        __builtin_memcpy(c + r * ldc, edge[r], sizeof(float) * ncols);
    }
  }

  using TileFn = void (*)(const float*, int64_t, const uint32_t*, int64_t, int64_t,
                          float*, int64_t, int32_t, bool);

  // The tile for `mr` rows and `np` panels (the driver asks for np > 2 only
  // with one row, np = 2 with at most three).
  static TileFn Pick(int mr, int np) {
    switch (np) {
      case 4:
        return &Tile<1, 4>;
      case 3:
        return &Tile<1, 3>;  // only M = 1 asks for more than two panels
      case 2:
        switch (mr) {
          case 1:
            return &Tile<1, 2>;
          case 2:
            return &Tile<2, 2>;
          default:
            return &Tile<3, 2>;
        }
      default:
        switch (mr) {
          case 1:
            return &Tile<1, 1>;
          case 2:
            return &Tile<2, 1>;
          case 3:
            return &Tile<3, 1>;
          case 4:
            return &Tile<4, 1>;
          case 5:
            return &Tile<5, 1>;
          default:
            return &Tile<6, 1>;
        }
    }
  }

  static void Run(const Bf16MatmulArgs& a) {
    if (a.m <= 0) return;
    const int64_t panels = (a.n + P - 1) / P;
    const int np = a.m == 1 ? 4 : (a.m <= 3 ? 2 : 1);
    const int max_mr = 6 / np > 0 ? 6 / np : 1;
    const int64_t groups = (panels + np - 1) / np;
    const int64_t panel_stride = a.k * L;
#pragma omp parallel for num_threads(a.num_threads) \
    schedule(static) if (groups > 1 && a.num_threads > 1)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t p0 = g * np;
      const int gp = static_cast<int>(panels - p0 < np ? panels - p0 : np);
      const int64_t col0 = p0 * P;
      const int32_t ncols =
          static_cast<int32_t>(a.n - col0 < gp * P ? a.n - col0 : gp * P);
      const uint32_t* b = a.packed + p0 * panel_stride;
      for (int64_t k0 = 0; k0 < a.k; k0 += kKc) {
        const int64_t kc = a.k - k0 < kKc ? a.k - k0 : kKc;
        for (int32_t m0 = 0; m0 < a.m; m0 += max_mr) {
          const int mr = a.m - m0 < max_mr ? a.m - m0 : max_mr;
          Pick(mr, gp)(a.src + m0 * a.k + k0, a.k, b + k0 * L, panel_stride, kc,
                       a.dst + m0 * a.n + col0, a.n, ncols, k0 > 0);
        }
      }
    }
  }
};

}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_BF16_MATMUL_IMPL_H_
