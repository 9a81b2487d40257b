#ifndef OPENELM_ENGINE_MODEL_EXECUTION_PLAN_H_
#define OPENELM_ENGINE_MODEL_EXECUTION_PLAN_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/model/checkpoint.h"

namespace openelm {

// Which code runs the matmuls of a model.
enum class MatmulBackend {
  kOnednn,      // oneDNN primitives per row bucket (bf16 x bf16 or f32 x f32)
  kOwnBf16,     // own kernels: bf16 weights widened in registers x f32 inputs
  kOwnInt8,     // own kernels: int8 weights x per-row int8 activations, int32 sums
  kOnednnInt8,  // the same int8 scheme on oneDNN (VNNI / AMX CPUs only)
};

// The dtypes a user asked for; nullopt = "auto" (the plan decides).
struct PlanRequest {
  std::optional<DType> weight_dtype = std::nullopt;
  std::optional<DType> activation_dtype = std::nullopt;  // matmul input precision
  std::optional<DType> kv_dtype = std::nullopt;
  // int8 weights: the own kernels even where oneDNN's int8 would run (so
  // tests and benchmarks can run both on a VNNI CPU).
  bool own_int8_kernels = false;
};

// How the model runs on this CPU, decided once at start-up (ResolvePlan) and
// never revisited on the hot path. What "auto" picks, and why (measured, see
// BENCHMARKS.md and README's table):
//
//   ISA            weights  activations  KV    matmuls
//   portable       bf16     f32          bf16  own (portable)
//   avx2           bf16     f32          bf16  own AVX2      oneDNN 2.6 has no bf16
//   matmul below
//                                                           AVX-512; own kernel streams
//                                                           bf16
//   avx512         bf16     f32          bf16  own AVX-512   no native bf16 dot products
//   avx512_bf16    bf16     bf16         bf16  oneDNN        brgemm bf16: ~2x f32
//   (section 1) amx            bf16     bf16         bf16  oneDNN        AMX tiles
//   through oneDNN
//
// Weights stay bf16 (as published) everywhere: no f32 copy is made.
// --weight_dtype=int8 (never auto) quantizes the weights at load, symmetric
// per output channel; the activations are quantized per row inside each
// matmul (the plan reports them as f32, the precision the matmul is fed).
// Where the level's kernel build is avx512_vnni (AVX512_VNNI, so also
// avx512_bf16 and amx) the matmuls run on oneDNN's int8 primitives (exact
// int32 sums there, 4-6x the own kernel from 16 rows up, BENCHMARKS.md
// section 1b); elsewhere the own int8 kernels (oneDNN's AVX2 int8 saturates
// 16-bit sums).
struct ExecutionPlan {
  CpuIsa isa = CpuIsa::kPortable;
  DType weight_dtype = DType::kBF16;
  DType activation_dtype = DType::kF32;
  DType kv_dtype = DType::kBF16;
  MatmulBackend matmul = MatmulBackend::kOwnBf16;

  // e.g. "isa=avx2 weights=bf16 activations=f32 kv=bf16 matmul=own-avx2".
  std::string Describe() const;
};

// The plan for `request` on a CPU of level `isa`. An explicit choice the CPU
// cannot run is kInvalidArgument naming the flag, the ISA and what works.
absl::StatusOr<ExecutionPlan> ResolvePlan(CpuIsa isa, const PlanRequest& request);

// "bf16" / "f32" / "auto" (nullopt) for flags. kInvalidArgument naming
// `flag` otherwise.
absl::StatusOr<std::optional<DType>> ParseDTypeChoice(absl::string_view text,
                                                      absl::string_view flag);
// "bf16", "f32", "f16".
const char* DTypeFlagValue(DType dtype);

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_EXECUTION_PLAN_H_
