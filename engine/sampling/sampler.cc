#include "engine/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/base/check.h"

namespace openelm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Uniform double in [0, 1) from 53 random bits.
double Uniform(SamplerRng* rng) {
  return static_cast<double>((*rng)() >> 11) * 0x1.0p-53;
}

}  // namespace

Sampler::Sampler(int32_t vocab_size, TokenId eos_token_id)
    : vocab_size_(vocab_size),
      eos_token_id_(eos_token_id),
      scratch_(vocab_size),
      probs_(vocab_size),
      idx_(vocab_size),
      counts_(vocab_size, 0),
      stamp_(vocab_size, 0) {
  OPENELM_CHECK(vocab_size > 0);
}

void Sampler::ProcessLogits(const SamplingParams& params,
                            absl::Span<const TokenId> tokens, int32_t num_prompt_tokens,
                            float* x) {
  const int32_t num_output = static_cast<int32_t>(tokens.size()) - num_prompt_tokens;
  if (num_output < params.min_tokens) {
    if (!params.ignore_eos && eos_token_id_ >= 0 && eos_token_id_ < vocab_size_) {
      x[eos_token_id_] = kNegInf;
    }
    for (TokenId t : params.stop_token_ids) {
      if (t >= 0 && t < vocab_size_) x[t] = kNegInf;
    }
  }
  for (const auto& [t, bias] : params.logit_bias) {
    if (t >= 0 && t < vocab_size_) x[t] += bias;
  }
  if (params.repetition_penalty != 1.0f) {
    const float p = params.repetition_penalty;
    if (++generation_ == 0) {  // wrapped: reset the marks
      std::fill(stamp_.begin(), stamp_.end(), 0);
      generation_ = 1;
    }
    for (TokenId t : tokens) {
      if (t < 0 || t >= vocab_size_ || stamp_[t] == generation_) continue;
      stamp_[t] = generation_;
      x[t] = x[t] > 0 ? x[t] / p : x[t] * p;
    }
  }
  if (params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) {
    absl::Span<const TokenId> output = tokens.subspan(num_prompt_tokens);
    for (TokenId t : output) {
      if (t >= 0 && t < vocab_size_) ++counts_[t];
    }
    for (TokenId t : output) {
      if (t < 0 || t >= vocab_size_ || counts_[t] == 0) continue;
      x[t] -= params.frequency_penalty * static_cast<float>(counts_[t]) +
              params.presence_penalty;
      counts_[t] = 0;  // applied once per distinct token; leaves counts_ zeroed
    }
  }
}

int32_t Sampler::Truncate(const float* x, const SamplingParams& params) {
  const int32_t v = vocab_size_;
  const float inv_t = 1.0f / params.temperature;
  float max_logit = kNegInf;
  for (int32_t i = 0; i < v; ++i) max_logit = std::max(max_logit, x[i] * inv_t);
  double sum = 0;
  for (int32_t i = 0; i < v; ++i) {
    const float p = std::exp(x[i] * inv_t - max_logit);
    probs_[i] = p;
    sum += p;
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  float p_max = 0;
  for (int32_t i = 0; i < v; ++i) {
    probs_[i] *= inv_sum;
    p_max = std::max(p_max, probs_[i]);
  }
  // min_p, and drop impossible tokens (p == 0, e.g. -inf logits).
  const float floor = params.min_p * p_max;
  int32_t m = 0;
  for (int32_t i = 0; i < v; ++i) {
    if (probs_[i] > 0.0f && probs_[i] >= floor) idx_[m++] = i;
  }
  if (m == 0) {  // every logit -inf: nothing sensible; fall back to the argmax
    idx_[0] = static_cast<int32_t>(std::max_element(x, x + v) - x);
    return 1;
  }
  auto more_likely = [this](int32_t a, int32_t b) {
    return probs_[a] > probs_[b] || (probs_[a] == probs_[b] && a < b);
  };
  if (params.top_k > 0 && params.top_k < m) {
    std::nth_element(idx_.begin(), idx_.begin() + params.top_k, idx_.begin() + m,
                     more_likely);
    m = params.top_k;
  }
  if (params.top_p < 1.0f) {
    double mass = 0;
    for (int32_t i = 0; i < m; ++i) mass += probs_[idx_[i]];
    const double target = params.top_p * mass;
    // Sort only as much of the head as the nucleus needs: grow geometrically.
    int32_t s = std::min(m, 64);
    while (true) {
      if (s < m) {
        std::nth_element(idx_.begin(), idx_.begin() + s, idx_.begin() + m, more_likely);
      }
      std::sort(idx_.begin(), idx_.begin() + s, more_likely);
      double cum = 0;
      int32_t cut = -1;
      for (int32_t i = 0; i < s; ++i) {
        cum += probs_[idx_[i]];
        if (cum >= target) {
          cut = i + 1;
          break;
        }
      }
      if (cut > 0) {
        m = cut;
        break;
      }
      if (s == m) break;  // rounding: keep everything
      s = std::min(m, s * 4);
    }
  }
  return m;
}

TokenId Sampler::Sample(const float* logits, const SamplingParams& params,
                        absl::Span<const TokenId> tokens, int32_t num_prompt_tokens,
                        SamplerRng* rng) {
  float* x = scratch_.data();
  std::copy(logits, logits + vocab_size_, x);
  ProcessLogits(params, tokens, num_prompt_tokens, x);
  if (params.temperature == 0.0f) {
    return static_cast<TokenId>(std::max_element(x, x + vocab_size_) - x);
  }
  const int32_t m = Truncate(x, params);
  double mass = 0;
  for (int32_t i = 0; i < m; ++i) mass += probs_[idx_[i]];
  const double u = Uniform(rng) * mass;
  double cum = 0;
  for (int32_t i = 0; i < m; ++i) {
    cum += probs_[idx_[i]];
    if (u < cum) return idx_[i];
  }
  return idx_[m - 1];
}

std::vector<TokenId> Sampler::CandidateSet(const float* processed_logits,
                                           const SamplingParams& params) {
  std::vector<TokenId> out;
  if (params.temperature == 0.0f) {
    out.push_back(static_cast<TokenId>(
        std::max_element(processed_logits, processed_logits + vocab_size_) -
        processed_logits));
    return out;
  }
  const int32_t m = Truncate(processed_logits, params);
  out.assign(idx_.begin(), idx_.begin() + m);
  std::sort(out.begin(), out.end());
  return out;
}

void Sampler::Logprobs(const float* logits, TokenId token, int32_t num_top,
                       std::vector<LogprobEntry>* out) {
  const int32_t v = vocab_size_;
  const float max_logit = *std::max_element(logits, logits + v);
  double sum = 0;
  for (int32_t i = 0; i < v; ++i) sum += std::exp(logits[i] - max_logit);
  const float log_z = max_logit + static_cast<float>(std::log(sum));
  out->emplace_back(token, logits[token] - log_z);
  const int32_t k = std::min(num_top, v);
  if (k <= 0) return;
  for (int32_t i = 0; i < v; ++i) idx_[i] = i;
  std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(),
                    [logits](int32_t a, int32_t b) {
                      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
                    });
  for (int32_t i = 0; i < k; ++i) {
    out->emplace_back(idx_[i], logits[idx_[i]] - log_z);
  }
}

}  // namespace openelm
