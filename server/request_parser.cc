#include "server/request_parser.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/chat/chat_template.h"

namespace openelm::server {
namespace {

absl::Status OutOfRange(absl::string_view field, double value,
                        absl::string_view range) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, " = ", value, " is out of range ", range));
}

// Checks lo <= value <= hi (closed) and rejects NaN.
absl::Status CheckClosed(absl::string_view field, double value, double lo,
                         double hi) {
  if (std::isnan(value) || value < lo || value > hi) {
    return OutOfRange(field, value, absl::StrCat("[", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckTokenId(absl::string_view field, int64_t id,
                          const RequestLimits& limits) {
  if (id < 0 || id >= limits.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " = ", id, " is out of range [0, ", limits.vocab_size, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ChatRole> ParseRole(v1::Role role, size_t index) {
  switch (role) {
    case v1::ROLE_SYSTEM:
      return ChatRole::kSystem;
    case v1::ROLE_USER:
      return ChatRole::kUser;
    case v1::ROLE_ASSISTANT:
      return ChatRole::kAssistant;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "messages[", index, "].role must be ROLE_SYSTEM, ROLE_USER or "
          "ROLE_ASSISTANT (got ", static_cast<int>(role), ")"));
  }
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

absl::Status CheckModel(absl::string_view model, const RequestLimits& limits) {
  if (model.empty() || model == limits.model_id) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("model: unknown model \"", model.substr(0, 128),
                   "\"; this server serves \"", limits.model_id,
                   "\" (or leave model empty)"));
}

absl::StatusOr<SamplingParams> ParseGenerationOptions(
    const v1::GenerationOptions& o, const RequestLimits& limits) {
  SamplingParams p;
  p.max_tokens = o.has_max_tokens() ? o.max_tokens() : kDefaultMaxTokens;
  if (p.max_tokens < 1 || p.max_tokens > limits.max_context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "options.max_tokens = ", p.max_tokens, " is out of range [1, ",
        limits.max_context_length, "]"));
  }
  if (o.has_temperature()) {
    p.temperature = o.temperature();
    OPENELM_RETURN_IF_ERROR(
        CheckClosed("options.temperature", p.temperature, 0.0, 2.0));
  }
  if (o.has_top_k()) {
    p.top_k = o.top_k();
    OPENELM_RETURN_IF_ERROR(
        CheckClosed("options.top_k", p.top_k, 0, limits.vocab_size));
  }
  if (o.has_top_p()) {
    p.top_p = o.top_p();
    if (std::isnan(p.top_p) || p.top_p <= 0.0f || p.top_p > 1.0f) {
      return OutOfRange("options.top_p", p.top_p, "(0, 1]");
    }
  }
  if (o.has_min_p()) {
    p.min_p = o.min_p();
    OPENELM_RETURN_IF_ERROR(CheckClosed("options.min_p", p.min_p, 0.0, 1.0));
  }
  if (o.has_repetition_penalty()) {
    p.repetition_penalty = o.repetition_penalty();
    if (std::isnan(p.repetition_penalty) || p.repetition_penalty <= 0.0f ||
        p.repetition_penalty > 10.0f) {
      return OutOfRange("options.repetition_penalty", p.repetition_penalty,
                        "(0, 10]");
    }
  }
  if (o.has_presence_penalty()) {
    p.presence_penalty = o.presence_penalty();
    OPENELM_RETURN_IF_ERROR(
        CheckClosed("options.presence_penalty", p.presence_penalty, -2.0, 2.0));
  }
  if (o.has_frequency_penalty()) {
    p.frequency_penalty = o.frequency_penalty();
    OPENELM_RETURN_IF_ERROR(CheckClosed("options.frequency_penalty",
                                        p.frequency_penalty, -2.0, 2.0));
  }
  if (o.logit_bias_size() > kMaxLogitBias) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.logit_bias has ", o.logit_bias_size(),
                     " entries; at most ", kMaxLogitBias, " are allowed"));
  }
  for (const auto& [id, bias] : o.logit_bias()) {
    OPENELM_RETURN_IF_ERROR(CheckTokenId("options.logit_bias key", id, limits));
    OPENELM_RETURN_IF_ERROR(CheckClosed(
        absl::StrCat("options.logit_bias[", id, "]"), bias, -100.0, 100.0));
    p.logit_bias.emplace_back(id, bias);
  }
  if (o.has_seed()) p.seed = o.seed();
  if (o.stop_size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(
        absl::StrCat("options.stop has ", o.stop_size(),
                     " strings; at most ", kMaxStopStrings, " are allowed"));
  }
  for (int i = 0; i < o.stop_size(); ++i) {
    const std::string& stop = o.stop(i);
    if (stop.empty() || stop.size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("options.stop[", i, "] has ", stop.size(),
                       " bytes; each stop string must have 1..",
                       kMaxStopStringBytes));
    }
    if (!IsValidUtf8(stop)) {
      return absl::InvalidArgumentError(
          absl::StrCat("options.stop[", i, "] is not valid UTF-8"));
    }
    p.stop.push_back(stop);
  }
  if (o.stop_token_ids_size() > kMaxStopStrings * 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "options.stop_token_ids has ", o.stop_token_ids_size(),
        " ids; at most ", kMaxStopStrings * 4, " are allowed"));
  }
  for (int i = 0; i < o.stop_token_ids_size(); ++i) {
    OPENELM_RETURN_IF_ERROR(CheckTokenId(
        absl::StrCat("options.stop_token_ids[", i, "]"), o.stop_token_ids(i),
        limits));
    p.stop_token_ids.push_back(o.stop_token_ids(i));
  }
  if (o.has_min_tokens()) {
    p.min_tokens = o.min_tokens();
    if (p.min_tokens < 0 || p.min_tokens > p.max_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          "options.min_tokens = ", p.min_tokens,
          " is out of range [0, max_tokens = ", p.max_tokens, "]"));
    }
  }
  p.ignore_eos = o.ignore_eos();
  if (o.has_logprobs()) {
    p.logprobs = o.logprobs();
    OPENELM_RETURN_IF_ERROR(
        CheckClosed("options.logprobs", p.logprobs, 0, kMaxLogprobs));
  }
  if (o.has_prompt_logprobs()) {
    p.prompt_logprobs = o.prompt_logprobs();
    OPENELM_RETURN_IF_ERROR(CheckClosed("options.prompt_logprobs",
                                        p.prompt_logprobs, 0, kMaxLogprobs));
  }
  if (o.has_n()) {
    p.n = o.n();
    OPENELM_RETURN_IF_ERROR(CheckClosed("options.n", p.n, 1, kMaxN));
  }
  // The engine's own checks (the same ranges; a second line of defence).
  OPENELM_RETURN_IF_ERROR(p.Validate(limits.vocab_size));
  return p;
}

absl::Status CheckPromptFits(int64_t num_prompt_tokens,
                             const SamplingParams& params,
                             const RequestLimits& limits) {
  if (num_prompt_tokens < 1) {
    return absl::InvalidArgumentError("prompt: must contain at least one token");
  }
  if (num_prompt_tokens + params.max_tokens > limits.max_context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", num_prompt_tokens, " tokens) + options.max_tokens (",
        params.max_tokens, ") = ", num_prompt_tokens + params.max_tokens,
        " exceeds the model's context length ", limits.max_context_length));
  }
  return absl::OkStatus();
}

absl::Status CheckTextCanFit(absl::string_view field, int64_t num_bytes,
                             int64_t extra_tokens, const SamplingParams& params,
                             const RequestLimits& limits) {
  if (limits.max_bytes_per_token <= 0) return absl::OkStatus();
  const int64_t min_tokens =
      (num_bytes + limits.max_bytes_per_token - 1) / limits.max_bytes_per_token +
      extra_tokens;
  if (min_tokens + params.max_tokens > limits.max_context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": the prompt has ", num_bytes, " bytes, which encode to at least ",
        min_tokens, " tokens (one token covers at most ",
        limits.max_bytes_per_token, " bytes); with options.max_tokens (",
        params.max_tokens, ") that exceeds the model's context length ",
        limits.max_context_length));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerateSpec> ParseGenerateRequest(
    const v1::GenerateRequest& request, const Tokenizer& tokenizer,
    const RequestLimits& limits) {
  OPENELM_RETURN_IF_ERROR(CheckModel(request.model(), limits));
  GenerateSpec spec;
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      const std::string& text = request.text();
      if (text.empty()) {
        return absl::InvalidArgumentError("text: the prompt must not be empty");
      }
      if (static_cast<int64_t>(text.size()) > limits.max_prompt_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("text: the prompt has ", text.size(),
                         " bytes; at most ", limits.max_prompt_bytes,
                         " are allowed"));
      }
      if (!IsValidUtf8(text)) {
        return absl::InvalidArgumentError("text: the prompt is not valid UTF-8");
      }
      const bool add_bos = request.has_add_bos() ? request.add_bos() : true;
      OPENELM_ASSIGN_OR_RETURN(spec.params,
                               ParseGenerationOptions(request.options(), limits));
      OPENELM_RETURN_IF_ERROR(CheckTextCanFit(
          "text", static_cast<int64_t>(text.size()), add_bos ? 1 : 0, spec.params,
          limits));
      OPENELM_ASSIGN_OR_RETURN(spec.prompt, tokenizer.Encode(text, add_bos));
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      if (ids.empty()) {
        return absl::InvalidArgumentError(
            "token_ids.ids: the prompt must not be empty");
      }
      if (ids.size() > limits.max_context_length) {
        return absl::InvalidArgumentError(absl::StrCat(
            "token_ids.ids has ", ids.size(), " ids; the context holds ",
            limits.max_context_length));
      }
      for (int i = 0; i < ids.size(); ++i) {
        OPENELM_RETURN_IF_ERROR(
            CheckTokenId(absl::StrCat("token_ids.ids[", i, "]"), ids[i], limits));
      }
      spec.prompt.assign(ids.begin(), ids.end());
      break;
    }
    default:
      return absl::InvalidArgumentError(
          "prompt: set either text or token_ids");
  }
  if (request.prompt_case() != v1::GenerateRequest::kText) {
    OPENELM_ASSIGN_OR_RETURN(spec.params,
                             ParseGenerationOptions(request.options(), limits));
  }
  OPENELM_RETURN_IF_ERROR(CheckPromptFits(
      static_cast<int64_t>(spec.prompt.size()), spec.params, limits));
  spec.priority = request.options().priority();
  // Text follows the prompt unless the prompt is nothing but BOS.
  spec.continues_text = !(spec.prompt.size() == 1 &&
                          spec.prompt[0] == tokenizer.bos_id());
  return spec;
}

absl::StatusOr<GenerateSpec> ParseChatRequest(const v1::ChatRequest& request,
                                              const Tokenizer& tokenizer,
                                              const RequestLimits& limits) {
  OPENELM_RETURN_IF_ERROR(CheckModel(request.model(), limits));
  std::vector<ChatMessage> messages;
  messages.reserve(request.messages_size());
  int64_t total_bytes = 0;
  for (int i = 0; i < request.messages_size(); ++i) {
    const v1::ChatMessage& m = request.messages(i);
    OPENELM_ASSIGN_OR_RETURN(ChatRole role, ParseRole(m.role(), i));
    if (!IsValidUtf8(m.content())) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].content is not valid UTF-8"));
    }
    if (role == ChatRole::kUser && m.content().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].content: a user message must not be empty"));
    }
    total_bytes += static_cast<int64_t>(m.content().size());
    messages.push_back(ChatMessage{role, m.content()});
  }
  if (total_bytes > limits.max_prompt_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages: the contents have ", total_bytes,
                     " bytes; at most ", limits.max_prompt_bytes, " are allowed"));
  }
  GenerateSpec spec;
  OPENELM_ASSIGN_OR_RETURN(spec.params,
                           ParseGenerationOptions(request.options(), limits));
  OPENELM_RETURN_IF_ERROR(
      CheckTextCanFit("messages", total_bytes, /*extra_tokens=*/1, spec.params, limits));
  OPENELM_ASSIGN_OR_RETURN(spec.prompt, RenderChat(tokenizer, messages));
  OPENELM_RETURN_IF_ERROR(CheckPromptFits(
      static_cast<int64_t>(spec.prompt.size()), spec.params, limits));
  spec.priority = request.options().priority();
  spec.continues_text = true;
  return spec;
}

}  // namespace openelm::server
