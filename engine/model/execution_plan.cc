#include "engine/model/execution_plan.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/kernels/cpu_kernels.h"

namespace openelm {

const char* DTypeFlagValue(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kI8:
      return "int8";
  }
  return "?";
}

absl::StatusOr<std::optional<DType>> ParseDTypeChoice(absl::string_view text,
                                                      absl::string_view flag) {
  if (text == "auto" || text.empty()) return std::optional<DType>();
  if (text == "bf16") return std::optional<DType>(DType::kBF16);
  if (text == "f32") return std::optional<DType>(DType::kF32);
  if (text == "int8" && flag == "weight_dtype") return std::optional<DType>(DType::kI8);
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", text, ": expected auto, bf16",
                   flag == "weight_dtype" ? ", f32 or int8" : " or f32"));
}

std::string ExecutionPlan::Describe() const {
  return absl::StrCat("isa=", CpuIsaName(isa), " weights=", DTypeFlagValue(weight_dtype),
                      " activations=", DTypeFlagValue(activation_dtype),
                      " kv=", DTypeFlagValue(kv_dtype), " matmul=",
                      matmul == MatmulBackend::kOnednn       ? std::string("onednn")
                      : matmul == MatmulBackend::kOnednnInt8 ? std::string("onednn-int8")
                      : matmul == MatmulBackend::kOwnInt8
                          ? absl::StrCat("own-int8-", Int8KernelName(isa))
                          : absl::StrCat("own-", CpuIsaName(isa)));
}

absl::StatusOr<ExecutionPlan> ResolvePlan(CpuIsa isa, const PlanRequest& request) {
  ExecutionPlan plan;
  plan.isa = isa;
  const bool native_bf16 = static_cast<int>(isa) >= static_cast<int>(CpuIsa::kAvx512Bf16);
  plan.weight_dtype = request.weight_dtype.value_or(DType::kBF16);
  plan.kv_dtype = request.kv_dtype.value_or(DType::kBF16);
  if (plan.weight_dtype == DType::kI8) {
    if (request.activation_dtype == DType::kBF16) {
      return absl::InvalidArgumentError(
          "--activation_dtype=bf16 does not combine with --weight_dtype=int8 (int8 "
          "weights take "
          "f32 activations and quantize them per token); use --activation_dtype=auto or "
          "f32");
    }
    plan.activation_dtype = DType::kF32;
    plan.matmul =
        KernelBuildFor(isa) == KernelBuild::kAvx512Vnni && !request.own_int8_kernels
            ? MatmulBackend::kOnednnInt8
            : MatmulBackend::kOwnInt8;
    if (plan.kv_dtype != DType::kBF16 && plan.kv_dtype != DType::kF32) {
      return absl::InvalidArgumentError("--kv_dtype: expected auto, bf16 or f32");
    }
    return plan;
  }
  for (const auto& [name, dtype] :
       {std::pair<const char*, DType>{"weight_dtype", plan.weight_dtype},
        {"kv_dtype", plan.kv_dtype}}) {
    if (dtype != DType::kBF16 && dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", name, "=", DTypeFlagValue(dtype), ": expected auto, bf16 or f32"));
    }
  }
  if (request.activation_dtype.has_value()) {
    plan.activation_dtype = *request.activation_dtype;
    if (plan.activation_dtype != DType::kBF16 && plan.activation_dtype != DType::kF32) {
      return absl::InvalidArgumentError(
          absl::StrCat("--activation_dtype=", DTypeFlagValue(plan.activation_dtype),
                       ": expected auto, bf16 or f32"));
    }
    if (plan.activation_dtype == DType::kBF16 && !native_bf16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--activation_dtype=bf16 needs a CPU with bf16 matmul instructions "
          "(avx512_bf16 or "
          "amx); this CPU's ISA is ",
          CpuIsaName(isa),
          ". Choices that work here: --activation_dtype=auto or f32 (with "
          "--weight_dtype=bf16 the weights stay bf16 and are widened in registers)"));
    }
  } else {
    // bf16 x bf16 only where the CPU multiplies bf16 natively.
    plan.activation_dtype = native_bf16 ? DType::kBF16 : DType::kF32;
  }
  // bf16 x f32 has no oneDNN 2.6 primitive: own kernels. Anything else is a
  // oneDNN matmul of one type (f32 weights with bf16 inputs are packed bf16).
  plan.matmul = plan.weight_dtype == DType::kBF16 && plan.activation_dtype == DType::kF32
                    ? MatmulBackend::kOwnBf16
                    : MatmulBackend::kOnednn;
  return plan;
}

}  // namespace openelm
