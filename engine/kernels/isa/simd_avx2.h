#ifndef OPENELM_ENGINE_KERNELS_ISA_SIMD_AVX2_H_
#define OPENELM_ENGINE_KERNELS_ISA_SIMD_AVX2_H_

// 8-lane fp32 vector for translation units built with -mavx2 -mfma -mf16c.
// Included by exactly one .cc (isa/kernels_avx2.cc); everything is in an
// unnamed namespace so no symbol is shared with other builds.
#include <immintrin.h>

#include <cstdint>

namespace openelm::kernels_internal {
namespace {

struct VecAvx2 {
  static constexpr int kLanes = 8;
  using Reg = __m256;
  using Raw = __m256i;

  static Reg Zero() { return _mm256_setzero_ps(); }
  static Reg Set1(float x) { return _mm256_set1_ps(x); }
  static Reg Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static Reg LoadBf16(const uint16_t* p) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  }
  static Reg Add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg Sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg Mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg Div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static Reg Max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg Min(Reg a, Reg b) { return _mm256_min_ps(a, b); }
  static Reg Fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }    // a * b + c
  static Reg Fnma(Reg a, Reg b, Reg c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a * b
  static Reg Floor(Reg a) { return _mm256_floor_ps(a); }
  // 2^n for integral n in [-127, 128] held as float.
  static Reg Pow2(Reg n) {
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_castsi256_ps(e);
  }
  static float ReduceAdd(Reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Lane j of the result = sum of the lanes of x[j], j < 8.
  static Reg HorizontalSums(const Reg* x) {
    const __m256 s01 = _mm256_hadd_ps(x[0], x[1]);
    const __m256 s23 = _mm256_hadd_ps(x[2], x[3]);
    const __m256 s45 = _mm256_hadd_ps(x[4], x[5]);
    const __m256 s67 = _mm256_hadd_ps(x[6], x[7]);
    const __m256 s0123 = _mm256_hadd_ps(s01, s23);  // per 128-bit half: x0 x1 x2 x3
    const __m256 s4567 = _mm256_hadd_ps(s45, s67);
    const __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20);
    const __m256 hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
    return _mm256_add_ps(lo, hi);
  }
  // Rounds 8 floats to bf16 (nearest even; NaN stays NaN) and stores them.
  static void StoreBf16(uint16_t* p, Reg v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb =
        _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    r = _mm256_srli_epi32(r, 16);
    const __m256i nan_bits =
        _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
    const __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    r = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(nan_bits), is_nan));
    // Pack the low 16 bits of the 8 lanes.
    const __m128i lo = _mm256_castsi256_si128(r);
    const __m128i hi = _mm256_extracti128_si256(r, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packus_epi32(lo, hi));
  }
  // Packed bf16 pairs (see bf16_matmul.h): lane i holds column i in its low
  // half and column kLanes + i in its high half.
  static Raw LoadRaw(const uint32_t* p) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
  }
  static Reg RawLo(Raw r) { return _mm256_castsi256_ps(_mm256_slli_epi32(r, 16)); }
  static Reg RawHi(Raw r) {
    return _mm256_castsi256_ps(
        _mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
};

}  // namespace
}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_SIMD_AVX2_H_
