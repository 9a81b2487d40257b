#include "server/http/openai_protocol.h"

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

// `text` with each byte that does not begin a valid UTF-8 character replaced
// by U+FFFD: what JsonDump would write anyway, done early where the text is
// compared (object keys) or quoted.
std::string ValidUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const size_t n = utf8::ValidCharLength(text);
    if (n == 0) {
      out.append(utf8::kReplacementCharacter.data(), utf8::kReplacementCharacter.size());
      text.remove_prefix(1);
    } else {
      out.append(text.data(), n);
      text.remove_prefix(n);
    }
  }
  return out;
}

// A client-supplied string quoted in an error message: valid UTF-8, at most
// about 64 bytes.
std::string Quoted(absl::string_view text) {
  constexpr size_t kMaxBytes = 64;
  std::string out = ValidUtf8(text.substr(0, kMaxBytes));
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
        absl::StrCat(ValidUtf8(key.size() <= 64 ? key : key.substr(0, 64)),
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
        return FieldError(absl::StrCat("response_format.", ValidUtf8(it.key())),
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
        return FieldError(absl::StrCat("stream_options.", ValidUtf8(it.key())),
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
        return FieldError(absl::StrCat(part_field, ".", ValidUtf8(it.key())),
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
      const std::string key_field = absl::StrCat(field, ".", ValidUtf8(key));
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

// The logprob written for a value: -inf (a token the model rules out) and
// NaN are not JSON numbers, so they become OpenAI's -9999.
double LogprobValue(float logprob) {
  return std::isfinite(logprob) ? static_cast<double>(logprob) : -9999.0;
}

std::string TextOf(const Tokenizer* tokenizer, TokenId id) {
  return tokenizer == nullptr ? std::string() : TokenText(*tokenizer, id);
}

Json BytesOf(absl::string_view text) {
  Json bytes = Json::array();
  for (const char c : text) {
    bytes.push_back(static_cast<int>(static_cast<unsigned char>(c)));
  }
  return bytes;
}

// The logprob entries of position `i`: the chosen token first, then the
// alternatives (empty when the engine gave none).
const std::vector<TokenLogprob>& PositionAt(
    const std::vector<std::vector<TokenLogprob>>& logprobs, size_t i) {
  static const std::vector<TokenLogprob>* const kEmpty = new std::vector<TokenLogprob>();
  return i < logprobs.size() ? logprobs[i] : *kEmpty;
}

// Completions logprobs of `tokens`: {"tokens", "token_logprobs",
// "top_logprobs", "text_offset"}. `offset` is the byte offset of the first
// token's text within the choice (the sum of the earlier token texts), and is
// advanced past the last.
Json CompletionLogprobs(const Tokenizer* tokenizer, const std::vector<TokenId>& tokens,
                        const std::vector<std::vector<TokenLogprob>>& logprobs,
                        int64_t* offset) {
  Json texts = Json::array();
  Json token_logprobs = Json::array();
  Json top_logprobs = Json::array();
  Json offsets = Json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string text = TextOf(tokenizer, tokens[i]);
    texts.push_back(ValidUtf8(text));
    const std::vector<TokenLogprob>& position = PositionAt(logprobs, i);
    token_logprobs.push_back(position.empty() ? Json(nullptr)
                                              : Json(LogprobValue(position[0].logprob)));
    Json top = Json::object();
    for (size_t j = 1; j < position.size(); ++j) {
      // Two tokens can share a text (after U+FFFD replacement): the more
      // likely one, listed first, keeps the key.
      std::string key = ValidUtf8(TextOf(tokenizer, position[j].token));
      if (!top.contains(key)) top[std::move(key)] = LogprobValue(position[j].logprob);
    }
    top_logprobs.push_back(std::move(top));
    offsets.push_back(*offset);
    *offset += static_cast<int64_t>(text.size());
  }
  Json out = Json::object();
  out["tokens"] = std::move(texts);
  out["token_logprobs"] = std::move(token_logprobs);
  out["top_logprobs"] = std::move(top_logprobs);
  out["text_offset"] = std::move(offsets);
  return out;
}

Json ChatTokenLogprob(const Tokenizer* tokenizer, TokenId id, float logprob) {
  const std::string text = TextOf(tokenizer, id);
  Json out = Json::object();
  out["token"] = ValidUtf8(text);
  out["logprob"] = LogprobValue(logprob);
  out["bytes"] = BytesOf(text);
  return out;
}

// Chat logprobs of `tokens`: {"content": [...]}.
Json ChatLogprobs(const Tokenizer* tokenizer, const std::vector<TokenId>& tokens,
                  const std::vector<std::vector<TokenLogprob>>& logprobs) {
  Json content = Json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::vector<TokenLogprob>& position = PositionAt(logprobs, i);
    Json entry = ChatTokenLogprob(tokenizer, tokens[i],
                                  position.empty() ? 0.0f : position[0].logprob);
    Json top = Json::array();
    for (size_t j = 1; j < position.size(); ++j) {
      top.push_back(ChatTokenLogprob(tokenizer, position[j].token, position[j].logprob));
    }
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  Json out = Json::object();
  out["content"] = std::move(content);
  return out;
}

Json ErrorObject(const absl::Status& status) {
  const int http = HttpStatusCode(status.code());
  const char* type = "invalid_request_error";
  switch (http) {
    case 401:
      type = "authentication_error";
      break;
    case 403:
      type = "permission_error";
      break;
    case 429:
      type = "rate_limit_error";
      break;
    case 503:
      type = "service_unavailable";
      break;
    default:
      if (http >= 500) type = "server_error";
      break;
  }
  const std::string param = ErrorParam(status.message());
  Json error = Json::object();
  error["message"] = std::string(status.message());
  error["type"] = type;
  error["param"] = param.empty() ? Json(nullptr) : Json(param);
  error["code"] = absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
  Json out = Json::object();
  out["error"] = std::move(error);
  return out;
}

void AppendEvent(const Json& event, std::string* out) {
  absl::StrAppend(out, "data: ", JsonDump(event), "\n\n");
}

int32_t RequestN(const HttpRequest& request) {
  const v1::GenerationOptions* options =
      request.endpoint == Endpoint::kChatCompletions ? &request.chat.options()
      : request.prompts.empty()                      ? nullptr
                                                     : &request.prompts.front().options();
  if (options == nullptr || !options->has_n()) return 1;
  return std::clamp(options->n(), 1, kMaxN);
}

// The members every response object starts with.
Json Head(const std::string& id, const char* object, int64_t created,
          const std::string& model) {
  Json head = Json::object();
  head["id"] = id;
  head["object"] = object;
  head["created"] = created;
  head["model"] = model;
  return head;
}

// One chunk event with a single choice; "usage": null when the stream ends
// with a usage chunk (as OpenAI does).
void AppendChunk(Json head, Json choice, bool include_usage, std::string* out) {
  head["choices"] = Json::array({std::move(choice)});
  if (include_usage) head["usage"] = nullptr;
  AppendEvent(head, out);
}

// The first chunk of a chat choice.
Json RoleChoice(int index) {
  Json choice = Json::object();
  choice["index"] = index;
  choice["delta"] = {{"role", "assistant"}, {"content", ""}};
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = nullptr;
  return choice;
}

Json UsageObject(int64_t prompt_tokens, int64_t completion_tokens,
                 int64_t cached_tokens) {
  Json usage = Json::object();
  usage["prompt_tokens"] = prompt_tokens;
  usage["completion_tokens"] = completion_tokens;
  usage["total_tokens"] = prompt_tokens + completion_tokens;
  usage["prompt_tokens_details"] = {{"cached_tokens", cached_tokens}};
  return usage;
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

std::string ErrorBody(const absl::Status& status) {
  return JsonDump(ErrorObject(status));
}

int HttpStatusCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorParam(absl::string_view message) {
  const auto is_path_char = [](char c) {
    // '-' for header names such as x-request-timeout.
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
           c == '[' || c == ']' || c == '-';
  };
  size_t end = 0;
  while (end < message.size() && is_path_char(message[end])) ++end;
  if (end == 0 || end == message.size()) return "";
  const absl::string_view path = message.substr(0, end);
  if (!absl::ascii_isalpha(static_cast<unsigned char>(path[0])) && path[0] != '_') {
    return "";
  }
  // Messages about the request as a whole, or the server, name no field.
  for (const absl::string_view word : {"request", "server", "the", "a", "an", "this"}) {
    if (absl::EqualsIgnoreCase(path, word)) return "";
  }
  if (message[end] == ':') return std::string(path);
  if (message[end] != ' ') return "";
  // "<field> = 1.5 is out of range", "<field> is not valid UTF-8", "<field>
  // has 17 strings", "<field> (12 tokens) + ...": a field with a verb. Any
  // other sentence ("Deadline exceeded") starts with a plain word.
  const absl::string_view rest = message.substr(end + 1);
  for (const absl::string_view verb : {"= ", "is ", "has ", "must ", "("}) {
    if (absl::StartsWith(rest, verb)) return std::string(path);
  }
  return "";
}

std::string TokenText(const Tokenizer& tokenizer, TokenId id) {
  // PieceBytes already maps "▁" to a space, <0xNN> to its byte and control
  // tokens to nothing; out-of-range ids give "".
  return tokenizer.PieceBytes(id);
}

const char* FinishReasonString(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
    case FinishReason::kStopSequence:
    case FinishReason::kStopToken:
      return "stop";
    case FinishReason::kLength:
    case FinishReason::kContextLength:
    case FinishReason::kDeadline:
      return "length";
    case FinishReason::kCancelled:
    case FinishReason::kShutdown:
    case FinishReason::kError:
    case FinishReason::kUnspecified:
      return "abort";
  }
  return "abort";
}

ResponseBuilder::ResponseBuilder(const HttpRequest& request, std::string id,
                                 int64_t created, std::string model,
                                 const Tokenizer* tokenizer)
    : request_(request),
      id_(std::move(id)),
      created_(created),
      model_(std::move(model)),
      tokenizer_(tokenizer),
      chat_(request.endpoint == Endpoint::kChatCompletions),
      n_(RequestN(request)),
      num_prompts_(chat_ ? 1
                         : std::max<int>(1, static_cast<int>(request.prompts.size()))) {
  choices_.resize(static_cast<size_t>(num_prompts_) * static_cast<size_t>(n_));
  prompt_finished_.assign(static_cast<size_t>(num_prompts_), false);
}

int ResponseBuilder::ChoiceIndex(int prompt_index, int32_t index) const {
  return std::max(prompt_index, 0) * n_ + std::max(index, 0);
}

ResponseBuilder::Choice& ResponseBuilder::ChoiceAt(int prompt_index, int32_t index) {
  const size_t i = static_cast<size_t>(ChoiceIndex(prompt_index, index));
  if (i >= choices_.size()) choices_.resize(i + 1);
  return choices_[i];
}

const char* ResponseBuilder::ChunkObject() const {
  return chat_ ? "chat.completion.chunk" : "text_completion";
}

void ResponseBuilder::AppendDelta(int prompt_index, const OutputDelta& delta,
                                  std::string* out) {
  if (delta.text.empty() && delta.tokens.empty()) return;
  const int index = ChoiceIndex(prompt_index, delta.index);
  Choice& choice = ChoiceAt(prompt_index, delta.index);
  Json c = Json::object();
  c["index"] = index;
  c["logprobs"] = nullptr;
  c["finish_reason"] = nullptr;
  if (chat_) {
    if (!choice.started) {
      AppendChunk(Head(id_, ChunkObject(), created_, model_), RoleChoice(index),
                  request_.include_usage, out);
      choice.started = true;
    }
    c["delta"] = {{"content", delta.text}};
    if (request_.logprobs >= 0) {
      c["logprobs"] = ChatLogprobs(tokenizer_, delta.tokens, delta.logprobs);
    }
  } else {
    c["text"] = delta.text;
    if (request_.logprobs >= 0) {
      c["logprobs"] = CompletionLogprobs(tokenizer_, delta.tokens, delta.logprobs,
                                         &choice.text_offset);
    }
  }
  AppendChunk(Head(id_, ChunkObject(), created_, model_), std::move(c),
              request_.include_usage, out);
}

std::vector<int> ResponseBuilder::FinishPrompt(int prompt_index, const FinishInfo& info) {
  std::vector<int> finished;
  if (prompt_index >= 0 && prompt_index < num_prompts_) {
    if (prompt_finished_[static_cast<size_t>(prompt_index)]) return finished;
    prompt_finished_[static_cast<size_t>(prompt_index)] = true;
  }
  prompt_tokens_ += info.num_prompt_tokens;
  cached_tokens_ += info.num_cached_tokens;
  completion_tokens_ += info.num_output_tokens;
  const auto finish = [&](int32_t index, const char* reason) {
    Choice& choice = ChoiceAt(prompt_index, index);
    if (choice.finished) return;
    choice.finished = true;
    choice.finish_reason = reason;
    finished.push_back(ChoiceIndex(prompt_index, index));
  };
  for (const CompletionFinish& c : info.completions) {
    finish(c.index, FinishReasonString(c.reason));
  }
  // Completions the engine did not report (the request failed before they
  // started) still end.
  for (int32_t i = 0; i < n_; ++i) finish(i, info.status.ok() ? "stop" : "abort");
  return finished;
}

void ResponseBuilder::AppendFinish(int prompt_index, const FinishInfo& info,
                                   std::string* out) {
  for (const int index : FinishPrompt(prompt_index, info)) {
    Choice& choice = choices_[static_cast<size_t>(index)];
    Json c = Json::object();
    c["index"] = index;
    c["logprobs"] = nullptr;
    c["finish_reason"] = choice.finish_reason;
    if (chat_) {
      if (!choice.started) {
        AppendChunk(Head(id_, ChunkObject(), created_, model_), RoleChoice(index),
                    request_.include_usage, out);
        choice.started = true;
      }
      c["delta"] = Json::object();
    } else {
      c["text"] = "";
    }
    AppendChunk(Head(id_, ChunkObject(), created_, model_), std::move(c),
                request_.include_usage, out);
  }
}

void ResponseBuilder::AppendEnd(std::string* out) {
  if (request_.include_usage) {
    Json chunk = Head(id_, ChunkObject(), created_, model_);
    chunk["choices"] = Json::array();
    chunk["usage"] = UsageObject(prompt_tokens_, completion_tokens_, cached_tokens_);
    AppendEvent(chunk, out);
  }
  out->append("data: [DONE]\n\n");
}

void ResponseBuilder::AppendError(const absl::Status& status, std::string* out) {
  AppendEvent(ErrorObject(status), out);
  out->append("data: [DONE]\n\n");
}

void ResponseBuilder::CollectDelta(int prompt_index, const OutputDelta& delta) {
  Choice& choice = ChoiceAt(prompt_index, delta.index);
  choice.text += delta.text;
  if (request_.logprobs < 0) return;
  choice.token_ids.insert(choice.token_ids.end(), delta.tokens.begin(),
                          delta.tokens.end());
  // Kept parallel to token_ids even if the engine sent fewer entries.
  for (size_t i = 0; i < delta.tokens.size(); ++i) {
    choice.logprobs.push_back(PositionAt(delta.logprobs, i));
  }
}

void ResponseBuilder::CollectFinish(int prompt_index, const FinishInfo& info) {
  FinishPrompt(prompt_index, info);
}

std::string ResponseBuilder::Body() const {
  Json choices = Json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const Choice& choice = choices_[i];
    Json c = Json::object();
    c["index"] = i;
    c["logprobs"] = nullptr;
    c["finish_reason"] =
        choice.finish_reason.empty() ? Json(nullptr) : Json(choice.finish_reason);
    if (chat_) {
      c["message"] = {{"role", "assistant"}, {"content", choice.text}};
      if (request_.logprobs >= 0) {
        c["logprobs"] = ChatLogprobs(tokenizer_, choice.token_ids, choice.logprobs);
      }
    } else {
      c["text"] = choice.text;
      if (request_.logprobs >= 0) {
        int64_t offset = 0;
        c["logprobs"] =
            CompletionLogprobs(tokenizer_, choice.token_ids, choice.logprobs, &offset);
      }
    }
    choices.push_back(std::move(c));
  }
  Json body = Head(id_, chat_ ? "chat.completion" : "text_completion", created_, model_);
  body["choices"] = std::move(choices);
  body["usage"] = UsageObject(prompt_tokens_, completion_tokens_, cached_tokens_);
  return JsonDump(body);
}

}  // namespace openelm::server::openai
