// main() of emulated_model_test: before any test runs, makes the engine's
// active kernel table (ActiveKernels()) the SIMDe-built table named by
// --emulated_build=avx2_vnni|avx512|avx512_vnni, so whole models (the
// parity and int8 accuracy tests) run on a kernel build this CPU may lack.
#include <cstring>
#include <iostream>
#include <string>

#include "engine/kernels/cpu_kernels.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace openelm::kernels_internal {
const CpuKernels& EmulatedAvx2VnniKernels();
const CpuKernels& EmulatedAvx512Kernels();
const CpuKernels& EmulatedAvx512VnniKernels();
}  // namespace openelm::kernels_internal

int main(int argc, char** argv) {
  ::testing::InitGoogleMock(&argc, argv);
  std::string build;
  for (int i = 1; i < argc; ++i) {
    constexpr const char kFlag[] = "--emulated_build=";
    if (std::strncmp(argv[i], kFlag, sizeof(kFlag) - 1) == 0) {
      build = argv[i] + sizeof(kFlag) - 1;
    }
  }
  namespace ki = ::openelm::kernels_internal;
  const ::openelm::CpuKernels* table =
      build == "avx2_vnni"     ? &ki::EmulatedAvx2VnniKernels()
      : build == "avx512"      ? &ki::EmulatedAvx512Kernels()
      : build == "avx512_vnni" ? &ki::EmulatedAvx512VnniKernels()
                               : nullptr;
  if (table == nullptr) {
    if (::testing::GTEST_FLAG(list_tests)) return RUN_ALL_TESTS();
    std::cerr << "emulated_model_test: --emulated_build=avx2_vnni|avx512|avx512_vnni is "
                 "required (got '"
              << build << "')\n";
    return 2;
  }
  if (!ki::SetActiveKernelsForTest(table)) {
    std::cerr << "emulated_model_test: the kernel table was fixed before main()\n";
    return 2;
  }
  std::cout << "kernels: the " << build << " build, emulated on SIMDe\n";
  return RUN_ALL_TESTS();
}
