// The build of every own kernel for CPUs at the avx512_bf16 level and above
// (which all have AVX512_VNNI, see cpu_isa.h): the AVX-512 build's kernels,
// compiled with -mavx512vnni as well, and the int8 matmul's dot product on
// vpdpbusd (isa/int8_ops_vnni.h). Attention is the AVX-512 kernel.
#include "engine/kernels/isa/int8_ops_vnni.h"
#include "engine/kernels/isa/kernel_table.h"
#include "engine/kernels/isa/simd_avx512.h"
#include "engine/kernels/paged_attention.h"

namespace openelm::kernels_internal {

const CpuKernels& Avx512VnniKernels() {
  static const CpuKernels kernels = MakeCpuKernels<VecAvx512, I8Avx512Vnni>(
      CpuIsa::kAvx512Bf16, &attention_internal::RunAvx512, VecAvx512::kLanes,
      "avx512_vnni");
  return kernels;
}

}  // namespace openelm::kernels_internal
