// The AVX-512 build of every own kernel (see cpu_kernels.h), compiled with
// -mavx512f/bw/vl/dq. The int8 matmul uses the 256-bit AVX2 integer ops here
// too (every AVX-512 CPU has them); attention is the hand-tuned AVX-512
// kernel of paged_attention_avx512.cc.
#include "engine/kernels/isa/int8_ops_avx2.h"
#include "engine/kernels/isa/kernel_table.h"
#include "engine/kernels/isa/simd_avx512.h"
#include "engine/kernels/paged_attention.h"

namespace openelm::kernels_internal {

const CpuKernels& Avx512Kernels() {
  static const CpuKernels kernels = MakeCpuKernels<VecAvx512, I8Avx2>(
      CpuIsa::kAvx512, &attention_internal::RunAvx512, VecAvx512::kLanes, "avx512");
  return kernels;
}

}  // namespace openelm::kernels_internal
