// The OpenAI wire format on its own: request bodies -> v1 protos (every
// field, every shape, every refusal and the field its message names), error
// bodies, token texts with the real Llama-2 tokenizer, and the response
// bodies and server-sent events the builder writes (each event parsed back).
#include "server/http/openai_protocol.h"

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
#include "tests/testing/status_matchers.h"

namespace openelm::server::openai {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::json;

constexpr Endpoint kCompletions = Endpoint::kCompletions;
constexpr Endpoint kChat = Endpoint::kChatCompletions;

// A body of `endpoint` with its required prompt plus `fields` (JSON members
// without braces, may be empty).
std::string BodyWith(Endpoint endpoint, absl::string_view fields) {
  const absl::string_view prompt = endpoint == kChat
                                       ? R"("messages":[{"role":"user","content":"Hi"}])"
                                       : R"("prompt":"Hi")";
  return absl::StrCat("{", prompt, fields.empty() ? "" : ",", fields, "}");
}

HttpRequest ParseOk(Endpoint endpoint, absl::string_view body) {
  absl::StatusOr<HttpRequest> r = ParseRequestBody(endpoint, body);
  EXPECT_TRUE(r.ok()) << r.status() << " for " << body;
  return r.ok() ? *std::move(r) : HttpRequest();
}

// The error message of parsing `body`, which must be kInvalidArgument.
std::string ParseError(Endpoint endpoint, absl::string_view body) {
  absl::StatusOr<HttpRequest> r = ParseRequestBody(endpoint, body);
  if (r.ok()) return "<parsed OK>";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  return std::string(r.status().message());
}

const v1::GenerationOptions& OptionsOf(const HttpRequest& r) {
  static const v1::GenerationOptions* const kEmpty = new v1::GenerationOptions();
  if (r.endpoint == kChat) return r.chat.options();
  return r.prompts.empty() ? *kEmpty : r.prompts.front().options();
}

// ---------------------------------------------------------------------------
// Dialects

TEST(DialectTest, CompletionsUsesOpenAiNamesAndTheFixedDefault) {
  const ApiDialect& d = CompletionsDialect();
  EXPECT_EQ(d.options, "");
  EXPECT_EQ(d.text, "prompt");
  EXPECT_EQ(d.token_ids, "prompt");
  EXPECT_EQ(d.messages, "messages");
  EXPECT_FALSE(d.max_tokens_fills_context);
  EXPECT_EQ(&d, &CompletionsDialect());
}

TEST(DialectTest, ChatFillsTheContext) {
  const ApiDialect& d = ChatDialect();
  EXPECT_EQ(d.options, "");
  EXPECT_EQ(d.text, "prompt");
  EXPECT_EQ(d.token_ids, "prompt");
  EXPECT_EQ(d.messages, "messages");
  EXPECT_TRUE(d.max_tokens_fills_context);
  EXPECT_EQ(&d, &ChatDialect());
}

// ---------------------------------------------------------------------------
// Request bodies: common fields

TEST(ParseRequestBodyTest, MinimalCompletionsSetsNothingElse) {
  const HttpRequest r = ParseOk(kCompletions, R"({"prompt":"Hello"})");
  EXPECT_EQ(r.endpoint, kCompletions);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text(), "Hello");
  EXPECT_FALSE(r.prompts[0].has_add_bos());  // BOS by default, as in gRPC
  EXPECT_EQ(r.prompts[0].model(), "");
  EXPECT_EQ(r.model, "");
  EXPECT_EQ(r.user, "");
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.logprobs, -1);
  // No option at all: every default is the shared parser's.
  EXPECT_EQ(r.prompts[0].options().ByteSizeLong(), 0u);
  EXPECT_EQ(r.chat.messages_size(), 0);
}

TEST(ParseRequestBodyTest, MapsEveryOptionOnBothEndpoints) {
  for (const Endpoint endpoint : {kCompletions, kChat}) {
    SCOPED_TRACE(endpoint == kChat ? "chat" : "completions");
    const HttpRequest r = ParseOk(
        endpoint,
        BodyWith(endpoint,
                 R"("model":"OpenELM-270M-Instruct","max_tokens":32,"temperature":0.5,)"
                 R"("top_p":0.9,"n":3,"stop":["a","bc"],"seed":42,)"
                 R"("presence_penalty":0.25,"frequency_penalty":-0.5,)"
                 R"("logit_bias":{"13":-100,"15043":2.5},"user":"alice",)"
                 R"("stream":true,"stream_options":{"include_usage":true},)"
                 R"("top_k":40,"min_p":0.05,"repetition_penalty":1.2,"ignore_eos":true,)"
                 R"("min_tokens":4,"stop_token_ids":[13,29889],"priority":7)"));
    EXPECT_EQ(r.endpoint, endpoint);
    EXPECT_EQ(r.model, "OpenELM-270M-Instruct");
    EXPECT_EQ(r.user, "alice");
    EXPECT_TRUE(r.stream);
    EXPECT_TRUE(r.include_usage);
    EXPECT_EQ(r.logprobs, -1);
    if (endpoint == kChat) {
      EXPECT_EQ(r.chat.model(), "OpenELM-270M-Instruct");
    } else {
      ASSERT_EQ(r.prompts.size(), 1u);
      EXPECT_EQ(r.prompts[0].model(), "OpenELM-270M-Instruct");
    }
    const v1::GenerationOptions& o = OptionsOf(r);
    EXPECT_EQ(o.max_tokens(), 32);
    EXPECT_FLOAT_EQ(o.temperature(), 0.5f);
    EXPECT_FLOAT_EQ(o.top_p(), 0.9f);
    EXPECT_EQ(o.n(), 3);
    EXPECT_THAT(o.stop(), ElementsAre("a", "bc"));
    ASSERT_TRUE(o.has_seed());
    EXPECT_EQ(o.seed(), 42u);
    EXPECT_FLOAT_EQ(o.presence_penalty(), 0.25f);
    EXPECT_FLOAT_EQ(o.frequency_penalty(), -0.5f);
    ASSERT_EQ(o.logit_bias_size(), 2);
    EXPECT_FLOAT_EQ(o.logit_bias().at(13), -100.0f);
    EXPECT_FLOAT_EQ(o.logit_bias().at(15043), 2.5f);
    EXPECT_EQ(o.top_k(), 40);
    EXPECT_FLOAT_EQ(o.min_p(), 0.05f);
    EXPECT_FLOAT_EQ(o.repetition_penalty(), 1.2f);
    EXPECT_TRUE(o.ignore_eos());
    EXPECT_EQ(o.min_tokens(), 4);
    EXPECT_THAT(o.stop_token_ids(), ElementsAre(13, 29889));
    EXPECT_EQ(o.priority(), 7);
    EXPECT_FALSE(o.has_logprobs());
    EXPECT_FALSE(o.has_prompt_logprobs());
  }
}

TEST(ParseRequestBodyTest, NullMeansAbsent) {
  for (const Endpoint endpoint : {kCompletions, kChat}) {
    SCOPED_TRACE(endpoint == kChat ? "chat" : "completions");
    const HttpRequest r = ParseOk(
        endpoint,
        BodyWith(endpoint,
                 R"("model":null,"max_tokens":null,"temperature":null,"top_p":null,)"
                 R"("n":null,"stop":null,"seed":null,"presence_penalty":null,)"
                 R"("frequency_penalty":null,"logit_bias":null,"user":null,)"
                 R"("stream":null,"stream_options":null,"top_k":null,"min_p":null,)"
                 R"("repetition_penalty":null,"ignore_eos":null,"min_tokens":null,)"
                 R"("stop_token_ids":null,"priority":null,"logprobs":null,)"
                 R"("best_of":null,"echo":null,"suffix":null,"response_format":null,)"
                 R"("parallel_tool_calls":null,"tools":null,"tool_choice":null,)"
                 R"("functions":null,"service_tier":null,"store":null,"metadata":null)"));
    EXPECT_EQ(OptionsOf(r).ByteSizeLong(), 0u);
    EXPECT_FALSE(r.stream);
    EXPECT_EQ(r.logprobs, -1);
    EXPECT_EQ(r.model, "");
  }
}

TEST(ParseRequestBodyTest, IntegersAsFloatsAreAccepted) {
  // A number field takes an integer literal too.
  const HttpRequest r =
      ParseOk(kCompletions, BodyWith(kCompletions, R"("temperature":1,"top_p":1)"));
  EXPECT_FLOAT_EQ(OptionsOf(r).temperature(), 1.0f);
  EXPECT_FLOAT_EQ(OptionsOf(r).top_p(), 1.0f);
}

TEST(ParseRequestBodyTest, SeedTakesNegativeAndFullUnsignedRange) {
  HttpRequest r = ParseOk(kCompletions, BodyWith(kCompletions, R"("seed":-1)"));
  EXPECT_EQ(OptionsOf(r).seed(), std::numeric_limits<uint64_t>::max());
  r = ParseOk(kCompletions, BodyWith(kCompletions, R"("seed":-9223372036854775808)"));
  EXPECT_EQ(OptionsOf(r).seed(), uint64_t{1} << 63);
  r = ParseOk(kCompletions, BodyWith(kCompletions, R"("seed":18446744073709551615)"));
  EXPECT_EQ(OptionsOf(r).seed(), std::numeric_limits<uint64_t>::max());
  r = ParseOk(kCompletions, BodyWith(kCompletions, R"("seed":0)"));
  ASSERT_TRUE(OptionsOf(r).has_seed());
  EXPECT_EQ(OptionsOf(r).seed(), 0u);
}

TEST(ParseRequestBodyTest, TopKMinusOneMeansOff) {
  HttpRequest r = ParseOk(kCompletions, BodyWith(kCompletions, R"("top_k":-1)"));
  ASSERT_TRUE(OptionsOf(r).has_top_k());
  EXPECT_EQ(OptionsOf(r).top_k(), 0);
  // Other negatives reach the shared parser's range check as they are.
  r = ParseOk(kCompletions, BodyWith(kCompletions, R"("top_k":-2)"));
  EXPECT_EQ(OptionsOf(r).top_k(), -2);
}

TEST(ParseRequestBodyTest, StopIsAStringOrAList) {
  HttpRequest r = ParseOk(kCompletions, BodyWith(kCompletions, R"("stop":"\n\n")"));
  EXPECT_THAT(OptionsOf(r).stop(), ElementsAre("\n\n"));
  r = ParseOk(kCompletions, BodyWith(kCompletions, R"("stop":[])"));
  EXPECT_EQ(OptionsOf(r).stop_size(), 0);
}

TEST(ParseRequestBodyTest, RangesAreLeftToTheSharedParser) {
  // Out-of-range values of the right type pass through unchanged.
  const HttpRequest r2 =
      ParseOk(kCompletions,
              R"({"prompt":[-1],"temperature":7,"top_p":0,"n":100,"max_tokens":-3,)"
              R"("logprobs":99,"logit_bias":{"999999":500},"stop_token_ids":[-5]})");
  const v1::GenerationOptions& o = OptionsOf(r2);
  EXPECT_FLOAT_EQ(o.temperature(), 7.0f);
  EXPECT_FLOAT_EQ(o.top_p(), 0.0f);
  EXPECT_EQ(o.n(), 100);
  EXPECT_EQ(o.max_tokens(), -3);
  EXPECT_EQ(o.logprobs(), 99);
  EXPECT_FLOAT_EQ(o.logit_bias().at(999999), 500.0f);
  EXPECT_THAT(o.stop_token_ids(), ElementsAre(-5));
  ASSERT_EQ(r2.prompts.size(), 1u);
  EXPECT_THAT(r2.prompts[0].token_ids().ids(), ElementsAre(-1));
}

TEST(ParseRequestBodyTest, HugeNumbersBecomeInfinities) {
  const HttpRequest r =
      ParseOk(kCompletions, BodyWith(kCompletions, R"("temperature":1e300)"));
  EXPECT_TRUE(std::isinf(OptionsOf(r).temperature()));
}

TEST(ParseRequestBodyTest, StreamOptions) {
  HttpRequest r = ParseOk(
      kCompletions,
      BodyWith(kCompletions, R"("stream":true,"stream_options":{"include_usage":true})"));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  r = ParseOk(kCompletions,
              BodyWith(kCompletions, R"("stream":true,"stream_options":{})"));
  EXPECT_FALSE(r.include_usage);
  r = ParseOk(
      kCompletions,
      BodyWith(kCompletions, R"("stream":true,"stream_options":{"include_usage":null})"));
  EXPECT_FALSE(r.include_usage);
  // Without streaming there is nothing to add usage to: ignored.
  r = ParseOk(kCompletions,
              BodyWith(kCompletions, R"("stream_options":{"include_usage":true})"));
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  r = ParseOk(kChat, BodyWith(kChat, R"("stream":false,)"
                                     R"("stream_options":{"include_usage":true})"));
  EXPECT_FALSE(r.include_usage);
}

TEST(ParseRequestBodyTest, LogitBiasKeys) {
  EXPECT_EQ(ParseError(kCompletions, BodyWith(kCompletions, R"("logit_bias":{"abc":1})")),
            "logit_bias: key \"abc\" is not a token id");
  EXPECT_EQ(ParseError(kCompletions, BodyWith(kCompletions, R"("logit_bias":{"-1":1})")),
            "logit_bias: key \"-1\" is not a token id");
  EXPECT_EQ(ParseError(kCompletions, BodyWith(kCompletions, R"("logit_bias":{"":1})")),
            "logit_bias: key \"\" is not a token id");
  EXPECT_EQ(ParseError(kCompletions,
                       BodyWith(kCompletions, R"("logit_bias":{"4294967296":1})")),
            "logit_bias: key \"4294967296\" is not a token id");
  EXPECT_EQ(ParseError(kCompletions, BodyWith(kCompletions, R"("logit_bias":{"1.5":1})")),
            "logit_bias: key \"1.5\" is not a token id");
  EXPECT_EQ(ParseError(kCompletions,
                       BodyWith(kCompletions, R"("logit_bias":{"13":1,"013":2})")),
            "logit_bias: token id 13 is given twice");
  EXPECT_EQ(
      ParseError(kCompletions, BodyWith(kCompletions, R"("logit_bias":{"13":"x"})")),
      "logit_bias.13: expected a number");
  // A long key is cut in the message.
  const std::string long_key(1000, 'x');
  const std::string message = ParseError(
      kCompletions,
      BodyWith(kCompletions, absl::StrCat(R"("logit_bias":{")", long_key, R"(":1})")));
  EXPECT_THAT(message, StartsWith("logit_bias: key \"xxx"));
  EXPECT_LT(message.size(), 120u);
}

// ---------------------------------------------------------------------------
// Request bodies: type errors name the field (and ErrorParam recovers it)

struct ErrorCase {
  Endpoint endpoint;
  std::string fields;   // members added to a valid body (BodyWith)
  std::string message;  // the whole expected message
  std::string param;    // ErrorParam(message)
};

TEST(ParseRequestBodyTest, WrongTypesNameTheField) {
  const std::vector<ErrorCase> cases = {
      {kCompletions, R"("model":5)", "model: expected a string", "model"},
      {kCompletions, R"("max_tokens":"16")", "max_tokens: expected an integer",
       "max_tokens"},
      {kCompletions, R"("max_tokens":1.5)", "max_tokens: expected an integer",
       "max_tokens"},
      {kCompletions, R"("max_tokens":16.0)", "max_tokens: expected an integer",
       "max_tokens"},
      {kCompletions, R"("max_tokens":3000000000)",
       "max_tokens = 3000000000 is out of range", "max_tokens"},
      {kCompletions, R"("max_tokens":99999999999999999999)",
       "max_tokens = 1e+20 is out of range", "max_tokens"},
      {kCompletions, R"("max_tokens":-9223372036854775809)",
       "max_tokens = -9.223372036854776e+18 is out of range", "max_tokens"},
      {kCompletions, R"("n":18446744073709551615)",
       "n = 18446744073709551615 is out of range", "n"},
      {kCompletions, R"("temperature":"hot")", "temperature: expected a number",
       "temperature"},
      {kCompletions, R"("temperature":true)", "temperature: expected a number",
       "temperature"},
      {kChat, R"("top_p":[1])", "top_p: expected a number", "top_p"},
      {kChat, R"("n":2.5)", "n: expected an integer", "n"},
      {kChat, R"("stop":5)", "stop: expected a string or an array of strings", "stop"},
      {kChat, R"("stop":["a",1])", "stop[1]: expected a string", "stop[1]"},
      {kChat, R"("seed":1.5)", "seed: expected an integer", "seed"},
      {kChat, R"("seed":"1")", "seed: expected an integer", "seed"},
      {kChat, R"("presence_penalty":"0")", "presence_penalty: expected a number",
       "presence_penalty"},
      {kChat, R"("frequency_penalty":{})", "frequency_penalty: expected a number",
       "frequency_penalty"},
      {kChat, R"("logit_bias":[1])", "logit_bias: expected an object", "logit_bias"},
      {kChat, R"("user":1)", "user: expected a string", "user"},
      {kChat, R"("stream":"true")", "stream: expected a boolean", "stream"},
      {kChat, R"("stream":1)", "stream: expected a boolean", "stream"},
      {kChat, R"("stream_options":true)", "stream_options: expected an object",
       "stream_options"},
      {kChat, R"("stream_options":{"include_usage":1})",
       "stream_options.include_usage: expected a boolean",
       "stream_options.include_usage"},
      {kChat, R"("stream_options":{"continuous_usage_stats":true})",
       "stream_options.continuous_usage_stats: unknown field",
       "stream_options.continuous_usage_stats"},
      {kChat, R"("top_k":"40")", "top_k: expected an integer", "top_k"},
      {kChat, R"("min_p":"0")", "min_p: expected a number", "min_p"},
      {kChat, R"("repetition_penalty":null,"repetition_penalty2":1)",
       "repetition_penalty2: unknown field; see docs/http-api.md", "repetition_penalty2"},
      {kCompletions, R"("repetition_penalty":"1")",
       "repetition_penalty: expected a number", "repetition_penalty"},
      {kCompletions, R"("ignore_eos":1)", "ignore_eos: expected a boolean", "ignore_eos"},
      {kCompletions, R"("min_tokens":1.0)", "min_tokens: expected an integer",
       "min_tokens"},
      {kCompletions, R"("stop_token_ids":13)",
       "stop_token_ids: expected an array of integers", "stop_token_ids"},
      {kCompletions, R"("stop_token_ids":[13,"a"])",
       "stop_token_ids[1]: expected an integer token id", "stop_token_ids[1]"},
      {kCompletions, R"("stop_token_ids":[2147483648])",
       "stop_token_ids[0]: token id out of range", "stop_token_ids[0]"},
      {kCompletions, R"("priority":"high")", "priority: expected an integer", "priority"},
      {kCompletions, R"("logprobs":true)", "logprobs: expected an integer", "logprobs"},
      {kCompletions, R"("logprobs":2.5)", "logprobs: expected an integer", "logprobs"},
      {kChat, R"("logprobs":1)", "logprobs: expected a boolean", "logprobs"},
      {kChat, R"("top_logprobs":"3","logprobs":true)",
       "top_logprobs: expected an integer", "top_logprobs"},
      {kChat, R"("max_completion_tokens":"5")",
       "max_completion_tokens: expected an integer", "max_completion_tokens"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.fields);
    const std::string message = ParseError(c.endpoint, BodyWith(c.endpoint, c.fields));
    EXPECT_EQ(message, c.message);
    EXPECT_EQ(ErrorParam(message), c.param);
  }
}

TEST(ParseRequestBodyTest, UnknownFieldsAreRefused) {
  EXPECT_EQ(ParseError(kCompletions, BodyWith(kCompletions, R"("temprature":1)")),
            "temprature: unknown field; see docs/http-api.md");
  // Not offered over HTTP.
  EXPECT_EQ(ParseError(kCompletions, BodyWith(kCompletions, R"("prompt_logprobs":1)")),
            "prompt_logprobs: unknown field; see docs/http-api.md");
  // The other endpoint's fields.
  EXPECT_EQ(ParseError(kCompletions, BodyWith(kCompletions, R"("top_logprobs":1)")),
            "top_logprobs: unknown field; see docs/http-api.md");
  EXPECT_EQ(
      ParseError(kCompletions, BodyWith(kCompletions, R"("max_completion_tokens":1)")),
      "max_completion_tokens: unknown field; see docs/http-api.md");
  EXPECT_EQ(ParseError(kChat, BodyWith(kChat, R"("add_bos":false)")),
            "add_bos: unknown field; see docs/http-api.md");
  // Even when null: a misspelt field is reported.
  EXPECT_EQ(ParseError(kChat, BodyWith(kChat, R"("tempreature":null)")),
            "tempreature: unknown field; see docs/http-api.md");
  // A huge key is cut.
  const std::string key(500, 'k');
  EXPECT_LT(ParseError(kChat, BodyWith(kChat, absl::StrCat("\"", key, "\":1"))).size(),
            120u);
}

TEST(ParseRequestBodyTest, WrongEndpointPrompt) {
  EXPECT_EQ(ParseError(kCompletions,
                       R"({"prompt":"x","messages":[{"role":"user","content":"x"}]})"),
            "messages: use /v1/chat/completions for chat");
  EXPECT_EQ(ParseError(kCompletions, R"({"messages":[{"role":"user","content":"x"}]})"),
            "messages: use /v1/chat/completions for chat");
  EXPECT_EQ(ParseError(kChat, BodyWith(kChat, R"("prompt":"x")")),
            "prompt: use /v1/completions");
  // Null is absent.
  EXPECT_EQ(ParseOk(kCompletions, R"({"prompt":"x","messages":null})").prompts.size(),
            1u);
  EXPECT_EQ(ParseOk(kChat, BodyWith(kChat, R"("prompt":null)")).chat.messages_size(), 1);
}

TEST(ParseRequestBodyTest, BodyMustBeAJsonObject) {
  for (const Endpoint endpoint : {kCompletions, kChat}) {
    std::string message = ParseError(endpoint, "not json");
    EXPECT_THAT(message, StartsWith("request body: JSON parse error at byte 1: "));
    EXPECT_EQ(ErrorParam(message), "");
    message = ParseError(endpoint, "");
    EXPECT_THAT(message, StartsWith("request body: JSON parse error at byte "));
    message = ParseError(endpoint, R"({"prompt":"a","prompt":"b"})");
    EXPECT_THAT(message, StartsWith("request body: JSON parse error at byte 14: "));
    EXPECT_THAT(message, HasSubstr("duplicate key \"prompt\""));
    message = ParseError(endpoint, R"({"prompt":"a"} x)");
    EXPECT_THAT(message, StartsWith("request body: JSON parse error"));
    for (const absl::string_view body : {"[1]", "\"x\"", "5", "null", "true"}) {
      SCOPED_TRACE(body);
      message = ParseError(endpoint, body);
      EXPECT_EQ(message, "request body: expected a JSON object");
      EXPECT_EQ(ErrorParam(message), "");
    }
  }
}

// ---------------------------------------------------------------------------
// Neutral fields: accepted and ignored with neutral values, refused otherwise

TEST(ParseRequestBodyTest, NeutralFieldsAreIgnored) {
  for (const Endpoint endpoint : {kCompletions, kChat}) {
    SCOPED_TRACE(endpoint == kChat ? "chat" : "completions");
    for (const absl::string_view fields : {
             R"("best_of":1)",
             R"("best_of":1,"n":3)",
             R"("best_of":3,"n":3)",
             R"("echo":false)",
             R"("suffix":"")",
             R"("response_format":{"type":"text"})",
             R"("parallel_tool_calls":true)",
             R"("parallel_tool_calls":false)",
             R"("tools":[])",
             R"("functions":[])",
             R"("tool_choice":"none")",
             R"("service_tier":"auto")",
             R"("store":false)",
             R"("metadata":{"k":"v"})",
             R"("metadata":{})",
         }) {
      SCOPED_TRACE(fields);
      const HttpRequest r = ParseOk(endpoint, BodyWith(endpoint, fields));
      // Only n (when given) reaches the options.
      v1::GenerationOptions o = OptionsOf(r);
      o.clear_n();
      EXPECT_EQ(o.ByteSizeLong(), 0u);
    }
  }
}

TEST(ParseRequestBodyTest, NonNeutralValuesAreRefused) {
  const std::vector<ErrorCase> cases = {
      {kCompletions, R"("best_of":2)", "best_of: only best_of = n is supported",
       "best_of"},
      {kCompletions, R"("best_of":3,"n":2)", "best_of: only best_of = n is supported",
       "best_of"},
      {kChat, R"("best_of":"1")", "best_of: expected an integer", "best_of"},
      {kCompletions, R"("echo":true)", "echo: not supported by this server", "echo"},
      {kCompletions, R"("echo":"no")", "echo: expected a boolean", "echo"},
      {kCompletions, R"("suffix":"}")", "suffix: not supported by this server", "suffix"},
      {kCompletions, R"("suffix":1)", "suffix: expected a string", "suffix"},
      {kChat, R"("response_format":{"type":"json_object"})",
       "response_format.type: only \"text\" is supported", "response_format.type"},
      {kChat, R"("response_format":{"type":"json_schema","json_schema":{}})",
       "response_format.type: only \"text\" is supported", "response_format.type"},
      {kChat, R"("response_format":{})", "response_format.type: required",
       "response_format.type"},
      {kChat, R"("response_format":{"type":"text","schema":1})",
       "response_format.schema: unknown field", "response_format.schema"},
      {kChat, R"("response_format":"text")", "response_format: expected an object",
       "response_format"},
      {kChat, R"("parallel_tool_calls":"yes")", "parallel_tool_calls: expected a boolean",
       "parallel_tool_calls"},
      {kChat, R"("tools":[{"type":"function","function":{"name":"f"}}])",
       "tools: not supported by this server", "tools"},
      {kChat, R"("tools":{})", "tools: expected an array", "tools"},
      {kChat, R"("functions":[{"name":"f"}])", "functions: not supported by this server",
       "functions"},
      {kChat, R"("tool_choice":"auto")", "tool_choice: not supported by this server",
       "tool_choice"},
      {kChat, R"("tool_choice":"required")", "tool_choice: not supported by this server",
       "tool_choice"},
      {kChat, R"("tool_choice":{"type":"function","function":{"name":"f"}})",
       "tool_choice: not supported by this server", "tool_choice"},
      {kChat, R"("tool_choice":1)", "tool_choice: expected a string or an object",
       "tool_choice"},
      {kChat, R"("service_tier":1)", "service_tier: expected a string", "service_tier"},
      {kChat, R"("store":true)", "store: not supported by this server", "store"},
      {kChat, R"("metadata":"x")", "metadata: expected an object", "metadata"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.fields);
    const std::string message = ParseError(c.endpoint, BodyWith(c.endpoint, c.fields));
    EXPECT_EQ(message, c.message);
    EXPECT_EQ(ErrorParam(message), c.param);
  }
}

// ---------------------------------------------------------------------------
// /v1/completions prompts

TEST(CompletionsPromptTest, ListOfStringsIsOneRequestEach) {
  const HttpRequest r = ParseOk(
      kCompletions, R"({"prompt":["a","b","c"],"model":"m","max_tokens":5,"n":2})");
  ASSERT_EQ(r.prompts.size(), 3u);
  const char* texts[] = {"a", "b", "c"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.prompts[i].text(), texts[i]);
    EXPECT_EQ(r.prompts[i].model(), "m");
    EXPECT_EQ(r.prompts[i].options().max_tokens(), 5);
    EXPECT_EQ(r.prompts[i].options().n(), 2);
    EXPECT_FALSE(r.prompts[i].has_add_bos());
  }
}

TEST(CompletionsPromptTest, TokenIds) {
  HttpRequest r = ParseOk(kCompletions, R"({"prompt":[1,15043,2147483647]})");
  ASSERT_EQ(r.prompts.size(), 1u);
  ASSERT_EQ(r.prompts[0].prompt_case(), v1::GenerateRequest::kTokenIds);
  EXPECT_THAT(r.prompts[0].token_ids().ids(), ElementsAre(1, 15043, 2147483647));

  r = ParseOk(kCompletions, R"({"prompt":[[1,2],[3],[4,5,6]],"logprobs":2})");
  ASSERT_EQ(r.prompts.size(), 3u);
  EXPECT_THAT(r.prompts[0].token_ids().ids(), ElementsAre(1, 2));
  EXPECT_THAT(r.prompts[1].token_ids().ids(), ElementsAre(3));
  EXPECT_THAT(r.prompts[2].token_ids().ids(), ElementsAre(4, 5, 6));
  for (const v1::GenerateRequest& p : r.prompts) EXPECT_EQ(p.options().logprobs(), 2);
}

TEST(CompletionsPromptTest, AtMostEightPrompts) {
  std::string eight = R"({"prompt":["a","a","a","a","a","a","a","a"]})";
  EXPECT_EQ(ParseOk(kCompletions, eight).prompts.size(), 8u);
  EXPECT_EQ(
      ParseError(kCompletions, R"({"prompt":["a","a","a","a","a","a","a","a","a"]})"),
      "prompt: at most 8 prompts per request");
  EXPECT_EQ(
      ParseError(kCompletions, R"({"prompt":[[1],[1],[1],[1],[1],[1],[1],[1],[1]]})"),
      "prompt: at most 8 prompts per request");
  // A single token-id prompt may be long.
  std::string ids = R"({"prompt":[1)";
  for (int i = 0; i < 100; ++i) ids += ",5";
  ids += "]}";
  EXPECT_EQ(ParseOk(kCompletions, ids).prompts[0].token_ids().ids_size(), 101);
}

TEST(CompletionsPromptTest, ShapeErrorsNameTheElement) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({})", "prompt: required"},
      {R"({"prompt":null})", "prompt: required"},
      {R"({"prompt":[]})", "prompt: must not be empty"},
      {R"({"prompt":5})",
       "prompt: expected a string, an array of strings, an array of token ids or an "
       "array of token-id arrays"},
      {R"({"prompt":{"text":"x"}})",
       "prompt: expected a string, an array of strings, an array of token ids or an "
       "array of token-id arrays"},
      {R"({"prompt":["a",1]})", "prompt[1]: expected a string"},
      {R"({"prompt":["a",null]})", "prompt[1]: expected a string"},
      {R"({"prompt":["a",""]})", "prompt[1]: must not be empty"},
      {R"({"prompt":[1,"a"]})", "prompt[1]: expected an integer token id"},
      {R"({"prompt":[1,2.5]})", "prompt[1]: expected an integer token id"},
      {R"({"prompt":[4294967296]})", "prompt[0]: token id out of range"},
      {R"({"prompt":[-2147483649]})", "prompt[0]: token id out of range"},
      {R"({"prompt":[1.5]})",
       "prompt[0]: expected a string, a token id or an array of token ids"},
      {R"({"prompt":[null]})",
       "prompt[0]: expected a string, a token id or an array of token ids"},
      {R"({"prompt":[[1],2]})", "prompt[1]: expected an array of token ids"},
      {R"({"prompt":[[1],[]]})", "prompt[1]: must not be empty"},
      {R"({"prompt":[[1],[2,"x"]]})", "prompt[1][1]: expected an integer token id"},
      {R"({"prompt":[[1],[2147483648]]})", "prompt[1][0]: token id out of range"},
  };
  for (const auto& [body, expected] : cases) {
    SCOPED_TRACE(body);
    const std::string message = ParseError(kCompletions, body);
    EXPECT_EQ(message, expected);
    const std::string param = ErrorParam(message);
    EXPECT_EQ(param, expected.substr(0, expected.find(':')));
  }
}

TEST(CompletionsPromptTest, Logprobs) {
  HttpRequest r = ParseOk(kCompletions, R"({"prompt":"x","logprobs":3})");
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.prompts[0].options().logprobs(), 3);
  r = ParseOk(kCompletions, R"({"prompt":"x","logprobs":0})");
  EXPECT_EQ(r.logprobs, 0);
  ASSERT_TRUE(r.prompts[0].options().has_logprobs());
  EXPECT_EQ(r.prompts[0].options().logprobs(), 0);
  r = ParseOk(kCompletions, R"({"prompt":"x","logprobs":null})");
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_FALSE(r.prompts[0].options().has_logprobs());
}

// ---------------------------------------------------------------------------
// /v1/chat/completions messages

TEST(ChatMessagesTest, RolesAndContents) {
  const HttpRequest r = ParseOk(kChat, R"({"model":"m","messages":[
      {"role":"system","content":"Be brief."},
      {"role":"user","content":"Hi","name":"alice"},
      {"role":"assistant","content":null},
      {"role":"developer","content":"Dev"},
      {"role":"user","content":[{"type":"text","text":"one"},
                                {"type":"text","text":"two"}]},
      {"role":"assistant","content":[]},
      {"role":"assistant"}]})");
  EXPECT_EQ(r.endpoint, kChat);
  EXPECT_TRUE(r.prompts.empty());
  EXPECT_EQ(r.chat.model(), "m");
  ASSERT_EQ(r.chat.messages_size(), 7);
  EXPECT_EQ(r.chat.messages(0).role(), v1::ROLE_SYSTEM);
  EXPECT_EQ(r.chat.messages(0).content(), "Be brief.");
  EXPECT_EQ(r.chat.messages(1).role(), v1::ROLE_USER);
  EXPECT_EQ(r.chat.messages(1).content(), "Hi");
  EXPECT_EQ(r.chat.messages(2).role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(r.chat.messages(2).content(), "");
  EXPECT_EQ(r.chat.messages(3).role(), v1::ROLE_SYSTEM);  // developer
  EXPECT_EQ(r.chat.messages(3).content(), "Dev");
  EXPECT_EQ(r.chat.messages(4).role(), v1::ROLE_USER);
  EXPECT_EQ(r.chat.messages(4).content(), "one\ntwo");
  EXPECT_EQ(r.chat.messages(5).content(), "");
  EXPECT_EQ(r.chat.messages(6).content(), "");
  // Role order and emptiness are the shared parser's to check.
}

TEST(ChatMessagesTest, EchoedAssistantMessagesAreAccepted) {
  // What SDKs append after a reply: nulls and an empty tool_calls list.
  const HttpRequest r = ParseOk(kChat, R"({"messages":[
      {"role":"user","content":"Hi"},
      {"role":"assistant","content":"Hello","refusal":null,"tool_calls":[],
       "function_call":null,"name":null},
      {"role":"user","content":"More"}]})");
  ASSERT_EQ(r.chat.messages_size(), 3);
  EXPECT_EQ(r.chat.messages(1).content(), "Hello");
}

TEST(ChatMessagesTest, ErrorsNameTheMessage) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({})", "messages: required"},
      {R"({"messages":null})", "messages: required"},
      {R"({"messages":{"role":"user"}})", "messages: expected an array"},
      {R"({"messages":[{"role":"user","content":"x"},"hi"]})",
       "messages[1]: expected an object"},
      {R"({"messages":[{"content":"x"}]})", "messages[0].role: required"},
      {R"({"messages":[{"role":5,"content":"x"}]})",
       "messages[0].role: expected a string"},
      {R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},)"
       R"({"role":"tool","content":"x"}]})",
       "messages[2].role: must be \"system\", \"user\" or \"assistant\" (got \"tool\")"},
      {R"({"messages":[{"role":"User","content":"x"}]})",
       "messages[0].role: must be \"system\", \"user\" or \"assistant\" (got \"User\")"},
      {R"({"messages":[{"role":"user"}]})",
       "messages[0].content: required (null is only allowed for assistant messages)"},
      {R"({"messages":[{"role":"system","content":null}]})",
       "messages[0].content: required (null is only allowed for assistant messages)"},
      {R"({"messages":[{"role":"user","content":5}]})",
       "messages[0].content: expected a string or an array of content parts"},
      {R"({"messages":[{"role":"user","content":["x"]}]})",
       "messages[0].content[0]: expected an object"},
      {R"({"messages":[{"role":"user","content":[{"type":"text","text":"a"},)"
       R"({"type":"image_url","image_url":{"url":"http://x"}}]}]})",
       "messages[0].content[1].type: only \"text\" parts are supported"},
      {R"({"messages":[{"role":"user","content":[{"text":"a"}]}]})",
       "messages[0].content[0].type: required"},
      {R"({"messages":[{"role":"user","content":[{"type":"text"}]}]})",
       "messages[0].content[0].text: required"},
      {R"({"messages":[{"role":"user","content":[{"type":"text","text":5}]}]})",
       "messages[0].content[0].text: expected a string"},
      {R"({"messages":[{"role":"user","content":[{"type":"text","text":"a","x":1}]}]})",
       "messages[0].content[0].x: unknown field"},
      {R"({"messages":[{"role":"user","content":"x","name":5}]})",
       "messages[0].name: expected a string"},
      {R"({"messages":[{"role":"user","content":"x","weight":1}]})",
       "messages[0].weight: unknown field"},
      {R"({"messages":[{"role":"assistant","content":"x","tool_calls":[{"id":"1"}]},)"
       R"({"role":"user","content":"y"}]})",
       "messages[0].tool_calls: not supported by this server"},
  };
  for (const auto& [body, expected] : cases) {
    SCOPED_TRACE(body);
    const std::string message = ParseError(kChat, body);
    EXPECT_EQ(message, expected);
    EXPECT_EQ(ErrorParam(message), expected.substr(0, expected.find(':')));
  }
}

TEST(ChatMessagesTest, LongRoleIsCutInTheMessage) {
  const std::string role(300, 'r');
  const std::string message = ParseError(
      kChat, absl::StrCat(R"({"messages":[{"role":")", role, R"(","content":"x"}]})"));
  EXPECT_THAT(message, StartsWith("messages[0].role: must be"));
  EXPECT_LT(message.size(), 160u);
}

TEST(ChatMessagesTest, Logprobs) {
  HttpRequest r = ParseOk(kChat, BodyWith(kChat, R"("logprobs":true)"));
  EXPECT_EQ(r.logprobs, 0);
  ASSERT_TRUE(r.chat.options().has_logprobs());
  EXPECT_EQ(r.chat.options().logprobs(), 0);

  r = ParseOk(kChat, BodyWith(kChat, R"("logprobs":true,"top_logprobs":5)"));
  EXPECT_EQ(r.logprobs, 5);
  EXPECT_EQ(r.chat.options().logprobs(), 5);

  r = ParseOk(kChat, BodyWith(kChat, R"("logprobs":false)"));
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_FALSE(r.chat.options().has_logprobs());

  r = ParseOk(kChat, BodyWith(kChat, R"("logprobs":true,"top_logprobs":null)"));
  EXPECT_EQ(r.logprobs, 0);

  EXPECT_EQ(ParseError(kChat, BodyWith(kChat, R"("top_logprobs":2)")),
            "top_logprobs: requires logprobs: true");
  EXPECT_EQ(ParseError(kChat, BodyWith(kChat, R"("logprobs":false,"top_logprobs":2)")),
            "top_logprobs: requires logprobs: true");
  EXPECT_EQ(ErrorParam("top_logprobs: requires logprobs: true"), "top_logprobs");
}

TEST(ChatMessagesTest, MaxCompletionTokens) {
  HttpRequest r = ParseOk(kChat, BodyWith(kChat, R"("max_completion_tokens":20)"));
  EXPECT_EQ(r.chat.options().max_tokens(), 20);
  r = ParseOk(kChat, BodyWith(kChat, R"("max_completion_tokens":20,"max_tokens":20)"));
  EXPECT_EQ(r.chat.options().max_tokens(), 20);
  r = ParseOk(kChat, BodyWith(kChat, R"("max_completion_tokens":null,"max_tokens":7)"));
  EXPECT_EQ(r.chat.options().max_tokens(), 7);
  r = ParseOk(kChat, BodyWith(kChat, ""));
  EXPECT_FALSE(r.chat.options().has_max_tokens());  // the context fills it
  const std::string message =
      ParseError(kChat, BodyWith(kChat, R"("max_completion_tokens":20,"max_tokens":10)"));
  EXPECT_THAT(message, StartsWith("max_completion_tokens: "));
  EXPECT_EQ(ErrorParam(message), "max_completion_tokens");
}

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
