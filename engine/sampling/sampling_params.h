#ifndef OPENELM_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
#define OPENELM_ENGINE_SAMPLING_SAMPLING_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/base/types.h"

namespace openelm {

// Per-request generation parameters (vLLM / OpenAI semantics).
struct SamplingParams {
  float temperature = 1.0f;        // 0 = greedy
  int32_t top_k = 0;               // 0 = off
  float top_p = 1.0f;              // (0, 1]
  float min_p = 0.0f;              // [0, 1]
  float repetition_penalty = 1.0f; // HF definition, > 0
  float presence_penalty = 0.0f;   // OpenAI, [-2, 2]
  float frequency_penalty = 0.0f;  // OpenAI, [-2, 2]
  std::vector<std::pair<TokenId, float>> logit_bias;  // added to logits, [-100, 100]
  std::optional<uint64_t> seed;    // per-request RNG; unset = random
  int32_t max_tokens = 16;         // >= 1
  int32_t min_tokens = 0;          // EOS / stop ids suppressed before this many
  bool ignore_eos = false;
  std::vector<TokenId> stop_token_ids;
  std::vector<std::string> stop;   // stop strings; never part of the output
  int32_t logprobs = -1;           // -1 none; 0..20 = chosen + that many top alternatives
  int32_t prompt_logprobs = -1;    // -1 none; 0..20 likewise, for prompt tokens
  int32_t n = 1;                   // completions sharing the prompt

  // Checks ranges; kInvalidArgument naming the field and its limit.
  absl::Status Validate(int32_t vocab_size) const;
};

// Limits enforced on every request (documented in README).
inline constexpr int32_t kMaxLogprobs = 20;
inline constexpr int32_t kMaxStopStrings = 16;
inline constexpr int32_t kMaxStopStringBytes = 256;
inline constexpr int32_t kMaxN = 8;
inline constexpr int32_t kMaxLogitBias = 300;

}  // namespace openelm

#endif  // OPENELM_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
