// Writes config.json for an OpenElmConfig (the checkpoint generator).

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/json.h"
#include "engine/model/openelm_config.h"

namespace openelm {
namespace {

// The shortest decimal that reads back as `f`, as a double: 0.73f -> 0.73
// (not 0.7300000190734863), so that config.json holds the values Apple wrote.
double CleanDouble(float f) {
  char buf[32];
  for (int precision = 1; precision <= 9; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) break;
  }
  return std::strtod(buf, nullptr);
}

// Pretty printer for config.json: two-space indent and sorted keys like
// Hugging Face's save_pretrained, with lists of scalars on one line.
void PrettyPrint(const nlohmann::json& v, int indent, std::string* out) {
  const std::string pad(indent + 2, ' ');
  if (v.is_object()) {
    out->append("{\n");
    bool first = true;
    for (const auto& [key, child] : v.items()) {
      if (!first) out->append(",\n");
      first = false;
      absl::StrAppend(out, pad, JsonDump(key), ": ");
      PrettyPrint(child, indent + 2, out);
    }
    absl::StrAppend(out, "\n", std::string(indent, ' '), "}");
    return;
  }
  if (v.is_array()) {
    out->push_back('[');
    bool first = true;
    for (const nlohmann::json& child : v) {
      if (!first) out->append(", ");
      first = false;
      PrettyPrint(child, indent + 2, out);
    }
    out->push_back(']');
    return;
  }
  out->append(JsonDump(v));
}

}  // namespace

std::string OpenElmConfigToJson(const OpenElmConfig& config,
                                absl::string_view torch_dtype) {
  nlohmann::json o = nlohmann::json::object();
  const auto number_list = [](const std::vector<float>& values) {
    nlohmann::json out = nlohmann::json::array();
    for (float v : values) out.push_back(CleanDouble(v));
    return out;
  };
  nlohmann::json q_heads = nlohmann::json::array();
  nlohmann::json kv_heads = nlohmann::json::array();
  for (const LayerShape& l : config.layers) {
    q_heads.push_back(l.num_query_heads);
    kv_heads.push_back(l.num_kv_heads);
  }
  o["activation_fn_name"] = config.activation;
  o["architectures"] = nlohmann::json::array({"OpenELMForCausalLM"});
  o["auto_map"] = {{"AutoConfig", "configuration_openelm.OpenELMConfig"},
                   {"AutoModelForCausalLM", "modeling_openelm.OpenELMForCausalLM"}};
  o["bos_token_id"] = config.bos_token_id;
  o["eos_token_id"] = config.eos_token_id;
  o["ffn_dim_divisor"] = config.ffn_dim_divisor;
  o["ffn_multipliers"] = number_list(config.ffn_multipliers);
  o["ffn_with_glu"] = config.ffn_with_glu;
  o["head_dim"] = config.head_dim;
  o["initializer_range"] = 0.02;
  o["max_context_length"] = config.max_context_length;
  o["model_dim"] = config.model_dim;
  o["model_type"] = "openelm";
  o["normalization_layer_name"] = "rms_norm";
  o["normalize_qk_projections"] = config.normalize_qk_projections;
  o["num_gqa_groups"] = config.num_gqa_groups;
  o["num_kv_heads"] = std::move(kv_heads);
  o["num_query_heads"] = std::move(q_heads);
  o["num_transformer_layers"] = config.num_layers;
  o["qkv_multipliers"] = number_list(config.qkv_multipliers);
  const double theta = CleanDouble(config.rope_freq_constant);
  o["rope_freq_constant"] = theta == std::floor(theta) && theta < 1e15
                                ? nlohmann::json(static_cast<int64_t>(theta))
                                : nlohmann::json(theta);
  o["rope_max_length"] = config.rope_max_length;
  o["share_input_output_layers"] = config.share_input_output_layers;
  o["torch_dtype"] = std::string(torch_dtype);
  o["transformers_version"] = "4.39.3";
  o["use_cache"] = true;
  o["vocab_size"] = config.vocab_size;
  std::string out;
  PrettyPrint(o, 0, &out);
  out.push_back('\n');
  return out;
}

}  // namespace openelm
