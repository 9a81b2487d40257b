#ifndef OPENELM_TESTS_SERVER_OPENAI_TEST_UTIL_H_
#define OPENELM_TESTS_SERVER_OPENAI_TEST_UTIL_H_

// Helpers of the OpenAI wire-format tests (openai_request_test.cc,
// openai_response_test.cc): request bodies and their parse results.

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "server/http/openai_protocol.h"

namespace openelm::server::openai {

using Json = nlohmann::json;

inline constexpr Endpoint kCompletions = Endpoint::kCompletions;
inline constexpr Endpoint kChat = Endpoint::kChatCompletions;

// A body of `endpoint` with its required prompt plus `fields` (JSON members
// without braces, may be empty).
inline std::string BodyWith(Endpoint endpoint, absl::string_view fields) {
  const absl::string_view prompt = endpoint == kChat
                                       ? R"("messages":[{"role":"user","content":"Hi"}])"
                                       : R"("prompt":"Hi")";
  return absl::StrCat("{", prompt, fields.empty() ? "" : ",", fields, "}");
}

inline HttpRequest ParseOk(Endpoint endpoint, absl::string_view body) {
  absl::StatusOr<HttpRequest> r = ParseRequestBody(endpoint, body);
  EXPECT_TRUE(r.ok()) << r.status() << " for " << body;
  return r.ok() ? *std::move(r) : HttpRequest();
}

// The error message of parsing `body`, which must be kInvalidArgument.
inline std::string ParseError(Endpoint endpoint, absl::string_view body) {
  absl::StatusOr<HttpRequest> r = ParseRequestBody(endpoint, body);
  if (r.ok()) return "<parsed OK>";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  return std::string(r.status().message());
}

inline const v1::GenerationOptions& OptionsOf(const HttpRequest& r) {
  static const v1::GenerationOptions* const kEmpty = new v1::GenerationOptions();
  if (r.endpoint == kChat) return r.chat.options();
  return r.prompts.empty() ? *kEmpty : r.prompts.front().options();
}

}  // namespace openelm::server::openai

#endif  // OPENELM_TESTS_SERVER_OPENAI_TEST_UTIL_H_
