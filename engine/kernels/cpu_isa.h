#ifndef OPENELM_ENGINE_KERNELS_CPU_ISA_H_
#define OPENELM_ENGINE_KERNELS_CPU_ISA_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openelm {

// Instruction-set levels our kernels are built for, lowest first. Each level
// includes everything below it:
//   kPortable    plain C++ (any x86-64; also what other CPUs would run)
//   kAvx2        AVX2 + FMA + F16C (Haswell, Zen 1-3)
//   kAvx512      AVX-512 F/BW/VL/DQ (Skylake-SP, Zen 4/5)
//   kAvx512Bf16  + AVX512_BF16 and AVX512_VNNI (Cooper Lake, Zen 4/5)
//   kAmx         + AMX-TILE, AMX-BF16, AMX-INT8 (Sapphire Rapids)
enum class CpuIsa : int {
  kPortable = 0,
  kAvx2 = 1,
  kAvx512 = 2,
  kAvx512Bf16 = 3,
  kAmx = 4
};

// What cpuid says, read once.
struct CpuFeatures {
  std::string vendor;  // "GenuineIntel", "AuthenticAMD", ...
  std::string brand;   // e.g. "AMD EPYC 7B13"
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false, avx_vnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;
  bool os_saves_avx = false, os_saves_avx512 = false, os_allows_amx = false;
};
const CpuFeatures& DetectedCpuFeatures();

// The best level the CPU (and OS) can run, ignoring any cap.
CpuIsa DetectedCpuIsa();

// The level every kernel choice is made for: DetectedCpuIsa() lowered to the
// cap, if one was set. The cap comes from SetCpuIsaCap() or, when that was
// never called, from the environment variable OPENELM_MAX_CPU_ISA. The first
// call fixes the answer for the life of the process (it also caps oneDNN, so
// oneDNN's JIT picks no instruction above it); later caps are refused.
CpuIsa EffectiveCpuIsa();

// Sets the cap ("portable", "avx2", "avx512", "avx512_bf16", "amx", or "" /
// "native" for none). kInvalidArgument for an unknown name; kFailedPrecondition
// after EffectiveCpuIsa() has been fixed at a different level.
absl::Status SetCpuIsaCap(absl::string_view name);

// "portable", "avx2", "avx512", "avx512_bf16", "amx".
const char* CpuIsaName(CpuIsa isa);
absl::StatusOr<CpuIsa> ParseCpuIsa(absl::string_view name);

// The ISA oneDNN's JIT actually targets after the cap (e.g. "avx2",
// "avx512_core_bf16"), for logs and ModelInfo.
std::string OnednnEffectiveIsa();

// One line for the start-up log: brand, detected and effective levels, the
// cap if any, and the features behind them.
std::string DescribeCpu();

}  // namespace openelm

#endif  // OPENELM_ENGINE_KERNELS_CPU_ISA_H_
