// The OpenAI wire format, requests: bodies -> v1 protos (every field, every
// shape, every refusal and the field its message names) and the dialects.

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

}  // namespace
}  // namespace openelm::server::openai
