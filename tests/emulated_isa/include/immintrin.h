#ifndef OPENELM_TESTS_EMULATED_ISA_INCLUDE_IMMINTRIN_H_
#define OPENELM_TESTS_EMULATED_ISA_INCLUDE_IMMINTRIN_H_

// Stands in for the compiler's <immintrin.h> in the emulated-ISA test build
// only (tests/emulated_isa/CMakeLists.txt puts this folder first on the
// include path of the kernel sources it recompiles). Every _mm*/_mm256*/
// _mm512* intrinsic and __m* type then comes from SIMDe (Debian's
// libsimde-dev), which implements them in plain C++ from Intel's
// definitions, so the AVX-VNNI, AVX-512 and AVX-512 VNNI kernel tables run,
// lane for lane, on a CPU without those instructions. Those sources are
// built with the baseline flags (SSE2), so SIMDe never includes the real
// header.
//
// Not a speed path and not used by any shipped binary.

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>

#include <cmath>
#include <cstdint>
#include <cstring>

// Names SIMDe 0.7.4 (Debian 12) does not alias to the Intel spelling.
typedef simde__mmask8 __mmask8;
typedef simde__mmask16 __mmask16;
typedef simde__mmask32 __mmask32;
typedef simde__mmask64 __mmask64;
#ifndef _MM_FROUND_NO_EXC
#define _MM_FROUND_NO_EXC SIMDE_MM_FROUND_NO_EXC
#endif

// SIMDe 0.7.4's roundscale macros use their imm8 argument unparenthesized
// (`imm8 >> 4`), so `_MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC` scaled by 2
// and floored to halves. Pass it in parentheses.
#undef _mm512_roundscale_ps
#define _mm512_roundscale_ps(a, imm8) simde_mm512_roundscale_ps(a, (imm8))

// Intrinsics that SIMDe 0.7.4 (Debian 12) lacks, written lane by lane from
// Intel's descriptions. A later SIMDe that has one defines its alias macro,
// and ours steps aside.
namespace openelm_emulated_isa {

// vpmovdw: each 32-bit lane truncated to its low 16 bits.
inline simde__m256i Mm512CvtEpi32Epi16(simde__m512i a) {
  int32_t in[16];
  int16_t out[16];
  simde_mm512_storeu_si512(in, a);
  for (int i = 0; i < 16; ++i)
    out[i] = static_cast<int16_t>(static_cast<uint32_t>(in[i]));
  return simde_mm256_loadu_si256(out);
}

// vpmovzxwd: sixteen 16-bit lanes zero-extended to 32 bits.
inline simde__m512i Mm512CvtEpu16Epi32(simde__m256i a) {
  uint16_t in[16];
  int32_t out[16];
  simde_mm256_storeu_si256(in, a);
  for (int i = 0; i < 16; ++i) out[i] = in[i];
  return simde_mm512_loadu_si512(out);
}

// vcvtps2dq: rounded in the current mode (nearest-even by default); NaN and
// out-of-range lanes give the "integer indefinite" 0x80000000.
inline simde__m512i Mm512CvtpsEpi32(simde__m512 a) {
  float in[16];
  int32_t out[16];
  simde_mm512_storeu_ps(in, a);
  for (int i = 0; i < 16; ++i) {
    const float r = std::nearbyint(in[i]);
    out[i] = (std::isnan(r) || r < -2147483648.0f || r >= 2147483648.0f)
                 ? INT32_MIN
                 : static_cast<int32_t>(r);
  }
  return simde_mm512_loadu_si512(out);
}

// Masked store: only the lanes whose mask bit is set are written.
inline void Mm512MaskStoreuPs(void* p, simde__mmask16 k, simde__m512 a) {
  float in[16];
  simde_mm512_storeu_ps(in, a);
  for (int i = 0; i < 16; ++i) {
    if ((k >> i) & 1) std::memcpy(static_cast<char*>(p) + 4 * i, &in[i], 4);
  }
}

// Zero-masked load: only the lanes whose mask bit is set are read (the
// hardware suppresses faults on the others, so the kernels may point past
// the end of an array there).
inline simde__m512 Mm512MaskzLoaduPs(simde__mmask16 k, const void* p) {
  float out[16];
  for (int i = 0; i < 16; ++i) {
    out[i] = 0.0f;
    if ((k >> i) & 1) std::memcpy(&out[i], static_cast<const char*>(p) + 4 * i, 4);
  }
  return simde_mm512_loadu_ps(out);
}

// The sum in the order GCC's _mm512_reduce_add_ps uses: 256-bit halves,
// then 128-bit halves, then lanes {0,2} and {1,3}, then the last pair.
inline float Mm512ReduceAddPs(simde__m512 a) {
  float v[16];
  simde_mm512_storeu_ps(v, a);
  float h8[8], h4[4];
  for (int i = 0; i < 8; ++i) h8[i] = v[i + 8] + v[i];
  for (int i = 0; i < 4; ++i) h4[i] = h8[i + 4] + h8[i];
  return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

// vshuff32x4: result lanes 0-1 are 128-bit lanes of a, lanes 2-3 of b,
// each picked by two bits of imm.
inline simde__m512 Mm512ShuffleF32x4(simde__m512 a, simde__m512 b, int imm) {
  float va[16], vb[16], out[16];
  simde_mm512_storeu_ps(va, a);
  simde_mm512_storeu_ps(vb, b);
  for (int lane = 0; lane < 4; ++lane) {
    const float* src = lane < 2 ? va : vb;
    const int pick = (imm >> (2 * lane)) & 3;
    for (int j = 0; j < 4; ++j) out[4 * lane + j] = src[4 * pick + j];
  }
  return simde_mm512_loadu_ps(out);
}

}  // namespace openelm_emulated_isa

// AVX-VNNI's vpdpbusd is the VEX encoding of AVX512_VNNI's: same operation.
#ifndef _mm256_dpbusd_avx_epi32
#define _mm256_dpbusd_avx_epi32(src, a, b) simde_mm256_dpbusd_epi32(src, a, b)
#endif
#ifndef _mm512_cvtepi32_epi16
#define _mm512_cvtepi32_epi16(a) ::openelm_emulated_isa::Mm512CvtEpi32Epi16(a)
#endif
#ifndef _mm512_cvtepu16_epi32
#define _mm512_cvtepu16_epi32(a) ::openelm_emulated_isa::Mm512CvtEpu16Epi32(a)
#endif
#ifndef _mm512_cvtps_epi32
#define _mm512_cvtps_epi32(a) ::openelm_emulated_isa::Mm512CvtpsEpi32(a)
#endif
#ifndef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps(p, k, a) ::openelm_emulated_isa::Mm512MaskStoreuPs(p, k, a)
#endif
#ifndef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps(k, p) ::openelm_emulated_isa::Mm512MaskzLoaduPs(k, p)
#endif
#ifndef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps(a) ::openelm_emulated_isa::Mm512ReduceAddPs(a)
#endif
#ifndef _mm512_shuffle_f32x4
#define _mm512_shuffle_f32x4(a, b, imm) \
  ::openelm_emulated_isa::Mm512ShuffleF32x4(a, b, imm)
#endif

#endif  // OPENELM_TESTS_EMULATED_ISA_INCLUDE_IMMINTRIN_H_
