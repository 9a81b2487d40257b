#include "server/request_parser.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "engine/chat/chat_template.h"
#include "engine/tokenizer/utf8.h"

namespace openelm::server {
namespace {

absl::Status CheckTokenId(absl::string_view field, int64_t id,
                          const RequestLimits& limits) {
  if (id < 0 || id >= limits.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " = ", id, " is out of range [0, ", limits.vocab_size, ")"));
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
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", index,
                       "].role must be ROLE_SYSTEM, ROLE_USER or "
                       "ROLE_ASSISTANT (got ",
                       static_cast<int>(role), ")"));
  }
}

// Sets max_tokens to the room the context has left after the prompt when the
// request left it unset and the dialect says so.
void FillMaxTokens(bool unset, int64_t num_prompt_tokens, const RequestLimits& limits,
                   const ApiDialect& dialect, SamplingParams* params) {
  if (!unset || !dialect.max_tokens_fills_context) return;
  const int64_t room = limits.max_context_length - num_prompt_tokens;
  if (room >= 1) params->max_tokens = static_cast<int32_t>(room);
}

}  // namespace

const ApiDialect& GrpcDialect() {
  static const ApiDialect* const dialect = new ApiDialect();
  return *dialect;
}

absl::Status CheckModel(absl::string_view model, const RequestLimits& limits) {
  if (model.empty() || model == limits.model_id) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "model: unknown model \"", utf8::Prefix(model, 128), "\"; this server serves \"",
      limits.model_id, "\" (or leave model empty)"));
}

absl::StatusOr<SamplingParams> ParseGenerationOptions(const v1::GenerationOptions& o,
                                                      const RequestLimits& limits,
                                                      const ApiDialect& dialect) {
  const std::string& prefix = dialect.options;
  // Only the mapping lives here; every range is SamplingParams::Validate's.
  SamplingParams p;
  // Unset under a context-filling dialect: the least a request may ask
  // (1, or min_tokens) until the prompt's length is known (FillMaxTokens).
  p.max_tokens = o.has_max_tokens()                 ? o.max_tokens()
                 : dialect.max_tokens_fills_context ? std::max(1, o.min_tokens())
                                                    : kDefaultMaxTokens;
  if (o.has_temperature()) p.temperature = o.temperature();
  if (o.has_top_k()) p.top_k = o.top_k();
  if (o.has_top_p()) p.top_p = o.top_p();
  if (o.has_min_p()) p.min_p = o.min_p();
  if (o.has_repetition_penalty()) p.repetition_penalty = o.repetition_penalty();
  if (o.has_presence_penalty()) p.presence_penalty = o.presence_penalty();
  if (o.has_frequency_penalty()) p.frequency_penalty = o.frequency_penalty();
  // Lists are copied whole (the message size bounds them) and counted by
  // Validate.
  for (const auto& [id, bias] : o.logit_bias()) p.logit_bias.emplace_back(id, bias);
  if (o.has_seed()) p.seed = o.seed();
  for (int i = 0; i < o.stop_size(); ++i) {
    if (!utf8::IsValid(o.stop(i))) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "stop[", i, "] is not valid UTF-8"));
    }
    p.stop.push_back(o.stop(i));
  }
  p.stop_token_ids.assign(o.stop_token_ids().begin(), o.stop_token_ids().end());
  if (o.has_min_tokens()) p.min_tokens = o.min_tokens();
  p.ignore_eos = o.ignore_eos();
  // On the wire, unset means off; an explicit value must be 0..kMaxLogprobs
  // (the engine's -1 "off" is not a value a client sends).
  if (o.has_logprobs()) {
    p.logprobs = o.logprobs();
    if (p.logprobs < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          prefix, "logprobs = ", p.logprobs, " is out of range [0, ", kMaxLogprobs, "]"));
    }
  }
  if (o.has_prompt_logprobs()) {
    p.prompt_logprobs = o.prompt_logprobs();
    if (p.prompt_logprobs < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "prompt_logprobs = ", p.prompt_logprobs,
                       " is out of range [0, ", kMaxLogprobs, "]"));
    }
  }
  if (o.has_n()) p.n = o.n();
  OPENELM_RETURN_IF_ERROR(
      p.Validate(limits.vocab_size, limits.max_context_length, prefix));
  return p;
}

absl::Status CheckPromptFits(int64_t num_prompt_tokens, const SamplingParams& params,
                             const RequestLimits& limits, const ApiDialect& dialect) {
  return CheckFitsContext(num_prompt_tokens, params.max_tokens, limits.max_context_length,
                          dialect.options);
}

absl::Status CheckTextCanFit(absl::string_view field, int64_t num_bytes,
                             int64_t extra_tokens, const SamplingParams& params,
                             const RequestLimits& limits, const ApiDialect& dialect) {
  if (limits.max_bytes_per_token <= 0) return absl::OkStatus();
  const int64_t min_tokens =
      (num_bytes + limits.max_bytes_per_token - 1) / limits.max_bytes_per_token +
      extra_tokens;
  if (min_tokens + params.max_tokens > limits.max_context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": the prompt has ", num_bytes, " bytes, which encode to at least ",
        min_tokens, " tokens (one token covers at most ", limits.max_bytes_per_token,
        " bytes); with ", dialect.options, "max_tokens (", params.max_tokens,
        ") that exceeds the model's context length ", limits.max_context_length));
  }
  return absl::OkStatus();
}

absl::StatusOr<GenerateSpec> ParseGenerateRequest(const v1::GenerateRequest& request,
                                                  const Tokenizer& tokenizer,
                                                  const RequestLimits& limits,
                                                  const ApiDialect& dialect) {
  OPENELM_RETURN_IF_ERROR(CheckModel(request.model(), limits));
  const bool max_tokens_unset = !request.options().has_max_tokens();
  GenerateSpec spec;
  switch (request.prompt_case()) {
    case v1::GenerateRequest::kText: {
      const std::string& text = request.text();
      const std::string& field = dialect.text;
      if (text.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": the prompt must not be empty"));
      }
      if (static_cast<int64_t>(text.size()) > limits.max_prompt_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": the prompt has ", text.size(), " bytes; at most ",
                         limits.max_prompt_bytes, " are allowed"));
      }
      if (!utf8::IsValid(text)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": the prompt is not valid UTF-8"));
      }
      const bool add_bos = request.has_add_bos() ? request.add_bos() : true;
      OPENELM_ASSIGN_OR_RETURN(
          spec.params, ParseGenerationOptions(request.options(), limits, dialect));
      OPENELM_RETURN_IF_ERROR(CheckTextCanFit(field, static_cast<int64_t>(text.size()),
                                              add_bos ? 1 : 0, spec.params, limits,
                                              dialect));
      OPENELM_ASSIGN_OR_RETURN(spec.prompt, tokenizer.Encode(text, add_bos));
      break;
    }
    case v1::GenerateRequest::kTokenIds: {
      const auto& ids = request.token_ids().ids();
      const std::string& field = dialect.token_ids;
      if (ids.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": the prompt must not be empty"));
      }
      if (ids.size() > limits.max_context_length) {
        return absl::InvalidArgumentError(absl::StrCat(field, " has ", ids.size(),
                                                       " ids; the context holds ",
                                                       limits.max_context_length));
      }
      for (int i = 0; i < ids.size(); ++i) {
        OPENELM_RETURN_IF_ERROR(
            CheckTokenId(absl::StrCat(field, "[", i, "]"), ids[i], limits));
      }
      spec.prompt.assign(ids.begin(), ids.end());
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("prompt: set either ", dialect.text, " or ", dialect.token_ids));
  }
  if (request.prompt_case() != v1::GenerateRequest::kText) {
    OPENELM_ASSIGN_OR_RETURN(spec.params,
                             ParseGenerationOptions(request.options(), limits, dialect));
  }
  FillMaxTokens(max_tokens_unset, static_cast<int64_t>(spec.prompt.size()), limits,
                dialect, &spec.params);
  OPENELM_RETURN_IF_ERROR(CheckPromptFits(static_cast<int64_t>(spec.prompt.size()),
                                          spec.params, limits, dialect));
  spec.priority = request.options().priority();
  // Text follows the prompt unless the prompt is nothing but BOS.
  spec.continues_text =
      !(spec.prompt.size() == 1 && spec.prompt[0] == tokenizer.bos_id());
  return spec;
}

absl::StatusOr<GenerateSpec> ParseChatRequest(const v1::ChatRequest& request,
                                              const Tokenizer& tokenizer,
                                              const RequestLimits& limits,
                                              const ApiDialect& dialect) {
  OPENELM_RETURN_IF_ERROR(CheckModel(request.model(), limits));
  const std::string& field = dialect.messages;
  std::vector<ChatMessage> messages;
  messages.reserve(request.messages_size());
  int64_t total_bytes = 0;
  for (int i = 0; i < request.messages_size(); ++i) {
    const v1::ChatMessage& m = request.messages(i);
    OPENELM_ASSIGN_OR_RETURN(ChatRole role, ParseRole(m.role(), i));
    if (!utf8::IsValid(m.content())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "].content is not valid UTF-8"));
    }
    if (role == ChatRole::kUser && m.content().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "].content: a user message must not be empty"));
    }
    total_bytes += static_cast<int64_t>(m.content().size());
    messages.push_back(ChatMessage{role, m.content()});
  }
  if (total_bytes > limits.max_prompt_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": the contents have ", total_bytes, " bytes; at most ",
                     limits.max_prompt_bytes, " are allowed"));
  }
  GenerateSpec spec;
  OPENELM_ASSIGN_OR_RETURN(spec.params,
                           ParseGenerationOptions(request.options(), limits, dialect));
  OPENELM_RETURN_IF_ERROR(CheckTextCanFit(field, total_bytes, /*extra_tokens=*/1,
                                          spec.params, limits, dialect));
  OPENELM_ASSIGN_OR_RETURN(spec.prompt, RenderChat(tokenizer, messages));
  FillMaxTokens(!request.options().has_max_tokens(),
                static_cast<int64_t>(spec.prompt.size()), limits, dialect, &spec.params);
  OPENELM_RETURN_IF_ERROR(CheckPromptFits(static_cast<int64_t>(spec.prompt.size()),
                                          spec.params, limits, dialect));
  spec.priority = request.options().priority();
  spec.continues_text = true;
  return spec;
}

}  // namespace openelm::server
