#ifndef OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_AVX2_H_
#define OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_AVX2_H_

// int8 dot products and row quantization with 256-bit AVX2 integer ops, for
// TUs built with -mavx2 (isa/kernels_avx2.cc and, since every AVX-512 CPU
// has AVX2, isa/kernels_avx512.cc). Everything in an unnamed namespace.
#include <immintrin.h>

#include <cstdint>

namespace openelm::kernels_internal {
namespace {

struct I8Avx2 {
  static constexpr int kChunk = 32;  // int8 values per register
  using Reg = __m256i;

  static Reg Zero() { return _mm256_setzero_si256(); }
  static Reg Load(const int8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static Reg Abs(Reg a) { return _mm256_abs_epi8(a); }
  // acc (8 x s32) += the products a * w, four per lane. maddubs multiplies
  // unsigned by signed bytes, so |a| takes a's place and a's sign moves onto
  // w. Both are in [-127, 127], so a pair of products (<= 32258) never
  // saturates the 16-bit intermediate.
  static Reg Dot(Reg acc, Reg abs_a, Reg a, Reg w) {
    const __m256i p16 = _mm256_maddubs_epi16(abs_a, _mm256_sign_epi8(w, a));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
  }
  static int32_t Reduce(Reg v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
  }

  // Symmetric per-row quantization: q = round(x * 127 / max|x|) in
  // [-127, 127], *scale = max|x| / 127 (1 when the row is all zero); q is
  // padded with zeros from k to kp (a multiple of kChunk).
  static void QuantizeRow(const float* x, int64_t k, int64_t kp, int8_t* q,
                          float* scale) {
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    __m256 mx = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
      mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(x + i)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    for (; i < k; ++i) amax = x[i] > amax ? x[i] : (-x[i] > amax ? -x[i] : amax);
    *scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    i = 0;
    for (; i + 32 <= k; i += 32) {
      const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
      const __m256i b =
          _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv));
      const __m256i c =
          _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vinv));
      const __m256i d =
          _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vinv));
      // packs work per 128-bit half: the permute restores the element order.
      const __m256i ab = _mm256_packs_epi32(a, b);
      const __m256i cd = _mm256_packs_epi32(c, d);
      const __m256i abcd = _mm256_packs_epi16(ab, cd);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                          _mm256_permutevar8x32_epi32(abcd, order));
    }
    for (; i < k; ++i) q[i] = static_cast<int8_t>(__builtin_nearbyintf(x[i] * inv));
    for (; i < kp; ++i) q[i] = 0;
  }
};

}  // namespace
}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_AVX2_H_
