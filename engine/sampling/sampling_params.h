#ifndef OPENELM_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
#define OPENELM_ENGINE_SAMPLING_SAMPLING_PARAMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/base/types.h"

namespace openelm {

// Per-request generation parameters (vLLM / OpenAI semantics).
struct SamplingParams {
  float temperature = 1.0f;                           // [0, 2]; 0 = greedy
  int32_t top_k = 0;                                  // [0, vocab]; 0 = off
  float top_p = 1.0f;                                 // (0, 1]
  float min_p = 0.0f;                                 // [0, 1]
  float repetition_penalty = 1.0f;                    // HF definition, (0, 10]
  float presence_penalty = 0.0f;                      // OpenAI, [-2, 2]
  float frequency_penalty = 0.0f;                     // OpenAI, [-2, 2]
  std::vector<std::pair<TokenId, float>> logit_bias;  // added to logits, [-100, 100]
  std::optional<uint64_t> seed;                       // per-request RNG; unset = random
  int32_t max_tokens = 16;                            // >= 1
  int32_t min_tokens = 0;  // EOS / stop ids suppressed before this many
  bool ignore_eos = false;
  std::vector<TokenId> stop_token_ids;
  std::vector<std::string> stop;  // stop strings; never part of the output
  int32_t logprobs = -1;          // -1 none; 0..20 = chosen + that many top alternatives
  int32_t prompt_logprobs = -1;   // -1 none; 0..20 likewise, for prompt tokens
  int32_t n = 1;                  // completions sharing the prompt

  // The one definition of every parameter's range, used by the engine and by
  // every front end (which only maps its wire format onto these fields).
  // kInvalidArgument naming the field as `field_prefix` + its name (the gRPC
  // front passes "options.") and its limit, e.g. "options.top_p = 1.5 is out
  // of range (0, 1]". `max_context_length` bounds max_tokens (0: unchecked).
  absl::Status Validate(int32_t vocab_size, int32_t max_context_length = 0,
                        absl::string_view field_prefix = "") const;
};

// Limits enforced on every request (documented in docs/reliability.md).
inline constexpr float kMaxTemperature = 2.0f;
inline constexpr float kMaxRepetitionPenalty = 10.0f;
inline constexpr float kMaxAbsPenalty = 2.0f;  // presence / frequency
inline constexpr float kMaxAbsLogitBias = 100.0f;
inline constexpr int32_t kMaxLogprobs = 20;
inline constexpr int32_t kMaxStopStrings = 16;
inline constexpr int32_t kMaxStopStringBytes = 256;
inline constexpr int32_t kMaxStopTokenIds = 64;
inline constexpr int32_t kMaxN = 8;
inline constexpr int32_t kMaxLogitBias = 300;

// The one context-length rule: the prompt (at least one token) plus
// max_tokens must fit the model's context.
absl::Status CheckFitsContext(int64_t num_prompt_tokens, int32_t max_tokens,
                              int32_t max_context_length,
                              absl::string_view field_prefix = "");

}  // namespace openelm

#endif  // OPENELM_ENGINE_SAMPLING_SAMPLING_PARAMS_H_
