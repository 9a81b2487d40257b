#include "engine/llm_engine.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/memory/memory.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/base/status_macros.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/output/output_processor.h"
#include "engine/scheduler/request.h"
#include "engine/scheduler/request_queue.h"
#include "engine/scheduler/scheduler.h"
#include "engine/step_sampler.h"
#include "engine/tenancy/fair_request_queue.h"

namespace openelm {

namespace {

// A message from another thread to the engine thread.
struct InboxMessage {
  RequestId id = 0;
  std::unique_ptr<Request> request;  // null: a cancellation of `id`
  bool wake_only = false;            // only wakes the loop (new weights)
};

// The engine: one loop thread that owns the scheduler, the KV bookkeeping,
// the sampler and the model; other threads reach it only through the inbox.
class LlmEngineImpl final : public LlmEngine {
 public:
  LlmEngineImpl(const EngineOptions& options, std::unique_ptr<DecoderModel> model,
                const Tokenizer* tokenizer, EngineObserver* observer, int32_t num_blocks)
      : options_(options),
        model_(std::move(model)),
        tokenizer_(tokenizer),
        observer_(observer),
        num_blocks_(num_blocks),
        max_context_length_(model_->info().max_context_length > 0
                                ? model_->info().max_context_length
                                : 2048),
        kv_(num_blocks, options.block_size_tokens, options.enable_prefix_caching),
        scheduler_(
            SchedulerConfig{.max_num_seqs = options.max_num_seqs,
                            .max_num_batched_tokens = options.max_num_batched_tokens,
                            .max_logits_rows = ResolvedLogitsRows(options),
                            .max_context_length = max_context_length_,
                            .eos_token_id = model_->info().eos_token_id},
            &kv_,
            [this] {
              // Weighted-fair (VTC) admission between tenants; FCFS within one.
              auto queue = std::make_unique<FairRequestQueue>(FairQueueOptions{});
              fair_queue_ = queue.get();
              return queue;
            }()),
        step_sampler_(model_->info().vocab_size, model_->info().eos_token_id),
        output_(tokenizer),
        seed_rng_(std::random_device{}()) {
    PublishLoad();
  }

  ~LlmEngineImpl() override { Shutdown(); }

  void Start() {
    if (options_.start_thread) thread_ = std::thread([this] { RunLoop(); });
  }

  absl::Status Submit(RequestId id, GenerateSpec spec, TokenSink* sink) override;
  void Cancel(RequestId id) override;
  void Shutdown() override;
  EngineLoad load() const override;
  const ModelInfo& model_info() const override { return model_->info(); }
  void SetTenantWeights(absl::flat_hash_map<std::string, double> weights) override;
  void SetSharedPrefixes(std::vector<SharedPrefixSpec> prefixes) override;
  int32_t TenantKvBlocks(const std::string& tenant) const override;
  absl::Status StepForTesting() override;

 private:
  absl::Status Validate(const GenerateSpec& spec) const;
  bool HasMessageOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(inbox_mu_) {
    return !inbox_.empty() || stop_requested_;
  }
  void RunLoop();
  void RunOneStep();
  void DrainInbox(absl::Time now);
  void FinishEverything();
  void Emit();
  void PublishLoad();

  const EngineOptions options_;
  const std::unique_ptr<DecoderModel> model_;
  const Tokenizer* const tokenizer_;
  EngineObserver* const observer_;
  const int32_t num_blocks_;
  const int32_t max_context_length_;

  mutable absl::Mutex inbox_mu_;
  std::vector<InboxMessage> inbox_ ABSL_GUARDED_BY(inbox_mu_);
  bool accepting_ ABSL_GUARDED_BY(inbox_mu_) = true;
  bool stop_requested_ ABSL_GUARDED_BY(inbox_mu_) = false;
  int32_t num_queued_submits_ ABSL_GUARDED_BY(inbox_mu_) = 0;
  // Ids accepted and not yet finished (duplicates are refused).
  absl::flat_hash_set<RequestId> live_ids_ ABSL_GUARDED_BY(inbox_mu_);
  // Latest weights posted by SetTenantWeights(), applied by DrainInbox().
  std::optional<absl::flat_hash_map<std::string, double>> pending_weights_
      ABSL_GUARDED_BY(inbox_mu_);
  // Latest prefixes posted by SetSharedPrefixes(), applied by DrainInbox().
  std::optional<std::vector<SharedPrefixSpec>> pending_prefixes_
      ABSL_GUARDED_BY(inbox_mu_);

  absl::Mutex shutdown_mu_;  // serialises Shutdown() (join once)
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;

  // Published each step for load() and admission control.
  std::atomic<int32_t> num_waiting_{0};
  std::atomic<int32_t> num_running_{0};
  std::atomic<int32_t> num_free_blocks_{0};
  std::atomic<int32_t> num_pinned_blocks_{0};
  // Blocks held per tenant by running requests, published each step.
  mutable absl::Mutex tenant_blocks_mu_;
  absl::flat_hash_map<std::string, int32_t> tenant_blocks_
      ABSL_GUARDED_BY(tenant_blocks_mu_);

  // ---- Engine-thread state (no lock; see the class comment) ----
  FairRequestQueue* fair_queue_ = nullptr;  // owned by scheduler_
  KvCacheManager kv_;
  Scheduler scheduler_;       // token bookkeeping
  StepSampler step_sampler_;  // the step's logits -> tokens
  OutputProcessor output_;    // tokens -> text, stop strings
  std::mt19937_64 seed_rng_;  // seeds of unseeded requests
  std::vector<InboxMessage> drained_;
  std::vector<RequestId> finished_ids_;
  std::thread thread_;
};

absl::Status LlmEngineImpl::Validate(const GenerateSpec& spec) const {
  const int32_t vocab = model_->info().vocab_size;
  const SamplingParams& params = spec.params;
  if (spec.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  for (TokenId t : spec.prompt) {
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id ", t, " is outside [0, ", vocab, ")"));
    }
  }
  OPENELM_RETURN_IF_ERROR(params.Validate(vocab, max_context_length_));
  const int64_t p = static_cast<int64_t>(spec.prompt.size());
  OPENELM_RETURN_IF_ERROR(CheckFitsContext(p, params.max_tokens, max_context_length_));
  if (!params.stop.empty() && tokenizer_ == nullptr) {
    return absl::InvalidArgumentError("stop strings need a tokenizer");
  }
  if (params.n > options_.max_num_seqs || params.n > options_.max_num_batched_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("n = ", params.n, " exceeds the batch limits"));
  }
  // Worst case alone in the pool: the prompt's full blocks shared, then per
  // completion its partial prompt block plus its output.
  const int64_t bs = options_.block_size_tokens;
  const int64_t blocks = p / bs + params.n * ((p % bs + params.max_tokens + bs - 1) / bs);
  if (blocks > num_blocks_) {
    return absl::InvalidArgumentError(
        absl::StrCat("request needs ", blocks, " KV blocks; the pool has ", num_blocks_));
  }
  return absl::OkStatus();
}

absl::Status LlmEngineImpl::Submit(RequestId id, GenerateSpec spec, TokenSink* sink) {
  if (sink == nullptr) return absl::InvalidArgumentError("sink is null");
  {
    absl::MutexLock lock(&inbox_mu_);
    if (!accepting_) return absl::UnavailableError("engine is shut down");
  }
  OPENELM_RETURN_IF_ERROR(Validate(spec));
  auto request = std::make_unique<Request>();
  request->id = id;
  request->spec = std::move(spec);
  request->sink = sink;
  request->timings.arrival = absl::Now();
  absl::MutexLock lock(&inbox_mu_);
  if (!accepting_) return absl::UnavailableError("engine is shut down");
  if (num_queued_submits_ + num_waiting_.load(std::memory_order_relaxed) >=
      options_.max_queued_requests) {
    return absl::ResourceExhaustedError("request queue is full");
  }
  if (!live_ids_.insert(id).second) {
    return absl::AlreadyExistsError(absl::StrCat("request ", id, " is already live"));
  }
  ++num_queued_submits_;
  inbox_.push_back(InboxMessage{id, std::move(request), false});
  return absl::OkStatus();
}

void LlmEngineImpl::SetTenantWeights(absl::flat_hash_map<std::string, double> weights) {
  absl::MutexLock lock(&inbox_mu_);
  pending_weights_ = std::move(weights);
  // An empty inbox entry wakes an idle loop; DrainInbox() skips it.
  inbox_.push_back(InboxMessage{0, nullptr, /*wake_only=*/true});
}

void LlmEngineImpl::SetSharedPrefixes(std::vector<SharedPrefixSpec> prefixes) {
  absl::MutexLock lock(&inbox_mu_);
  pending_prefixes_ = std::move(prefixes);
  inbox_.push_back(InboxMessage{0, nullptr, /*wake_only=*/true});
}

void LlmEngineImpl::Cancel(RequestId id) {
  absl::MutexLock lock(&inbox_mu_);
  if (!live_ids_.contains(id)) return;
  inbox_.push_back(InboxMessage{id, nullptr, false});
}

void LlmEngineImpl::Shutdown() {
  absl::MutexLock shutdown_lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  {
    absl::MutexLock lock(&inbox_mu_);
    accepting_ = false;
    stop_requested_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();  // the loop finishes every request before it exits
  } else {
    FinishEverything();  // puppet mode: on the caller's thread
  }
}

EngineLoad LlmEngineImpl::load() const {
  EngineLoad load;
  load.num_waiting = num_waiting_.load(std::memory_order_relaxed);
  load.num_running = num_running_.load(std::memory_order_relaxed);
  load.num_free_blocks = num_free_blocks_.load(std::memory_order_relaxed);
  load.num_blocks = num_blocks_;
  load.block_size_tokens = options_.block_size_tokens;
  load.num_pinned_blocks = num_pinned_blocks_.load(std::memory_order_relaxed);
  return load;
}

absl::Status LlmEngineImpl::StepForTesting() {
  if (options_.start_thread) {
    return absl::FailedPreconditionError("the engine runs its own thread");
  }
  RunOneStep();
  return absl::OkStatus();
}

void LlmEngineImpl::RunLoop() {
  while (true) {
    const bool busy = scheduler_.num_requests() > 0;
    {
      absl::MutexLock lock(&inbox_mu_);
      if (!busy) {
        inbox_mu_.Await(absl::Condition(this, &LlmEngineImpl::HasMessageOrStop));
      }
      if (stop_requested_) break;
    }
    RunOneStep();
  }
  FinishEverything();
}

void LlmEngineImpl::DrainInbox(absl::Time now) {
  drained_.clear();
  std::optional<absl::flat_hash_map<std::string, double>> weights;
  std::optional<std::vector<SharedPrefixSpec>> prefixes;
  {
    absl::MutexLock lock(&inbox_mu_);
    drained_.swap(inbox_);
    weights.swap(pending_weights_);
    prefixes.swap(pending_prefixes_);
    // Count the drained submits as waiting until the exact number is
    // published below, so Submit()'s queue bound never undercounts.
    num_waiting_.fetch_add(num_queued_submits_, std::memory_order_relaxed);
    num_queued_submits_ = 0;
  }
  if (weights.has_value()) fair_queue_->SetWeights(*weights);
  if (prefixes.has_value()) {
    std::vector<KvCacheManager::SharedPrefix> kv_prefixes;
    for (SharedPrefixSpec& p : *prefixes) {
      kv_prefixes.push_back({std::move(p.tokens), p.pinned});
    }
    kv_.SetSharedPrefixes(std::move(kv_prefixes));
  }
  for (InboxMessage& message : drained_) {
    if (message.wake_only) continue;
    if (message.request != nullptr) {
      output_.Add(*message.request);
      scheduler_.AddRequest(std::move(message.request), seed_rng_(), now);
    } else {
      scheduler_.Abort(message.id, FinishReason::kCancelled,
                       absl::CancelledError("request cancelled"), now);
    }
  }
  // Keep the admission check conservative between the drain and the step.
  num_waiting_.store(scheduler_.num_waiting(), std::memory_order_relaxed);
}

void LlmEngineImpl::RunOneStep() {
  const absl::Time start = absl::Now();
  DrainInbox(start);
  const ScheduledStep& step = scheduler_.Schedule(start);
  StepStats stats;
  if (!step.empty()) {
    for (const auto& [src, dst] : step.copies) model_->CopyBlock(src, dst);
    const absl::Time forward_start = absl::Now();
    absl::StatusOr<LogitsView> logits = model_->Forward(step.batch);
    const absl::Time sample_start = absl::Now();
    stats.forward_duration = sample_start - forward_start;
    if (!logits.ok()) {
      // A failed step fails its requests, not the engine.
      scheduler_.FailStep(logits.status(), sample_start);
    } else {
      scheduler_.Update(step_sampler_.Sample(step, *logits), sample_start);
    }
    stats.sample_duration = absl::Now() - sample_start;
  }
  // Text and stop strings for this step's tokens, and for requests that
  // finished before it (cancel, deadline).
  output_.Process(&scheduler_, absl::Now());
  const bool had_events = !scheduler_.touched().empty() || !scheduler_.finished().empty();
  stats.num_rows = static_cast<int32_t>(step.rows.size());
  stats.num_prefill_tokens = step.num_prefill_tokens;
  stats.num_decode_tokens = step.num_decode_tokens;
  stats.num_preemptions = step.num_preemptions;
  stats.prefix_cache_queries = step.prefix_query_tokens;
  stats.prefix_cache_hits = step.prefix_hit_tokens;
  // Publish before delivering: a client that has seen this step's output
  // must not then read an older load (e.g. its own request still counted
  // as waiting against the queue bound).
  PublishLoad();
  Emit();
  stats.num_waiting = scheduler_.num_waiting();
  stats.num_running = scheduler_.num_running();
  stats.num_free_blocks = kv_.num_free_blocks();
  stats.num_blocks = kv_.num_blocks();
  stats.duration = absl::Now() - start;
  if (observer_ != nullptr && (!step.empty() || had_events)) observer_->OnStep(stats);
}

void LlmEngineImpl::FinishEverything() {
  const absl::Time now = absl::Now();
  DrainInbox(now);  // accepted requests still get their OnFinish
  scheduler_.AbortAll(FinishReason::kShutdown, absl::UnavailableError("engine shut down"),
                      now);
  output_.Process(&scheduler_, now);
  PublishLoad();  // before delivering, as in RunOneStep()
  Emit();
}

void LlmEngineImpl::Emit() {
  // Forget finished ids first, so that a sink may resubmit the same id.
  finished_ids_.clear();
  for (const auto& r : scheduler_.finished()) finished_ids_.push_back(r->id);
  if (!finished_ids_.empty()) {
    absl::MutexLock lock(&inbox_mu_);
    for (RequestId id : finished_ids_) live_ids_.erase(id);
  }
  // No lock is held while sinks run.
  for (Request* r : scheduler_.touched()) {
    for (const Sequence& s : r->seqs) {
      if (!s.delta.tokens.empty() || !s.delta.text.empty()) r->sink->OnOutput(s.delta);
    }
  }
  for (const auto& r : scheduler_.finished()) {
    if (observer_ != nullptr) observer_->OnRequestFinished(r->spec, r->finish);
    r->sink->OnFinish(r->finish);  // last use of the sink
    output_.Forget(r->id);
  }
  scheduler_.ClearEvents();
}

void LlmEngineImpl::PublishLoad() {
  num_waiting_.store(scheduler_.num_waiting(), std::memory_order_relaxed);
  num_running_.store(scheduler_.num_running(), std::memory_order_relaxed);
  num_free_blocks_.store(kv_.num_free_blocks(), std::memory_order_relaxed);
  num_pinned_blocks_.store(kv_.num_pinned_blocks(), std::memory_order_relaxed);
  // Counts are rewritten in place: a tenant's entry, once made, stays (at 0
  // when idle), so that a step allocates nothing once every tenant was seen.
  absl::MutexLock lock(&tenant_blocks_mu_);
  for (auto& [tenant, blocks] : tenant_blocks_) blocks = 0;
  for (const Request* r : scheduler_.running()) {
    const int32_t blocks = r->num_blocks_held();
    if (blocks == 0) continue;
    auto it = tenant_blocks_.find(r->spec.tenant);
    if (it == tenant_blocks_.end()) it = tenant_blocks_.emplace(r->spec.tenant, 0).first;
    it->second += blocks;
  }
}

int32_t LlmEngineImpl::TenantKvBlocks(const std::string& tenant) const {
  absl::MutexLock lock(&tenant_blocks_mu_);
  auto it = tenant_blocks_.find(tenant);
  return it == tenant_blocks_.end() ? 0 : it->second;
}

}  // namespace

int32_t ResolvedLogitsRows(const EngineOptions& options) {
  const int32_t rows = options.max_logits_rows > 0
                           ? options.max_logits_rows
                           : std::max(options.max_num_seqs, int32_t{64});
  return std::max(1, std::min(rows, options.max_num_batched_tokens));
}

absl::StatusOr<std::unique_ptr<LlmEngine>> LlmEngine::Create(
    const EngineOptions& options, std::unique_ptr<DecoderModel> model,
    const Tokenizer* tokenizer, EngineObserver* observer) {
  if (model == nullptr) return absl::InvalidArgumentError("model is null");
  if (options.block_size_tokens <= 0 || options.max_num_seqs <= 0 ||
      options.max_num_batched_tokens <= 0 || options.max_queued_requests <= 0 ||
      options.max_logits_rows < 0) {
    return absl::FailedPreconditionError(
        "block_size_tokens, max_num_seqs, max_num_batched_tokens and "
        "max_queued_requests must be positive, max_logits_rows not negative");
  }
  // Every sequence of a full decode batch (and each of a request's n) needs
  // its own row of logits in the same step.
  const int32_t min_logits_rows =
      std::min(options.max_num_seqs, options.max_num_batched_tokens);
  if (options.max_logits_rows > 0 && options.max_logits_rows < min_logits_rows) {
    return absl::FailedPreconditionError(absl::StrCat(
        "max_logits_rows (", options.max_logits_rows,
        ") must be 0 or at least min(max_num_seqs, max_num_batched_tokens) = ",
        min_logits_rows, ": every sequence of a full batch samples from its own row"));
  }
  if (model->info().vocab_size <= 0) {
    return absl::FailedPreconditionError("model reports no vocabulary");
  }
  int64_t num_blocks = options.num_blocks;
  if (num_blocks <= 0) {
    const int64_t per_block = model->KvBytesPerBlock(options.block_size_tokens);
    if (per_block <= 0 || options.kv_memory_bytes <= 0) {
      return absl::FailedPreconditionError(
          "set num_blocks or a positive kv_memory_bytes");
    }
    num_blocks = options.kv_memory_bytes / per_block;
  }
  if (num_blocks <= 0 || num_blocks > (int64_t{1} << 30)) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV budget gives ", num_blocks, " blocks of ",
                     options.block_size_tokens, " tokens"));
  }
  OPENELM_RETURN_IF_ERROR(model->Prepare(
      static_cast<int32_t>(num_blocks), options.block_size_tokens,
      options.max_num_batched_tokens, options.max_num_seqs, ResolvedLogitsRows(options)));
  auto engine = std::make_unique<LlmEngineImpl>(
      options, std::move(model), tokenizer, observer, static_cast<int32_t>(num_blocks));
  engine->Start();
  return std::unique_ptr<LlmEngine>(std::move(engine));
}

}  // namespace openelm
