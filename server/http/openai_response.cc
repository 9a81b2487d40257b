// Engine output -> OpenAI response bodies and SSE events, and the error
// JSON (see openai_protocol.h).
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
    texts.push_back(utf8::ReplaceInvalid(text));
    const std::vector<TokenLogprob>& position = PositionAt(logprobs, i);
    token_logprobs.push_back(position.empty() ? Json(nullptr)
                                              : Json(LogprobValue(position[0].logprob)));
    Json top = Json::object();
    for (size_t j = 1; j < position.size(); ++j) {
      // Two tokens can share a text (after U+FFFD replacement): the more
      // likely one, listed first, keeps the key.
      std::string key = utf8::ReplaceInvalid(TextOf(tokenizer, position[j].token));
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
  out["token"] = utf8::ReplaceInvalid(text);
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
