#ifndef OPENELM_TESTS_TESTING_ISA_LEVELS_H_
#define OPENELM_TESTS_TESTING_ISA_LEVELS_H_

// Every ISA level that has its own build of the kernels, for tests that run
// each variant against a plain reference. A level the host cannot execute is
// skipped with a message naming it (never silently).
#include <string>
#include <vector>

#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "gtest/gtest.h"

#ifdef OPENELM_TEST_EMULATED_ISA
// tests/emulated_isa: the AVX-512 tables' sources rebuilt on SIMDe, so they
// run on any x86-64 host.
namespace openelm::kernels_internal {
const CpuKernels& EmulatedAvx512Kernels();
const CpuKernels& EmulatedAvx512VnniKernels();
}  // namespace openelm::kernels_internal
#endif

namespace openelm::testing {

inline std::vector<CpuIsa> KernelIsaLevels() {
#ifdef OPENELM_TEST_EMULATED_ISA
  return {CpuIsa::kAvx512, CpuIsa::kAvx512Bf16};
#else
  // avx512_bf16 is the AVX-512 + VNNI build (amx shares it).
  return {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16};
#endif
}

// The table a kernel test runs for `isa`: KernelsFor(isa) (nullptr where the
// CPU lacks the ISA), or in the emulated build the SIMDe-built table of the
// AVX-512 levels, which runs everywhere.
inline const CpuKernels* TestKernelsFor(CpuIsa isa) {
#ifdef OPENELM_TEST_EMULATED_ISA
  if (isa == CpuIsa::kAvx512) return &kernels_internal::EmulatedAvx512Kernels();
  if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAmx) {
    return &kernels_internal::EmulatedAvx512VnniKernels();
  }
#endif
  return KernelsFor(isa);
}

inline std::string IsaTestName(CpuIsa isa) { return CpuIsaName(isa); }

}  // namespace openelm::testing

// In a test body: `const CpuKernels& k = OPENELM_KERNELS_OR_SKIP(isa);`
#define OPENELM_KERNELS_OR_SKIP(isa)                                             \
  ({                                                                             \
    const ::openelm::CpuKernels* kernels_or_null =                               \
        ::openelm::testing::TestKernelsFor(isa);                                 \
    if (kernels_or_null == nullptr) {                                            \
      GTEST_SKIP() << "this CPU cannot run the " << ::openelm::CpuIsaName(isa)   \
                   << " kernels (it has "                                        \
                   << ::openelm::CpuIsaName(::openelm::DetectedCpuIsa()) << ")"; \
    }                                                                            \
    *kernels_or_null;                                                            \
  })

#endif  // OPENELM_TESTS_TESTING_ISA_LEVELS_H_
