#include "engine/scheduler/scheduler.h"

#include <algorithm>
#include <utility>

#include "engine/base/check.h"

namespace openelm {

const char* RequestStateName(RequestState state) {
  switch (state) {
    case RequestState::kWaiting:
      return "WAITING";
    case RequestState::kRunning:
      return "RUNNING";
    case RequestState::kPreempted:
      return "PREEMPTED";
    case RequestState::kFinished:
      return "FINISHED";
  }
  return "?";
}

void ScheduledStep::Clear() {
  batch.Clear();
  rows.clear();
  copies.clear();
  num_prefill_tokens = 0;
  num_decode_tokens = 0;
  num_preemptions = 0;
  prefix_query_tokens = 0;
  prefix_hit_tokens = 0;
}

Scheduler::Scheduler(const SchedulerConfig& config, KvCacheManager* kv,
                     std::unique_ptr<RequestQueue> queue)
    : config_(config), kv_(kv), queue_(std::move(queue)) {
  OPENELM_CHECK(config.max_num_seqs > 0 && config.max_num_batched_tokens > 0);
}

void Scheduler::AddRequest(std::unique_ptr<Request> request, uint64_t seed,
                           absl::Time now) {
  Request* r = request.get();
  OPENELM_CHECK(!requests_.contains(r->id)) << "duplicate request " << r->id;
  r->arrival_seq = next_arrival_seq_++;
  r->salt_hash = KvCacheManager::SaltHash(r->spec.cache_salt);
  r->shared_blocks = kv_->SharedBlocks(r->spec.prompt);
  r->seed = r->spec.params.seed.value_or(seed);
  if (r->timings.arrival == absl::Time()) r->timings.arrival = now;
  r->state = RequestState::kWaiting;
  r->root.tokens = r->spec.prompt;
  const int32_t n = r->spec.params.n;
  r->seqs.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    Sequence& s = r->seqs[i];
    s.index = i;
    s.delta.index = i;
    s.rng.seed(r->seed + static_cast<uint64_t>(i));
  }
  requests_.emplace(r->id, std::move(request));
  queue_->Add(r);
}

const Request* Scheduler::Find(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

bool Scheduler::Abort(RequestId id, FinishReason reason, const absl::Status& status,
                      absl::Time now) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  FinishRequest(it->second.get(), reason, status, now);
  return true;
}

void Scheduler::AbortAll(FinishReason reason, const absl::Status& status,
                         absl::Time now) {
  scratch_requests_.clear();
  for (auto& [id, r] : requests_) scratch_requests_.push_back(r.get());
  // Deterministic order: by arrival.
  std::sort(
      scratch_requests_.begin(), scratch_requests_.end(),
      [](const Request* a, const Request* b) { return a->arrival_seq < b->arrival_seq; });
  for (Request* r : scratch_requests_) FinishRequest(r, reason, status, now);
}

void Scheduler::ExpireDeadlines(absl::Time now) {
  scratch_requests_.clear();
  queue_->ForEach([&](Request* r) {
    if (r->spec.deadline <= now) scratch_requests_.push_back(r);
  });
  for (Request* r : running_) {
    if (r->spec.deadline <= now) scratch_requests_.push_back(r);
  }
  for (Request* r : scratch_requests_) {
    FinishRequest(r, FinishReason::kDeadline, absl::OkStatus(), now);
  }
}

int32_t Scheduler::ChunkSize(int32_t num_computed, int32_t remaining,
                             int32_t budget) const {
  int32_t chunk = std::min(remaining, budget);
  if (chunk < remaining) {
    // A non-final chunk ends on a block boundary when that leaves any tokens.
    const int32_t bs = kv_->block_size_tokens();
    const int32_t aligned = (num_computed + chunk) / bs * bs - num_computed;
    if (aligned > 0) chunk = aligned;
  }
  return chunk;
}

int32_t Scheduler::DecodeBlocksNeeded() const {
  int32_t needed = 0;
  for (const Request* r : running_) {
    if (r->in_prompt_phase) continue;
    for (const Sequence& s : r->seqs) {
      if (s.finished || s.num_uncomputed_tokens() != 1) continue;
      needed += kv_->NumBlocksNeeded(s.table, s.num_computed_tokens,
                                     s.num_computed_tokens + 1, nullptr);
    }
  }
  return needed;
}

void Scheduler::PreemptForFairness() {
  const RequestQueue::Capacity capacity{config_.max_num_seqs, kv_->num_blocks()};
  // Bounded: every preemption removes one running request.
  while (!queue_->empty() && !running_.empty()) {
    queue_->SetRunning(running_, capacity);
    Request* front = queue_->Front();
    int32_t running_seqs = 0;
    for (const Request* r : running_) running_seqs += r->num_live_sequences();
    RequestQueue::Shortage shortage;
    shortage.seats = running_seqs + front->num_live_sequences() > config_.max_num_seqs;
    // The blocks its first chunk takes, as admission would compute them.
    const int32_t p = front->num_prompt_tokens();
    hit_.Clear();
    if (kv_->prefix_caching_enabled() && !front->wants_prompt_logprobs()) {
      kv_->FindCachedPrefix(front->root.tokens, front->salt_hash, front->shared_blocks,
                            p - 1, &hit_);
    }
    const int32_t nc = hit_.num_tokens;
    const int32_t chunk = ChunkSize(nc, p - nc, config_.max_num_batched_tokens);
    shortage.front_blocks =
        kv_->NumBlocksNeeded(front->root.table, nc, nc + chunk, &hit_);
    shortage.blocks =
        shortage.front_blocks + DecodeBlocksNeeded() > kv_->num_free_blocks();
    if (!shortage.seats && !shortage.blocks) return;
    Request* victim = queue_->ChooseVictim(*front, running_, shortage);
    if (victim == nullptr) return;
    OPENELM_CHECK(victim != front && victim->state == RequestState::kRunning);
    Preempt(victim);
    // The victim is queued again; if the policy now puts it first, stop
    // rather than trade places back and forth.
    queue_->SetRunning(running_, capacity);
    if (queue_->Front() != front) return;
  }
}

bool Scheduler::MakeRoom(int32_t needed, const Request* keep) {
  while (needed > kv_->num_free_blocks()) {
    // The most recently admitted request admitted after `keep` that has no
    // rows in this step.
    Request* victim = nullptr;
    for (auto it = running_.rbegin(); it != running_.rend() && *it != keep; ++it) {
      if ((*it)->last_scheduled_step != step_id_) {
        victim = *it;
        break;
      }
    }
    if (victim == nullptr) return false;
    Preempt(victim);
  }
  return true;
}

void Scheduler::FreeBlocks(Request* r) {
  kv_->Free(&r->root.table);
  r->root.num_computed_tokens = 0;
  for (Sequence& s : r->seqs) {
    kv_->Free(&s.table);
    s.num_computed_tokens = 0;
  }
}

void Scheduler::Preempt(Request* r) {
  OPENELM_CHECK(r->state == RequestState::kRunning);
  OPENELM_CHECK(r->last_scheduled_step != step_id_);
  FreeBlocks(r);
  r->in_prompt_phase = true;  // recompute: prompt once, then each completion
  r->state = RequestState::kPreempted;
  running_.erase(std::find(running_.begin(), running_.end(), r));
  queue_->Add(r);
  ++r->num_preemptions;
  ++step_.num_preemptions;
  ++preemptions_total_;
}

BatchRow::Logits Scheduler::RootLogits(const Request& r, int32_t end) const {
  if (r.wants_prompt_logprobs() &&
      static_cast<int32_t>(r.prompt_logprobs.size()) < r.num_prompt_tokens()) {
    return BatchRow::Logits::kAll;
  }
  if (end == r.num_prompt_tokens() && !r.started) return BatchRow::Logits::kLast;
  return BatchRow::Logits::kNone;
}

int32_t Scheduler::FitChunk(const Request& r, const Sequence& s, bool is_root,
                            int32_t num_computed, int32_t remaining, int32_t budget,
                            int32_t logits_left, BatchRow::Logits* logits) const {
  const auto logits_for = [&](int32_t chunk) {
    const int32_t end = num_computed + chunk;
    if (is_root) return RootLogits(r, end);
    return end == static_cast<int32_t>(s.tokens.size()) ? BatchRow::Logits::kLast
                                                        : BatchRow::Logits::kNone;
  };
  int32_t chunk = ChunkSize(num_computed, remaining, budget);
  if (chunk <= 0) return 0;
  *logits = logits_for(chunk);
  if (*logits == BatchRow::Logits::kAll && chunk > logits_left) {
    if (logits_left <= 0) return 0;
    chunk = ChunkSize(num_computed, remaining, logits_left);
    *logits = logits_for(chunk);
  } else if (*logits == BatchRow::Logits::kLast && logits_left <= 0) {
    if (chunk <= 1) return 0;
    chunk = ChunkSize(num_computed, remaining, chunk - 1);
    *logits = logits_for(chunk);
  }
  return BatchRow::NumLogitsRows(*logits, chunk) <= logits_left ? chunk : 0;
}

void Scheduler::AddRow(Request* r, Sequence* s, bool is_root, int32_t num_tokens,
                       BatchRow::Logits logits) {
  ForwardBatch& batch = step_.batch;
  BatchRow row;
  row.request_id = r->id;
  row.token_offset = batch.num_tokens();
  row.num_tokens = num_tokens;
  row.start_position = s->num_computed_tokens;
  row.logits = logits;
  batch.tokens.insert(batch.tokens.end(), s->tokens.begin() + s->num_computed_tokens,
                      s->tokens.begin() + s->num_computed_tokens + num_tokens);
  batch.rows.push_back(row);
  step_.rows.push_back(ScheduledRow{r, s, is_root});
  const bool decode = !is_root && num_tokens == 1 && s->num_uncomputed_tokens() == 1;
  (decode ? step_.num_decode_tokens : step_.num_prefill_tokens) += num_tokens;
  r->last_scheduled_step = step_id_;
  // Charged now, so that the next Front() of the admission loop already sees
  // this row's service.
  queue_->OnScheduled(*r, decode ? 0 : num_tokens, decode ? num_tokens : 0);
}

const ScheduledStep& Scheduler::Schedule(absl::Time now) {
  step_.Clear();
  ++step_id_;
  ExpireDeadlines(now);
  PreemptForFairness();
  int32_t budget = config_.max_num_batched_tokens;
  int32_t logits_left = config_.max_logits_rows;
  auto rows = [this] { return static_cast<int32_t>(step_.rows.size()); };

  // 1. Decode rows of running requests, all or nothing per request.
  scratch_requests_ = running_;
  for (Request* r : scratch_requests_) {
    if (r->state != RequestState::kRunning || r->in_prompt_phase) continue;
    scratch_seqs_.clear();
    int32_t needed = 0;
    for (Sequence& s : r->seqs) {
      if (s.finished || s.num_uncomputed_tokens() != 1) continue;
      scratch_seqs_.push_back(&s);
      needed += kv_->NumBlocksNeeded(s.table, s.num_computed_tokens,
                                     s.num_computed_tokens + 1, nullptr);
    }
    const int32_t k = static_cast<int32_t>(scratch_seqs_.size());
    if (k == 0 || rows() + k > config_.max_num_seqs || k > budget || k > logits_left) {
      continue;
    }
    if (!MakeRoom(needed, r)) {
      // Nothing younger to take blocks from: give ours to older requests.
      Preempt(r);
      continue;
    }
    for (Sequence* s : scratch_seqs_) {
      OPENELM_CHECK(kv_->Allocate(&s->table, s->num_computed_tokens,
                                  s->num_computed_tokens + 1, nullptr));
      AddRow(r, s, /*is_root=*/false, 1, BatchRow::Logits::kLast);
    }
    budget -= k;
    logits_left -= k;
  }

  // 2. Prefill chunks of running requests (prompt, or recomputation).
  scratch_requests_ = running_;
  for (Request* r : scratch_requests_) {
    if (budget <= 0 || rows() >= config_.max_num_seqs) break;
    if (r->state != RequestState::kRunning) continue;
    scratch_seqs_.clear();
    if (r->in_prompt_phase) {
      scratch_seqs_.push_back(&r->root);
    } else {
      for (Sequence& s : r->seqs) {
        if (!s.finished && s.num_uncomputed_tokens() > 1) scratch_seqs_.push_back(&s);
      }
    }
    for (Sequence* s : scratch_seqs_) {
      if (budget <= 0 || rows() >= config_.max_num_seqs) break;
      const int32_t nc = s->num_computed_tokens;
      const bool is_root = s == &r->root;
      BatchRow::Logits logits = BatchRow::Logits::kNone;
      const int32_t chunk = FitChunk(*r, *s, is_root, nc, s->num_uncomputed_tokens(),
                                     budget, logits_left, &logits);
      if (chunk <= 0) continue;
      const int32_t needed = kv_->NumBlocksNeeded(s->table, nc, nc + chunk, nullptr);
      if (!MakeRoom(needed, r)) continue;
      OPENELM_CHECK(kv_->Allocate(&s->table, nc, nc + chunk, nullptr));
      AddRow(r, s, is_root, chunk, logits);
      budget -= chunk;
      logits_left -= step_.batch.rows.back().num_logits_rows();
    }
  }

  // 3. Admit waiting requests in queue order while the running sequences
  // (live completions) stay within max_num_seqs.
  int32_t running_seqs = 0;
  for (const Request* r : running_) running_seqs += r->num_live_sequences();
  queue_->SetRunning(running_, {config_.max_num_seqs, kv_->num_blocks()});
  while (budget > 0 && rows() < config_.max_num_seqs && !queue_->empty()) {
    Request* r = queue_->Front();
    if (running_seqs + r->num_live_sequences() > config_.max_num_seqs) break;
    Sequence& root = r->root;
    OPENELM_DCHECK(root.table.empty() && root.num_computed_tokens == 0);
    const int32_t p = r->num_prompt_tokens();
    hit_.Clear();
    if (kv_->prefix_caching_enabled() && !r->wants_prompt_logprobs()) {
      // At least the last prompt token is computed (its logits are needed).
      kv_->FindCachedPrefix(root.tokens, r->salt_hash, r->shared_blocks, p - 1, &hit_);
    }
    const int32_t nc = hit_.num_tokens;
    BatchRow::Logits logits = BatchRow::Logits::kNone;
    const int32_t chunk =
        FitChunk(*r, root, /*is_root=*/true, nc, p - nc, budget, logits_left, &logits);
    if (chunk <= 0) break;  // no logits rows left this step; it stays first
    if (kv_->NumBlocksNeeded(root.table, nc, nc + chunk, &hit_) >
        kv_->num_free_blocks()) {
      break;
    }
    OPENELM_CHECK(kv_->Allocate(&root.table, nc, nc + chunk, &hit_));
    root.num_computed_tokens = nc;
    if (kv_->prefix_caching_enabled()) {
      kv_->RecordLookup(p, nc);
      step_.prefix_query_tokens += p;
      step_.prefix_hit_tokens += nc;
    }
    if (!r->cache_counted) {
      r->num_cached_tokens = nc;
      r->cache_counted = true;
    }
    queue_->PopFront();
    running_seqs += r->num_live_sequences();
    r->state = RequestState::kRunning;
    r->in_prompt_phase = true;
    running_.push_back(r);
    if (r->timings.first_scheduled == absl::Time()) r->timings.first_scheduled = now;
    AddRow(r, &root, /*is_root=*/true, chunk, logits);
    budget -= chunk;
    logits_left -= step_.batch.rows.back().num_logits_rows();
  }

  // Tables are final now: point the rows at them.
  for (size_t i = 0; i < step_.rows.size(); ++i) {
    const BlockTable& table = step_.rows[i].sequence->table;
    step_.batch.rows[i].block_table = table.blocks.data();
    step_.batch.rows[i].num_blocks = static_cast<int32_t>(table.blocks.size());
  }
  step_.copies = kv_->TakePendingCopies();
  return step_;
}

}  // namespace openelm
