#include "engine/kernels/cpu_kernels.h"

namespace openelm {

const CpuKernels* KernelsFor(CpuIsa isa) {
  if (static_cast<int>(isa) > static_cast<int>(DetectedCpuIsa())) return nullptr;
  switch (isa) {
    case CpuIsa::kPortable:
      return &kernels_internal::PortableKernels();
    case CpuIsa::kAvx2:
      return &kernels_internal::Avx2Kernels();
    case CpuIsa::kAvx512:
      return &kernels_internal::Avx512Kernels();
    case CpuIsa::kAvx512Bf16:
    case CpuIsa::kAmx:
      return &kernels_internal::Avx512VnniKernels();
  }
  return &kernels_internal::PortableKernels();
}

const CpuKernels& ActiveKernels() {
  static const CpuKernels* active = KernelsFor(EffectiveCpuIsa());
  return *active;
}

}  // namespace openelm
