#ifndef OPENELM_ENGINE_LLM_ENGINE_H_
#define OPENELM_ENGINE_LLM_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/model/decoder_model.h"
#include "engine/request/request_types.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"

namespace openelm {

// Per-step statistics for metrics.
struct StepStats {
  absl::Duration duration;  // whole step (schedule + forward + sample)
  absl::Duration forward_duration;
  absl::Duration sample_duration;
  int32_t num_rows = 0;  // sequences in the batch
  int32_t num_prefill_tokens = 0;
  int32_t num_decode_tokens = 0;
  int32_t num_waiting = 0;
  int32_t num_running = 0;
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
  int32_t num_preemptions = 0;       // in this step
  int32_t prefix_cache_queries = 0;  // tokens looked up in this step
  int32_t prefix_cache_hits = 0;     // tokens found
};

// Implemented by the server's metrics. Called on the engine thread; must not block.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepStats& stats) = 0;
  virtual void OnRequestFinished(const GenerateSpec& spec, const FinishInfo& info) = 0;
};

struct EngineOptions {
  int32_t block_size_tokens = 16;
  int64_t kv_memory_bytes = 0;  // KV budget; or num_blocks > 0 overrides
  int32_t num_blocks = 0;
  int32_t max_num_seqs = 64;
  int32_t max_num_batched_tokens = 512;
  // Rows of logits one step may compute (a row per sampled sequence, a row
  // per prompt token of prompt-logprobs requests). 0: ResolvedLogitsRows().
  // Prompt-logprobs prefill is cut into chunks that fit; the logits buffer
  // is this many rows of the vocabulary (64 rows of 32000 floats: 7.8 MiB).
  int32_t max_logits_rows = 0;
  int32_t max_queued_requests = 1024;  // inbox + waiting; beyond -> kResourceExhausted
  bool enable_prefix_caching = true;
  bool start_thread = true;  // false: tests drive StepForTesting()
};

// max_logits_rows when set, else max(max_num_seqs, 64), never more than
// max_num_batched_tokens: every decode row of a full batch gets its row.
// Create() refuses a max_logits_rows below min(max_num_seqs,
// max_num_batched_tokens).
int32_t ResolvedLogitsRows(const EngineOptions& options);

// A snapshot of load, readable from any thread (atomics updated each step).
struct EngineLoad {
  int32_t num_waiting = 0;
  int32_t num_running = 0;
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
  int32_t block_size_tokens = 0;
  int32_t num_pinned_blocks = 0;  // held by pinned shared prefixes (not free)
};

// A prompt prefix declared shared by all tenants (e.g. the deployment's
// system prompt), as token ids that prompts start with. Its full KV blocks
// are shared across cache salts; `pinned` ones are never evicted.
struct SharedPrefixSpec {
  std::string name;
  std::vector<TokenId> tokens;
  bool pinned = false;
};

// Runs continuous batching on a dedicated thread.
//
// Thread-safety: Submit(), Cancel(), Shutdown() and load() may be called from
// any thread; they touch only the inbox/atomics and never wait for a step.
// All other state (scheduler, KV cache, model, requests) belongs to the
// engine thread.
class LlmEngine {
 public:
  // `tokenizer` (may be null in tests: then no text and no stop strings) and
  // `observer` (may be null) must outlive the engine.
  static absl::StatusOr<std::unique_ptr<LlmEngine>> Create(
      const EngineOptions& options, std::unique_ptr<DecoderModel> model,
      const Tokenizer* tokenizer, EngineObserver* observer);
  virtual ~LlmEngine() = default;  // implementations Shutdown() + join

  // Queues a request. On error the sink gets no callbacks: kInvalidArgument
  // (prompt + max_tokens over the context, larger than the whole KV pool,
  // bad params), kResourceExhausted (queue full), kUnavailable (shut down).
  virtual absl::Status Submit(RequestId id, GenerateSpec spec, TokenSink* sink) = 0;
  // Ends the request with kCancelled within one step. No-op for unknown ids.
  virtual void Cancel(RequestId id) = 0;
  // Stops accepting; finishes every queued/running request with kShutdown;
  // joins the thread. Idempotent.
  virtual void Shutdown() = 0;
  virtual EngineLoad load() const = 0;
  virtual const ModelInfo& model_info() const = 0;

  // Fair-scheduling weights by tenant (GenerateSpec::tenant); tenants not
  // listed get weight 1. Posted to the engine thread and applied before its
  // next step. Callable from any thread. The default ignores them.
  virtual void SetTenantWeights(absl::flat_hash_map<std::string, double> /*weights*/) {}
  // Replaces the declared shared prefixes. Posted to the engine thread like
  // the weights. The default ignores them.
  virtual void SetSharedPrefixes(std::vector<SharedPrefixSpec> /*prefixes*/) {}
  // KV blocks held by `tenant`'s running requests (block references summed
  // over their sequences), as of the last step. Callable from any thread.
  // The default reports 0.
  virtual int32_t TenantKvBlocks(const std::string& /*tenant*/) const { return 0; }

  // Test hook: one loop iteration on the caller's thread (start_thread=false).
  virtual absl::Status StepForTesting() = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_LLM_ENGINE_H_
