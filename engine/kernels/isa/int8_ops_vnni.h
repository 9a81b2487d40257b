#ifndef OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_VNNI_H_
#define OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_VNNI_H_

// The int8 ops of isa/int8_ops_avx2.h with the dot product on AVX512_VNNI:
// vpdpbusd (256-bit, EVEX: needs -mavx512vnni -mavx512vl) multiplies
// unsigned by signed bytes and adds each group of four products straight
// into the 32-bit lane, so one instruction does what maddubs + madd + add
// do on AVX2. The operands are the same (|a| and w carrying a's sign), and
// the sums are exact without the 16-bit step, so the results are
// bit-identical to the AVX2 ops'. For TUs built with those flags
// (isa/kernels_avx512_vnni.cc).
#include <immintrin.h>

#include "engine/kernels/isa/int8_ops_avx2.h"

namespace openelm::kernels_internal {
namespace {

struct I8Avx512Vnni : I8Avx2 {
  static Reg Dot(Reg acc, Reg abs_a, Reg a, Reg w) {
    return _mm256_dpbusd_epi32(acc, abs_a, _mm256_sign_epi8(w, a));
  }
};

}  // namespace
}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_VNNI_H_
