// Fuzz target: the HTTP front's request path without a socket
// (server/http/http_request.h, server/http/openai_protocol.h), with the real
// tokenizer. This is everything an HTTP client controls before a request
// reaches the engine, plus the response formatting of its output.
//
// Input: one raw HTTP/1.x request (request line, headers, body; any bytes).
// It goes the way of a connection in http_server.cc: ParseRawRequest (1 MiB
// body limit) -> MatchRoute -> for POST /v1/completions and
// /v1/chat/completions ParseRequestBody -> BuildSpecs. Each accepted request
// then gets synthetic engine output (deltas and a finish per built spec,
// derived from the input) fed to a ResponseBuilder, streaming or not as the
// request asks.
//
// Properties: never crashes; a refused raw request is kInvalidArgument or
// kResourceExhausted; every body/spec refusal is kInvalidArgument (HTTP 400)
// and its ErrorBody is an OpenAI error object whose message is the status's;
// an accepted spec has a non-empty prompt of in-vocabulary ids that fits the
// context with its max_tokens; every SSE event is "data: " + JSON (or the
// final [DONE]) and every choice finishes exactly once; the non-streaming
// body is JSON with one choice per prompt and completion.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/base/json.h"
#include "engine/request/request_types.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "server/http/http_request.h"
#include "server/http/openai_protocol.h"
#include "server/request_parser.h"
#include "tests/fuzz/fuzz_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace http_front = openelm::server::http_front;
namespace openai = openelm::server::openai;
using Json = nlohmann::json;

constexpr int64_t kMaxBodyBytes = 1 << 20;

const openelm::Tokenizer* g_tokenizer = nullptr;
openelm::server::RequestLimits* g_limits = nullptr;

// A cheap deterministic hash of the input: picks the synthetic output's
// shape (finish reasons, failures) so that every input exercises one.
uint64_t Mix(absl::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (const char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// `body` is ErrorBody(status): {"error":{"message","type","param","code"}}.
void CheckErrorBody(const absl::Status& status, const std::string& body) {
  absl::StatusOr<Json> json = openelm::ParseJson(body);
  OPENELM_FUZZ_CHECK(json.ok(), "ErrorBody is not JSON: %s\n  %s",
                     json.status().ToString().c_str(), body.c_str());
  const Json* error = openelm::JsonFind(*json, "error");
  OPENELM_FUZZ_CHECK(error != nullptr && error->is_object(), "no error object: %s",
                     body.c_str());
  const Json* message = openelm::JsonFind(*error, "message");
  OPENELM_FUZZ_CHECK(message != nullptr && message->is_string(), "no error.message: %s",
                     body.c_str());
  // Exact: messages that quote client strings cut them at a character
  // boundary (utf8::Prefix), so the message stays valid UTF-8.
  OPENELM_FUZZ_CHECK(openelm::utf8::IsValid(status.message()),
                     "error message is not valid UTF-8: %s", body.c_str());
  OPENELM_FUZZ_CHECK(message->get<std::string>() == status.message(),
                     "error.message differs from the status message\n  body: %s",
                     body.c_str());
  for (const char* key : {"type", "code"}) {
    const Json* v = openelm::JsonFind(*error, key);
    OPENELM_FUZZ_CHECK(v != nullptr && v->is_string(), "error.%s missing: %s", key,
                       body.c_str());
  }
  const Json* param = openelm::JsonFind(*error, "param");
  OPENELM_FUZZ_CHECK(param != nullptr && (param->is_null() || param->is_string()),
                     "error.param missing: %s", body.c_str());
}

// A refusal of ParseRequestBody or BuildSpecs: a 400 with a well-formed body.
void CheckRefusal(const absl::Status& status) {
  OPENELM_FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument,
                     "refusal is not INVALID_ARGUMENT: %s", status.ToString().c_str());
  OPENELM_FUZZ_CHECK(!status.message().empty(), "refusal without a message");
  OPENELM_FUZZ_CHECK(openai::HttpStatusCode(status.code()) == 400, "refusal is not 400");
  const std::string body = openai::ErrorBody(status);
  CheckErrorBody(status, body);
  const Json error = openelm::ParseJson(body)->at("error");
  OPENELM_FUZZ_CHECK(error.at("type") == "invalid_request_error" &&
                         error.at("code") == "invalid_argument",
                     "type/code of a 400: %s", body.c_str());
}

void CheckSpec(const openelm::GenerateSpec& spec) {
  const openelm::SamplingParams& p = spec.params;
  OPENELM_FUZZ_CHECK(!spec.prompt.empty(), "accepted an empty prompt");
  for (const openelm::TokenId id : spec.prompt) {
    OPENELM_FUZZ_CHECK(id >= 0 && id < g_limits->vocab_size, "prompt id %d outside vocab",
                       id);
  }
  OPENELM_FUZZ_CHECK(p.max_tokens >= 1, "max_tokens %d", p.max_tokens);
  OPENELM_FUZZ_CHECK(static_cast<int64_t>(spec.prompt.size()) + p.max_tokens <=
                         g_limits->max_context_length,
                     "prompt %zu + max_tokens %d exceeds the context %d",
                     spec.prompt.size(), p.max_tokens, g_limits->max_context_length);
  OPENELM_FUZZ_CHECK(p.n >= 1 && p.n <= openelm::kMaxN, "n = %d", p.n);
  OPENELM_FUZZ_CHECK(p.logprobs <= openelm::kMaxLogprobs, "logprobs %d", p.logprobs);
  const absl::Status valid = p.Validate(g_limits->vocab_size);
  OPENELM_FUZZ_CHECK(valid.ok(), "accepted params fail Validate: %s",
                     valid.ToString().c_str());
}

// Splits SSE output into events; each must be "data: <payload>\n\n". Returns
// the payloads.
std::vector<std::string> SseEvents(const std::string& out) {
  std::vector<std::string> payloads;
  size_t pos = 0;
  while (pos < out.size()) {
    const size_t end = out.find("\n\n", pos);
    OPENELM_FUZZ_CHECK(end != std::string::npos, "SSE output not ending in a blank line");
    const absl::string_view event(out.data() + pos, end - pos);
    OPENELM_FUZZ_CHECK(event.substr(0, 6) == "data: ", "SSE event without data: %s",
                       std::string(event).c_str());
    OPENELM_FUZZ_CHECK(event.find('\n') == absl::string_view::npos,
                       "SSE event spans lines: %s", std::string(event).c_str());
    payloads.emplace_back(event.substr(6));
    pos = end + 2;
  }
  return payloads;
}

// Synthetic engine output for completion `index` of one prompt: tokens taken
// from the prompt, text from the request body (any bytes), logprobs with the
// alternatives the request asked for (including -inf and NaN).
openelm::OutputDelta MakeDelta(const openelm::GenerateSpec& spec, int32_t index,
                               const std::string& text, int32_t logprobs, uint64_t h) {
  openelm::OutputDelta delta;
  delta.index = index;
  delta.text = text;
  const size_t num_tokens = std::min<size_t>(spec.prompt.size(), 1 + h % 3);
  for (size_t i = 0; i < num_tokens; ++i) {
    delta.tokens.push_back(spec.prompt[(i + index) % spec.prompt.size()]);
  }
  if (logprobs >= 0) {
    static constexpr float kValues[] = {-0.5f, 0.0f,
                                        -std::numeric_limits<float>::infinity(),
                                        std::numeric_limits<float>::quiet_NaN(), -12.25f};
    for (size_t i = 0; i < num_tokens; ++i) {
      std::vector<openelm::TokenLogprob>& position = delta.logprobs.emplace_back();
      position.push_back({delta.tokens[i], kValues[(h + i) % 5]});
      for (int32_t j = 0; j < logprobs; ++j) {
        position.push_back(
            {spec.prompt[(i + j) % spec.prompt.size()], kValues[(h + i + j + 1) % 5]});
      }
    }
  }
  return delta;
}

openelm::FinishInfo MakeFinish(const openelm::GenerateSpec& spec, bool failed,
                               uint64_t h) {
  static constexpr openelm::FinishReason kReasons[] = {
      openelm::FinishReason::kEos,           openelm::FinishReason::kLength,
      openelm::FinishReason::kStopSequence,  openelm::FinishReason::kStopToken,
      openelm::FinishReason::kContextLength, openelm::FinishReason::kDeadline};
  openelm::FinishInfo info;
  info.num_prompt_tokens = static_cast<int32_t>(spec.prompt.size());
  info.num_cached_tokens = static_cast<int32_t>(spec.prompt.size() / 2);
  if (failed) {
    // The engine reports no completion; the builder ends them as "abort".
    info.status = absl::CancelledError("cancelled");
    return info;
  }
  for (int32_t c = 0; c < spec.params.n; ++c) {
    openelm::CompletionFinish& f = info.completions.emplace_back();
    f.index = c;
    f.reason = kReasons[(h + static_cast<uint64_t>(c)) % 6];
    f.num_output_tokens = 1 + c;
    info.num_output_tokens += f.num_output_tokens;
  }
  return info;
}

void CheckResponses(const openai::HttpRequest& request,
                    const std::vector<openelm::GenerateSpec>& specs,
                    const std::string& text, uint64_t h) {
  const bool chat = request.endpoint == openai::Endpoint::kChatCompletions;
  const int32_t n = specs.front().params.n;
  const int total_choices = static_cast<int>(specs.size()) * n;
  // A failed engine request (one input in eight), as the engine reports one.
  const bool failed = h % 8 == 7;
  int64_t prompt_tokens = 0;
  for (const openelm::GenerateSpec& spec : specs) {
    OPENELM_FUZZ_CHECK(spec.params.n == n, "prompts of one request differ in n");
    prompt_tokens += static_cast<int64_t>(spec.prompt.size());
  }
  openai::ResponseBuilder builder(request, chat ? "chatcmpl-7" : "cmpl-7", 1700000000,
                                  g_limits->model_id, g_tokenizer);

  if (!request.stream) {
    for (size_t p = 0; p < specs.size(); ++p) {
      for (int32_t c = 0; c < n; ++c) {
        builder.CollectDelta(static_cast<int>(p),
                             MakeDelta(specs[p], c, text, request.logprobs, h + p));
      }
      builder.CollectFinish(static_cast<int>(p), MakeFinish(specs[p], failed, h + p));
    }
    if (failed) {  // the server answers with the error instead of a body
      const absl::Status status = absl::CancelledError("cancelled");
      CheckErrorBody(status, openai::ErrorBody(status));
      return;
    }
    const std::string body = builder.Body();
    absl::StatusOr<Json> json = openelm::ParseJson(body);
    OPENELM_FUZZ_CHECK(json.ok(), "Body() is not JSON: %s\n  %s",
                       json.status().ToString().c_str(), body.c_str());
    const Json* choices = openelm::JsonFind(*json, "choices");
    OPENELM_FUZZ_CHECK(choices != nullptr && choices->is_array() &&
                           static_cast<int>(choices->size()) == total_choices,
                       "Body() has not %d choices: %s", total_choices, body.c_str());
    for (const Json& choice : *choices) {
      const Json* reason = openelm::JsonFind(choice, "finish_reason");
      OPENELM_FUZZ_CHECK(reason != nullptr && reason->is_string(),
                         "a choice without finish_reason: %s", body.c_str());
    }
    const Json* usage = openelm::JsonFind(*json, "usage");
    OPENELM_FUZZ_CHECK(usage != nullptr && usage->is_object() &&
                           usage->value("prompt_tokens", int64_t{-1}) == prompt_tokens,
                       "usage.prompt_tokens is not %lld: %s",
                       static_cast<long long>(prompt_tokens), body.c_str());
    return;
  }

  std::string out;
  for (size_t p = 0; p < specs.size(); ++p) {
    for (int32_t c = 0; c < n; ++c) {
      builder.AppendDelta(static_cast<int>(p),
                          MakeDelta(specs[p], c, text, request.logprobs, h + p), &out);
    }
    // As HttpCall::OnFinish: no finish chunks once the engine failed.
    if (!failed) {
      builder.AppendFinish(static_cast<int>(p), MakeFinish(specs[p], failed, h + p),
                           &out);
    }
  }
  if (failed) {
    builder.AppendError(absl::CancelledError("cancelled"), &out);
  } else {
    builder.AppendEnd(&out);
  }
  const std::vector<std::string> events = SseEvents(out);
  OPENELM_FUZZ_CHECK(!events.empty() && events.back() == "[DONE]",
                     "the stream does not end with [DONE]");
  std::vector<int> finishes(static_cast<size_t>(total_choices), 0);
  bool saw_usage = false;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    absl::StatusOr<Json> json = openelm::ParseJson(events[i]);
    OPENELM_FUZZ_CHECK(json.ok() && json->is_object(),
                       "SSE event is not a JSON object: %s", events[i].c_str());
    if (failed) {
      if (json->contains("error")) {
        CheckErrorBody(absl::CancelledError("cancelled"), events[i]);
      }
      continue;
    }
    if (request.include_usage) {
      OPENELM_FUZZ_CHECK(json->contains("usage"), "a chunk without usage: %s",
                         events[i].c_str());
    }
    const Json* choices = openelm::JsonFind(*json, "choices");
    OPENELM_FUZZ_CHECK(choices != nullptr && choices->is_array(),
                       "a chunk without choices");
    if (choices->empty()) {  // the usage chunk: last before [DONE]
      OPENELM_FUZZ_CHECK(request.include_usage && i + 2 == events.size() &&
                             json->at("usage").is_object(),
                         "unexpected chunk without choices: %s", events[i].c_str());
      saw_usage = true;
      continue;
    }
    for (const Json& choice : *choices) {
      const std::optional<int64_t> index =
          openelm::JsonInt64(choice.value("index", Json(nullptr)));
      OPENELM_FUZZ_CHECK(index.has_value() && *index >= 0 && *index < total_choices,
                         "choice index out of range: %s", events[i].c_str());
      const Json* reason = openelm::JsonFind(choice, "finish_reason");
      if (reason != nullptr && !reason->is_null()) {
        ++finishes[static_cast<size_t>(*index)];
      }
    }
  }
  if (!failed) {
    OPENELM_FUZZ_CHECK(saw_usage == request.include_usage, "usage chunk %s",
                       saw_usage ? "unasked for" : "missing");
    for (int i = 0; i < total_choices; ++i) {
      OPENELM_FUZZ_CHECK(finishes[static_cast<size_t>(i)] == 1,
                         "choice %d finished %d times", i,
                         finishes[static_cast<size_t>(i)]);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  g_tokenizer = openelm::testing::LoadFuzzTokenizerOrDie();
  g_limits = new openelm::server::RequestLimits();
  g_limits->model_id = "OpenELM-fuzz";
  g_limits->vocab_size = 32000;
  g_limits->max_context_length = 2048;
  g_limits->max_bytes_per_token = g_tokenizer->max_bytes_per_token();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<http_front::RawRequest> raw =
      http_front::ParseRawRequest(bytes, kMaxBodyBytes);
  if (!raw.ok()) {
    OPENELM_FUZZ_CHECK(raw.status().code() == absl::StatusCode::kInvalidArgument ||
                           raw.status().code() == absl::StatusCode::kResourceExhausted,
                       "raw request refusal: %s", raw.status().ToString().c_str());
    CheckErrorBody(raw.status(), openai::ErrorBody(raw.status()));
    return 0;
  }
  OPENELM_FUZZ_CHECK(static_cast<int64_t>(raw->body.size()) <= kMaxBodyBytes,
                     "a body of %zu bytes passed the limit", raw->body.size());

  const http_front::RouteMatch match = http_front::MatchRoute(raw->method, raw->target);
  if (match.route == http_front::Route::kNotFound) {
    OPENELM_FUZZ_CHECK(match.method_allowed, "no route, yet the method is refused");
    // The connection's 404 quotes the target.
    const absl::Status not_found = http_front::NoRouteError(raw->target);
    // The quote reads only the target's head; it must equal quoting the
    // whole target.
    for (const size_t max_bytes : {size_t{0}, size_t{1}, size_t{7}, size_t{128}}) {
      const std::string quoted = http_front::QuoteClientText(raw->target, max_bytes);
      const std::string whole = std::string(
          openelm::utf8::Prefix(openelm::utf8::ReplaceInvalid(raw->target), max_bytes));
      OPENELM_FUZZ_CHECK(quoted == whole, "quote of %zu bytes differs from the whole's",
                         max_bytes);
    }
    CheckErrorBody(not_found, openai::ErrorBody(not_found));
    return 0;
  }
  OPENELM_FUZZ_CHECK(match.allowed[0] != '\0', "a route without its methods");
  if (match.route == http_front::Route::kModel) {
    OPENELM_FUZZ_CHECK(
        !match.model_id.empty() && match.model_id.find('?') == std::string::npos,
        "model id \"%s\"", match.model_id.c_str());
  }
  if (!match.method_allowed) return 0;
  if (match.route != http_front::Route::kCompletions &&
      match.route != http_front::Route::kChatCompletions) {
    return 0;
  }
  const openai::Endpoint endpoint = match.route == http_front::Route::kCompletions
                                        ? openai::Endpoint::kCompletions
                                        : openai::Endpoint::kChatCompletions;

  absl::StatusOr<openai::HttpRequest> request =
      openai::ParseRequestBody(endpoint, raw->body);
  if (!request.ok()) {
    CheckRefusal(request.status());
    return 0;
  }
  OPENELM_FUZZ_CHECK(request->endpoint == endpoint, "endpoint changed");
  OPENELM_FUZZ_CHECK(!request->include_usage || request->stream,
                     "include_usage without stream");
  if (endpoint == openai::Endpoint::kCompletions) {
    OPENELM_FUZZ_CHECK(
        !request->prompts.empty() &&
            request->prompts.size() <= static_cast<size_t>(openai::kMaxPromptsPerRequest),
        "%zu prompts", request->prompts.size());
  }

  absl::StatusOr<std::vector<openelm::GenerateSpec>> specs =
      http_front::BuildSpecs(*request, *g_tokenizer, *g_limits);
  if (!specs.ok()) {
    CheckRefusal(specs.status());
    return 0;
  }
  OPENELM_FUZZ_CHECK(specs->size() == (endpoint == openai::Endpoint::kChatCompletions
                                           ? size_t{1}
                                           : request->prompts.size()),
                     "%zu specs", specs->size());
  for (const openelm::GenerateSpec& spec : *specs) CheckSpec(spec);
  if (request->logprobs >= 0) {
    OPENELM_FUZZ_CHECK(specs->front().params.logprobs == request->logprobs,
                       "logprobs %d of the request, %d of the spec", request->logprobs,
                       specs->front().params.logprobs);
  }

  // Output text: a slice of the body (any bytes, escapes included).
  const uint64_t h = Mix(bytes);
  const std::string text = raw->body.substr(h % (raw->body.size() + 1), 24);
  CheckResponses(*request, *specs, text, h);
  return 0;
}
