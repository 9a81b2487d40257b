// The avx2 build of every own kernel (see cpu_kernels.h).
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/isa/attention_ops.h"
#include "engine/kernels/isa/bf16_matmul_impl.h"
#include "engine/kernels/isa/elementwise_impl.h"
#include "engine/kernels/isa/int8_ops_avx2.h"
#include "engine/kernels/isa/int8_matmul_impl.h"
#include "engine/kernels/isa/simd_avx2.h"
#include "engine/kernels/paged_attention_impl.h"

namespace openelm::kernels_internal {
namespace {

using V = VecAvx2;

void Attention(const attention_internal::KernelArgs& args) {
  using namespace attention_internal;  // NOLINT: RunKernel, RunScalar, RunAvx512
  RunKernel<VecAttentionOps<VecAvx2>>(args);
}

}  // namespace

const CpuKernels& Avx2Kernels() {
  static const CpuKernels kernels = {
      .isa = CpuIsa::kAvx2,
      .rms_norm_row = &RmsNormRow<V>,
      .rope_rotate_head = &RopeRotateHead<V>,
      .swiglu_row = &SwiGluRow<V>,
      .add = &AddRow<V>,
      .f32_to_bf16 = &F32ToBf16Row<V>,
      .bf16_to_f32 = &Bf16ToF32Row<V>,
      .paged_attention = &Attention,
      .attention_head_dim_multiple = 8,
      .bf16_matmul = &Bf16Gemm<V>::Run,
      .matmul_lanes = V::kLanes,
      .int8_matmul = &Int8Gemm<I8Avx2>::Run,
      .quantize_rows_s8 = &Int8Gemm<I8Avx2>::QuantizeRows,
  };
  return kernels;
}

}  // namespace openelm::kernels_internal
