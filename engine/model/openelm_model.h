#ifndef OPENELM_ENGINE_MODEL_OPENELM_MODEL_H_
#define OPENELM_ENGINE_MODEL_OPENELM_MODEL_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/model/checkpoint.h"
#include "engine/model/decoder_model.h"

namespace openelm {

struct OpenElmModelOptions {
  DType weight_dtype = DType::kBF16;  // kBF16 (as published) or kF32
  DType kv_dtype = DType::kBF16;      // kBF16 or kF32
  // bf16 activations into the matmuls (fp32 accumulation either way). On by
  // default, chosen by measurement (BENCHMARKS.md): about 2x faster decode and
  // prefill on AVX-512-BF16 CPUs, logits within ~1e-2 of the fp32 reference.
  // With bf16 weights and this off, oneDNN 2.6 has no f32 x bf16 matmul, so
  // the weights are packed as f32 (same values, twice the memory).
  bool bf16_activations = true;
  int32_t num_threads = 0;            // OpenMP threads for oneDNN and kernels; 0 = all cores
};

// The OpenELM decoder on oneDNN: weights copied once from the checkpoint into
// oneDNN's preferred (packed) layout, matmul primitives created at Create()
// for batch-size buckets, own paged-attention kernel, preallocated workspace.
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
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_OPENELM_MODEL_H_
