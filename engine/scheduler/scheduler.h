#ifndef OPENELM_ENGINE_SCHEDULER_SCHEDULER_H_
#define OPENELM_ENGINE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/base/types.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/model/decoder_model.h"
#include "engine/request/request_types.h"
#include "engine/scheduler/request.h"
#include "engine/scheduler/request_queue.h"
#include "engine/scheduler/step_samples.h"

namespace openelm {

struct SchedulerConfig {
  int32_t max_num_seqs = 64;             // rows per step
  int32_t max_num_batched_tokens = 512;  // tokens per step
  // Rows of logits per step (BatchRow::num_logits_rows summed): the rows of
  // a prompt-logprobs chunk count one each.
  int32_t max_logits_rows = 512;
  int32_t max_context_length = 2048;
  TokenId eos_token_id = kEosTokenId;
};

// What the scheduler put into one row of the batch.
struct ScheduledRow {
  Request* request = nullptr;
  Sequence* sequence = nullptr;  // &request->root or one of request->seqs
  bool is_root = false;
};

// One step: the model's batch plus the scheduler's view of each row.
struct ScheduledStep {
  ForwardBatch batch;
  std::vector<ScheduledRow> rows;                   // parallel to batch.rows
  std::vector<std::pair<BlockId, BlockId>> copies;  // run before Forward
  int32_t num_prefill_tokens = 0;
  int32_t num_decode_tokens = 0;
  int32_t num_preemptions = 0;
  int32_t prefix_query_tokens = 0;
  int32_t prefix_hit_tokens = 0;
  bool empty() const { return rows.empty(); }
  void Clear();
};

// Continuous batching over a KvCacheManager (vLLM v1-like). Each Schedule()
// composes one step within max_num_seqs rows and max_num_batched_tokens
// tokens:
//   1. requests past their deadline finish (kDeadline);
//   2. running requests' decode rows (one token per live completion), in
//      admission order; a request's decode rows are all or nothing;
//   3. running requests that still have several tokens to compute
//      (a partially computed prompt, or generated tokens being recomputed
//      after a preemption) get prefill chunks;
//   4. waiting requests are admitted in RequestQueue order (FCFS by default)
//      with a prefill chunk each, reusing prefix-cache blocks, while their
//      blocks fit and the running completions stay within max_num_seqs
//      (the first that does not fit stops it).
// Before 2., when the queue's front does not fit, the queue's policy may name
// running requests to preempt in its favour (RequestQueue::ChooseVictim: the
// fair queue does so when the front's tenant holds less than its weighted
// share of the seats and another tenant more), so a light tenant's request
// starts at the next step instead of waiting for a heavy tenant's to finish.
// Non-final chunks end on a block boundary when the budget allows. When a
// running request cannot get blocks, the most recently admitted running
// request with no rows in this step is preempted (its blocks freed; it is
// recomputed later, generated tokens included) until it fits.
//
// After the step ran, Update() takes the tokens the engine sampled
// (StepSamples), appends them, applies the stop conditions on ids, length and
// context, and finishes requests, freeing their blocks at once. Text and stop
// strings are not its business: the engine's OutputProcessor reads the new
// tokens of touched() requests and calls StopSequence() on a match. Output and
// finished requests are collected for the engine to deliver (touched(),
// finished()); the scheduler never calls a sink.
//
// Thread-compatible: only the engine thread uses it.
class Scheduler {
 public:
  // `kv` must outlive the scheduler.
  Scheduler(const SchedulerConfig& config, KvCacheManager* kv,
            std::unique_ptr<RequestQueue> queue);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Takes a validated request (state kWaiting). Sets its arrival order, RNG
  // streams and sequences. `seed` is used when params.seed is unset.
  void AddRequest(std::unique_ptr<Request> request, uint64_t seed, absl::Time now);

  // Finishes request `id` with `reason`/`status` (cancel). False if unknown.
  bool Abort(RequestId id, FinishReason reason, const absl::Status& status,
             absl::Time now);
  // Finishes every request (shutdown).
  void AbortAll(FinishReason reason, const absl::Status& status, absl::Time now);

  // Builds the next step. The result stays valid until the next Schedule().
  const ScheduledStep& Schedule(absl::Time now);

  // The step ran and its logits were sampled into `samples` (parallel to
  // the step's rows).
  void Update(const StepSamples& samples, absl::Time now);
  // A stop string matched in completion `seq` of running or just-finished
  // `request` (OutputProcessor): finishes it with kStopSequence (its blocks
  // freed; the request finishes when it was the last), or, when the same
  // token already finished it, makes kStopSequence its reason.
  void StopSequence(Request* request, Sequence* seq, absl::Time now);
  // The step failed: its requests finish with kError and `status`.
  void FailStep(const absl::Status& status, absl::Time now);

  // Requests with undelivered output (Sequence::delta) since ClearEvents(),
  // and requests that finished (their `finish` is filled; deliver OnFinish
  // after their output).
  const std::vector<Request*>& touched() const { return touched_; }
  std::vector<std::unique_ptr<Request>>& finished() { return finished_; }
  void ClearEvents();

  int32_t num_waiting() const { return static_cast<int32_t>(queue_->size()); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  // Running requests, in admission order.
  const std::vector<Request*>& running() const { return running_; }
  int32_t num_requests() const { return static_cast<int32_t>(requests_.size()); }
  int64_t num_preemptions_total() const { return preemptions_total_; }
  const Request* Find(RequestId id) const;
  const SchedulerConfig& config() const { return config_; }

 private:
  // Scheduling helpers (scheduler.cc).
  void ExpireDeadlines(absl::Time now);
  int32_t ChunkSize(int32_t num_computed, int32_t remaining, int32_t budget) const;
  // Frees blocks until `needed` fit, preempting victims (never `keep`).
  bool MakeRoom(int32_t needed, const Request* keep);
  // Completions of `r` that have not finished (n before the first token).
  // Blocks the running requests' decode rows would take in this step.
  int32_t DecodeBlocksNeeded() const;
  // Preempts running requests the queue's policy names for its front.
  void PreemptForFairness();
  void Preempt(Request* request);
  void AddRow(Request* request, Sequence* seq, bool is_root, int32_t num_tokens,
              BatchRow::Logits logits);
  BatchRow::Logits RootLogits(const Request& request, int32_t end) const;
  // The chunk of `remaining` tokens after `num_computed` that sequence `s`
  // (the root when `is_root`) runs this step within `budget` tokens and
  // `logits_left` rows of logits, and the logits it asks for; 0 when none
  // fits. A prompt-logprobs chunk is cut to the logits rows left; a final
  // chunk that finds none left runs all but its last token.
  int32_t FitChunk(const Request& r, const Sequence& s, bool is_root,
                   int32_t num_computed, int32_t remaining, int32_t budget,
                   int32_t logits_left, BatchRow::Logits* logits) const;

  // Output helpers (scheduler_output.cc).
  void StartCompletions(Request* request, const StepSamples& samples, int32_t first,
                        int32_t end, absl::Time now);
  void ForkFromRoot(Request* request);
  void AcceptToken(Request* request, Sequence* seq, const StepSamples& samples,
                   int32_t token_index, absl::Time now);
  void FinishSequence(Request* request, Sequence* seq, FinishReason reason);
  void MaybeFinishRequest(Request* request, absl::Time now);
  void FinishRequest(Request* request, FinishReason reason, const absl::Status& status,
                     absl::Time now);
  void Touch(Request* request);
  void FreeBlocks(Request* request);

  const SchedulerConfig config_;
  KvCacheManager* const kv_;
  std::unique_ptr<RequestQueue> queue_;
  absl::flat_hash_map<RequestId, std::unique_ptr<Request>> requests_;
  std::vector<Request*> running_;  // admission order
  uint64_t next_arrival_seq_ = 0;
  int64_t step_id_ = 0;
  int64_t preemptions_total_ = 0;
  ScheduledStep step_;
  PrefixHit hit_;                        // scratch
  std::vector<Sequence*> scratch_seqs_;  // scratch
  std::vector<Request*> scratch_requests_;
  std::vector<Request*> touched_;
  std::vector<std::unique_ptr<Request>> finished_;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_SCHEDULER_SCHEDULER_H_
