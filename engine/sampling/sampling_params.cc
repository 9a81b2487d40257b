#include "engine/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace openelm {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view limit) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", limit));
}

}  // namespace

absl::Status SamplingParams::Validate(int32_t vocab_size) const {
  if (!std::isfinite(temperature) || temperature < 0.0f || temperature > 100.0f) {
    return Bad("temperature", "in [0, 100]");
  }
  if (top_k < 0) return Bad("top_k", ">= 0 (0 = off)");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Bad("top_p", "in (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return Bad("min_p", "in [0, 1]");
  if (!(repetition_penalty > 0.0f && repetition_penalty <= 100.0f)) {
    return Bad("repetition_penalty", "in (0, 100]");
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return Bad("presence_penalty", "in [-2, 2]");
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return Bad("frequency_penalty", "in [-2, 2]");
  }
  if (logit_bias.size() > static_cast<size_t>(kMaxLogitBias)) {
    return Bad("logit_bias", absl::StrCat("at most ", kMaxLogitBias, " entries"));
  }
  for (const auto& [token, bias] : logit_bias) {
    if (token < 0 || token >= vocab_size) {
      return Bad("logit_bias token ids", absl::StrCat("in [0, ", vocab_size, ")"));
    }
    if (!(bias >= -100.0f && bias <= 100.0f)) {
      return Bad("logit_bias values", "in [-100, 100]");
    }
  }
  if (max_tokens < 1) return Bad("max_tokens", ">= 1");
  if (min_tokens < 0 || min_tokens > max_tokens) {
    return Bad("min_tokens", "in [0, max_tokens]");
  }
  for (TokenId t : stop_token_ids) {
    if (t < 0 || t >= vocab_size) {
      return Bad("stop_token_ids", absl::StrCat("in [0, ", vocab_size, ")"));
    }
  }
  if (stop.size() > static_cast<size_t>(kMaxStopStrings)) {
    return Bad("stop", absl::StrCat("at most ", kMaxStopStrings, " strings"));
  }
  for (const std::string& s : stop) {
    if (s.empty() || s.size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return Bad("stop strings",
                 absl::StrCat("non-empty and at most ", kMaxStopStringBytes, " bytes"));
    }
  }
  if (logprobs < -1 || logprobs > kMaxLogprobs) {
    return Bad("logprobs", absl::StrCat("in [-1, ", kMaxLogprobs, "]"));
  }
  if (prompt_logprobs < -1 || prompt_logprobs > kMaxLogprobs) {
    return Bad("prompt_logprobs", absl::StrCat("in [-1, ", kMaxLogprobs, "]"));
  }
  if (n < 1 || n > kMaxN) return Bad("n", absl::StrCat("in [1, ", kMaxN, "]"));
  return absl::OkStatus();
}

}  // namespace openelm
