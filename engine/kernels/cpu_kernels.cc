#include "engine/kernels/cpu_kernels.h"

namespace openelm {

namespace {

// Only takes the table's address and fields: nothing of its ISA runs here.
const CpuKernels& TableFor(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kPortable:
      return kernels_internal::PortableKernels();
    case CpuIsa::kAvx2:
      return kernels_internal::Avx2Kernels();
    case CpuIsa::kAvx512:
      return kernels_internal::Avx512Kernels();
    case CpuIsa::kAvx512Bf16:
    case CpuIsa::kAmx:
      return kernels_internal::Avx512VnniKernels();
  }
  return kernels_internal::PortableKernels();
}

}  // namespace

const CpuKernels* KernelsFor(CpuIsa isa) {
  if (static_cast<int>(isa) > static_cast<int>(DetectedCpuIsa())) return nullptr;
  return &TableFor(isa);
}

const char* Int8KernelName(CpuIsa isa) { return TableFor(isa).int8_kernel; }

const CpuKernels& ActiveKernels() {
  static const CpuKernels* active = KernelsFor(EffectiveCpuIsa());
  return *active;
}

}  // namespace openelm
