#ifndef OPENELM_TESTS_TESTING_ISA_LEVELS_H_
#define OPENELM_TESTS_TESTING_ISA_LEVELS_H_

// Every ISA build of the kernels (cpu_kernels.h KernelBuild), for tests that
// run each variant against a plain reference. A build the host cannot
// execute is skipped with a message naming the instructions it needs (never
// silently).
#include <string>
#include <vector>

#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "gtest/gtest.h"

#ifdef OPENELM_TEST_EMULATED_ISA
// tests/emulated_isa: the sources of the builds above AVX2 rebuilt on
// SIMDe, so they run on any x86-64 host.
namespace openelm::kernels_internal {
const CpuKernels& EmulatedAvx2VnniKernels();
const CpuKernels& EmulatedAvx512Kernels();
const CpuKernels& EmulatedAvx512VnniKernels();
}  // namespace openelm::kernels_internal
#endif

namespace openelm::testing {

inline std::vector<KernelBuild> KernelIsaLevels() {
#ifdef OPENELM_TEST_EMULATED_ISA
  return {KernelBuild::kAvx2Vnni, KernelBuild::kAvx512, KernelBuild::kAvx512Vnni};
#else
  return {KernelBuild::kPortable, KernelBuild::kAvx2, KernelBuild::kAvx2Vnni,
          KernelBuild::kAvx512, KernelBuild::kAvx512Vnni};
#endif
}

// The builds whose int8 dot product is vpdpbusd (their output must equal
// the AVX2 build's bit for bit).
inline std::vector<KernelBuild> VnniKernelBuilds() {
  return {KernelBuild::kAvx2Vnni, KernelBuild::kAvx512Vnni};
}

inline std::string IsaTestName(KernelBuild build) { return KernelBuildName(build); }

// The table a kernel test runs for `build`: KernelsForBuild(build) (nullptr
// where the CPU lacks its instructions), or in the emulated build the
// SIMDe-built table, which runs everywhere.
inline const CpuKernels* TestKernelsFor(KernelBuild build) {
#ifdef OPENELM_TEST_EMULATED_ISA
  switch (build) {
    case KernelBuild::kAvx2Vnni:
      return &kernels_internal::EmulatedAvx2VnniKernels();
    case KernelBuild::kAvx512:
      return &kernels_internal::EmulatedAvx512Kernels();
    case KernelBuild::kAvx512Vnni:
      return &kernels_internal::EmulatedAvx512VnniKernels();
    default:
      break;
  }
#endif
  return KernelsForBuild(build);
}

}  // namespace openelm::testing

// In a test body: `const CpuKernels& k = OPENELM_KERNELS_OR_SKIP(build);`
#define OPENELM_KERNELS_OR_SKIP(build)                                                  \
  ({                                                                                    \
    const ::openelm::CpuKernels* kernels_or_null =                                      \
        ::openelm::testing::TestKernelsFor(build);                                      \
    if (kernels_or_null == nullptr) {                                                   \
      GTEST_SKIP() << "this CPU cannot run the " << ::openelm::KernelBuildName(build)   \
                   << " kernels (they need " << ::openelm::KernelBuildNeeds(build)      \
                   << "; it has " << ::openelm::CpuIsaName(::openelm::DetectedCpuIsa()) \
                   << ")";                                                              \
    }                                                                                   \
    *kernels_or_null;                                                                   \
  })

#endif  // OPENELM_TESTS_TESTING_ISA_LEVELS_H_
