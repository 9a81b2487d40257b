#ifndef OPENELM_ENGINE_KERNELS_ISA_SIMD_AVX512_H_
#define OPENELM_ENGINE_KERNELS_ISA_SIMD_AVX512_H_

// 16-lane fp32 vector for translation units built with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma. Included by the .cc
// files built so (isa/kernels_avx512*.cc, paged_attention_avx512.cc); see
// simd_avx2.h for the contract.
#include <immintrin.h>

#include <cstdint>

namespace openelm::kernels_internal {
namespace {

struct VecAvx512 {
  static constexpr int kLanes = 16;
  using Reg = __m512;
  using Raw = __m512i;

  static Reg Zero() { return _mm512_setzero_ps(); }
  static Reg Set1(float x) { return _mm512_set1_ps(x); }
  static Reg Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static Reg LoadBf16(const uint16_t* p) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
  }
  static Reg Add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg Sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg Mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg Div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  static Reg Max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg Min(Reg a, Reg b) { return _mm512_min_ps(a, b); }
  static Reg Fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg Fnma(Reg a, Reg b, Reg c) { return _mm512_fnmadd_ps(a, b, c); }
  static Reg Floor(Reg a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  }
  static Reg Pow2(Reg n) {
    const __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_castsi512_ps(e);
  }
  static float ReduceAdd(Reg v) { return _mm512_reduce_add_ps(v); }
  static void StoreBf16(uint16_t* p, Reg v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb =
        _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __m512i nan_bits =
        _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    const __mmask16 is_nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, is_nan, nan_bits);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
  }
  static Raw LoadRaw(const uint32_t* p) { return _mm512_load_si512(p); }
  static Reg RawLo(Raw r) { return _mm512_castsi512_ps(_mm512_slli_epi32(r, 16)); }
  static Reg RawHi(Raw r) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
};

}  // namespace
}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_SIMD_AVX512_H_
