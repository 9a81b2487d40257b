// The portable build of every own kernel (see cpu_kernels.h): plain C++,
// no ISA flags; the readable definition of each operation.
#include "engine/kernels/isa/int8_ops_portable.h"
#include "engine/kernels/isa/kernel_table.h"
#include "engine/kernels/isa/simd_portable.h"
#include "engine/kernels/paged_attention.h"

namespace openelm::kernels_internal {

const CpuKernels& PortableKernels() {
  // Attention: the scalar Ops in paged_attention.cc, for any head_dim.
  static const CpuKernels kernels = MakeCpuKernels<VecPortable, I8Portable>(
      CpuIsa::kPortable, &attention_internal::RunScalar, 1, "portable");
  return kernels;
}

}  // namespace openelm::kernels_internal
