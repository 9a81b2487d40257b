#ifndef OPENELM_SERVER_HTTP_OPENAI_PROTOCOL_H_
#define OPENELM_SERVER_HTTP_OPENAI_PROTOCOL_H_

// The OpenAI-compatible HTTP API's wire format, without any transport:
// request bodies (JSON) -> the v1 protos that the shared request parser
// (server/request_parser.h) validates for both front ends, and engine output
// -> response bodies and server-sent events. Pure code; thread-compatible.
//
// JSON field rules: a field of the wrong JSON type, or one this server does
// not support, is kInvalidArgument naming the field ("temperature: expected
// a number", "tools: not supported by this server"); fields that common
// clients send with neutral values are accepted and ignored (the list is in
// docs/http-api.md). Range checks are left to the shared parser, whose
// messages use the OpenAI names through CompletionsDialect() / ChatDialect().

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/request/request_types.h"
#include "engine/tokenizer/tokenizer.h"
#include "openelm/v1/inference.pb.h"
#include "server/request_parser.h"

namespace openelm::server::openai {

enum class Endpoint { kCompletions, kChatCompletions };

// At most this many prompts in one /v1/completions request (a list of
// strings or of token-id lists).
inline constexpr int kMaxPromptsPerRequest = 8;

// The dialect of the HTTP API for the shared parser: option fields without
// prefix, the prompt is "prompt", max_tokens of chat fills the context.
const ApiDialect& CompletionsDialect();
const ApiDialect& ChatDialect();

struct HttpRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;  // as sent ("" when absent)
  // kCompletions: one GenerateRequest per prompt, all with the same options
  // and model. A text prompt gets BOS (as in gRPC); a token-id prompt is
  // used as given.
  std::vector<v1::GenerateRequest> prompts;
  // kChatCompletions: the messages (content parts joined) and options.
  v1::ChatRequest chat;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Logprobs the response must carry: -1 none, else the number of top
  // alternatives (completions: "logprobs": k; chat: "logprobs": true with
  // "top_logprobs": k, k defaulting to 0). options.logprobs is set to match.
  int32_t logprobs = -1;
  std::string user;  // "user" (for the access log only)
};

// Parses a request body of `endpoint`. Every error is kInvalidArgument whose
// message starts with the JSON field's name (see ErrorParam).
absl::StatusOr<HttpRequest> ParseRequestBody(Endpoint endpoint, absl::string_view body);

// The OpenAI error body for `status`:
// {"error":{"message":...,"type":...,"param":...,"code":...}} where type is
// "invalid_request_error" (400/404 and other 4xx), "authentication_error"
// (401), "permission_error" (403), "rate_limit_error" (429),
// "service_unavailable" (503), "server_error" (other 5xx); param is
// ErrorParam(message) or null; code is the absl code's name in lower case
// ("invalid_argument", "resource_exhausted").
std::string ErrorBody(const absl::Status& status);
// The HTTP status of an absl status code: INVALID_ARGUMENT/OUT_OF_RANGE/
// FAILED_PRECONDITION 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// NOT_FOUND 404, RESOURCE_EXHAUSTED 429, CANCELLED 499, UNAVAILABLE 503,
// DEADLINE_EXCEEDED 504, UNIMPLEMENTED 501, anything else 500.
int HttpStatusCode(absl::StatusCode code);
// The field a validation message names: its leading path, e.g. "top_p" of
// "top_p = 1.5 is out of range", "messages[1].content" of
// "messages[1].content is not valid UTF-8"; "" when there is none.
std::string ErrorParam(absl::string_view message);

// The text a token stands for in logprobs ("▁Hello" -> " Hello"; byte
// tokens <0x0A> -> the byte, which may be an incomplete UTF-8 sequence, then
// written with \ufffd by JSON). Its UTF-8 bytes are the "bytes" field.
std::string TokenText(const Tokenizer& tokenizer, TokenId id);

// OpenAI finish_reason: "stop" (EOS, stop string, stop token), "length"
// (max_tokens, context, deadline), "abort" (cancelled, shutdown, error).
const char* FinishReasonString(FinishReason reason);

// Builds the response of one HTTP call from engine output. Completions may
// have several prompts (each an engine request, `prompt_index`), each with
// n completions: choice index = prompt_index * n + completion index.
// Output may arrive interleaved between prompts.
//
// Streaming: each Append* call adds complete SSE events
// ("data: {json}\n\n") to `out`: a chunk per delta with text (chat: the
// first chunk of each choice has delta {"role":"assistant","content":""}),
// a chunk with the finish_reason when a choice ends, and, after every prompt
// finished, a usage chunk (choices [] and usage; only with include_usage,
// when every other chunk carries "usage":null) and "data: [DONE]\n\n".
// Non-streaming: Collect* then Body().
class ResponseBuilder {
 public:
  // `id` like "cmpl-12" / "chatcmpl-12"; `created` Unix seconds; `model`
  // the served model's id; `tokenizer` for logprob token texts.
  ResponseBuilder(const HttpRequest& request, std::string id, int64_t created,
                  std::string model, const Tokenizer* tokenizer);

  void AppendDelta(int prompt_index, const OutputDelta& delta, std::string* out);
  void AppendFinish(int prompt_index, const FinishInfo& info, std::string* out);
  // After the last prompt finished: the usage chunk (if asked) and [DONE].
  void AppendEnd(std::string* out);
  // An error after the stream started: an SSE event {"error":{...}} (the
  // HTTP status was already sent), then [DONE].
  void AppendError(const absl::Status& status, std::string* out);

  void CollectDelta(int prompt_index, const OutputDelta& delta);
  void CollectFinish(int prompt_index, const FinishInfo& info);
  // The whole JSON body: id, object ("text_completion" /
  // "chat.completion"), created, model, choices (index order), usage
  // {prompt_tokens, completion_tokens, total_tokens,
  //  prompt_tokens_details {cached_tokens}}.
  std::string Body() const;

  // Usage so far (sums over finished prompts).
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const { return completion_tokens_; }

 private:
  struct Choice {
    std::string text;      // collected text (non-streaming)
    bool started = false;  // chat stream: role chunk sent
    bool finished = false;
    std::string finish_reason;
    // Completions stream: bytes of token text sent so far (text_offset).
    int64_t text_offset = 0;
    // Collected for the non-streaming body when logprobs are asked for:
    // the tokens and, parallel to them, the chosen token's logprob then the
    // alternatives.
    std::vector<TokenId> token_ids;
    std::vector<std::vector<TokenLogprob>> logprobs;
  };
  int ChoiceIndex(int prompt_index, int32_t index) const;
  Choice& ChoiceAt(int prompt_index, int32_t index);
  const char* ChunkObject() const;
  // Adds a finished prompt's usage (once per prompt) and marks its choices
  // finished; returns the choice indexes finished by this call.
  std::vector<int> FinishPrompt(int prompt_index, const FinishInfo& info);

  const HttpRequest& request_;
  const std::string id_;
  const int64_t created_;
  const std::string model_;
  const Tokenizer* const tokenizer_;
  const bool chat_;
  const int32_t n_;
  const int num_prompts_;
  std::vector<Choice> choices_;  // by choice index
  std::vector<bool> prompt_finished_;
  int64_t prompt_tokens_ = 0;
  int64_t cached_tokens_ = 0;
  int64_t completion_tokens_ = 0;
};

}  // namespace openelm::server::openai

#endif  // OPENELM_SERVER_HTTP_OPENAI_PROTOCOL_H_
