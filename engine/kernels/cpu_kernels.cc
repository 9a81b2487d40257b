#include "engine/kernels/cpu_kernels.h"

#include <atomic>

namespace openelm {

namespace {

// Only takes the table's address and fields: nothing of its ISA runs here.
const CpuKernels& TableOf(KernelBuild build) {
  switch (build) {
    case KernelBuild::kPortable:
      return kernels_internal::PortableKernels();
    case KernelBuild::kAvx2:
      return kernels_internal::Avx2Kernels();
    case KernelBuild::kAvx2Vnni:
      return kernels_internal::Avx2VnniKernels();
    case KernelBuild::kAvx512:
      return kernels_internal::Avx512Kernels();
    case KernelBuild::kAvx512Vnni:
      return kernels_internal::Avx512VnniKernels();
  }
  return kernels_internal::PortableKernels();
}

bool AtLeast(CpuIsa isa) {
  return static_cast<int>(DetectedCpuIsa()) >= static_cast<int>(isa);
}

bool CpuCanRun(KernelBuild build) {
  const CpuFeatures& f = DetectedCpuFeatures();
  switch (build) {
    case KernelBuild::kPortable:
      return true;
    case KernelBuild::kAvx2:
      return AtLeast(CpuIsa::kAvx2);
    case KernelBuild::kAvx2Vnni:
      return AtLeast(CpuIsa::kAvx2) && f.avx_vnni;
    case KernelBuild::kAvx512:
      return AtLeast(CpuIsa::kAvx512);
    case KernelBuild::kAvx512Vnni:
      return AtLeast(CpuIsa::kAvx512) && f.avx512_vnni;
  }
  return false;
}

}  // namespace

const char* KernelBuildName(KernelBuild build) {
  switch (build) {
    case KernelBuild::kPortable:
      return "portable";
    case KernelBuild::kAvx2:
      return "avx2";
    case KernelBuild::kAvx2Vnni:
      return "avx2_vnni";
    case KernelBuild::kAvx512:
      return "avx512";
    case KernelBuild::kAvx512Vnni:
      return "avx512_vnni";
  }
  return "?";
}

const char* KernelBuildNeeds(KernelBuild build) {
  switch (build) {
    case KernelBuild::kPortable:
      return "x86-64";
    case KernelBuild::kAvx2:
      return "AVX2+FMA+F16C";
    case KernelBuild::kAvx2Vnni:
      return "AVX2+FMA+F16C+AVX-VNNI";
    case KernelBuild::kAvx512:
      return "AVX-512 F/BW/VL/DQ";
    case KernelBuild::kAvx512Vnni:
      return "AVX-512 F/BW/VL/DQ+AVX512_VNNI";
  }
  return "?";
}

const CpuKernels* KernelsForBuild(KernelBuild build) {
  return CpuCanRun(build) ? &TableOf(build) : nullptr;
}

KernelBuild KernelBuildFor(CpuIsa isa) {
  const bool own_level = isa == DetectedCpuIsa();
  switch (isa) {
    case CpuIsa::kPortable:
      return KernelBuild::kPortable;
    case CpuIsa::kAvx2:
      return own_level && CpuCanRun(KernelBuild::kAvx2Vnni) ? KernelBuild::kAvx2Vnni
                                                            : KernelBuild::kAvx2;
    case CpuIsa::kAvx512:
      return own_level && CpuCanRun(KernelBuild::kAvx512Vnni) ? KernelBuild::kAvx512Vnni
                                                              : KernelBuild::kAvx512;
    case CpuIsa::kAvx512Bf16:
    case CpuIsa::kAmx:
      return KernelBuild::kAvx512Vnni;
  }
  return KernelBuild::kPortable;
}

const CpuKernels* KernelsFor(CpuIsa isa) {
  if (!AtLeast(isa)) return nullptr;
  return &TableOf(KernelBuildFor(isa));
}

const char* Int8KernelName(CpuIsa isa) {
  return TableOf(KernelBuildFor(isa)).int8_kernel;
}

namespace {
std::atomic<const CpuKernels*> g_test_table{nullptr};
std::atomic<bool> g_active_fixed{false};
}  // namespace

const CpuKernels& ActiveKernels() {
  static const CpuKernels* active = [] {
    g_active_fixed.store(true);
    const CpuKernels* test_table = g_test_table.load();
    return test_table != nullptr ? test_table : KernelsFor(EffectiveCpuIsa());
  }();
  return *active;
}

bool kernels_internal::SetActiveKernelsForTest(const CpuKernels* table) {
  if (g_active_fixed.load()) return false;
  g_test_table.store(table);
  return true;
}

}  // namespace openelm
