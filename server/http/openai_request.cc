// OpenAI request bodies -> the v1 protos (see openai_protocol.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/base/json.h"
#include "engine/base/status_macros.h"
#include "engine/tokenizer/utf8.h"
#include "server/http/openai_protocol.h"

namespace openelm::server::openai {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kDocsHint = "see docs/http-api.md";

absl::Status FieldError(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

std::string Indexed(absl::string_view field, size_t index) {
  return absl::StrCat(field, "[", index, "]");
}

// A client-supplied string quoted in an error message: valid UTF-8, at most
// about 64 bytes.
std::string Quoted(absl::string_view text) {
  constexpr size_t kMaxBytes = 64;
  std::string out = utf8::ReplaceInvalid(text.substr(0, kMaxBytes));
  // A character cut at the end shows as U+FFFD; drop it.
  if (text.size() > kMaxBytes) {
    while (absl::EndsWith(out, utf8::kReplacementCharacter)) {
      out.resize(out.size() - utf8::kReplacementCharacter.size());
    }
    out += "...";
  }
  return absl::StrCat("\"", out, "\"");
}

// The member `key` of `object`, or nullptr when it is absent or null (JSON
// null means "not given" throughout the API).
const Json* Get(const Json& object, absl::string_view key) {
  const Json* v = JsonFind(object, key);
  return (v == nullptr || v->is_null()) ? nullptr : v;
}

absl::StatusOr<std::string> ToString(const Json& v, absl::string_view field) {
  if (!v.is_string()) return FieldError(field, "expected a string");
  return v.get<std::string>();
}

absl::StatusOr<bool> ToBool(const Json& v, absl::string_view field) {
  if (!v.is_boolean()) return FieldError(field, "expected a boolean");
  return v.get<bool>();
}

absl::StatusOr<float> ToFloat(const Json& v, absl::string_view field) {
  if (!v.is_number()) return FieldError(field, "expected a number");
  const double d = v.get<double>();
  // Out of float's range: an infinity, which every range check refuses
  // (a plain cast would be undefined).
  constexpr double kMax = std::numeric_limits<float>::max();
  if (d > kMax) return std::numeric_limits<float>::infinity();
  if (d < -kMax) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

absl::StatusOr<int64_t> ToInt64(const Json& v, absl::string_view field) {
  if (v.is_number_float()) {
    // Integer literals beyond 64 bits arrive as floats: report their range
    // rather than their type.
    const double d = v.get<double>();
    if (std::trunc(d) == d && std::abs(d) >= 0x1p63) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " = ", JsonDump(v), " is out of range"));
    }
  }
  if (!v.is_number_integer()) return FieldError(field, "expected an integer");
  const std::optional<int64_t> i = JsonInt64(v);
  if (!i.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " = ", JsonDump(v), " is out of range"));
  }
  return *i;
}

absl::StatusOr<int32_t> ToInt32(const Json& v, absl::string_view field) {
  OPENELM_ASSIGN_OR_RETURN(const int64_t i, ToInt64(v, field));
  if (i < std::numeric_limits<int32_t>::min() ||
      i > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " = ", i, " is out of range"));
  }
  return static_cast<int32_t>(i);
}

// A token id of a prompt or list: an integer that fits int32 (the vocabulary
// range is the shared parser's check).
absl::StatusOr<int32_t> ToTokenId(const Json& v, absl::string_view field) {
  if (!v.is_number_integer()) return FieldError(field, "expected an integer token id");
  const std::optional<int64_t> i = JsonInt64(v);
  if (!i.has_value() || *i < std::numeric_limits<int32_t>::min() ||
      *i > std::numeric_limits<int32_t>::max()) {
    return FieldError(field, "token id out of range");
  }
  return static_cast<int32_t>(*i);
}

// Top-level fields both endpoints accept.
constexpr absl::string_view kCommonFields[] = {
    // OpenAI's sampling and output fields.
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "stream",
    "stream_options",
    "logprobs",
    // vLLM's extra sampling fields.
    "top_k",
    "min_p",
    "repetition_penalty",
    "ignore_eos",
    "min_tokens",
    "stop_token_ids",
    "priority",
    // Accepted with neutral values only (CheckNeutralFields).
    "best_of",
    "echo",
    "suffix",
    "response_format",
    "parallel_tool_calls",
    "tools",
    "tool_choice",
    "functions",
    "service_tier",
    "store",
    "metadata",
};
constexpr absl::string_view kCompletionsFields[] = {"prompt"};
constexpr absl::string_view kChatFields[] = {"messages", "max_completion_tokens",
                                             "top_logprobs"};

template <size_t N>
bool Contains(const absl::string_view (&list)[N], absl::string_view key) {
  return std::find(std::begin(list), std::end(list), key) != std::end(list);
}

// Refuses keys this endpoint does not know, and the other endpoint's prompt.
absl::Status CheckKeys(Endpoint endpoint, const Json& body) {
  const bool chat = endpoint == Endpoint::kChatCompletions;
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& key = it.key();
    if (Contains(kCommonFields, key)) continue;
    if (chat ? Contains(kChatFields, key) : Contains(kCompletionsFields, key)) continue;
    if (!chat && key == "messages") {
      if (it.value().is_null()) continue;
      return FieldError("messages", "use /v1/chat/completions for chat");
    }
    if (chat && key == "prompt") {
      if (it.value().is_null()) continue;
      return FieldError("prompt", "use /v1/completions");
    }
    return absl::InvalidArgumentError(
        absl::StrCat(utf8::ReplaceInvalid(key.size() <= 64 ? key : key.substr(0, 64)),
                     ": unknown field; ", kDocsHint));
  }
  return absl::OkStatus();
}

// Fields clients commonly send with values that change nothing here: those
// values are accepted, anything else is refused.
absl::Status CheckNeutralFields(const Json& body, int64_t n) {
  if (const Json* v = Get(body, "best_of")) {
    OPENELM_ASSIGN_OR_RETURN(const int64_t best_of, ToInt64(*v, "best_of"));
    if (best_of != 1 && best_of != n) {
      return FieldError("best_of", "only best_of = n is supported");
    }
  }
  if (const Json* v = Get(body, "echo")) {
    OPENELM_ASSIGN_OR_RETURN(const bool echo, ToBool(*v, "echo"));
    if (echo) return FieldError("echo", "not supported by this server");
  }
  if (const Json* v = Get(body, "suffix")) {
    OPENELM_ASSIGN_OR_RETURN(const std::string suffix, ToString(*v, "suffix"));
    if (!suffix.empty()) return FieldError("suffix", "not supported by this server");
  }
  if (const Json* v = Get(body, "response_format")) {
    if (!v->is_object()) return FieldError("response_format", "expected an object");
    const Json* type = Get(*v, "type");
    if (type == nullptr) return FieldError("response_format.type", "required");
    if (!type->is_string() || type->get<std::string>() != "text") {
      return FieldError("response_format.type", "only \"text\" is supported");
    }
    for (auto it = v->begin(); it != v->end(); ++it) {
      if (it.key() != "type") {
        return FieldError(
            absl::StrCat("response_format.", utf8::ReplaceInvalid(it.key())),
            "unknown field");
      }
    }
  }
  if (const Json* v = Get(body, "parallel_tool_calls")) {
    OPENELM_RETURN_IF_ERROR(ToBool(*v, "parallel_tool_calls").status());
  }
  for (const absl::string_view field : {"tools", "functions"}) {
    if (const Json* v = Get(body, field)) {
      if (!v->is_array()) return FieldError(field, "expected an array");
      if (!v->empty()) return FieldError(field, "not supported by this server");
    }
  }
  if (const Json* v = Get(body, "tool_choice")) {
    if (!v->is_string() && !v->is_object()) {
      return FieldError("tool_choice", "expected a string or an object");
    }
    if (!v->is_string() || v->get<std::string>() != "none") {
      return FieldError("tool_choice", "not supported by this server");
    }
  }
  if (const Json* v = Get(body, "service_tier")) {
    OPENELM_RETURN_IF_ERROR(ToString(*v, "service_tier").status());
  }
  if (const Json* v = Get(body, "store")) {
    OPENELM_ASSIGN_OR_RETURN(const bool store, ToBool(*v, "store"));
    if (store) return FieldError("store", "not supported by this server");
  }
  if (const Json* v = Get(body, "metadata")) {
    if (!v->is_object()) return FieldError("metadata", "expected an object");
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const Json& v, v1::GenerationOptions* options) {
  if (v.is_string()) {
    options->add_stop(v.get<std::string>());
    return absl::OkStatus();
  }
  if (!v.is_array()) {
    return FieldError("stop", "expected a string or an array of strings");
  }
  for (size_t i = 0; i < v.size(); ++i) {
    OPENELM_ASSIGN_OR_RETURN(std::string stop, ToString(v[i], Indexed("stop", i)));
    options->add_stop(std::move(stop));
  }
  return absl::OkStatus();
}

absl::Status ParseLogitBias(const Json& v, v1::GenerationOptions* options) {
  if (!v.is_object()) return FieldError("logit_bias", "expected an object");
  auto& map = *options->mutable_logit_bias();
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    int32_t id = 0;
    const bool digits = !key.empty() && key.size() <= 10 &&
                        std::all_of(key.begin(), key.end(), [](char c) {
                          return absl::ascii_isdigit(static_cast<unsigned char>(c));
                        });
    if (!digits || !absl::SimpleAtoi(key, &id)) {
      return FieldError("logit_bias",
                        absl::StrCat("key ", Quoted(key), " is not a token id"));
    }
    if (map.contains(id)) {
      return FieldError("logit_bias", absl::StrCat("token id ", id, " is given twice"));
    }
    OPENELM_ASSIGN_OR_RETURN(const float bias,
                             ToFloat(it.value(), absl::StrCat("logit_bias.", key)));
    map[id] = bias;
  }
  return absl::OkStatus();
}

absl::Status ParseSeed(const Json& v, v1::GenerationOptions* options) {
  if (!v.is_number_integer()) return FieldError("seed", "expected an integer");
  // Negative seeds are as good as any: their two's complement bits.
  options->set_seed(v.is_number_unsigned() ? v.get<uint64_t>()
                                           : static_cast<uint64_t>(v.get<int64_t>()));
  return absl::OkStatus();
}

absl::Status ParseStopTokenIds(const Json& v, v1::GenerationOptions* options) {
  if (!v.is_array()) return FieldError("stop_token_ids", "expected an array of integers");
  for (size_t i = 0; i < v.size(); ++i) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t id,
                             ToTokenId(v[i], Indexed("stop_token_ids", i)));
    options->add_stop_token_ids(id);
  }
  return absl::OkStatus();
}

absl::Status ParseStreamOptions(const Json& body, HttpRequest* request) {
  bool include_usage = false;
  if (const Json* v = Get(body, "stream_options")) {
    if (!v->is_object()) return FieldError("stream_options", "expected an object");
    for (auto it = v->begin(); it != v->end(); ++it) {
      if (it.key() != "include_usage") {
        return FieldError(absl::StrCat("stream_options.", utf8::ReplaceInvalid(it.key())),
                          "unknown field");
      }
      if (!it.value().is_null()) {
        OPENELM_ASSIGN_OR_RETURN(include_usage,
                                 ToBool(it.value(), "stream_options.include_usage"));
      }
    }
  }
  // Without streaming there are no chunks to add usage to; ignored.
  request->include_usage = request->stream && include_usage;
  return absl::OkStatus();
}

// The fields both endpoints map onto GenerationOptions (max_tokens included;
// logprobs and the chat-only fields are the caller's).
absl::Status ParseCommonOptions(const Json& body, v1::GenerationOptions* o) {
  if (const Json* v = Get(body, "max_tokens")) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t x, ToInt32(*v, "max_tokens"));
    o->set_max_tokens(x);
  }
  if (const Json* v = Get(body, "temperature")) {
    OPENELM_ASSIGN_OR_RETURN(const float x, ToFloat(*v, "temperature"));
    o->set_temperature(x);
  }
  if (const Json* v = Get(body, "top_p")) {
    OPENELM_ASSIGN_OR_RETURN(const float x, ToFloat(*v, "top_p"));
    o->set_top_p(x);
  }
  if (const Json* v = Get(body, "n")) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t x, ToInt32(*v, "n"));
    o->set_n(x);
  }
  if (const Json* v = Get(body, "stop")) OPENELM_RETURN_IF_ERROR(ParseStop(*v, o));
  if (const Json* v = Get(body, "seed")) OPENELM_RETURN_IF_ERROR(ParseSeed(*v, o));
  if (const Json* v = Get(body, "presence_penalty")) {
    OPENELM_ASSIGN_OR_RETURN(const float x, ToFloat(*v, "presence_penalty"));
    o->set_presence_penalty(x);
  }
  if (const Json* v = Get(body, "frequency_penalty")) {
    OPENELM_ASSIGN_OR_RETURN(const float x, ToFloat(*v, "frequency_penalty"));
    o->set_frequency_penalty(x);
  }
  if (const Json* v = Get(body, "logit_bias")) {
    OPENELM_RETURN_IF_ERROR(ParseLogitBias(*v, o));
  }
  if (const Json* v = Get(body, "top_k")) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t x, ToInt32(*v, "top_k"));
    o->set_top_k(x == -1 ? 0 : x);  // vLLM's "off"
  }
  if (const Json* v = Get(body, "min_p")) {
    OPENELM_ASSIGN_OR_RETURN(const float x, ToFloat(*v, "min_p"));
    o->set_min_p(x);
  }
  if (const Json* v = Get(body, "repetition_penalty")) {
    OPENELM_ASSIGN_OR_RETURN(const float x, ToFloat(*v, "repetition_penalty"));
    o->set_repetition_penalty(x);
  }
  if (const Json* v = Get(body, "ignore_eos")) {
    OPENELM_ASSIGN_OR_RETURN(const bool x, ToBool(*v, "ignore_eos"));
    o->set_ignore_eos(x);
  }
  if (const Json* v = Get(body, "min_tokens")) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t x, ToInt32(*v, "min_tokens"));
    o->set_min_tokens(x);
  }
  if (const Json* v = Get(body, "stop_token_ids")) {
    OPENELM_RETURN_IF_ERROR(ParseStopTokenIds(*v, o));
  }
  if (const Json* v = Get(body, "priority")) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t x, ToInt32(*v, "priority"));
    o->set_priority(x);
  }
  return absl::OkStatus();
}

// One token-id prompt; `field` names the array.
absl::Status ParseTokenIds(const Json& v, absl::string_view field, v1::TokenIds* ids) {
  for (size_t i = 0; i < v.size(); ++i) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t id, ToTokenId(v[i], Indexed(field, i)));
    ids->add_ids(id);
  }
  return absl::OkStatus();
}

// "prompt" of /v1/completions: a string, strings, token ids, or lists of
// token ids.
absl::Status ParsePrompts(const Json& v, std::vector<v1::GenerateRequest>* prompts) {
  if (v.is_string()) {
    prompts->emplace_back().set_text(v.get<std::string>());
    return absl::OkStatus();
  }
  if (!v.is_array()) {
    return FieldError("prompt",
                      "expected a string, an array of strings, an array of token ids or "
                      "an array of token-id arrays");
  }
  if (v.empty()) return FieldError("prompt", "must not be empty");
  const Json& first = v.front();
  if (first.is_number_integer()) {
    return ParseTokenIds(v, "prompt", prompts->emplace_back().mutable_token_ids());
  }
  if (!first.is_string() && !first.is_array()) {
    return FieldError("prompt[0]",
                      "expected a string, a token id or an array of token ids");
  }
  if (v.size() > static_cast<size_t>(kMaxPromptsPerRequest)) {
    return FieldError("prompt", absl::StrCat("at most ", kMaxPromptsPerRequest,
                                             " prompts per request"));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string field = Indexed("prompt", i);
    const Json& element = v[i];
    if (first.is_string()) {
      if (!element.is_string()) return FieldError(field, "expected a string");
      if (element.get_ref<const std::string&>().empty()) {
        return FieldError(field, "must not be empty");
      }
      prompts->emplace_back().set_text(element.get<std::string>());
    } else {
      if (!element.is_array()) return FieldError(field, "expected an array of token ids");
      if (element.empty()) return FieldError(field, "must not be empty");
      OPENELM_RETURN_IF_ERROR(
          ParseTokenIds(element, field, prompts->emplace_back().mutable_token_ids()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Role> ParseRole(const Json& message, const std::string& field) {
  const Json* v = Get(message, "role");
  if (v == nullptr) return FieldError(field, "required");
  OPENELM_ASSIGN_OR_RETURN(const std::string role, ToString(*v, field));
  if (role == "system" || role == "developer") return v1::ROLE_SYSTEM;
  if (role == "user") return v1::ROLE_USER;
  if (role == "assistant") return v1::ROLE_ASSISTANT;
  return FieldError(field,
                    absl::StrCat("must be \"system\", \"user\" or \"assistant\" (got ",
                                 Quoted(role), ")"));
}

// A message's content: a string, or text parts joined with newlines.
absl::StatusOr<std::string> ParseContent(const Json* v, const std::string& field,
                                         v1::Role role) {
  if (v == nullptr) {
    if (role == v1::ROLE_ASSISTANT) return std::string();
    return FieldError(field, "required (null is only allowed for assistant messages)");
  }
  if (v->is_string()) return v->get<std::string>();
  if (!v->is_array()) {
    return FieldError(field, "expected a string or an array of content parts");
  }
  std::vector<std::string> texts;
  for (size_t i = 0; i < v->size(); ++i) {
    const std::string part_field = Indexed(field, i);
    const Json& part = (*v)[i];
    if (!part.is_object()) return FieldError(part_field, "expected an object");
    const Json* type = Get(part, "type");
    if (type == nullptr) return FieldError(part_field + ".type", "required");
    if (!type->is_string() || type->get<std::string>() != "text") {
      return FieldError(part_field + ".type", "only \"text\" parts are supported");
    }
    const Json* text = Get(part, "text");
    if (text == nullptr) return FieldError(part_field + ".text", "required");
    OPENELM_ASSIGN_OR_RETURN(std::string t, ToString(*text, part_field + ".text"));
    for (auto it = part.begin(); it != part.end(); ++it) {
      if (it.key() != "type" && it.key() != "text") {
        return FieldError(absl::StrCat(part_field, ".", utf8::ReplaceInvalid(it.key())),
                          "unknown field");
      }
    }
    texts.push_back(std::move(t));
  }
  return absl::StrJoin(texts, "\n");
}

absl::Status ParseMessages(const Json& v, v1::ChatRequest* chat) {
  if (!v.is_array()) return FieldError("messages", "expected an array");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string field = Indexed("messages", i);
    const Json& message = v[i];
    if (!message.is_object()) return FieldError(field, "expected an object");
    OPENELM_ASSIGN_OR_RETURN(const v1::Role role, ParseRole(message, field + ".role"));
    OPENELM_ASSIGN_OR_RETURN(std::string content, ParseContent(Get(message, "content"),
                                                               field + ".content", role));
    for (auto it = message.begin(); it != message.end(); ++it) {
      const std::string& key = it.key();
      const Json& value = it.value();
      if (key == "role" || key == "content") continue;
      const std::string key_field = absl::StrCat(field, ".", utf8::ReplaceInvalid(key));
      if (key == "name") {
        if (!value.is_null()) {
          OPENELM_RETURN_IF_ERROR(ToString(value, key_field).status());
        }
        continue;
      }
      // Clients echo earlier assistant messages back with these left empty.
      if (value.is_null()) continue;
      if (key == "tool_calls") {
        if (value.is_array() && value.empty()) continue;
        return FieldError(key_field, "not supported by this server");
      }
      return FieldError(key_field, "unknown field");
    }
    v1::ChatMessage* m = chat->add_messages();
    m->set_role(role);
    m->set_content(std::move(content));
  }
  return absl::OkStatus();
}

}  // namespace

const ApiDialect& CompletionsDialect() {
  static const ApiDialect* const dialect = new ApiDialect{
      .options = "",
      .text = "prompt",
      .token_ids = "prompt",
      .messages = "messages",
      .max_tokens_fills_context = false,
  };
  return *dialect;
}

const ApiDialect& ChatDialect() {
  static const ApiDialect* const dialect = new ApiDialect{
      .options = "",
      .text = "prompt",
      .token_ids = "prompt",
      .messages = "messages",
      .max_tokens_fills_context = true,
  };
  return *dialect;
}

absl::StatusOr<HttpRequest> ParseRequestBody(Endpoint endpoint, absl::string_view body) {
  absl::StatusOr<Json> parsed = ParseJson(body);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request body: ", parsed.status().message()));
  }
  const Json& json = *parsed;
  if (!json.is_object()) {
    return absl::InvalidArgumentError("request body: expected a JSON object");
  }
  OPENELM_RETURN_IF_ERROR(CheckKeys(endpoint, json));
  const bool chat = endpoint == Endpoint::kChatCompletions;

  HttpRequest request;
  request.endpoint = endpoint;
  if (const Json* v = Get(json, "model")) {
    OPENELM_ASSIGN_OR_RETURN(request.model, ToString(*v, "model"));
  }
  if (const Json* v = Get(json, "user")) {
    OPENELM_ASSIGN_OR_RETURN(request.user, ToString(*v, "user"));
  }
  if (const Json* v = Get(json, "stream")) {
    OPENELM_ASSIGN_OR_RETURN(request.stream, ToBool(*v, "stream"));
  }
  OPENELM_RETURN_IF_ERROR(ParseStreamOptions(json, &request));

  v1::GenerationOptions options;
  OPENELM_RETURN_IF_ERROR(ParseCommonOptions(json, &options));
  OPENELM_RETURN_IF_ERROR(CheckNeutralFields(json, options.has_n() ? options.n() : 1));

  if (chat) {
    if (const Json* v = Get(json, "max_completion_tokens")) {
      OPENELM_ASSIGN_OR_RETURN(const int32_t x, ToInt32(*v, "max_completion_tokens"));
      if (options.has_max_tokens() && options.max_tokens() != x) {
        return FieldError("max_completion_tokens",
                          "differs from max_tokens (give one of them)");
      }
      options.set_max_tokens(x);
    }
    bool logprobs = false;
    if (const Json* v = Get(json, "logprobs")) {
      OPENELM_ASSIGN_OR_RETURN(logprobs, ToBool(*v, "logprobs"));
    }
    int32_t top_logprobs = 0;
    if (const Json* v = Get(json, "top_logprobs")) {
      if (!logprobs) return FieldError("top_logprobs", "requires logprobs: true");
      OPENELM_ASSIGN_OR_RETURN(top_logprobs, ToInt32(*v, "top_logprobs"));
      if (top_logprobs < 0 || top_logprobs > kMaxLogprobs) {
        return absl::InvalidArgumentError(absl::StrCat(
            "top_logprobs = ", top_logprobs, " is out of range [0, ", kMaxLogprobs, "]"));
      }
    }
    if (logprobs) {
      request.logprobs = top_logprobs;
      options.set_logprobs(top_logprobs);
    }
    const Json* messages = Get(json, "messages");
    if (messages == nullptr) return FieldError("messages", "required");
    OPENELM_RETURN_IF_ERROR(ParseMessages(*messages, &request.chat));
    request.chat.set_model(request.model);
    *request.chat.mutable_options() = std::move(options);
    return request;
  }

  if (const Json* v = Get(json, "logprobs")) {
    OPENELM_ASSIGN_OR_RETURN(const int32_t k, ToInt32(*v, "logprobs"));
    request.logprobs = k;
    options.set_logprobs(k);
  }
  const Json* prompt = Get(json, "prompt");
  if (prompt == nullptr) return FieldError("prompt", "required");
  OPENELM_RETURN_IF_ERROR(ParsePrompts(*prompt, &request.prompts));
  for (v1::GenerateRequest& r : request.prompts) {
    r.set_model(request.model);
    *r.mutable_options() = options;
  }
  return request;
}

}  // namespace openelm::server::openai
