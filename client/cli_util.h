#ifndef OPENELM_CLIENT_CLI_UTIL_H_
#define OPENELM_CLIENT_CLI_UTIL_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "openelm/v1/inference.pb.h"

namespace openelm::cli {

// The generation flags of `openelm generate|chat`, as parsed strings and
// optionals (unset = the server's default). Kept apart from absl flags so
// that the conversion is unit-testable.
struct GenerationFlags {
  std::optional<int32_t> max_tokens;
  std::optional<float> temperature;
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<float> presence_penalty;
  std::optional<float> frequency_penalty;
  std::string logit_bias;  // "id:bias,id:bias"
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // stop strings
  std::string stop_token_ids;     // "2,13"
  std::optional<int32_t> min_tokens;
  bool ignore_eos = false;
  std::optional<int32_t> logprobs;
  std::optional<int32_t> prompt_logprobs;
  std::optional<int32_t> n;
  int32_t priority = 0;
};

// Copies the set flags into `options`. kInvalidArgument names the flag when
// a list cannot be parsed (range checks are the server's job).
absl::Status FillGenerationOptions(const GenerationFlags& flags,
                                   v1::GenerationOptions* options);

// "1,2 3" -> {1, 2, 3}: integers separated by commas and/or whitespace.
absl::StatusOr<std::vector<int32_t>> ParseIdList(absl::string_view text);

// "13:-100,29889:2.5" -> {13: -100, 29889: 2.5}.
absl::StatusOr<std::map<int32_t, float>> ParseLogitBias(absl::string_view text);

// Role name "system" / "user" / "assistant" (or the proto enum names).
absl::StatusOr<v1::Role> ParseRole(absl::string_view name);

// Parses chat messages from JSON: either an array
//   [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]
// or an object {"messages": [...]} (the OpenAI request shape).
absl::StatusOr<std::vector<v1::ChatMessage>> ParseMessagesJson(absl::string_view json);

// One-line JSON of any response (proto3 JSON mapping, field names as in the
// proto).
std::string ToJson(const google::protobuf::Message& message);

// "length", "eos", ... for a finish reason (the metrics label spelling).
std::string FinishReasonName(v1::FinishReason reason);

// What runs, from a ListModels entry, for `openelm models`: the weight
// precision beside the matmul input precision and kernels, e.g.
//   "weights bf16, matmuls f32 (own avx2 kernels), kv bf16, cpu avx2"
// The kernels come from the `matmul=` item of execution_plan; fields an older
// server leaves empty are left out.
std::string DescribeExecution(const v1::ModelInfo& model);

// Whether output that ended with `last_text` (the last non-empty text
// written; "" when none) needs a newline so that the shell prompt starts on
// its own line.
bool NeedsFinalNewline(absl::string_view last_text);

}  // namespace openelm::cli

#endif  // OPENELM_CLIENT_CLI_UTIL_H_
