#include "tests/engine/numerics/reference/openelm_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/base/status_macros.h"

namespace openelm::testing {
namespace {

absl::Status CheckSize(const std::string& name, const std::vector<float>& v,
                       int64_t want) {
  if (static_cast<int64_t>(v.size()) != want) {
    return absl::InvalidArgumentError(absl::StrCat("reference weight ", name, " has ",
                                                   v.size(), " elements, want ", want));
  }
  return absl::OkStatus();
}

// Reads tensor `name` from `checkpoint` into `out` as f32, checking its shape.
absl::Status ReadTensor(const Checkpoint& checkpoint, const std::string& name,
                        const std::vector<int64_t>& shape, std::vector<float>* out) {
  const TensorView* t = checkpoint.Find(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference: checkpoint has no tensor ", name));
  }
  if (t->shape != shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference: tensor ", name, " has an unexpected shape"));
  }
  TensorToF32(*t, out);
  return absl::OkStatus();
}

}  // namespace

std::vector<double> ReferenceRmsNorm(absl::Span<const double> x,
                                     absl::Span<const float> w, double eps) {
  double sum_sq = 0.0;
  for (double v : x) sum_sq += v * v;
  const double scale = 1.0 / std::sqrt(sum_sq / static_cast<double>(x.size()) + eps);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * w[i];
  return out;
}

std::vector<double> ReferenceRope(absl::Span<const double> x, int64_t position,
                                  double theta) {
  const int64_t hd = static_cast<int64_t>(x.size());
  const int64_t half = hd / 2;
  std::vector<double> out(hd);
  for (int64_t j = 0; j < half; ++j) {
    const double inv_freq =
        std::pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(hd));
    const double angle = static_cast<double>(position) * inv_freq;
    const double c = std::cos(angle);
    const double s = std::sin(angle);
    // rotate_half(x) = concat(-x[half:], x[:half]).
    out[j] = x[j] * c - x[j + half] * s;
    out[j + half] = x[j + half] * c + x[j] * s;
  }
  return out;
}

std::vector<double> ReferenceSoftmax(absl::Span<const double> x) {
  double max = x[0];
  for (double v : x) max = std::max(max, v);
  std::vector<double> out(x.size());
  double sum = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    out[i] = std::exp(x[i] - max);
    sum += out[i];
  }
  for (double& v : out) v /= sum;
  return out;
}

double ReferenceSilu(double x) { return x / (1.0 + std::exp(-x)); }

absl::StatusOr<std::unique_ptr<OpenElmReference>> OpenElmReference::Create(
    const Checkpoint& checkpoint) {
  const OpenElmConfig& config = checkpoint.config();
  const int64_t d = config.model_dim;
  const int64_t hd = config.head_dim;
  ReferenceWeights w;
  OPENELM_RETURN_IF_ERROR(ReadTensor(checkpoint, "transformer.token_embeddings.weight",
                                     {config.vocab_size, d}, &w.token_embeddings));
  OPENELM_RETURN_IF_ERROR(
      ReadTensor(checkpoint, "transformer.norm.weight", {d}, &w.norm));
  w.layers.resize(config.num_layers);
  for (int32_t l = 0; l < config.num_layers; ++l) {
    const LayerShape& s = config.layers[l];
    const int64_t q = s.num_query_heads;
    const int64_t kv = s.num_kv_heads;
    const int64_t f = s.ffn_dim;
    const std::string p = absl::StrCat("transformer.layers.", l, ".");
    ReferenceLayerWeights& lw = w.layers[l];
    OPENELM_RETURN_IF_ERROR(
        ReadTensor(checkpoint, p + "attn_norm.weight", {d}, &lw.attn_norm));
    OPENELM_RETURN_IF_ERROR(ReadTensor(checkpoint, p + "attn.qkv_proj.weight",
                                       {(q + 2 * kv) * hd, d}, &lw.qkv_proj));
    OPENELM_RETURN_IF_ERROR(
        ReadTensor(checkpoint, p + "attn.q_norm.weight", {hd}, &lw.q_norm));
    OPENELM_RETURN_IF_ERROR(
        ReadTensor(checkpoint, p + "attn.k_norm.weight", {hd}, &lw.k_norm));
    OPENELM_RETURN_IF_ERROR(
        ReadTensor(checkpoint, p + "attn.out_proj.weight", {d, q * hd}, &lw.out_proj));
    OPENELM_RETURN_IF_ERROR(
        ReadTensor(checkpoint, p + "ffn_norm.weight", {d}, &lw.ffn_norm));
    OPENELM_RETURN_IF_ERROR(
        ReadTensor(checkpoint, p + "ffn.proj_1.weight", {2 * f, d}, &lw.proj_1));
    OPENELM_RETURN_IF_ERROR(
        ReadTensor(checkpoint, p + "ffn.proj_2.weight", {d, f}, &lw.proj_2));
  }
  return FromWeights(config, std::move(w));
}

template <class T>
void ReferenceQuantize8(absl::Span<T> x, int64_t group, int32_t levels) {
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t g = group == kWholeRow ? n : group;
  for (int64_t begin = 0; begin < n; begin += g) {
    const int64_t end = std::min(n, begin + g);
    double amax = 0.0;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(double{x[i]}));
    if (amax == 0.0) continue;
    const double scale = amax / levels;
    for (int64_t i = begin; i < end; ++i) {
      x[i] = static_cast<T>(std::nearbyint(double{x[i]} / scale) * scale);
    }
  }
}
template void ReferenceQuantize8<float>(absl::Span<float>, int64_t, int32_t);
template void ReferenceQuantize8<double>(absl::Span<double>, int64_t, int32_t);

std::vector<double> OpenElmReference::MatVec(const std::vector<float>& w, int64_t rows,
                                             int64_t cols, std::vector<double> x) const {
  if (options_.int8_input_group != 0) {
    ReferenceQuantize8(absl::MakeSpan(x), options_.int8_input_group,
                       options_.int8_input_levels);
  }
  std::vector<double> y(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w.data() + r * cols;
    double sum = 0.0;
    for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(row[c]) * x[c];
    y[r] = sum;
  }
  return y;
}

absl::StatusOr<std::unique_ptr<OpenElmReference>> OpenElmReference::FromWeights(
    OpenElmConfig config, ReferenceWeights weights, ReferenceOptions options) {
  if (options.int8_input_group < kWholeRow) {
    return absl::InvalidArgumentError("reference: bad int8_input_group");
  }
  const int64_t d = config.model_dim;
  const int64_t hd = config.head_dim;
  if (d <= 0 || hd <= 0 || hd % 2 != 0 || config.vocab_size <= 0 ||
      config.num_layers != static_cast<int32_t>(config.layers.size()) ||
      config.num_layers != static_cast<int32_t>(weights.layers.size())) {
    return absl::InvalidArgumentError("reference: inconsistent config");
  }
  OPENELM_RETURN_IF_ERROR(CheckSize("token_embeddings", weights.token_embeddings,
                                    int64_t{config.vocab_size} * d));
  OPENELM_RETURN_IF_ERROR(CheckSize("norm", weights.norm, d));
  for (int32_t l = 0; l < config.num_layers; ++l) {
    const LayerShape& s = config.layers[l];
    const int64_t q = s.num_query_heads;
    const int64_t kv = s.num_kv_heads;
    const int64_t f = s.ffn_dim;
    if (q <= 0 || kv <= 0 || q % kv != 0 || f <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("reference: bad shape of layer ", l));
    }
    const ReferenceLayerWeights& lw = weights.layers[l];
    const std::string p = absl::StrCat("layers.", l, ".");
    OPENELM_RETURN_IF_ERROR(CheckSize(p + "attn_norm", lw.attn_norm, d));
    OPENELM_RETURN_IF_ERROR(
        CheckSize(p + "qkv_proj", lw.qkv_proj, (q + 2 * kv) * hd * d));
    OPENELM_RETURN_IF_ERROR(CheckSize(p + "q_norm", lw.q_norm, hd));
    OPENELM_RETURN_IF_ERROR(CheckSize(p + "k_norm", lw.k_norm, hd));
    OPENELM_RETURN_IF_ERROR(CheckSize(p + "out_proj", lw.out_proj, d * q * hd));
    OPENELM_RETURN_IF_ERROR(CheckSize(p + "ffn_norm", lw.ffn_norm, d));
    OPENELM_RETURN_IF_ERROR(CheckSize(p + "proj_1", lw.proj_1, 2 * f * d));
    OPENELM_RETURN_IF_ERROR(CheckSize(p + "proj_2", lw.proj_2, d * f));
  }
  return std::unique_ptr<OpenElmReference>(
      new OpenElmReference(std::move(config), std::move(weights), options));
}

absl::StatusOr<std::vector<std::vector<double>>> OpenElmReference::FinalHidden(
    absl::Span<const TokenId> tokens) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("reference: empty sequence");
  if (n > config_.max_context_length) {
    return absl::InvalidArgumentError(absl::StrCat("reference: ", n,
                                                   " tokens exceed max_context_length ",
                                                   config_.max_context_length));
  }
  const int64_t d = config_.model_dim;
  const int64_t hd = config_.head_dim;
  const double eps = config_.rms_norm_eps;
  const double theta = config_.rope_freq_constant;

  // 1. Token embeddings, no scaling. x[t] is the residual stream of token t.
  std::vector<std::vector<double>> x(n, std::vector<double>(d));
  for (int64_t t = 0; t < n; ++t) {
    const TokenId id = tokens[t];
    if (id < 0 || id >= config_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("reference: token ", id, " outside the vocabulary"));
    }
    for (int64_t i = 0; i < d; ++i) {
      x[t][i] = weights_.token_embeddings[id * d + i];
    }
  }

  // 2. Decoder layers.
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    const LayerShape& shape = config_.layers[l];
    const ReferenceLayerWeights& w = weights_.layers[l];
    const int64_t nq = shape.num_query_heads;
    const int64_t nkv = shape.num_kv_heads;
    const int64_t group = nq / nkv;  // query heads per KV head
    const int64_t ffn = shape.ffn_dim;

    // q[t][j], k[t][j], v[t][j]: head j of token t, each hd values.
    using Heads = std::vector<std::vector<double>>;
    std::vector<Heads> q(n), k(n), v(n);
    for (int64_t t = 0; t < n; ++t) {
      const std::vector<double> h = ReferenceRmsNorm(x[t], w.attn_norm, eps);
      const std::vector<double> qkv = MatVec(w.qkv_proj, (nq + 2 * nkv) * hd, d, h);
      // Rows of qkv_proj: nq*hd of Q, then nkv*hd of K, then nkv*hd of V.
      const double* q_base = qkv.data();
      const double* k_base = q_base + nq * hd;
      const double* v_base = k_base + nkv * hd;
      for (int64_t j = 0; j < nq; ++j) {
        std::vector<double> head(q_base + j * hd, q_base + (j + 1) * hd);
        head = ReferenceRmsNorm(head, w.q_norm, eps);  // per-head, before RoPE
        q[t].push_back(ReferenceRope(head, t, theta));
      }
      for (int64_t j = 0; j < nkv; ++j) {
        std::vector<double> head(k_base + j * hd, k_base + (j + 1) * hd);
        head = ReferenceRmsNorm(head, w.k_norm, eps);
        k[t].push_back(ReferenceRope(head, t, theta));
        v[t].emplace_back(v_base + j * hd, v_base + (j + 1) * hd);  // not normalised
      }
    }

    // Causal attention, then out_proj and the residual add.
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> attn(nq * hd, 0.0);  // heads concatenated head-major
      for (int64_t j = 0; j < nq; ++j) {
        const int64_t kv_head = j / group;
        std::vector<double> scores(t + 1);
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0.0;
          for (int64_t i = 0; i < hd; ++i) dot += q[t][j][i] * k[s][kv_head][i];
          scores[s] = dot * scale;
        }
        const std::vector<double> p = ReferenceSoftmax(scores);
        for (int64_t s = 0; s <= t; ++s) {
          for (int64_t i = 0; i < hd; ++i) {
            attn[j * hd + i] += p[s] * v[s][kv_head][i];
          }
        }
      }
      const std::vector<double> o = MatVec(w.out_proj, d, nq * hd, attn);
      for (int64_t i = 0; i < d; ++i) x[t][i] += o[i];
    }

    // SwiGLU feed-forward: gate is the FIRST half of proj_1's output.
    for (int64_t t = 0; t < n; ++t) {
      const std::vector<double> h = ReferenceRmsNorm(x[t], w.ffn_norm, eps);
      const std::vector<double> y = MatVec(w.proj_1, 2 * ffn, d, h);
      std::vector<double> act(ffn);
      for (int64_t i = 0; i < ffn; ++i) act[i] = ReferenceSilu(y[i]) * y[ffn + i];
      const std::vector<double> o = MatVec(w.proj_2, d, ffn, act);
      for (int64_t i = 0; i < d; ++i) x[t][i] += o[i];
    }
  }

  // 3. Final RMSNorm.
  for (int64_t t = 0; t < n; ++t) x[t] = ReferenceRmsNorm(x[t], weights_.norm, eps);
  return x;
}

std::vector<float> OpenElmReference::LmHead(const std::vector<double>& hidden) const {
  const std::vector<double> logits =
      MatVec(weights_.token_embeddings, config_.vocab_size, config_.model_dim, hidden);
  return std::vector<float>(logits.begin(), logits.end());
}

absl::StatusOr<std::vector<std::vector<float>>> OpenElmReference::ForwardAll(
    absl::Span<const TokenId> tokens) const {
  OPENELM_ASSIGN_OR_RETURN(std::vector<std::vector<double>> hidden, FinalHidden(tokens));
  std::vector<std::vector<float>> logits;
  logits.reserve(hidden.size());
  for (const std::vector<double>& h : hidden) logits.push_back(LmHead(h));
  return logits;
}

absl::StatusOr<std::vector<float>> OpenElmReference::ForwardLast(
    absl::Span<const TokenId> tokens) const {
  OPENELM_ASSIGN_OR_RETURN(std::vector<std::vector<double>> hidden, FinalHidden(tokens));
  return LmHead(hidden.back());
}

}  // namespace openelm::testing
