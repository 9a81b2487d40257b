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

namespace openelm::testing {

inline std::vector<CpuIsa> KernelIsaLevels() {
  // avx512_bf16 is the AVX-512 + VNNI build (amx shares it).
  return {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16};
}

inline std::string IsaTestName(CpuIsa isa) { return CpuIsaName(isa); }

}  // namespace openelm::testing

// In a test body: `const CpuKernels& k = OPENELM_KERNELS_OR_SKIP(isa);`
#define OPENELM_KERNELS_OR_SKIP(isa)                                             \
  ({                                                                             \
    const ::openelm::CpuKernels* kernels_or_null = ::openelm::KernelsFor(isa);   \
    if (kernels_or_null == nullptr) {                                            \
      GTEST_SKIP() << "this CPU cannot run the " << ::openelm::CpuIsaName(isa)   \
                   << " kernels (it has "                                        \
                   << ::openelm::CpuIsaName(::openelm::DetectedCpuIsa()) << ")"; \
    }                                                                            \
    *kernels_or_null;                                                            \
  })

#endif  // OPENELM_TESTS_TESTING_ISA_LEVELS_H_
