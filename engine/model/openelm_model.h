#ifndef OPENELM_ENGINE_MODEL_OPENELM_MODEL_H_
#define OPENELM_ENGINE_MODEL_OPENELM_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "engine/model/checkpoint.h"
#include "engine/model/decoder_model.h"
#include "engine/model/execution_plan.h"

namespace openelm {

struct OpenElmModelOptions {
  DType weight_dtype =
      DType::kBF16;  // kBF16 (as published), kF32, or kI8 (quantized at load)
  DType kv_dtype = DType::kBF16;  // kBF16 or kF32
  // bf16 activations into the matmuls (fp32 accumulation either way); unset:
  // the execution plan's choice for this CPU (execution_plan.h): bf16 where
  // the CPU multiplies bf16 natively (about 2x faster there, logits within
  // ~1e-2 of the fp32 reference), else f32 with the bf16 weights widened in
  // registers by our own kernels. true on a CPU without native bf16 fails
  // Create() with a message naming the flag and what works.
  std::optional<bool> bf16_activations = std::nullopt;
  int32_t num_threads = 0;  // OpenMP threads for oneDNN and kernels; 0 = all cores
  // kI8 only: the own int8 kernels even where the plan picks oneDNN's
  // (tests and comparisons; PlanRequest::own_int8_kernels).
  bool own_int8_kernels = false;
};

// The OpenELM decoder: weights copied once from the checkpoint into the
// packed layout of the plan's matmul backend (oneDNN primitives created at
// Create() for batch-size buckets, or own bf16 kernels), own paged-attention
// and elementwise kernels for the CPU's ISA, preallocated workspace.
// The checkpoint may be destroyed after Create().
//
// KV storage (allocated by Prepare()): one buffer per layer,
//   layer l: [num_blocks][kv_heads(l)][2 (K,V)][block_size_tokens][head_dim]
// so one GQA group's keys and values for a block are contiguous, and a layer
// takes exactly 2 * kv_heads(l) * head_dim * dtype bytes per token.
//
// Thread-compatible: one thread (the engine thread) calls it.
class OpenElmModel : public DecoderModel {
 public:
  static absl::StatusOr<std::unique_ptr<OpenElmModel>> Create(
      const Checkpoint& checkpoint, const OpenElmModelOptions& options);

  // KvBytesPerBlock() of a model with this config and KV dtype, without a
  // checkpoint: block_size * sum_l 2 * kv_heads(l) * head_dim * dtype bytes.
  static int64_t KvBytesPerBlockFor(const OpenElmConfig& config, DType kv_dtype,
                                    int32_t block_size_tokens);

  // Test and benchmark counters: oneDNN primitives created so far (Forward
  // creates none) and matmul executions so far.
  virtual int64_t num_primitives_created() const = 0;
  virtual int64_t num_matmul_runs() const = 0;
  // The plan this model runs (decided in Create()).
  virtual const ExecutionPlan& plan() const = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_OPENELM_MODEL_H_
