#ifndef OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_VNNI_H_
#define OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_VNNI_H_

// The int8 ops of isa/int8_ops_avx2.h with the dot product on VNNI:
// vpdpbusd multiplies unsigned by signed bytes and adds each group of four
// products straight into the 32-bit lane, so one instruction does what
// maddubs + madd + add do on AVX2. The operands are the same (|a|, and w
// carrying a's sign), and the sums are exact without the 16-bit step, so the
// results are bit-identical to the AVX2 ops'. Two encodings of the same
// instruction, each used only by a TU built with its flags:
//   I8Avx512Vnni  EVEX, -mavx512vnni -mavx512vl (isa/kernels_avx512_vnni.cc)
//   I8AvxVnni     VEX (AVX-VNNI: CPUs without AVX-512 such as Alder Lake and
//                 Sierra Forest), -mavxvnni (isa/kernels_avx2_vnni.cc)
// A TU compiles the other struct's member but never emits it.
#include <immintrin.h>

#include "engine/kernels/isa/int8_ops_avx2.h"

namespace openelm::kernels_internal {
namespace {

struct I8Avx512Vnni : I8Avx2 {
  static Reg Dot(Reg acc, Reg abs_a, Reg a, Reg w) {
    return _mm256_dpbusd_epi32(acc, abs_a, _mm256_sign_epi8(w, a));
  }
};

struct I8AvxVnni : I8Avx2 {
  static Reg Dot(Reg acc, Reg abs_a, Reg a, Reg w) {
    return _mm256_dpbusd_avx_epi32(acc, abs_a, _mm256_sign_epi8(w, a));
  }
};

}  // namespace
}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_INT8_OPS_VNNI_H_
