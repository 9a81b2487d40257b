#ifndef OPENELM_ENGINE_MODEL_OPENELM_CONFIG_H_
#define OPENELM_ENGINE_MODEL_OPENELM_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openelm {

// Shapes of one decoder layer (OpenELM scales heads and FFN per layer).
struct LayerShape {
  int32_t num_query_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t ffn_dim = 0;  // intermediate size; proj_1 has 2 * ffn_dim rows
  int32_t q_size() const { return num_query_heads; }
};

// The parsed Hugging Face config.json of an OpenELM checkpoint. All fields of
// ../shared/docs/openelm-model.md; per-layer lists are expanded into `layers`.
struct OpenElmConfig {
  int32_t num_layers = 0;
  int32_t model_dim = 0;
  int32_t head_dim = 0;
  int32_t vocab_size = 32000;
  int32_t max_context_length = 2048;
  int32_t num_gqa_groups = 4;  // query heads per KV head (GROUP SIZE)
  int32_t ffn_dim_divisor = 256;
  float rope_freq_constant = 10000.0f;
  int32_t rope_max_length = 4096;
  float rms_norm_eps = 1e-6f;
  int32_t bos_token_id = 1;
  int32_t eos_token_id = 2;
  bool share_input_output_layers = true;
  bool normalize_qk_projections = true;
  bool ffn_with_glu = true;
  std::string activation = "swish";    // SiLU
  std::vector<float> ffn_multipliers;  // one per layer
  std::vector<float> qkv_multipliers;  // [min, max] as in config.json
  std::vector<LayerShape> layers;      // size num_layers

  // Parses config.json text. `path` is only used in error messages. Every
  // missing, mistyped, inconsistent or unsupported field is kInvalidArgument
  // naming the field and value.
  static absl::StatusOr<OpenElmConfig> FromJson(absl::string_view json,
                                                absl::string_view path);
  static absl::StatusOr<OpenElmConfig> FromFile(const std::string& path);

  // Total parameters (tied embedding counted once).
  int64_t NumParameters() const;
  // Bytes of K and V one token occupies over all layers:
  // sum_l 2 * kv_heads(l) * head_dim * dtype_bytes.
  int64_t KvBytesPerToken(int32_t dtype_bytes) const;
  int32_t max_q_heads() const;
  int32_t max_kv_heads() const;
  int32_t max_ffn_dim() const;
  // "270M", "450M", "1_1B", "3B" when the shape matches a published size,
  // "tiny" for MakeOpenElmConfig("tiny"), otherwise "custom".
  std::string SizeName() const;
};

// The published configs, exactly as Apple's config.json (used by the
// generator and by tests). `size` is one of tiny, 270M, 450M, 1_1B, 3B.
// `tiny` is our own, for fast tests, built by the same formulas: 3 layers,
// model_dim 128, head_dim 32, num_gqa_groups 2 (group size),
// qkv_multipliers [0.5, 1.5] -> query heads {2, 4, 6}, KV heads {1, 2, 3};
// ffn_multipliers {2, 3, 4} with ffn_dim_divisor 128 -> FFN {256, 384, 512};
// vocab 32000 (the Llama-2 tokenizer), max_context_length 2048.
// Any other `size` is kInvalidArgument.
absl::StatusOr<OpenElmConfig> MakeOpenElmConfig(absl::string_view size);
// The config.json text for `config` (HF field names and values, sorted keys,
// two-space indent). `torch_dtype` is "bfloat16", "float16" or "float32".
std::string OpenElmConfigToJson(const OpenElmConfig& config,
                                absl::string_view torch_dtype = "bfloat16");

}  // namespace openelm

#endif  // OPENELM_ENGINE_MODEL_OPENELM_CONFIG_H_
