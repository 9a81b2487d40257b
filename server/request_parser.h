#ifndef OPENELM_SERVER_REQUEST_PARSER_H_
#define OPENELM_SERVER_REQUEST_PARSER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/llm_engine.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"
#include "openelm/v1/inference.pb.h"

namespace openelm::server {

// What a request is checked against.
struct RequestLimits {
  std::string model_id;  // the served model's id ("" accepted too)
  int32_t vocab_size = 32000;
  int32_t max_context_length = 2048;
  int64_t max_prompt_bytes = 1 << 20;
  // Tokenizer::max_bytes_per_token(): text longer than this many bytes per
  // context token is rejected before it is tokenized. 0: no such check.
  int32_t max_bytes_per_token = 0;
};

// Default of GenerationOptions.max_tokens when unset.
inline constexpr int32_t kDefaultMaxTokens = 16;

// How a front end names the request's fields in error messages, and its
// defaults where the two APIs differ. The rules themselves are the same for
// every front end; only the words and the default differ.
struct ApiDialect {
  std::string options = "options.";         // prefix of every option field
  std::string text = "text";                // a text prompt
  std::string token_ids = "token_ids.ids";  // a token-id prompt
  std::string messages = "messages";        // chat messages
  // max_tokens when the request leaves it unset: kDefaultMaxTokens, or (when
  // true) whatever room the context has left after the prompt (OpenAI chat).
  bool max_tokens_fills_context = false;
};
// The gRPC API's names (proto field paths).
const ApiDialect& GrpcDialect();

// Pure request validation and conversion: proto -> engine types. Every
// failure is kInvalidArgument naming the field and its limit (e.g.
// "options.top_p = 1.5 is out of range (0, 1]").

// Checks GenerateRequest.model / ChatRequest.model.
absl::Status CheckModel(absl::string_view model, const RequestLimits& limits);

// Converts and range-checks the generation options (also runs
// SamplingParams::Validate).
absl::StatusOr<SamplingParams> ParseGenerationOptions(
    const v1::GenerationOptions& options, const RequestLimits& limits,
    const ApiDialect& dialect = GrpcDialect());

// Checks that `num_prompt_tokens` (>= 1) plus max_tokens fits the context.
absl::Status CheckPromptFits(int64_t num_prompt_tokens, const SamplingParams& params,
                             const RequestLimits& limits,
                             const ApiDialect& dialect = GrpcDialect());

// Checks, without tokenizing, that `num_bytes` of prompt text (plus
// `extra_tokens` such as BOS) can fit the context beside max_tokens: text
// encodes to at least ceil(num_bytes / max_bytes_per_token) tokens. Cheap, so
// an oversized prompt is refused before the costly encode.
absl::Status CheckTextCanFit(absl::string_view field, int64_t num_bytes,
                             int64_t extra_tokens, const SamplingParams& params,
                             const RequestLimits& limits,
                             const ApiDialect& dialect = GrpcDialect());

// A whole GenerateRequest: model, prompt (tokenized with BOS unless
// add_bos=false; token ids range-checked), options, context fit.
absl::StatusOr<GenerateSpec> ParseGenerateRequest(
    const v1::GenerateRequest& request, const Tokenizer& tokenizer,
    const RequestLimits& limits, const ApiDialect& dialect = GrpcDialect());

// A whole ChatRequest: roles and their order, contents, rendering with the
// Instruct chat template, options, context fit.
absl::StatusOr<GenerateSpec> ParseChatRequest(const v1::ChatRequest& request,
                                              const Tokenizer& tokenizer,
                                              const RequestLimits& limits,
                                              const ApiDialect& dialect = GrpcDialect());

}  // namespace openelm::server

#endif  // OPENELM_SERVER_REQUEST_PARSER_H_
