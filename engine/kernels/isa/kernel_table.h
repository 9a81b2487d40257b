#ifndef OPENELM_ENGINE_KERNELS_ISA_KERNEL_TABLE_H_
#define OPENELM_ENGINE_KERNELS_ISA_KERNEL_TABLE_H_

// The CpuKernels table of one ISA build, filled from the shared templates:
// V is the build's fp32 vector type (simd_*.h), I its int8 ops
// (int8_ops_*.h); attention is passed in because the AVX-512 build keeps its
// own hand-tuned paged-attention Ops (paged_attention_avx512.cc). Included
// by isa/kernels_<isa>.cc only, after their vector headers. `int8_kernel`
// names the int8 matmul in the plan (cpu_kernels.h Int8KernelName).
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/isa/bf16_matmul_impl.h"
#include "engine/kernels/isa/elementwise_impl.h"
#include "engine/kernels/isa/int8_matmul_impl.h"

namespace openelm::kernels_internal {

template <class V, class I>
CpuKernels MakeCpuKernels(CpuIsa isa,
                          void (*attention)(const attention_internal::KernelArgs&),
                          int32_t attention_head_dim_multiple, const char* int8_kernel) {
  return CpuKernels{
      .isa = isa,
      .rms_norm_row = &RmsNormRow<V>,
      .rope_rotate_head = &RopeRotateHead<V>,
      .swiglu_row = &SwiGluRow<V>,
      .add = &AddRow<V>,
      .f32_to_bf16 = &F32ToBf16Row<V>,
      .bf16_to_f32 = &Bf16ToF32Row<V>,
      .paged_attention = attention,
      .attention_head_dim_multiple = attention_head_dim_multiple,
      .bf16_matmul = &Bf16Gemm<V>::Run,
      .matmul_lanes = V::kLanes,
      .int8_matmul = &Int8Gemm<I>::Run,
      .int8_kernel = int8_kernel,
      .quantize_rows_s8 = &Int8Gemm<I>::QuantizeRows,
  };
}

}  // namespace openelm::kernels_internal

#endif  // OPENELM_ENGINE_KERNELS_ISA_KERNEL_TABLE_H_
