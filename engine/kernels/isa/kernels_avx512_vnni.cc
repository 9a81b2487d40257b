// The build of every own kernel for AVX-512 CPUs with AVX512_VNNI: the
// avx512_bf16 and amx levels (which all have it, see cpu_isa.h) and the
// avx512 level on CPUs that have it (Cascade Lake, Ice Lake), unless a cap
// lowered the level (cpu_kernels.cc). The AVX-512 build's kernels, compiled
// with -mavx512vnni as well, and the int8 matmul's dot product on vpdpbusd
// (isa/int8_ops_vnni.h). Attention is the AVX-512 kernel. Its `isa` is
// kAvx512: nothing here needs more than AVX-512 and VNNI.
#include "engine/kernels/isa/int8_ops_vnni.h"
#include "engine/kernels/isa/kernel_table.h"
#include "engine/kernels/isa/simd_avx512.h"
#include "engine/kernels/paged_attention.h"

namespace openelm::kernels_internal {

const CpuKernels& Avx512VnniKernels() {
  static const CpuKernels kernels = MakeCpuKernels<VecAvx512, I8Avx512Vnni>(
      CpuIsa::kAvx512, &attention_internal::RunAvx512, VecAvx512::kLanes, "avx512_vnni");
  return kernels;
}

}  // namespace openelm::kernels_internal
