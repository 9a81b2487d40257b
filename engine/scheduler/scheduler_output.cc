// Scheduler::Update and the token side of finishing: appending the sampled
// tokens, the stop conditions on ids, length and context, and freeing blocks.
// Text (detokenizing, stop strings) is the engine's OutputProcessor.

#include <algorithm>
#include <utility>

#include "absl/types/span.h"
#include "engine/base/check.h"
#include "engine/scheduler/scheduler.h"

namespace openelm {
namespace {

absl::Status StatusFor(FinishReason reason, const absl::Status& status) {
  switch (reason) {
    case FinishReason::kCancelled:
    case FinishReason::kShutdown:
    case FinishReason::kError:
      return status;
    default:
      return absl::OkStatus();
  }
}

}  // namespace

void Scheduler::Touch(Request* r) {
  if (r->touched_step == step_id_) return;
  r->touched_step = step_id_;
  touched_.push_back(r);
}

void Scheduler::ClearEvents() {
  for (Request* r : touched_) {
    r->touched_step = -1;
    for (Sequence& s : r->seqs) {
      s.delta.tokens.clear();
      s.delta.text.clear();
      s.delta.logprobs.clear();
    }
  }
  touched_.clear();
  finished_.clear();
}

void Scheduler::Update(const StepSamples& samples, absl::Time now) {
  OPENELM_CHECK(samples.num_rows() == static_cast<int32_t>(step_.rows.size()))
      << "samples for " << samples.num_rows() << " rows, step has " << step_.rows.size();
  for (size_t i = 0; i < step_.rows.size(); ++i) {
    const BatchRow& br = step_.batch.rows[i];
    Request* r = step_.rows[i].request;
    Sequence* s = step_.rows[i].sequence;
    if (r->state == RequestState::kFinished) continue;
    s->num_computed_tokens += br.num_tokens;
    kv_->CommitComputed(&s->table, s->tokens, s->num_computed_tokens, r->salt_hash,
                        r->shared_blocks);

    // Prompt logprobs: logits at position q score prompt token q + 1. The
    // first entry (the first prompt token) is empty; positions already
    // scored (a chunk recomputed after a preemption) are not scored again.
    if (step_.rows[i].is_root && br.logits == BatchRow::Logits::kAll &&
        r->prompt_logprobs.empty()) {
      r->prompt_logprobs.emplace_back();
    }
    for (int32_t p = samples.prompt_begin[i]; p < samples.prompt_begin[i + 1]; ++p) {
      if (static_cast<int32_t>(r->prompt_logprobs.size()) != samples.prompt_position[p]) {
        continue;
      }
      auto& entry = r->prompt_logprobs.emplace_back();
      entry.assign(samples.entries.begin() + samples.prompt_entry_begin[p],
                   samples.entries.begin() + samples.prompt_entry_begin[p + 1]);
    }

    const int32_t first = samples.token_begin[i];
    const int32_t end = samples.token_begin[i + 1];
    if (step_.rows[i].is_root) {
      if (s->num_computed_tokens < r->num_prompt_tokens()) continue;
      if (!r->started) {
        StartCompletions(r, samples, first, end, now);
      } else {
        ForkFromRoot(r);
      }
    } else if (s->num_uncomputed_tokens() == 0) {
      OPENELM_CHECK(end == first + 1) << "completion row without its sampled token";
      AcceptToken(r, s, samples, first, now);
    }
    MaybeFinishRequest(r, now);
  }
}

void Scheduler::StartCompletions(Request* r, const StepSamples& samples, int32_t first,
                                 int32_t end, absl::Time now) {
  OPENELM_CHECK(end - first == static_cast<int32_t>(r->seqs.size()))
      << "the prompt's last row needs one sampled token per completion";
  const int32_t p = r->num_prompt_tokens();
  for (Sequence& s : r->seqs) {
    s.tokens.reserve(p + r->spec.params.max_tokens);
    s.tokens = r->spec.prompt;
  }
  ForkFromRoot(r);
  r->started = true;
  for (size_t k = 0; k < r->seqs.size(); ++k) {
    AcceptToken(r, &r->seqs[k], samples, first + static_cast<int32_t>(k), now);
  }
}

void Scheduler::ForkFromRoot(Request* r) {
  // Room for every block the completion can reach, so that its decode steps
  // never grow the table (the step path allocates nothing).
  const int32_t bs = kv_->block_size_tokens();
  const size_t max_blocks =
      (r->num_prompt_tokens() + r->spec.params.max_tokens + bs - 1) / bs;
  for (Sequence& s : r->seqs) {
    if (s.finished) continue;
    OPENELM_CHECK(s.table.empty());
    s.table.blocks.reserve(max_blocks);
    s.table.block_hashes.reserve(max_blocks);
    kv_->Fork(r->root.table, &s.table);
    s.num_computed_tokens = r->num_prompt_tokens();
  }
  kv_->Free(&r->root.table);
  r->root.num_computed_tokens = 0;
  r->in_prompt_phase = false;
}

void Scheduler::AcceptToken(Request* r, Sequence* s, const StepSamples& samples,
                            int32_t t, absl::Time now) {
  const SamplingParams& params = r->spec.params;
  const TokenId token = samples.tokens[t];
  s->tokens.push_back(token);
  ++s->num_output_tokens;
  if (r->timings.first_token == absl::Time()) r->timings.first_token = now;
  const bool eos = !params.ignore_eos && token == config_.eos_token_id;
  const bool stop_id =
      std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), token) !=
      params.stop_token_ids.end();
  if (eos || stop_id) {
    // The stop token itself is counted but not delivered.
    FinishSequence(r, s, eos ? FinishReason::kEos : FinishReason::kStopToken);
    return;
  }
  Touch(r);
  s->delta.tokens.push_back(token);
  if (params.logprobs >= 0) {
    s->delta.logprobs.emplace_back(samples.entries.begin() + samples.entry_begin[t],
                                   samples.entries.begin() + samples.entry_begin[t + 1]);
  }
  if (s->num_output_tokens >= params.max_tokens) {
    FinishSequence(r, s, FinishReason::kLength);
  } else if (static_cast<int32_t>(s->tokens.size()) >= config_.max_context_length) {
    FinishSequence(r, s, FinishReason::kContextLength);
  }
}

void Scheduler::FinishSequence(Request* r, Sequence* s, FinishReason reason) {
  if (s->finished) return;
  s->finished = true;
  s->finish_reason = reason;
  Touch(r);  // the output processor flushes the text of finished completions
  kv_->Free(&s->table);
}

void Scheduler::StopSequence(Request* r, Sequence* s, absl::Time now) {
  if (s->finished) {
    // Finished by the same token (length, context) or earlier (a flush at
    // EOS): the stop string is the reason that counts.
    s->finish_reason = FinishReason::kStopSequence;
    if (r->state == RequestState::kFinished) {
      for (CompletionFinish& c : r->finish.completions) {
        if (c.index == s->index) c.reason = FinishReason::kStopSequence;
      }
    }
    return;
  }
  FinishSequence(r, s, FinishReason::kStopSequence);
  MaybeFinishRequest(r, now);
}

void Scheduler::MaybeFinishRequest(Request* r, absl::Time now) {
  if (r->state == RequestState::kFinished || !r->started) return;
  for (const Sequence& s : r->seqs) {
    if (!s.finished) return;
  }
  FinishRequest(r, FinishReason::kUnspecified, absl::OkStatus(), now);
}

void Scheduler::FinishRequest(Request* r, FinishReason reason, const absl::Status& status,
                              absl::Time now) {
  if (r->state == RequestState::kFinished) return;
  for (Sequence& s : r->seqs) FinishSequence(r, &s, reason);
  kv_->Free(&r->root.table);
  if (r->state == RequestState::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), r));
  } else {
    queue_->Remove(r);
  }
  r->state = RequestState::kFinished;

  FinishInfo& info = r->finish;
  info.status = StatusFor(reason, status);
  info.completions.clear();
  info.num_output_tokens = 0;
  for (const Sequence& s : r->seqs) {
    CompletionFinish c;
    c.index = s.index;
    c.reason = s.finish_reason;
    c.num_output_tokens = s.num_output_tokens;  // stop_matched: the output processor
    info.completions.push_back(std::move(c));
    info.num_output_tokens += s.num_output_tokens;
  }
  info.num_prompt_tokens = r->num_prompt_tokens();
  info.num_cached_tokens = r->num_cached_tokens;
  info.num_preemptions = r->num_preemptions;
  info.prompt_logprobs = std::move(r->prompt_logprobs);
  info.timings = r->timings;
  info.timings.finished = now;
  r->timings.finished = now;

  Touch(r);
  auto it = requests_.find(r->id);
  OPENELM_CHECK(it != requests_.end());
  finished_.push_back(std::move(it->second));
  requests_.erase(it);
}

void Scheduler::FailStep(const absl::Status& status, absl::Time now) {
  for (const ScheduledRow& row : step_.rows) {
    FinishRequest(row.request, FinishReason::kError, status, now);
  }
}

}  // namespace openelm
