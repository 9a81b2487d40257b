#include "engine/model/openelm_config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/file_util.h"
#include "engine/base/json.h"
#include "engine/base/status_macros.h"
#include "engine/model/openelm_shapes.h"

namespace openelm {
namespace {

using shapes::FfnDim;
using shapes::QueryHeadsFromMultipliers;
using shapes::RoundedLinspace;

// Reads config.json fields with messages that name the file, field and value.
class FieldReader {
 public:
  FieldReader(const nlohmann::json& root, absl::string_view path)
      : root_(root), path_(path) {}

  absl::Status Error(absl::string_view field, absl::string_view problem) const {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json '", path_, "': field '", field, "' ", problem));
  }

  static std::string Shown(const nlohmann::json& v) {
    std::string text = JsonDump(v);
    if (text.size() > 80) text = text.substr(0, 77) + "...";
    return text;
  }

  absl::StatusOr<const nlohmann::json*> Required(absl::string_view field) const {
    const nlohmann::json* v = JsonFind(root_, field);
    if (v == nullptr) return Error(field, "is missing");
    return v;
  }

  absl::StatusOr<int64_t> Int(absl::string_view field, int64_t min_value,
                              int64_t max_value) const {
    OPENELM_ASSIGN_OR_RETURN(const nlohmann::json* v, Required(field));
    return IntValue(field, *v, min_value, max_value);
  }

  absl::StatusOr<int64_t> IntValue(absl::string_view field, const nlohmann::json& v,
                                   int64_t min_value, int64_t max_value) const {
    const std::optional<int64_t> n = JsonInt64(v);
    if (!n.has_value()) {
      return Error(field, absl::StrCat("must be an integer, got ", Shown(v)));
    }
    if (*n < min_value || *n > max_value) {
      return Error(
          field, absl::StrCat("must be in [", min_value, ", ", max_value, "], got ", *n));
    }
    return *n;
  }

  absl::StatusOr<double> PositiveNumber(absl::string_view field,
                                        const nlohmann::json& v) const {
    if (!v.is_number())
      return Error(field, absl::StrCat("must be a number, got ", Shown(v)));
    const double x = v.get<double>();
    if (!(x > 0)) {
      return Error(field, absl::StrCat("must be positive, got ", Shown(v)));
    }
    return x;
  }

  absl::StatusOr<bool> Bool(absl::string_view field) const {
    OPENELM_ASSIGN_OR_RETURN(const nlohmann::json* v, Required(field));
    if (!v->is_boolean())
      return Error(field, absl::StrCat("must be true or false, got ", Shown(*v)));
    return v->get<bool>();
  }

  // A bool that this engine only supports as `true`.
  absl::Status RequireTrue(absl::string_view field, absl::string_view why) const {
    OPENELM_ASSIGN_OR_RETURN(bool value, Bool(field));
    if (!value)
      return Error(field, absl::StrCat("is false, which is unsupported: ", why));
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(absl::string_view field) const {
    OPENELM_ASSIGN_OR_RETURN(const nlohmann::json* v, Required(field));
    if (!v->is_string())
      return Error(field, absl::StrCat("must be a string, got ", Shown(*v)));
    return v->get<std::string>();
  }

  // A list of exactly `n` integers in [min_value, max_value].
  absl::StatusOr<std::vector<int32_t>> IntList(absl::string_view field, int32_t n,
                                               int64_t min_value,
                                               int64_t max_value) const {
    OPENELM_ASSIGN_OR_RETURN(const nlohmann::json* v, Required(field));
    if (!v->is_array()) {
      return Error(field,
                   absl::StrCat("must be a list of ", n, " integers, got ", Shown(*v)));
    }
    if (static_cast<int64_t>(v->size()) != n) {
      return Error(field,
                   absl::StrCat("has ", v->size(),
                                " entries, expected num_transformer_layers = ", n));
    }
    std::vector<int32_t> out;
    for (size_t i = 0; i < v->size(); ++i) {
      OPENELM_ASSIGN_OR_RETURN(int64_t x, IntValue(absl::StrCat(field, "[", i, "]"),
                                                   (*v)[i], min_value, max_value));
      out.push_back(static_cast<int32_t>(x));
    }
    return out;
  }

  // A positive number or a list of positive numbers.
  // Multipliers: positive and at most kMaxMultiplier (the published models
  // use 0.5 to 4.0; a larger one would overflow the derived sizes).
  static constexpr double kMaxMultiplier = 64.0;
  absl::StatusOr<double> Multiplier(absl::string_view field,
                                    const nlohmann::json& v) const {
    OPENELM_ASSIGN_OR_RETURN(double x, PositiveNumber(field, v));
    if (!(x <= kMaxMultiplier)) {
      return Error(field,
                   absl::StrCat("must be at most ", kMaxMultiplier, ", got ", Shown(v)));
    }
    return x;
  }

  absl::StatusOr<std::vector<double>> NumberOrList(absl::string_view field) const {
    OPENELM_ASSIGN_OR_RETURN(const nlohmann::json* v, Required(field));
    std::vector<double> out;
    if (v->is_number()) {
      OPENELM_ASSIGN_OR_RETURN(double x, Multiplier(field, *v));
      out.push_back(x);
      return out;
    }
    if (!v->is_array() || v->empty()) {
      return Error(
          field, absl::StrCat("must be a number or a list of numbers, got ", Shown(*v)));
    }
    for (size_t i = 0; i < v->size(); ++i) {
      OPENELM_ASSIGN_OR_RETURN(double x,
                               Multiplier(absl::StrCat(field, "[", i, "]"), (*v)[i]));
      out.push_back(x);
    }
    return out;
  }

  const nlohmann::json& root() const { return root_; }

 private:
  const nlohmann::json& root_;
  std::string path_;
};

constexpr int64_t kMaxDim = 1 << 20;

}  // namespace

absl::StatusOr<OpenElmConfig> OpenElmConfig::FromJson(absl::string_view json,
                                                      absl::string_view path) {
  absl::StatusOr<nlohmann::json> parsed = ParseJson(json);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json '", path, "' is not valid JSON: ", parsed.status().message()));
  }
  const nlohmann::json& root = *parsed;
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json '", path, "' must hold a JSON object"));
  }
  FieldReader r(root, path);
  OpenElmConfig c;

  OPENELM_ASSIGN_OR_RETURN(std::string model_type, r.String("model_type"));
  if (model_type != "openelm") {
    return r.Error("model_type",
                   absl::StrCat("is \"", model_type, "\", expected \"openelm\""));
  }
  if (const nlohmann::json* arch = JsonFind(root, "architectures"); arch != nullptr) {
    bool found = false;
    if (arch->is_array()) {
      for (const nlohmann::json& a : *arch) found |= a == "OpenELMForCausalLM";
    }
    if (!found) {
      return r.Error("architectures",
                     absl::StrCat("is ", FieldReader::Shown(*arch),
                                  ", expected [\"OpenELMForCausalLM\"]"));
    }
  }

  OPENELM_ASSIGN_OR_RETURN(int64_t num_layers, r.Int("num_transformer_layers", 1, 1024));
  OPENELM_ASSIGN_OR_RETURN(int64_t model_dim, r.Int("model_dim", 1, kMaxDim));
  OPENELM_ASSIGN_OR_RETURN(int64_t head_dim, r.Int("head_dim", 2, 4096));
  if (head_dim % 2 != 0) {
    return r.Error("head_dim",
                   absl::StrCat("must be even for rotary embeddings, got ", head_dim));
  }
  OPENELM_ASSIGN_OR_RETURN(int64_t groups, r.Int("num_gqa_groups", 1, 1024));
  OPENELM_ASSIGN_OR_RETURN(int64_t vocab, r.Int("vocab_size", 1, 1 << 24));
  OPENELM_ASSIGN_OR_RETURN(int64_t max_context, r.Int("max_context_length", 1, 1 << 24));
  OPENELM_ASSIGN_OR_RETURN(int64_t ffn_divisor, r.Int("ffn_dim_divisor", 1, kMaxDim));
  OPENELM_ASSIGN_OR_RETURN(int64_t rope_max, r.Int("rope_max_length", 1, 1 << 24));
  OPENELM_ASSIGN_OR_RETURN(const nlohmann::json* rope_freq,
                           r.Required("rope_freq_constant"));
  OPENELM_ASSIGN_OR_RETURN(double rope_theta,
                           r.PositiveNumber("rope_freq_constant", *rope_freq));
  c.num_layers = static_cast<int32_t>(num_layers);
  c.model_dim = static_cast<int32_t>(model_dim);
  c.head_dim = static_cast<int32_t>(head_dim);
  c.num_gqa_groups = static_cast<int32_t>(groups);
  c.vocab_size = static_cast<int32_t>(vocab);
  c.max_context_length = static_cast<int32_t>(max_context);
  c.ffn_dim_divisor = static_cast<int32_t>(ffn_divisor);
  c.rope_max_length = static_cast<int32_t>(rope_max);
  c.rope_freq_constant = static_cast<float>(rope_theta);

  for (const char* field : {"bos_token_id", "eos_token_id"}) {
    const nlohmann::json* v = JsonFind(root, field);
    if (v == nullptr || v->is_null()) continue;  // keep the Llama-2 defaults
    OPENELM_ASSIGN_OR_RETURN(int64_t id, r.IntValue(field, *v, 0, vocab - 1));
    (absl::string_view(field) == "bos_token_id" ? c.bos_token_id : c.eos_token_id) =
        static_cast<int32_t>(id);
  }

  OPENELM_RETURN_IF_ERROR(r.RequireTrue(
      "ffn_with_glu",
      "only the gated (SwiGLU) feed-forward of the published models is implemented"));
  OPENELM_RETURN_IF_ERROR(r.RequireTrue("normalize_qk_projections",
                                        "the published models normalise Q and K"));
  OPENELM_RETURN_IF_ERROR(r.RequireTrue("share_input_output_layers",
                                        "the LM head is the tied token embedding"));

  OPENELM_ASSIGN_OR_RETURN(c.activation, r.String("activation_fn_name"));
  if (c.activation != "swish" && c.activation != "silu") {
    return r.Error(
        "activation_fn_name",
        absl::StrCat("is \"", c.activation, "\", only \"swish\" (SiLU) is supported"));
  }
  if (const nlohmann::json* norm = JsonFind(root, "normalization_layer_name");
      norm != nullptr) {
    if (*norm != "rms_norm") {
      return r.Error("normalization_layer_name",
                     absl::StrCat("is ", FieldReader::Shown(*norm),
                                  ", only \"rms_norm\" is supported"));
    }
  }
  if (const nlohmann::json* dtype = JsonFind(root, "torch_dtype");
      dtype != nullptr && !dtype->is_null()) {
    if (!dtype->is_string()) {
      return r.Error("torch_dtype",
                     absl::StrCat("must be a string, got ", FieldReader::Shown(*dtype)));
    }
  }

  // qkv_multipliers: one number, or [min, max] spread over the layers.
  OPENELM_ASSIGN_OR_RETURN(std::vector<double> qkv_mult,
                           r.NumberOrList("qkv_multipliers"));
  if (qkv_mult.size() > 2) {
    return r.Error("qkv_multipliers", absl::StrCat("must be a number or [min, max], got ",
                                                   qkv_mult.size(), " values"));
  }
  for (double m : qkv_mult) c.qkv_multipliers.push_back(static_cast<float>(m));

  // ffn_multipliers: one per layer (as in the published config.json), one
  // number for all layers, or [min, max] spread over the layers.
  OPENELM_ASSIGN_OR_RETURN(std::vector<double> ffn_mult,
                           r.NumberOrList("ffn_multipliers"));
  if (ffn_mult.size() == 1) {
    ffn_mult.assign(c.num_layers, ffn_mult[0]);
  } else if (ffn_mult.size() == 2 && c.num_layers != 2) {
    ffn_mult = RoundedLinspace(ffn_mult[0], ffn_mult[1], c.num_layers);
  } else if (static_cast<int64_t>(ffn_mult.size()) != num_layers) {
    return r.Error(
        "ffn_multipliers",
        absl::StrCat("has ", ffn_mult.size(),
                     " entries, expected num_transformer_layers = ", num_layers));
  }

  OPENELM_ASSIGN_OR_RETURN(std::vector<int32_t> q_heads,
                           r.IntList("num_query_heads", c.num_layers, 1, 4096));
  OPENELM_ASSIGN_OR_RETURN(std::vector<int32_t> kv_heads,
                           r.IntList("num_kv_heads", c.num_layers, 1, 4096));
  const std::vector<int32_t> derived_q = QueryHeadsFromMultipliers(
      qkv_mult, c.num_layers, c.model_dim, c.head_dim, c.num_gqa_groups);

  for (int32_t i = 0; i < c.num_layers; ++i) {
    if (q_heads[i] != kv_heads[i] * c.num_gqa_groups) {
      return r.Error(
          "num_query_heads",
          absl::StrCat("is inconsistent at layer ", i, ": num_query_heads[", i,
                       "] = ", q_heads[i], " but num_kv_heads[", i, "] = ", kv_heads[i],
                       " times num_gqa_groups = ", c.num_gqa_groups, " is ",
                       kv_heads[i] * c.num_gqa_groups));
    }
    if (q_heads[i] != derived_q[i]) {
      return r.Error(
          "num_query_heads",
          absl::StrCat("is inconsistent at layer ", i, ": num_query_heads[", i,
                       "] = ", q_heads[i], " but qkv_multipliers [",
                       absl::StrJoin(qkv_mult, ", "), "] give ", derived_q[i]));
    }
    c.ffn_multipliers.push_back(static_cast<float>(ffn_mult[i]));
    LayerShape layer;
    layer.num_query_heads = q_heads[i];
    layer.num_kv_heads = kv_heads[i];
    layer.ffn_dim = FfnDim(ffn_mult[i], c.model_dim, c.ffn_dim_divisor);
    if (layer.ffn_dim > kMaxDim) {
      return r.Error("ffn_multipliers",
                     absl::StrCat("give an FFN size of ", layer.ffn_dim, " at layer ", i,
                                  ", above ", kMaxDim));
    }
    c.layers.push_back(layer);
  }
  return c;
}

absl::StatusOr<OpenElmConfig> OpenElmConfig::FromFile(const std::string& path) {
  OPENELM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  return FromJson(text, path);
}

int64_t OpenElmConfig::NumParameters() const {
  const int64_t d = model_dim;
  const int64_t hd = head_dim;
  int64_t total =
      static_cast<int64_t>(vocab_size) * d + d;  // tied embedding + final norm
  for (const LayerShape& l : layers) {
    const int64_t q = l.num_query_heads;
    const int64_t kv = l.num_kv_heads;
    const int64_t f = l.ffn_dim;
    total += d + (q + 2 * kv) * hd * d + 2 * hd + d * q * hd;  // attention block
    total += d + 2 * f * d + d * f;                            // FFN block
  }
  return total;
}

int64_t OpenElmConfig::KvBytesPerToken(int32_t dtype_bytes) const {
  int64_t total = 0;
  for (const LayerShape& l : layers) {
    total += 2 * static_cast<int64_t>(l.num_kv_heads) * head_dim * dtype_bytes;
  }
  return total;
}

int32_t OpenElmConfig::max_q_heads() const {
  int32_t m = 0;
  for (const LayerShape& l : layers) m = std::max(m, l.num_query_heads);
  return m;
}

int32_t OpenElmConfig::max_kv_heads() const {
  int32_t m = 0;
  for (const LayerShape& l : layers) m = std::max(m, l.num_kv_heads);
  return m;
}

int32_t OpenElmConfig::max_ffn_dim() const {
  int32_t m = 0;
  for (const LayerShape& l : layers) m = std::max(m, l.ffn_dim);
  return m;
}

}  // namespace openelm
