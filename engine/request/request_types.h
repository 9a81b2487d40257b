#ifndef OPENELM_ENGINE_REQUEST_REQUEST_TYPES_H_
#define OPENELM_ENGINE_REQUEST_REQUEST_TYPES_H_

// The plain-data vocabulary of a request, shared by the engine loop, the
// scheduler and the front ends: what goes in (GenerateSpec), what comes out
// (OutputDelta, FinishInfo) and who receives it (TokenSink). It depends on
// nothing but base types and the sampling parameters, so the include graph
// reads engine -> scheduler -> kv_cache with no edge back to the engine.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/base/types.h"
#include "engine/sampling/sampling_params.h"

namespace openelm {

enum class FinishReason {
  kUnspecified,
  kEos,            // the model produced EOS
  kLength,         // max_tokens reached
  kStopSequence,   // a stop string matched
  kStopToken,      // a stop_token_ids entry was produced
  kContextLength,  // the sequence reached max_context_length
  kCancelled,      // Cancel() or client went away
  kDeadline,       // the request's deadline passed
  kError,          // see FinishInfo::status
  kShutdown,       // the engine shut down before the request finished
};
const char* FinishReasonName(FinishReason reason);  // "eos", "length", ...

// One request as the engine sees it.
struct GenerateSpec {
  std::vector<TokenId> prompt;  // includes BOS when the caller wants it
  SamplingParams params;
  absl::Time deadline = absl::InfiniteFuture();
  std::string cache_salt;  // prefix-cache isolation domain (tenant)
  std::string tenant;      // fair-scheduling account; "" = default
  int32_t priority = 0;    // within a tenant; higher first (optional)
  // Whether the text before the output is non-empty (affects the leading
  // space of the first detokenized piece). True for normal prompts.
  bool continues_text = true;
  // The API that accepted the request ("grpc" or "http"): a metrics label
  // only; the engine does not read it.
  std::string api = "grpc";
};

struct TokenLogprob {
  TokenId token = 0;
  float logprob = 0;
};

// Output of one completion (`index` < n) for one step.
struct OutputDelta {
  int32_t index = 0;
  std::vector<TokenId> tokens;  // newly accepted tokens
  std::string text;  // newly released text (UTF-8 complete, stop strings withheld)
  // Per token (parallel to `tokens`) when logprobs >= 0: the chosen token's
  // logprob first, then up to `logprobs` top alternatives.
  std::vector<std::vector<TokenLogprob>> logprobs;
};

struct RequestTimings {
  absl::Time arrival;
  absl::Time first_scheduled;  // left the queue
  absl::Time first_token;
  absl::Time finished;
};

struct CompletionFinish {
  int32_t index = 0;
  FinishReason reason = FinishReason::kUnspecified;
  int32_t num_output_tokens = 0;
  std::string stop_matched;  // the stop string or ""
};

struct FinishInfo {
  absl::Status status;  // OK unless kError/kShutdown/kCancelled/kDeadline... (see below)
  std::vector<CompletionFinish> completions;  // one per index
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_tokens = 0;  // prompt tokens served from the prefix cache
  int32_t num_output_tokens = 0;  // all completions
  int32_t num_preemptions = 0;
  // Prompt logprobs when requested: one entry per prompt token (the first is
  // empty), chosen token first then top alternatives.
  std::vector<std::vector<TokenLogprob>> prompt_logprobs;
  RequestTimings timings;
};
// FinishInfo::status is OK for EOS/LENGTH/STOP_*/CONTEXT_LENGTH/DEADLINE (the
// partial output is valid), kCancelled for kCancelled, kUnavailable for
// kShutdown, and the failure for kError.

// Receives one request's output. Called only on the engine thread; must not
// block (a slow sink stalls every request in the batch).
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  // New output, in order. Never called after OnFinish().
  virtual void OnOutput(const OutputDelta& delta) = 0;
  // Exactly once per accepted request, always last. The engine never touches
  // the sink after this call (the sink may delete itself inside it).
  virtual void OnFinish(const FinishInfo& info) = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_REQUEST_REQUEST_TYPES_H_
