#include "engine/kernels/cpu_kernels.h"

#include <atomic>

namespace openelm {

namespace {

// One row per KernelBuild, in enum order. Only the table's address and
// fields are taken here: nothing of its ISA runs.
struct BuildInfo {
  const char* name;
  const char* needs;
  const CpuKernels& (*table)();
};
constexpr BuildInfo kBuilds[] = {
    {"portable", "x86-64", &kernels_internal::PortableKernels},
    {"avx2", "AVX2+FMA+F16C", &kernels_internal::Avx2Kernels},
    {"avx2_vnni", "AVX2+FMA+F16C+AVX-VNNI", &kernels_internal::Avx2VnniKernels},
    {"avx512", "AVX-512 F/BW/VL/DQ", &kernels_internal::Avx512Kernels},
    {"avx512_vnni", "AVX-512 F/BW/VL/DQ+AVX512_VNNI",
     &kernels_internal::Avx512VnniKernels},
};

const BuildInfo& Info(KernelBuild build) { return kBuilds[static_cast<int>(build)]; }
const CpuKernels& TableOf(KernelBuild build) { return Info(build).table(); }

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

const char* KernelBuildName(KernelBuild build) { return Info(build).name; }

const char* KernelBuildNeeds(KernelBuild build) { return Info(build).needs; }

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
