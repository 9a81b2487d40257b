// The published OpenELM sizes (and our tiny one), built by Apple's formulas.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/openelm_config.h"
#include "engine/model/openelm_shapes.h"

namespace openelm {
namespace {

using shapes::FfnDim;
using shapes::QueryHeadsFromMultipliers;
using shapes::RoundedLinspace;

struct PublishedShape {
  const char* name;
  int32_t num_layers;
  int32_t model_dim;
  int32_t head_dim;
};
constexpr PublishedShape kPublished[] = {
    {"270M", 16, 1280, 64},
    {"450M", 20, 1536, 64},
    {"1_1B", 28, 2048, 64},
    {"3B", 36, 3072, 128},
};

bool SameShape(const OpenElmConfig& a, const OpenElmConfig& b) {
  if (a.num_layers != b.num_layers || a.model_dim != b.model_dim ||
      a.head_dim != b.head_dim || a.vocab_size != b.vocab_size) {
    return false;
  }
  for (int32_t i = 0; i < a.num_layers; ++i) {
    const LayerShape& x = a.layers[i];
    const LayerShape& y = b.layers[i];
    if (x.num_query_heads != y.num_query_heads || x.num_kv_heads != y.num_kv_heads ||
        x.ffn_dim != y.ffn_dim) {
      return false;
    }
  }
  return true;
}

// Builds a config the way Apple's OpenELMConfig.__post_init__ does.
OpenElmConfig BuildConfig(int32_t num_layers, int32_t model_dim, int32_t head_dim,
                          int32_t num_gqa_groups, int32_t ffn_dim_divisor, double qkv_lo,
                          double qkv_hi, double ffn_lo, double ffn_hi) {
  OpenElmConfig c;
  c.num_layers = num_layers;
  c.model_dim = model_dim;
  c.head_dim = head_dim;
  c.num_gqa_groups = num_gqa_groups;
  c.ffn_dim_divisor = ffn_dim_divisor;
  c.qkv_multipliers = {static_cast<float>(qkv_lo), static_cast<float>(qkv_hi)};
  const std::vector<int32_t> q_heads = QueryHeadsFromMultipliers(
      {qkv_lo, qkv_hi}, num_layers, model_dim, head_dim, num_gqa_groups);
  const std::vector<double> ffn_mult = RoundedLinspace(ffn_lo, ffn_hi, num_layers);
  for (int32_t i = 0; i < num_layers; ++i) {
    c.ffn_multipliers.push_back(static_cast<float>(ffn_mult[i]));
    LayerShape layer;
    layer.num_query_heads = q_heads[i];
    layer.num_kv_heads = q_heads[i] / num_gqa_groups;
    layer.ffn_dim = FfnDim(ffn_mult[i], model_dim, ffn_dim_divisor);
    c.layers.push_back(layer);
  }
  return c;
}

}  // namespace

std::string OpenElmConfig::SizeName() const {
  for (const char* name : {"270M", "450M", "1_1B", "3B", "tiny"}) {
    absl::StatusOr<OpenElmConfig> published = MakeOpenElmConfig(name);
    if (published.ok() && SameShape(*this, *published)) return name;
  }
  return "custom";
}

absl::StatusOr<OpenElmConfig> MakeOpenElmConfig(absl::string_view size) {
  if (size == "tiny") {
    // d=128, hd=32, group size 2: q heads {2,4,6}, kv heads {1,2,3},
    // FFN {256,384,512}. Derived exactly like the published ones so that
    // Apple's own config code would reproduce it.
    return BuildConfig(/*num_layers=*/3, /*model_dim=*/128, /*head_dim=*/32,
                       /*num_gqa_groups=*/2, /*ffn_dim_divisor=*/128,
                       /*qkv=*/0.5, 1.5, /*ffn=*/2.0, 4.0);
  }
  for (const PublishedShape& p : kPublished) {
    if (size == p.name) {
      return BuildConfig(p.num_layers, p.model_dim, p.head_dim, /*num_gqa_groups=*/4,
                         /*ffn_dim_divisor=*/256, 0.5, 1.0, 0.5, 4.0);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown model size '", size, "' (expected tiny, 270M, 450M, 1_1B or 3B)"));
}

}  // namespace openelm
