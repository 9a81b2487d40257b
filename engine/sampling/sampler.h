#ifndef OPENELM_ENGINE_SAMPLING_SAMPLER_H_
#define OPENELM_ENGINE_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/sampling/sampling_params.h"

namespace openelm {

// The per-completion random stream. mt19937_64 is fully specified by the C++
// standard, so a seed gives the same tokens on every platform.
using SamplerRng = std::mt19937_64;

// A (token, logprob) pair as the sampler reports it.
using LogprobEntry = std::pair<TokenId, float>;

// Turns one row of logits into one token under a request's SamplingParams.
//
// Processing order (vLLM's): min_tokens (EOS and stop ids set to -inf while
// fewer than min_tokens were generated; EOS only when !ignore_eos), logit_bias
// (added), repetition penalty (HF: over the distinct prompt + output tokens,
// logit > 0 ? logit / p : logit * p), frequency and presence penalties
// (OpenAI: over output tokens, logit -= frequency * count + presence *
// [count > 0]), then temperature. temperature == 0 takes the argmax (lowest
// id on ties) and draws no random number. Otherwise softmax(logits / T), then
// min_p (keep p >= min_p * p_max), top_k, top_p (the smallest set of the most
// likely tokens whose mass reaches top_p of what is left), and one draw
// from the renormalised rest.
//
// Logprobs are those of the RAW logits (log_softmax before any penalty, bias
// or temperature), vLLM's default: they describe the model, not the sampler.
//
// Thread-compatible. Owns scratch buffers sized to the vocabulary, so a call
// performs no heap allocation (apart from growing the logprob output).
class Sampler {
 public:
  // `eos_token_id`: the model's (ModelInfo::eos_token_id), suppressed before
  // min_tokens unless ignore_eos.
  explicit Sampler(int32_t vocab_size, TokenId eos_token_id = kEosTokenId);

  // `logits`: vocab_size raw floats. `tokens`: the sequence so far (prompt
  // then output), of which the first `num_prompt_tokens` are the prompt.
  TokenId Sample(const float* logits, const SamplingParams& params,
                 absl::Span<const TokenId> tokens, int32_t num_prompt_tokens,
                 SamplerRng* rng);

  // Appends to `out` the raw logprob of `token` then the `num_top` most
  // likely tokens with theirs (descending; ties by lower id).
  void Logprobs(const float* logits, TokenId token, int32_t num_top,
                std::vector<LogprobEntry>* out);

  // Test hooks, exposing the stages above.
  // Applies min_tokens, logit_bias and the penalties to `logits` in place.
  void ProcessLogits(const SamplingParams& params, absl::Span<const TokenId> tokens,
                     int32_t num_prompt_tokens, float* logits);
  // Ids that survive temperature + min_p + top_k + top_p for already
  // processed logits, sorted ascending.
  std::vector<TokenId> CandidateSet(const float* processed_logits,
                                    const SamplingParams& params);

  int32_t vocab_size() const { return vocab_size_; }

 private:
  // Fills probs_ with softmax(logits / T) and leaves the surviving ids in
  // idx_[0, return value).
  int32_t Truncate(const float* processed_logits, const SamplingParams& params);

  const int32_t vocab_size_;
  const TokenId eos_token_id_;
  std::vector<float> scratch_;  // processed logits
  std::vector<float> probs_;
  std::vector<int32_t> idx_;
  std::vector<int32_t> counts_;  // output-token counts, all zero between calls
  std::vector<uint32_t> stamp_;  // repetition-penalty "seen" marks
  uint32_t generation_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_SAMPLING_SAMPLER_H_
