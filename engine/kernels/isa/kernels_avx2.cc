// The AVX2 build of every own kernel (see cpu_kernels.h), compiled with
// -mavx2 -mfma -mf16c.
#include "engine/kernels/isa/attention_lanes.h"
#include "engine/kernels/isa/attention_ops.h"
#include "engine/kernels/isa/int8_ops_avx2.h"
#include "engine/kernels/isa/kernel_table.h"
#include "engine/kernels/isa/simd_avx2.h"
#include "engine/kernels/paged_attention_impl.h"

namespace openelm::kernels_internal {
namespace {

void Attention(const attention_internal::KernelArgs& args) {
  attention_internal::RunKernelLanes<VecAttentionOps<VecAvx2>, VecAvx2>(args);
}

}  // namespace

const CpuKernels& Avx2Kernels() {
  static const CpuKernels kernels =
      MakeCpuKernels<VecAvx2, I8Avx2>(CpuIsa::kAvx2, &Attention, VecAvx2::kLanes, "avx2");
  return kernels;
}

}  // namespace openelm::kernels_internal
