// Built with -mavx512f -mavx512bw -mavx512vl -mfma; only called after
// PagedAttentionUsesAvx512() said the CPU supports it.
#include <immintrin.h>

#include "engine/kernels/isa/attention_lanes.h"
#include "engine/kernels/isa/simd_avx512.h"
#include "engine/kernels/paged_attention_impl.h"

namespace openelm::attention_internal {
namespace {

inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 Load16(const uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// Sums each of x[0..15] horizontally: result lane j = sum of x[j]'s lanes.
// A shuffle/add tree: 15 adds instead of 16 separate reductions.
inline __m512 HorizontalSums16(const __m512* x) {
  __m512 z[4];
  for (int g = 0; g < 4; ++g) {
    const __m512* v = x + 4 * g;
    // Within each 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] for (a, b).
    const __m512 y01 =
        _mm512_add_ps(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
    const __m512 y23 =
        _mm512_add_ps(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
    // Lane L now holds the lane-L sums of v[0..3].
    z[g] = _mm512_add_ps(_mm512_shuffle_ps(y01, y23, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(y01, y23, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // Add the four 128-bit lanes of each z[g] and put z[g]'s result in lane g.
  const __m512 u01 =
      _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(1, 0, 1, 0)),
                    _mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 u23 =
      _mm512_add_ps(_mm512_shuffle_f32x4(z[2], z[3], _MM_SHUFFLE(1, 0, 1, 0)),
                    _mm512_shuffle_f32x4(z[2], z[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(3, 1, 3, 1)));
}

// head_dim is a multiple of 16 (checked by the dispatcher).
struct Avx512Ops {
  template <typename T>
  static void Scores(const float* q, const T* keys, int32_t count, int32_t n,
                     float* out) {
    for (int32_t j0 = 0; j0 < count; j0 += 16) {
      const int32_t len = count - j0 < 16 ? count - j0 : 16;
      __m512 acc[16];
#pragma GCC unroll 16
      for (int j = 0; j < 16; ++j) acc[j] = _mm512_setzero_ps();
      const T* kb = keys + static_cast<int64_t>(j0) * n;
      if (len == 16) {
        for (int32_t d = 0; d < n; d += 16) {
          const __m512 qv = _mm512_loadu_ps(q + d);
#pragma GCC unroll 16
          for (int j = 0; j < 16; ++j) {
            acc[j] =
                _mm512_fmadd_ps(qv, Load16(kb + static_cast<int64_t>(j) * n + d), acc[j]);
          }
        }
      } else {
        for (int32_t d = 0; d < n; d += 16) {
          const __m512 qv = _mm512_loadu_ps(q + d);
          for (int j = 0; j < len; ++j) {
            acc[j] =
                _mm512_fmadd_ps(qv, Load16(kb + static_cast<int64_t>(j) * n + d), acc[j]);
          }
        }
      }
      _mm512_mask_storeu_ps(out + j0, static_cast<__mmask16>((1u << len) - 1),
                            HorizontalSums16(acc));
    }
  }
  // Keeps 64 accumulator floats in registers across all `count` values, so
  // there is no store-to-load chain through memory from one value to the next.
  template <typename T>
  static void AccumulateValues(float* acc, const float* p, const T* values, int32_t count,
                               int32_t n) {
    for (int32_t d = 0; d < n; d += 64) {
      const int32_t regs = n - d >= 64 ? 4 : (n - d) / 16;
      __m512 a0 = _mm512_loadu_ps(acc + d);
      __m512 a1 = regs > 1 ? _mm512_loadu_ps(acc + d + 16) : _mm512_setzero_ps();
      __m512 a2 = regs > 2 ? _mm512_loadu_ps(acc + d + 32) : _mm512_setzero_ps();
      __m512 a3 = regs > 3 ? _mm512_loadu_ps(acc + d + 48) : _mm512_setzero_ps();
      if (regs == 4) {
        for (int32_t j = 0; j < count; ++j) {
          const __m512 pv = _mm512_set1_ps(p[j]);
          const T* v = values + static_cast<int64_t>(j) * n + d;
          a0 = _mm512_fmadd_ps(pv, Load16(v), a0);
          a1 = _mm512_fmadd_ps(pv, Load16(v + 16), a1);
          a2 = _mm512_fmadd_ps(pv, Load16(v + 32), a2);
          a3 = _mm512_fmadd_ps(pv, Load16(v + 48), a3);
        }
      } else {
        for (int32_t j = 0; j < count; ++j) {
          const __m512 pv = _mm512_set1_ps(p[j]);
          const T* v = values + static_cast<int64_t>(j) * n + d;
          a0 = _mm512_fmadd_ps(pv, Load16(v), a0);
          if (regs > 1) a1 = _mm512_fmadd_ps(pv, Load16(v + 16), a1);
          if (regs > 2) a2 = _mm512_fmadd_ps(pv, Load16(v + 32), a2);
        }
      }
      _mm512_storeu_ps(acc + d, a0);
      if (regs > 1) _mm512_storeu_ps(acc + d + 16, a1);
      if (regs > 2) _mm512_storeu_ps(acc + d + 32, a2);
      if (regs > 3) _mm512_storeu_ps(acc + d + 48, a3);
    }
  }

  // exp(s - mx) on 16 lanes at a time: the FastExp polynomial in vector form.
  static float ExpAndSum(float* s, int32_t count, float mx) {
    __m512 total = _mm512_setzero_ps();
    const __m512 vmx = _mm512_set1_ps(mx);
    for (int32_t j = 0; j < count; j += 16) {
      const __mmask16 mask =
          static_cast<__mmask16>(count - j >= 16 ? 0xffffu : (1u << (count - j)) - 1);
      __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + j), vmx);
      x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
      x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
      const __m512 n = _mm512_roundscale_ps(
          _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
          _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
      r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
      __m512 p = _mm512_set1_ps(1.9875691500e-4f);
      p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
      p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
      p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
      p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
      p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
      p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
      const __m512i e = _mm512_slli_epi32(
          _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
      const __m512 y =
          _mm512_maskz_mov_ps(mask, _mm512_mul_ps(p, _mm512_castsi512_ps(e)));
      _mm512_mask_storeu_ps(s + j, mask, y);
      total = _mm512_add_ps(total, y);
    }
    return _mm512_reduce_add_ps(total);
  }
  static void Scale(float* acc, float c, int32_t n) {
    const __m512 cv = _mm512_set1_ps(c);
    for (int32_t d = 0; d < n; d += 16) {
      _mm512_storeu_ps(acc + d, _mm512_mul_ps(cv, _mm512_loadu_ps(acc + d)));
    }
  }
};

}  // namespace

void RunAvx512(const KernelArgs& args) {
  RunKernelLanes<Avx512Ops, kernels_internal::VecAvx512>(args);
}

}  // namespace openelm::attention_internal
