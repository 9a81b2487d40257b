// The AVX2 build of every own kernel with the int8 dot product on AVX-VNNI
// (isa/int8_ops_vnni.h), compiled with -mavx2 -mfma -mf16c -mavxvnni.
// Used at the avx2 level on CPUs that have AVX-VNNI, unless a cap lowered
// the level (cpu_kernels.cc).
#include "engine/kernels/isa/attention_lanes.h"
#include "engine/kernels/isa/attention_ops.h"
#include "engine/kernels/isa/int8_ops_vnni.h"
#include "engine/kernels/isa/kernel_table.h"
#include "engine/kernels/isa/simd_avx2.h"
#include "engine/kernels/paged_attention_impl.h"

namespace openelm::kernels_internal {
namespace {

void Attention(const attention_internal::KernelArgs& args) {
  attention_internal::RunKernelLanes<VecAttentionOps<VecAvx2>, VecAvx2>(args);
}

}  // namespace

const CpuKernels& Avx2VnniKernels() {
  static const CpuKernels kernels = MakeCpuKernels<VecAvx2, I8AvxVnni>(
      CpuIsa::kAvx2, &Attention, VecAvx2::kLanes, "avx_vnni");
  return kernels;
}

}  // namespace openelm::kernels_internal
