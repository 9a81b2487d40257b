#include "tests/engine/numerics/reference/golden_file.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/base/status_macros.h"
#include "engine/model/openelm_config.h"
#include "tests/engine/numerics/reference/openelm_reference.h"

namespace openelm::testing {
namespace {

constexpr absl::string_view kMagic = "OPENELM_REFERENCE_GOLDEN";

int32_t NumSampled(int32_t vocab_size, int32_t stride) {
  return (vocab_size + stride - 1) / stride;
}

// SplitMix64's finaliser: a bijective 64-bit mix.
uint64_t Mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Hands out the non-empty lines of a golden file one by one, split into
// space-separated fields, and names the line in errors.
class LineReader {
 public:
  explicit LineReader(const std::string& text)
      : lines_(absl::StrSplit(text, '\n', absl::SkipEmpty())) {}

  absl::StatusOr<std::vector<std::string>> Next(absl::string_view keyword) {
    if (next_ >= lines_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("golden: missing line '", keyword, "'"));
    }
    std::vector<std::string> fields =
        absl::StrSplit(lines_[next_++], ' ', absl::SkipEmpty());
    if (!keyword.empty() && (fields.empty() || fields[0] != keyword)) {
      return Error(absl::StrCat("expected '", keyword, "'"));
    }
    return fields;
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("golden line ", next_, ": ", what));
  }
  bool AtEnd() const { return next_ >= lines_.size(); }

 private:
  std::vector<std::string> lines_;
  size_t next_ = 0;
};

template <typename T>
absl::Status ParseNumber(const LineReader& r, const std::string& s, T* out) {
  if (!absl::SimpleAtoi(s, out)) return r.Error(absl::StrCat("bad integer ", s));
  return absl::OkStatus();
}

}  // namespace

std::string SerializeGolden(const GoldenLogits& g) {
  std::string out = absl::StrCat(kMagic, " ", GoldenLogits::kVersion, "\n");
  absl::StrAppend(&out, "seed ", g.seed, "\n");
  absl::StrAppend(&out, "shape ", g.layers.size(), " ", g.model_dim, " ", g.head_dim, " ",
                  g.vocab_size, "\n");
  for (const LayerShape& l : g.layers) {
    absl::StrAppend(&out, "layer ", l.num_query_heads, " ", l.num_kv_heads, " ",
                    l.ffn_dim, "\n");
  }
  absl::StrAppend(&out, "tokens ", g.tokens.size());
  for (TokenId t : g.tokens) absl::StrAppend(&out, " ", t);
  absl::StrAppend(&out, "\nstride ", g.stride, "\n");
  for (size_t p = 0; p < g.sampled.size(); ++p) {
    absl::StrAppend(&out, "position ", p, " argmax ", g.argmax[p], "\n");
    for (size_t i = 0; i < g.sampled[p].size(); ++i) {
      absl::StrAppend(&out, i == 0 ? "" : " ", absl::StrFormat("%.9g", g.sampled[p][i]));
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

absl::StatusOr<GoldenLogits> ParseGolden(const std::string& text) {
  LineReader r(text);
  GoldenLogits g;
  OPENELM_ASSIGN_OR_RETURN(std::vector<std::string> f, r.Next(kMagic));
  int32_t version = 0;
  if (f.size() != 2) return r.Error("bad magic line");
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[1], &version));
  if (version != GoldenLogits::kVersion) {
    return r.Error(absl::StrCat("unsupported version ", version));
  }
  OPENELM_ASSIGN_OR_RETURN(f, r.Next("seed"));
  if (f.size() != 2) return r.Error("bad seed line");
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[1], &g.seed));
  OPENELM_ASSIGN_OR_RETURN(f, r.Next("shape"));
  if (f.size() != 5) return r.Error("bad shape line");
  int32_t num_layers = 0;
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[1], &num_layers));
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[2], &g.model_dim));
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[3], &g.head_dim));
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[4], &g.vocab_size));
  if (num_layers <= 0 || num_layers > 64) return r.Error("bad layer count");
  for (int32_t l = 0; l < num_layers; ++l) {
    OPENELM_ASSIGN_OR_RETURN(f, r.Next("layer"));
    if (f.size() != 4) return r.Error("bad layer line");
    LayerShape shape;
    OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[1], &shape.num_query_heads));
    OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[2], &shape.num_kv_heads));
    OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[3], &shape.ffn_dim));
    g.layers.push_back(shape);
  }
  OPENELM_ASSIGN_OR_RETURN(f, r.Next("tokens"));
  size_t n = 0;
  if (f.size() < 2) return r.Error("bad tokens line");
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[1], &n));
  if (f.size() != n + 2 || n == 0) return r.Error("token count mismatch");
  g.tokens.resize(n);
  for (size_t i = 0; i < n; ++i)
    OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[i + 2], &g.tokens[i]));
  OPENELM_ASSIGN_OR_RETURN(f, r.Next("stride"));
  if (f.size() != 2) return r.Error("bad stride line");
  OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[1], &g.stride));
  if (g.stride <= 0 || g.vocab_size <= 0) return r.Error("bad stride or vocab");
  const int32_t per_row = NumSampled(g.vocab_size, g.stride);
  for (size_t p = 0; p < n; ++p) {
    OPENELM_ASSIGN_OR_RETURN(f, r.Next("position"));
    size_t pos = 0;
    TokenId argmax = 0;
    if (f.size() != 4 || f[2] != "argmax") return r.Error("bad position line");
    OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[1], &pos));
    OPENELM_RETURN_IF_ERROR(ParseNumber(r, f[3], &argmax));
    if (pos != p) return r.Error("positions out of order");
    g.argmax.push_back(argmax);
    OPENELM_ASSIGN_OR_RETURN(f, r.Next(""));
    if (static_cast<int32_t>(f.size()) != per_row)
      return r.Error("wrong number of values");
    std::vector<float> row(per_row);
    for (int32_t i = 0; i < per_row; ++i) {
      if (!absl::SimpleAtof(f[i], &row[i]))
        return r.Error(absl::StrCat("bad float ", f[i]));
    }
    g.sampled.push_back(std::move(row));
  }
  if (!r.AtEnd()) return r.Error("trailing content");
  return g;
}

ReferenceWeights SyntheticWeights(const OpenElmConfig& config, uint64_t seed) {
  uint64_t tensor_index = 0;
  // Uniform on [-a, a] has standard deviation a / sqrt(3); a = 0.02 sqrt(3).
  const auto fill = [&](int64_t n, float offset) {
    const uint64_t k = tensor_index++;
    std::vector<float> v(n);
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t bits = Mix(seed ^ Mix((k << 40) ^ static_cast<uint64_t>(i)));
      const double u = static_cast<double>(bits >> 11) * 0x1.0p-53;  // [0, 1)
      v[i] = offset + static_cast<float>((2.0 * u - 1.0) * 0.034641016151377546);
    }
    return v;
  };
  const int64_t d = config.model_dim;
  const int64_t hd = config.head_dim;
  ReferenceWeights w;
  w.token_embeddings = fill(int64_t{config.vocab_size} * d, 0.0f);
  w.norm = fill(d, 1.0f);
  for (const LayerShape& s : config.layers) {
    const int64_t q = s.num_query_heads;
    const int64_t kv = s.num_kv_heads;
    const int64_t f = s.ffn_dim;
    ReferenceLayerWeights lw;
    lw.attn_norm = fill(d, 1.0f);
    lw.qkv_proj = fill((q + 2 * kv) * hd * d, 0.0f);
    lw.q_norm = fill(hd, 1.0f);
    lw.k_norm = fill(hd, 1.0f);
    lw.out_proj = fill(d * q * hd, 0.0f);
    lw.ffn_norm = fill(d, 1.0f);
    lw.proj_1 = fill(2 * f * d, 0.0f);
    lw.proj_2 = fill(d * f, 0.0f);
    w.layers.push_back(std::move(lw));
  }
  return w;
}

absl::StatusOr<GoldenLogits> ComputeGolden(GoldenLogits spec) {
  OpenElmConfig config;  // eps, RoPE theta etc. keep the OpenELM defaults
  config.num_layers = static_cast<int32_t>(spec.layers.size());
  config.model_dim = spec.model_dim;
  config.head_dim = spec.head_dim;
  config.vocab_size = spec.vocab_size;
  config.layers = spec.layers;
  ReferenceWeights weights = SyntheticWeights(config, spec.seed);
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<OpenElmReference> ref,
                           OpenElmReference::FromWeights(config, std::move(weights)));
  OPENELM_ASSIGN_OR_RETURN(std::vector<std::vector<float>> logits,
                           ref->ForwardAll(spec.tokens));
  if (spec.stride <= 0) return absl::InvalidArgumentError("golden: stride must be > 0");
  spec.argmax.clear();
  spec.sampled.clear();
  for (const std::vector<float>& row : logits) {
    TokenId best = 0;
    for (int32_t i = 1; i < config.vocab_size; ++i) {
      if (row[i] > row[best]) best = i;
    }
    spec.argmax.push_back(best);
    std::vector<float> sampled;
    for (int32_t i = 0; i < config.vocab_size; i += spec.stride)
      sampled.push_back(row[i]);
    spec.sampled.push_back(std::move(sampled));
  }
  return spec;
}

}  // namespace openelm::testing
