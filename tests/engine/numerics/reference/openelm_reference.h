#ifndef OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_OPENELM_REFERENCE_H_
#define OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_OPENELM_REFERENCE_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"

namespace openelm::testing {

// The weights of one decoder layer, upcast to f32, row-major [out, in] exactly
// as stored in the checkpoint. q = num_query_heads(l), kv = num_kv_heads(l),
// hd = head_dim, d = model_dim, f = ffn_dim(l).
struct ReferenceLayerWeights {
  std::vector<float> attn_norm;  // [d]
  std::vector<float> qkv_proj;   // [(q + 2 kv) * hd, d]: Q rows, then K, then V
  std::vector<float> q_norm;     // [hd]
  std::vector<float> k_norm;     // [hd]
  std::vector<float> out_proj;   // [d, q * hd]
  std::vector<float> ffn_norm;   // [d]
  std::vector<float> proj_1;     // [2 f, d]: gate rows first, then up rows
  std::vector<float> proj_2;     // [d, f]
};

struct ReferenceWeights {
  std::vector<float> token_embeddings;  // [vocab, d]; also the LM head (tied)
  std::vector<ReferenceLayerWeights> layers;
  std::vector<float> norm;  // [d]
};

// What the reference does to every matmul input (the vector multiplied by a
// weight matrix, LM head included). Off by default: inputs stay exact doubles.
// For studying int8 schemes only (int8_accuracy_test): the engine's kernels
// are never compared against a quantized reference.
struct ReferenceOptions {
  // 0: exact. > 0: symmetric 8-bit quantize-dequantize in consecutive groups
  // of that many values (ReferenceQuantize8). kWholeRow: one group per vector.
  int64_t int8_input_group = 0;
  // The largest quantized magnitude of the inputs: 127 (8 bits) or, to study
  // 7-bit schemes, 63.
  int32_t int8_input_levels = 127;
};
inline constexpr int64_t kWholeRow = -1;

// A scalar OpenELM forward pass written directly from
// ../shared/docs/openelm-model.md, used as the oracle for the oneDNN engine.
// It shares no code with engine/kernels or engine/model/openelm_model*: plain
// loops, every activation held in double, every sum accumulated in double.
// Each call recomputes the whole causal sequence from scratch (no KV cache),
// so it is slow and meant for short sequences only.
//
// Ownership: owns an f32 copy of all weights (the checkpoint may be destroyed
// after Create()). Thread-safety: immutable after creation; const methods may
// be called concurrently.
class OpenElmReference {
 public:
  // Copies every tensor of `checkpoint` into f32 (bf16 / f16 weights are
  // upcast exactly). kInvalidArgument if a tensor is missing or misshaped.
  static absl::StatusOr<std::unique_ptr<OpenElmReference>> Create(
      const Checkpoint& checkpoint);

  // For hand-built toy models. `config.layers` gives the per-layer shapes;
  // every weight size is checked against them (kInvalidArgument).
  static absl::StatusOr<std::unique_ptr<OpenElmReference>> FromWeights(
      OpenElmConfig config, ReferenceWeights weights, ReferenceOptions options = {});

  OpenElmReference(const OpenElmReference&) = delete;
  OpenElmReference& operator=(const OpenElmReference&) = delete;

  const OpenElmConfig& config() const { return config_; }
  const ReferenceWeights& weights() const { return weights_; }

  // Logits for every position of `tokens` (a whole sequence starting at
  // position 0): result[t] has vocab_size floats and depends on tokens[0..t]
  // only. kInvalidArgument for an empty sequence, a token outside the
  // vocabulary or more than max_context_length tokens.
  absl::StatusOr<std::vector<std::vector<float>>> ForwardAll(
      absl::Span<const TokenId> tokens) const;

  // Logits of the last position only (same computation, smaller LM head).
  absl::StatusOr<std::vector<float>> ForwardLast(absl::Span<const TokenId> tokens) const;

 private:
  OpenElmReference(OpenElmConfig config, ReferenceWeights weights,
                   ReferenceOptions options)
      : config_(std::move(config)), weights_(std::move(weights)), options_(options) {}

  // y = W x for a row-major W [rows, cols], x passed through the options.
  std::vector<double> MatVec(const std::vector<float>& w, int64_t rows, int64_t cols,
                             std::vector<double> x) const;

  // Final hidden states (after the last RMSNorm), [tokens.size()][d].
  absl::StatusOr<std::vector<std::vector<double>>> FinalHidden(
      absl::Span<const TokenId> tokens) const;
  // logits[v] = sum_i hidden[i] * token_embeddings[v][i].
  std::vector<float> LmHead(const std::vector<double>& hidden) const;

  OpenElmConfig config_;
  ReferenceWeights weights_;
  ReferenceOptions options_;
};

// Building blocks of the reference, exposed so that its own sanity test can
// check each against hand-computed values.

// (x * 1/sqrt(mean(x^2) + eps)) * w, elementwise; x.size() == w.size().
std::vector<double> ReferenceRmsNorm(absl::Span<const double> x,
                                     absl::Span<const float> w, double eps);

// Symmetric 8-bit quantize-dequantize of x in place, in consecutive groups of
// `group` values (kWholeRow: one group): per group s = max|x| / levels and
// x = round(x / s) * s (a zero group stays zero). What an int8 scheme with
// that scale granularity does to a vector; used on weight rows and inputs.
// levels = 63 models a 7-bit scheme.
template <class T>
void ReferenceQuantize8(absl::Span<T> x, int64_t group, int32_t levels = 127);

// Rotate-half (GPT-NeoX) RoPE of one head vector of even length hd at
// `position`: with inv_freq[j] = theta^(-2j/hd) and a = position * inv_freq[j],
// out[j] = x[j] cos a - x[j + hd/2] sin a and
// out[j + hd/2] = x[j + hd/2] cos a + x[j] sin a, for j < hd/2.
std::vector<double> ReferenceRope(absl::Span<const double> x, int64_t position,
                                  double theta);

// exp(x_i - max) / sum_j exp(x_j - max).
std::vector<double> ReferenceSoftmax(absl::Span<const double> x);

// x / (1 + exp(-x)).
double ReferenceSilu(double x);

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_ENGINE_NUMERICS_REFERENCE_OPENELM_REFERENCE_H_
