#include "engine/sampling/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace openelm {
namespace {

// "<prefix><field> = <value> is out of range <lo..hi with brackets>", or OK.
// NaN is always out of range.
absl::Status CheckRange(absl::string_view prefix, absl::string_view field, double value,
                        double lo, double hi, bool lo_open = false,
                        bool hi_open = false) {
  const bool below = lo_open ? !(value > lo) : !(value >= lo);
  const bool above = hi_open ? !(value < hi) : !(value <= hi);
  if (!below && !above) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(prefix, field, " = ", value,
                                                 " is out of range ", lo_open ? "(" : "[",
                                                 lo, ", ", hi, hi_open ? ")" : "]"));
}

absl::Status CheckTokenId(absl::string_view prefix, absl::string_view field, int64_t id,
                          int32_t vocab_size) {
  return CheckRange(prefix, field, static_cast<double>(id), 0, vocab_size,
                    /*lo_open=*/false, /*hi_open=*/true);
}

}  // namespace

absl::Status SamplingParams::Validate(int32_t vocab_size, int32_t max_context_length,
                                      absl::string_view pre) const {
  if (!std::isfinite(temperature)) {
    return CheckRange(pre, "temperature", std::nan(""), 0, kMaxTemperature);
  }
  if (absl::Status s = CheckRange(pre, "temperature", temperature, 0, kMaxTemperature);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange(pre, "top_k", top_k, 0, vocab_size); !s.ok()) return s;
  if (absl::Status s = CheckRange(pre, "top_p", top_p, 0, 1, /*lo_open=*/true); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange(pre, "min_p", min_p, 0, 1); !s.ok()) return s;
  if (absl::Status s = CheckRange(pre, "repetition_penalty", repetition_penalty, 0,
                                  kMaxRepetitionPenalty, /*lo_open=*/true);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange(pre, "presence_penalty", presence_penalty,
                                  -kMaxAbsPenalty, kMaxAbsPenalty);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRange(pre, "frequency_penalty", frequency_penalty,
                                  -kMaxAbsPenalty, kMaxAbsPenalty);
      !s.ok()) {
    return s;
  }
  if (logit_bias.size() > static_cast<size_t>(kMaxLogitBias)) {
    return absl::InvalidArgumentError(
        absl::StrCat(pre, "logit_bias has ", logit_bias.size(), " entries; at most ",
                     kMaxLogitBias, " are allowed"));
  }
  for (const auto& [token, bias] : logit_bias) {
    if (absl::Status s = CheckTokenId(pre, "logit_bias key", token, vocab_size);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckRange(pre, absl::StrCat("logit_bias[", token, "]"), bias,
                                    -kMaxAbsLogitBias, kMaxAbsLogitBias);
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s =
          CheckRange(pre, "max_tokens", max_tokens, 1,
                     max_context_length > 0 ? max_context_length : INT32_MAX);
      !s.ok()) {
    return s;
  }
  if (min_tokens < 0 || min_tokens > max_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat(pre, "min_tokens = ", min_tokens,
                     " is out of range [0, max_tokens = ", max_tokens, "]"));
  }
  if (stop_token_ids.size() > static_cast<size_t>(kMaxStopTokenIds)) {
    return absl::InvalidArgumentError(
        absl::StrCat(pre, "stop_token_ids has ", stop_token_ids.size(), " ids; at most ",
                     kMaxStopTokenIds, " are allowed"));
  }
  for (size_t i = 0; i < stop_token_ids.size(); ++i) {
    if (absl::Status s = CheckTokenId(pre, absl::StrCat("stop_token_ids[", i, "]"),
                                      stop_token_ids[i], vocab_size);
        !s.ok()) {
      return s;
    }
  }
  if (stop.size() > static_cast<size_t>(kMaxStopStrings)) {
    return absl::InvalidArgumentError(absl::StrCat(pre, "stop has ", stop.size(),
                                                   " strings; at most ", kMaxStopStrings,
                                                   " are allowed"));
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty() || stop[i].size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat(pre, "stop[", i, "] has ", stop[i].size(),
                       " bytes; each stop string must have 1..", kMaxStopStringBytes));
    }
  }
  // -1 is "off" in the engine; a front end maps an explicit value onto 0..20.
  if (absl::Status s = CheckRange(pre, "logprobs", logprobs, -1, kMaxLogprobs); !s.ok()) {
    return s;
  }
  if (absl::Status s =
          CheckRange(pre, "prompt_logprobs", prompt_logprobs, -1, kMaxLogprobs);
      !s.ok()) {
    return s;
  }
  return CheckRange(pre, "n", n, 1, kMaxN);
}

absl::Status CheckFitsContext(int64_t num_prompt_tokens, int32_t max_tokens,
                              int32_t max_context_length,
                              absl::string_view field_prefix) {
  if (num_prompt_tokens < 1) {
    return absl::InvalidArgumentError("prompt: must contain at least one token");
  }
  if (num_prompt_tokens + max_tokens > max_context_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", num_prompt_tokens, " tokens) + ", field_prefix,
                     "max_tokens (", max_tokens, ") = ", num_prompt_tokens + max_tokens,
                     " exceeds the model's context length ", max_context_length));
  }
  return absl::OkStatus();
}

}  // namespace openelm
