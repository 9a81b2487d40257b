// The OpenAI wire format, responses: error bodies and statuses, token texts
// with the real Llama-2 tokenizer, and the bodies and server-sent events the
// builder writes (each event parsed back).

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/base/json.h"
#include "engine/request/request_types.h"
#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/openai_test_util.h"
#include "tests/testing/status_matchers.h"

namespace openelm::server::openai {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------
// Errors

TEST(ErrorTest, HttpStatusCodes) {
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kOutOfRange), 400);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kCancelled), 499);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kUnimplemented), 501);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kUnknown), 500);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kAborted), 500);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kAlreadyExists), 500);
  EXPECT_EQ(HttpStatusCode(absl::StatusCode::kDataLoss), 500);
}

Json ParseErrorBody(const std::string& body) {
  absl::StatusOr<Json> j = ParseJson(body);
  EXPECT_TRUE(j.ok()) << j.status() << ": " << body;
  if (!j.ok()) return Json();
  EXPECT_EQ(JsonDump(*j), body) << "not compact";
  EXPECT_EQ(j->size(), 1u);
  const Json* error = JsonFind(*j, "error");
  EXPECT_NE(error, nullptr);
  if (error == nullptr) return Json();
  EXPECT_EQ(error->size(), 4u);
  return *error;
}

TEST(ErrorTest, ErrorBodyShape) {
  struct Case {
    absl::Status status;
    std::string type;
    Json param;
    std::string code;
  };
  const std::vector<Case> cases = {
      {absl::InvalidArgumentError("temperature = 3 is out of range [0, 2]"),
       "invalid_request_error", "temperature", "invalid_argument"},
      {absl::InvalidArgumentError("request body: expected a JSON object"),
       "invalid_request_error", nullptr, "invalid_argument"},
      {absl::NotFoundError("model: unknown model \"x\""), "invalid_request_error",
       "model", "not_found"},
      {absl::UnauthenticatedError("missing API key"), "authentication_error", nullptr,
       "unauthenticated"},
      {absl::PermissionDeniedError("tenant t may not use this"), "permission_error",
       nullptr, "permission_denied"},
      {absl::ResourceExhaustedError("server is busy"), "rate_limit_error", nullptr,
       "resource_exhausted"},
      {absl::UnavailableError("server is draining"), "service_unavailable", nullptr,
       "unavailable"},
      {absl::InternalError("boom"), "server_error", nullptr, "internal"},
      {absl::DeadlineExceededError("Deadline exceeded"), "server_error", nullptr,
       "deadline_exceeded"},
      {absl::UnimplementedError("not here"), "server_error", nullptr, "unimplemented"},
      {absl::FailedPreconditionError("prompt (2000 tokens) + max_tokens (100) = 2100 "
                                     "exceeds the model's context length 2048"),
       "invalid_request_error", "prompt", "failed_precondition"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status.ToString());
    const Json error = ParseErrorBody(ErrorBody(c.status));
    EXPECT_EQ(error.value("message", ""), c.status.message());
    EXPECT_EQ(error.value("type", ""), c.type);
    EXPECT_EQ(error["param"], c.param);
    EXPECT_EQ(error.value("code", ""), c.code);
  }
}

TEST(ErrorTest, InvalidUtf8InAMessageStaysValidJson) {
  const std::string body =
      ErrorBody(absl::InvalidArgumentError("stop[0]: bad \xff byte"));
  const Json error = ParseErrorBody(body);
  EXPECT_EQ(error.value("message", ""), "stop[0]: bad \xEF\xBF\xBD byte");
  EXPECT_EQ(error["param"], "stop[0]");
}

TEST(ErrorTest, ErrorParam) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"top_p = 1.5 is out of range (0, 1]", "top_p"},
      {"messages[1].content is not valid UTF-8", "messages[1].content"},
      {"messages[2].role: must be \"system\"", "messages[2].role"},
      {"prompt[1]: expected a string", "prompt[1]"},
      {"prompt[1][0]: token id out of range", "prompt[1][0]"},
      {"stop has 17 strings; at most 16 are allowed", "stop"},
      {"stop[3] has 300 bytes", "stop[3]"},
      {"min_tokens = 9 is out of range [0, max_tokens = 4]", "min_tokens"},
      {"logit_bias.13: expected a number", "logit_bias.13"},
      {"prompt (2000 tokens) + max_tokens (100) = 2100 exceeds", "prompt"},
      {"model: unknown model \"x\"", "model"},
      {"n must be at least 1", "n"},
      {"stream_options.include_usage: expected a boolean",
       "stream_options.include_usage"},
      {"x-request-timeout: expected a positive number of seconds", "x-request-timeout"},
      // No field.
      {"request body: expected a JSON object", ""},
      {"request body: JSON parse error at byte 0: x", ""},
      {"server is draining", ""},
      {"server is starting: the model is not ready yet", ""},
      {"the prompt must not be empty", ""},
      {"Deadline exceeded", ""},
      {"boom", ""},
      {"", ""},
      {"prompt", ""},  // a word alone is not a field reference
      {"--host is empty", ""},
      {"0 is out of range", ""},
      {"[0]: x", ""},
      {"a/b: x", ""},
      {"missing API key", ""},
      {"model\"x\": y", ""},
  };
  for (const auto& [message, param] : cases) {
    EXPECT_EQ(ErrorParam(message), param) << message;
  }
}

// ---------------------------------------------------------------------------
// Tokens and finish reasons (the real Llama-2 tokenizer)

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<Tokenizer>> t =
        Tokenizer::Load(OPENELM_TOKENIZER_MODEL);
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = t->release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tokenizer_, nullptr); }

  // The id of the single token `text` (with its leading "▁") encodes to.
  static TokenId IdOf(absl::string_view text) {
    absl::StatusOr<std::vector<TokenId>> ids = tokenizer_->Encode(text, false);
    EXPECT_TRUE(ids.ok());
    EXPECT_EQ(ids->size(), 1u) << text;
    return ids->empty() ? 0 : ids->front();
  }

  static const Tokenizer* tokenizer_;
};
const Tokenizer* TokenizerTest::tokenizer_ = nullptr;

TEST_F(TokenizerTest, TokenText) {
  const TokenId hello = IdOf("Hello");
  EXPECT_EQ(tokenizer_->IdToPiece(hello), "\xE2\x96\x81Hello");  // "▁Hello"
  EXPECT_EQ(TokenText(*tokenizer_, hello), " Hello");
  EXPECT_EQ(tokenizer_->IdToPiece(13), "<0x0A>");
  EXPECT_EQ(TokenText(*tokenizer_, 13), "\n");
  // Byte pieces are single bytes, even when not valid UTF-8 on their own.
  EXPECT_EQ(tokenizer_->IdToPiece(229), "<0xE2>");
  EXPECT_EQ(TokenText(*tokenizer_, 229), "\xE2");
  // Control tokens have no text.
  EXPECT_EQ(tokenizer_->IdToPiece(1), "<s>");
  EXPECT_EQ(TokenText(*tokenizer_, 1), "");
  EXPECT_EQ(TokenText(*tokenizer_, 2), "");
  // A piece without "▁" continues a word.
  const std::vector<TokenId> ids = *tokenizer_->Encode("Helloworldly", false);
  ASSERT_GE(ids.size(), 2u);
  std::string joined;
  for (const TokenId id : ids) joined += TokenText(*tokenizer_, id);
  EXPECT_EQ(joined, " Helloworldly");
  // Out of the vocabulary: nothing.
  EXPECT_EQ(TokenText(*tokenizer_, 1 << 20), "");
  EXPECT_EQ(TokenText(*tokenizer_, -1), "");
}

TEST(FinishReasonTest, Strings) {
  EXPECT_STREQ(FinishReasonString(FinishReason::kEos), "stop");
  EXPECT_STREQ(FinishReasonString(FinishReason::kStopSequence), "stop");
  EXPECT_STREQ(FinishReasonString(FinishReason::kStopToken), "stop");
  EXPECT_STREQ(FinishReasonString(FinishReason::kLength), "length");
  EXPECT_STREQ(FinishReasonString(FinishReason::kContextLength), "length");
  EXPECT_STREQ(FinishReasonString(FinishReason::kDeadline), "length");
  EXPECT_STREQ(FinishReasonString(FinishReason::kCancelled), "abort");
  EXPECT_STREQ(FinishReasonString(FinishReason::kShutdown), "abort");
  EXPECT_STREQ(FinishReasonString(FinishReason::kError), "abort");
  EXPECT_STREQ(FinishReasonString(FinishReason::kUnspecified), "abort");
}

// ---------------------------------------------------------------------------
// ResponseBuilder

constexpr int64_t kCreated = 1700000000;

OutputDelta Delta(int32_t index, std::vector<TokenId> tokens, std::string text,
                  std::vector<std::vector<TokenLogprob>> logprobs = {}) {
  OutputDelta d;
  d.index = index;
  d.tokens = std::move(tokens);
  d.text = std::move(text);
  d.logprobs = std::move(logprobs);
  return d;
}

FinishInfo Finish(std::vector<std::pair<int32_t, FinishReason>> completions,
                  int32_t prompt_tokens, int32_t cached_tokens, int32_t output_tokens) {
  FinishInfo info;
  for (const auto& [index, reason] : completions) {
    CompletionFinish c;
    c.index = index;
    c.reason = reason;
    info.completions.push_back(c);
  }
  info.num_prompt_tokens = prompt_tokens;
  info.num_cached_tokens = cached_tokens;
  info.num_output_tokens = output_tokens;
  return info;
}

// The payloads of the SSE events in `sse`, checking the framing: every event
// is exactly "data: " + one line + "\n\n".
std::vector<std::string> Events(const std::string& sse) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    if (sse.compare(pos, 6, "data: ") != 0) {
      ADD_FAILURE() << "event does not start with \"data: \": " << sse.substr(pos);
      break;
    }
    const size_t end = sse.find("\n\n", pos);
    if (end == std::string::npos) {
      ADD_FAILURE() << "unterminated event: " << sse.substr(pos);
      break;
    }
    out.push_back(sse.substr(pos + 6, end - pos - 6));
    EXPECT_EQ(out.back().find('\n'), std::string::npos) << out.back();
    pos = end + 2;
  }
  return out;
}

// A chunk event's JSON, checking it is compact JSON.
Json Chunk(const std::string& payload) {
  absl::StatusOr<Json> j = ParseJson(payload);
  EXPECT_TRUE(j.ok()) << j.status() << ": " << payload;
  if (!j.ok()) return Json::object();
  EXPECT_EQ(JsonDump(*j), payload) << "not compact";
  return *std::move(j);
}

void ExpectHead(const Json& chunk, const std::string& id, const std::string& object) {
  EXPECT_EQ(chunk.value("id", ""), id) << chunk;
  EXPECT_EQ(chunk.value("object", ""), object) << chunk;
  EXPECT_EQ(chunk.value("created", int64_t{0}), kCreated) << chunk;
  EXPECT_EQ(chunk.value("model", ""), "OpenELM-270M") << chunk;
}

// The single choice of a chunk.
Json OnlyChoice(const Json& chunk) {
  const Json* choices = JsonFind(chunk, "choices");
  EXPECT_TRUE(choices != nullptr && choices->is_array() && choices->size() == 1) << chunk;
  if (choices == nullptr || !choices->is_array() || choices->size() != 1) {
    return Json::object();
  }
  return choices->front();
}

class ResponseBuilderTest : public TokenizerTest {
 protected:
  static HttpRequest Request(Endpoint endpoint, absl::string_view body) {
    return ParseOk(endpoint, body);
  }
};

TEST_F(ResponseBuilderTest, CompletionsStream) {
  const HttpRequest request = Request(kCompletions, R"({"prompt":"Hi","stream":true})");
  ResponseBuilder b(request, "cmpl-7", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  b.AppendDelta(0, Delta(0, {15043}, " Hello"), &out);
  b.AppendDelta(0, Delta(0, {}, ""), &out);  // nothing new: no event
  b.AppendDelta(0, Delta(0, {3186}, " world"), &out);
  b.AppendFinish(0, Finish({{0, FinishReason::kEos}}, 3, 1, 2), &out);
  b.AppendEnd(&out);
  EXPECT_TRUE(absl::EndsWith(out, "data: [DONE]\n\n"));

  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 4u) << out;
  const char* texts[] = {" Hello", " world"};
  for (int i = 0; i < 2; ++i) {
    const Json chunk = Chunk(events[i]);
    ExpectHead(chunk, "cmpl-7", "text_completion");
    EXPECT_FALSE(chunk.contains("usage")) << chunk;
    EXPECT_EQ(chunk.size(), 5u) << chunk;
    const Json choice = OnlyChoice(chunk);
    EXPECT_EQ(choice["index"], 0);
    EXPECT_EQ(choice["text"], texts[i]);
    EXPECT_TRUE(choice["logprobs"].is_null());
    EXPECT_TRUE(choice["finish_reason"].is_null());
    EXPECT_EQ(choice.size(), 4u) << choice;
  }
  const Json last = Chunk(events[2]);
  ExpectHead(last, "cmpl-7", "text_completion");
  const Json choice = OnlyChoice(last);
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["text"], "");
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_TRUE(choice["logprobs"].is_null());
  EXPECT_EQ(events[3], "[DONE]");
  EXPECT_EQ(b.prompt_tokens(), 3);
  EXPECT_EQ(b.completion_tokens(), 2);
}

TEST_F(ResponseBuilderTest, CompletionsStreamWithUsage) {
  const HttpRequest request =
      Request(kCompletions,
              R"({"prompt":"Hi","stream":true,"stream_options":{"include_usage":true}})");
  ResponseBuilder b(request, "cmpl-8", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  b.AppendDelta(0, Delta(0, {15043}, " Hello"), &out);
  b.AppendFinish(0, Finish({{0, FinishReason::kLength}}, 5, 4, 1), &out);
  b.AppendEnd(&out);
  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 4u) << out;
  for (int i = 0; i < 2; ++i) {
    const Json chunk = Chunk(events[i]);
    ASSERT_TRUE(chunk.contains("usage")) << chunk;
    EXPECT_TRUE(chunk["usage"].is_null());
  }
  EXPECT_EQ(OnlyChoice(Chunk(events[1]))["finish_reason"], "length");
  const Json usage_chunk = Chunk(events[2]);
  ExpectHead(usage_chunk, "cmpl-8", "text_completion");
  EXPECT_EQ(usage_chunk["choices"], Json::array());
  const Json& usage = usage_chunk["usage"];
  EXPECT_EQ(usage["prompt_tokens"], 5);
  EXPECT_EQ(usage["completion_tokens"], 1);
  EXPECT_EQ(usage["total_tokens"], 6);
  EXPECT_EQ(usage["prompt_tokens_details"]["cached_tokens"], 4);
  EXPECT_EQ(usage.size(), 4u);
  EXPECT_EQ(events[3], "[DONE]");
}

TEST_F(ResponseBuilderTest, CompletionsMultiPromptIndices) {
  const HttpRequest request =
      Request(kCompletions, R"({"prompt":["a","b"],"n":2,"stream":true,)"
                            R"("stream_options":{"include_usage":true}})");
  ResponseBuilder b(request, "cmpl-9", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  // Interleaved between prompts and completions.
  b.AppendDelta(1, Delta(1, {15043}, "B1"), &out);
  b.AppendDelta(0, Delta(0, {15043}, "A0"), &out);
  b.AppendDelta(1, Delta(0, {15043}, "B0"), &out);
  b.AppendDelta(0, Delta(1, {15043}, "A1"), &out);
  b.AppendFinish(
      1, Finish({{0, FinishReason::kLength}, {1, FinishReason::kStopSequence}}, 7, 0, 4),
      &out);
  EXPECT_EQ(b.prompt_tokens(), 7);
  b.AppendFinish(
      0, Finish({{0, FinishReason::kEos}, {1, FinishReason::kDeadline}}, 5, 2, 3), &out);
  b.AppendEnd(&out);

  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 10u) << out;
  const std::vector<std::pair<int, std::string>> deltas = {
      {3, "B1"}, {0, "A0"}, {2, "B0"}, {1, "A1"}};
  for (size_t i = 0; i < deltas.size(); ++i) {
    const Json choice = OnlyChoice(Chunk(events[i]));
    EXPECT_EQ(choice["index"], deltas[i].first);
    EXPECT_EQ(choice["text"], deltas[i].second);
  }
  const std::vector<std::pair<int, std::string>> finishes = {
      {2, "length"}, {3, "stop"}, {0, "stop"}, {1, "length"}};
  for (size_t i = 0; i < finishes.size(); ++i) {
    const Json choice = OnlyChoice(Chunk(events[4 + i]));
    EXPECT_EQ(choice["index"], finishes[i].first);
    EXPECT_EQ(choice["finish_reason"], finishes[i].second);
    EXPECT_EQ(choice["text"], "");
  }
  const Json usage = Chunk(events[8])["usage"];
  EXPECT_EQ(usage["prompt_tokens"], 12);
  EXPECT_EQ(usage["completion_tokens"], 7);
  EXPECT_EQ(usage["total_tokens"], 19);
  EXPECT_EQ(usage["prompt_tokens_details"]["cached_tokens"], 2);
  EXPECT_EQ(events[9], "[DONE]");
}

TEST_F(ResponseBuilderTest, FinishIsCountedOncePerPrompt) {
  const HttpRequest request = Request(kCompletions, R"({"prompt":"a","stream":true})");
  ResponseBuilder b(request, "cmpl-1", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  b.AppendFinish(0, Finish({{0, FinishReason::kEos}}, 5, 0, 1), &out);
  b.AppendFinish(0, Finish({{0, FinishReason::kEos}}, 5, 0, 1), &out);
  EXPECT_EQ(Events(out).size(), 1u);
  EXPECT_EQ(b.prompt_tokens(), 5);
  EXPECT_EQ(b.completion_tokens(), 1);
}

TEST_F(ResponseBuilderTest, UnreportedCompletionsEndAsAbort) {
  const HttpRequest request =
      Request(kCompletions, R"({"prompt":"a","n":3,"stream":true})");
  ResponseBuilder b(request, "cmpl-1", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  FinishInfo info = Finish({}, 4, 0, 0);
  info.status = absl::InternalError("boom");
  b.AppendFinish(0, info, &out);
  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 3u) << out;
  for (int i = 0; i < 3; ++i) {
    const Json choice = OnlyChoice(Chunk(events[i]));
    EXPECT_EQ(choice["index"], i);
    EXPECT_EQ(choice["finish_reason"], "abort");
  }
}

TEST_F(ResponseBuilderTest, ChatStream) {
  const HttpRequest request = Request(
      kChat, R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,"n":2})");
  ResponseBuilder b(request, "chatcmpl-3", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  b.AppendDelta(0, Delta(0, {15043}, "Hello"), &out);
  b.AppendDelta(0, Delta(0, {3186}, " world"), &out);
  b.AppendFinish(
      0, Finish({{0, FinishReason::kEos}, {1, FinishReason::kLength}}, 9, 0, 2), &out);
  b.AppendEnd(&out);

  const std::vector<std::string> events = Events(out);
  // role, content, content, finish (0); role, finish (1, no output); [DONE]
  ASSERT_EQ(events.size(), 7u) << out;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const Json chunk = Chunk(events[i]);
    ExpectHead(chunk, "chatcmpl-3", "chat.completion.chunk");
    EXPECT_FALSE(chunk.contains("usage"));
    const Json choice = OnlyChoice(chunk);
    EXPECT_TRUE(choice["logprobs"].is_null()) << choice;
    EXPECT_EQ(choice.size(), 4u) << choice;  // index, delta, logprobs, finish_reason
  }
  Json choice = OnlyChoice(Chunk(events[0]));
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["delta"], (Json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(choice["finish_reason"].is_null());
  choice = OnlyChoice(Chunk(events[1]));
  EXPECT_EQ(choice["delta"], (Json{{"content", "Hello"}}));
  EXPECT_TRUE(choice["finish_reason"].is_null());
  choice = OnlyChoice(Chunk(events[2]));
  EXPECT_EQ(choice["delta"], (Json{{"content", " world"}}));
  choice = OnlyChoice(Chunk(events[3]));
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["delta"], Json::object());
  EXPECT_EQ(choice["finish_reason"], "stop");
  choice = OnlyChoice(Chunk(events[4]));
  EXPECT_EQ(choice["index"], 1);
  EXPECT_EQ(choice["delta"], (Json{{"role", "assistant"}, {"content", ""}}));
  choice = OnlyChoice(Chunk(events[5]));
  EXPECT_EQ(choice["index"], 1);
  EXPECT_EQ(choice["delta"], Json::object());
  EXPECT_EQ(choice["finish_reason"], "length");
  EXPECT_EQ(events[6], "[DONE]");
}

TEST_F(ResponseBuilderTest, ChatStreamWithUsage) {
  const HttpRequest request =
      Request(kChat, R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,)"
                     R"("stream_options":{"include_usage":true}})");
  ResponseBuilder b(request, "chatcmpl-4", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  b.AppendDelta(0, Delta(0, {15043}, "Hello"), &out);
  b.AppendFinish(0, Finish({{0, FinishReason::kStopToken}}, 20, 16, 1), &out);
  b.AppendEnd(&out);
  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 5u) << out;
  for (int i = 0; i < 3; ++i) {
    const Json chunk = Chunk(events[i]);
    ASSERT_TRUE(chunk.contains("usage"));
    EXPECT_TRUE(chunk["usage"].is_null());
  }
  EXPECT_EQ(OnlyChoice(Chunk(events[2]))["finish_reason"], "stop");
  const Json last = Chunk(events[3]);
  ExpectHead(last, "chatcmpl-4", "chat.completion.chunk");
  EXPECT_EQ(last["choices"], Json::array());
  EXPECT_EQ(last["usage"], (Json{{"prompt_tokens", 20},
                                 {"completion_tokens", 1},
                                 {"total_tokens", 21},
                                 {"prompt_tokens_details", {{"cached_tokens", 16}}}}));
  EXPECT_EQ(events[4], "[DONE]");
}

TEST_F(ResponseBuilderTest, ChatStreamLogprobs) {
  const HttpRequest request =
      Request(kChat, R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,)"
                     R"("logprobs":true,"top_logprobs":2})");
  ResponseBuilder b(request, "chatcmpl-5", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  b.AppendDelta(0,
                Delta(0, {15043, 13}, "Hello\n",
                      {{{15043, -0.25f}, {15043, -0.25f}, {3186, -2.0f}},
                       {{13, -0.5f}, {229, -1.0f}, {2, -3.0f}}}),
                &out);
  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 2u) << out;
  EXPECT_TRUE(OnlyChoice(Chunk(events[0]))["logprobs"].is_null());  // role chunk
  const Json choice = OnlyChoice(Chunk(events[1]));
  EXPECT_EQ(choice["delta"], (Json{{"content", "Hello\n"}}));
  const Json& content = choice["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u) << choice;
  EXPECT_EQ(choice["logprobs"].size(), 1u);

  EXPECT_EQ(content[0]["token"], " Hello");
  EXPECT_DOUBLE_EQ(content[0]["logprob"].get<double>(), -0.25);
  EXPECT_EQ(content[0]["bytes"], (Json{32, 72, 101, 108, 108, 111}));
  ASSERT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(content[0]["top_logprobs"][0],
            (Json{{"token", " Hello"},
                  {"logprob", -0.25},
                  {"bytes", {32, 72, 101, 108, 108, 111}}}));
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], " world");
  EXPECT_DOUBLE_EQ(content[0]["top_logprobs"][1]["logprob"].get<double>(), -2.0);
  EXPECT_EQ(content[0].size(), 4u);

  EXPECT_EQ(content[1]["token"], "\n");
  EXPECT_EQ(content[1]["bytes"], (Json{10}));
  ASSERT_EQ(content[1]["top_logprobs"].size(), 2u);
  // A lone byte: the text shows U+FFFD, the bytes the byte itself.
  EXPECT_EQ(content[1]["top_logprobs"][0]["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(content[1]["top_logprobs"][0]["bytes"], (Json{0xE2}));
  // A control token: no text, no bytes.
  EXPECT_EQ(content[1]["top_logprobs"][1]["token"], "");
  EXPECT_EQ(content[1]["top_logprobs"][1]["bytes"], Json::array());
}

TEST_F(ResponseBuilderTest, ChatLogprobsWithoutAlternatives) {
  const HttpRequest request =
      Request(kChat, R"({"messages":[{"role":"user","content":"Hi"}],"stream":true,)"
                     R"("logprobs":true})");
  ResponseBuilder b(request, "chatcmpl-5", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  b.AppendDelta(0, Delta(0, {15043}, "Hello", {{{15043, -0.125f}}}), &out);
  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 2u);
  const Json content = OnlyChoice(Chunk(events[1]))["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  EXPECT_DOUBLE_EQ(content[0]["logprob"].get<double>(), -0.125);
  EXPECT_EQ(content[0]["top_logprobs"], Json::array());
}

TEST_F(ResponseBuilderTest, CompletionsStreamLogprobs) {
  const HttpRequest request =
      Request(kCompletions, R"({"prompt":"Hi","stream":true,"logprobs":2})");
  ResponseBuilder b(request, "cmpl-5", kCreated, "OpenELM-270M", tokenizer_);
  std::string out;
  const float kNegInf = -std::numeric_limits<float>::infinity();
  b.AppendDelta(
      0, Delta(0, {15043}, " Hello", {{{15043, -0.5f}, {3186, -1.5f}, {13, -2.5f}}}),
      &out);
  // A token whose text is withheld still carries its logprobs.
  b.AppendDelta(0, Delta(0, {229}, "", {{{229, -0.75f}, {229, -0.75f}, {230, kNegInf}}}),
                &out);
  b.AppendDelta(0, Delta(0, {13}, "\n", {{{13, kNegInf}, {2, -4.0f}, {1, -5.0f}}}), &out);
  const std::vector<std::string> events = Events(out);
  ASSERT_EQ(events.size(), 3u) << out;

  Json choice = OnlyChoice(Chunk(events[0]));
  EXPECT_EQ(choice["text"], " Hello");
  const Json lp0 = choice["logprobs"];
  EXPECT_EQ(lp0.size(), 4u) << lp0;
  EXPECT_EQ(lp0["tokens"], (Json{" Hello"}));
  EXPECT_EQ(lp0["token_logprobs"], (Json{-0.5}));
  EXPECT_EQ(lp0["top_logprobs"], (Json::array({Json{{" world", -1.5}, {"\n", -2.5}}})));
  EXPECT_EQ(lp0["text_offset"], (Json{0}));

  choice = OnlyChoice(Chunk(events[1]));
  EXPECT_EQ(choice["text"], "");
  const Json lp1 = choice["logprobs"];
  EXPECT_EQ(lp1["tokens"], (Json{"\xEF\xBF\xBD"}));
  EXPECT_EQ(lp1["token_logprobs"], (Json{-0.75}));
  // <0xE2> and <0xE3> read the same: the first keeps the key; -inf is -9999.
  EXPECT_EQ(lp1["top_logprobs"], (Json::array({Json{{"\xEF\xBF\xBD", -0.75}}})));
  EXPECT_EQ(lp1["text_offset"], (Json{6}));  // after " Hello"

  choice = OnlyChoice(Chunk(events[2]));
  const Json lp2 = choice["logprobs"];
  EXPECT_EQ(lp2["token_logprobs"], (Json{-9999.0}));
  EXPECT_EQ(lp2["top_logprobs"], (Json::array({Json{{"", -4.0}}})));  // <s>, </s>: ""
  EXPECT_EQ(lp2["text_offset"], (Json{7}));  // after " Hello" and one byte
}

TEST_F(ResponseBuilderTest, AppendError) {
  const HttpRequest request = Request(kCompletions, R"({"prompt":"Hi","stream":true})");
  ResponseBuilder b(request, "cmpl-1", kCreated, "OpenELM-270M", tokenizer_);
  std::string out = "prefix";
  b.AppendError(absl::UnavailableError("server is shutting down"), &out);
  EXPECT_EQ(out,
            "prefix"
            "data: {\"error\":{\"code\":\"unavailable\",\"message\":\"server is shutting "
            "down\",\"param\":null,\"type\":\"service_unavailable\"}}\n\n"
            "data: [DONE]\n\n");
  const std::vector<std::string> events = Events(out.substr(6));
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], ErrorBody(absl::UnavailableError("server is shutting down")));
}

TEST_F(ResponseBuilderTest, CompletionsBody) {
  const HttpRequest request = Request(kCompletions, R"({"prompt":["a","b"],"n":2})");
  ResponseBuilder b(request, "cmpl-2", kCreated, "OpenELM-270M", tokenizer_);
  b.CollectDelta(1, Delta(1, {15043}, "B1"));
  b.CollectDelta(0, Delta(0, {15043}, "A0"));
  b.CollectDelta(0, Delta(0, {3186}, " more"));
  b.CollectDelta(1, Delta(0, {}, ""));
  b.CollectDelta(0, Delta(1, {15043}, "A1"));
  b.CollectFinish(0,
                  Finish({{0, FinishReason::kEos}, {1, FinishReason::kLength}}, 3, 1, 3));
  b.CollectFinish(
      1, Finish({{0, FinishReason::kCancelled}, {1, FinishReason::kStopToken}}, 4, 0, 1));
  EXPECT_EQ(b.prompt_tokens(), 7);
  EXPECT_EQ(b.completion_tokens(), 4);
  const std::string text = b.Body();
  const Json body = Chunk(text);
  ExpectHead(body, "cmpl-2", "text_completion");
  EXPECT_EQ(body.size(), 6u) << body;
  const Json& choices = body["choices"];
  ASSERT_EQ(choices.size(), 4u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"A0 more", "stop"}, {"A1", "length"}, {"", "abort"}, {"B1", "stop"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(choices[i]["index"], i);
    EXPECT_EQ(choices[i]["text"], expected[i].first);
    EXPECT_EQ(choices[i]["finish_reason"], expected[i].second);
    EXPECT_TRUE(choices[i]["logprobs"].is_null());
    EXPECT_EQ(choices[i].size(), 4u);
  }
  EXPECT_EQ(body["usage"], (Json{{"prompt_tokens", 7},
                                 {"completion_tokens", 4},
                                 {"total_tokens", 11},
                                 {"prompt_tokens_details", {{"cached_tokens", 1}}}}));
}

TEST_F(ResponseBuilderTest, CompletionsBodyLogprobs) {
  const HttpRequest request = Request(kCompletions, R"({"prompt":"a","logprobs":1})");
  ResponseBuilder b(request, "cmpl-2", kCreated, "OpenELM-270M", tokenizer_);
  b.CollectDelta(0, Delta(0, {15043}, " Hello", {{{15043, -0.5f}, {3186, -1.0f}}}));
  b.CollectDelta(0,
                 Delta(0, {3186, 13}, " world\n",
                       {{{3186, -0.25f}, {15043, -3.0f}}, {{13, -0.125f}, {2, -1.0f}}}));
  b.CollectFinish(0, Finish({{0, FinishReason::kLength}}, 2, 0, 3));
  const Json body = Chunk(b.Body());
  const Json& choice = body["choices"][0];
  EXPECT_EQ(choice["text"], " Hello world\n");
  const Json& lp = choice["logprobs"];
  EXPECT_EQ(lp["tokens"], (Json{" Hello", " world", "\n"}));
  EXPECT_EQ(lp["token_logprobs"], (Json{-0.5, -0.25, -0.125}));
  EXPECT_EQ(
      lp["top_logprobs"],
      (Json::array({Json{{" world", -1.0}}, Json{{" Hello", -3.0}}, Json{{"", -1.0}}})));
  EXPECT_EQ(lp["text_offset"], (Json{0, 6, 12}));
}

TEST_F(ResponseBuilderTest, ChatBody) {
  const HttpRequest request =
      Request(kChat, R"({"messages":[{"role":"user","content":"Hi"}]})");
  ResponseBuilder b(request, "chatcmpl-2", kCreated, "OpenELM-270M", tokenizer_);
  b.CollectDelta(0, Delta(0, {15043}, "Hello"));
  b.CollectDelta(0, Delta(0, {3186}, " world"));
  b.CollectFinish(0, Finish({{0, FinishReason::kStopSequence}}, 12, 8, 2));
  const Json body = Chunk(b.Body());
  ExpectHead(body, "chatcmpl-2", "chat.completion");
  ASSERT_EQ(body["choices"].size(), 1u);
  const Json& choice = body["choices"][0];
  EXPECT_EQ(choice["index"], 0);
  EXPECT_EQ(choice["message"], (Json{{"role", "assistant"}, {"content", "Hello world"}}));
  EXPECT_TRUE(choice["logprobs"].is_null());
  EXPECT_EQ(choice["finish_reason"], "stop");
  EXPECT_EQ(choice.size(), 4u);
  EXPECT_EQ(body["usage"]["prompt_tokens"], 12);
  EXPECT_EQ(body["usage"]["completion_tokens"], 2);
  EXPECT_EQ(body["usage"]["total_tokens"], 14);
  EXPECT_EQ(body["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
}

TEST_F(ResponseBuilderTest, ChatBodyLogprobsAndSeveralChoices) {
  const HttpRequest request = Request(
      kChat, R"({"messages":[{"role":"user","content":"Hi"}],"n":2,"logprobs":true,)"
             R"("top_logprobs":1})");
  ResponseBuilder b(request, "chatcmpl-2", kCreated, "OpenELM-270M", tokenizer_);
  b.CollectDelta(0, Delta(1, {3186}, "world", {{{3186, -0.5f}, {15043, -1.5f}}}));
  b.CollectDelta(0, Delta(0, {15043}, "Hello", {{{15043, -0.25f}, {3186, -2.5f}}}));
  b.CollectFinish(
      0, Finish({{0, FinishReason::kEos}, {1, FinishReason::kContextLength}}, 4, 0, 2));
  const Json body = Chunk(b.Body());
  const Json& choices = body["choices"];
  ASSERT_EQ(choices.size(), 2u);
  EXPECT_EQ(choices[0]["message"]["content"], "Hello");
  EXPECT_EQ(choices[0]["finish_reason"], "stop");
  EXPECT_EQ(choices[1]["message"]["content"], "world");
  EXPECT_EQ(choices[1]["finish_reason"], "length");
  const Json& content = choices[1]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 1u);
  EXPECT_EQ(content[0]["token"], " world");
  EXPECT_DOUBLE_EQ(content[0]["logprob"].get<double>(), -0.5);
  EXPECT_EQ(content[0]["bytes"], (Json{32, 119, 111, 114, 108, 100}));
  ASSERT_EQ(content[0]["top_logprobs"].size(), 1u);
  EXPECT_EQ(content[0]["top_logprobs"][0]["token"], " Hello");
}

}  // namespace
}  // namespace openelm::server::openai
