// Scheduler::Update and the output side: sampling, stop conditions, finishing.

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

void Scheduler::Update(const LogitsView& logits, Sampler* sampler, absl::Time now) {
  int32_t logits_row = 0;
  for (size_t i = 0; i < step_.rows.size(); ++i) {
    const BatchRow& br = step_.batch.rows[i];
    Request* r = step_.rows[i].request;
    Sequence* s = step_.rows[i].sequence;
    const int32_t first_logits_row = logits_row;
    logits_row += br.logits == BatchRow::Logits::kAll    ? br.num_tokens
                  : br.logits == BatchRow::Logits::kLast ? 1
                                                         : 0;
    OPENELM_CHECK(logits_row <= logits.num_rows) << "too few logits rows";
    if (r->state == RequestState::kFinished) continue;
    s->num_computed_tokens += br.num_tokens;
    kv_->CommitComputed(&s->table, s->tokens, s->num_computed_tokens, r->salt_hash,
                        r->shared_blocks);

    const float* last = nullptr;
    if (br.logits == BatchRow::Logits::kAll) {
      if (step_.rows[i].is_root) {
        // Logits at position q score prompt token q + 1.
        if (r->prompt_logprobs.empty()) r->prompt_logprobs.emplace_back();
        for (int32_t j = 0; j < br.num_tokens; ++j) {
          const int32_t next = br.start_position + j + 1;
          if (next >= r->num_prompt_tokens() ||
              static_cast<int32_t>(r->prompt_logprobs.size()) != next) {
            continue;
          }
          scratch_logprobs_.clear();
          sampler->Logprobs(logits.row(first_logits_row + j), r->spec.prompt[next],
                            r->spec.params.prompt_logprobs, &scratch_logprobs_);
          auto& entry = r->prompt_logprobs.emplace_back();
          for (const auto& [t, lp] : scratch_logprobs_) entry.push_back({t, lp});
        }
      }
      last = logits.row(first_logits_row + br.num_tokens - 1);
    } else if (br.logits == BatchRow::Logits::kLast) {
      last = logits.row(first_logits_row);
    }

    if (step_.rows[i].is_root) {
      if (s->num_computed_tokens < r->num_prompt_tokens()) continue;
      if (!r->started) {
        OPENELM_CHECK(last != nullptr);
        StartCompletions(r, last, sampler, now);
      } else {
        ForkFromRoot(r);
      }
    } else if (s->num_uncomputed_tokens() == 0) {
      OPENELM_CHECK(last != nullptr);
      const TokenId token = sampler->Sample(last, r->spec.params, s->tokens,
                                            r->num_prompt_tokens(), &s->rng);
      AcceptToken(r, s, token, last, sampler, now);
    }
    MaybeFinishRequest(r, now);
  }
}

void Scheduler::StartCompletions(Request* r, const float* logits, Sampler* sampler,
                                 absl::Time now) {
  const int32_t p = r->num_prompt_tokens();
  for (Sequence& s : r->seqs) {
    s.tokens.reserve(p + r->spec.params.max_tokens);
    s.tokens = r->spec.prompt;
  }
  ForkFromRoot(r);
  r->started = true;
  absl::Span<const TokenId> prompt(r->spec.prompt);
  for (Sequence& s : r->seqs) {
    const TokenId token = sampler->Sample(logits, r->spec.params, prompt, p, &s.rng);
    AcceptToken(r, &s, token, logits, sampler, now);
  }
}

void Scheduler::ForkFromRoot(Request* r) {
  // Room for every block the completion can reach, so that its decode steps
  // never grow the table (the step path allocates nothing).
  const int32_t bs = kv_->block_size_tokens();
  const size_t max_blocks = (r->num_prompt_tokens() + r->spec.params.max_tokens + bs - 1) / bs;
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

void Scheduler::AcceptToken(Request* r, Sequence* s, TokenId token, const float* logits,
                            Sampler* sampler, absl::Time now) {
  const SamplingParams& params = r->spec.params;
  s->tokens.push_back(token);
  ++s->num_output_tokens;
  if (r->timings.first_token == absl::Time()) r->timings.first_token = now;
  const bool eos = !params.ignore_eos && token == config_.eos_token_id;
  const bool stop_id =
      std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), token) !=
      params.stop_token_ids.end();
  if (eos || stop_id) {
    // The stop token itself is counted but not delivered.
    FinishSequence(r, s, eos ? FinishReason::kEos : FinishReason::kStopToken,
                   /*flush_text=*/true);
    return;
  }
  Touch(r);
  s->delta.tokens.push_back(token);
  if (params.logprobs >= 0) {
    scratch_logprobs_.clear();
    sampler->Logprobs(logits, token, params.logprobs, &scratch_logprobs_);
    auto& entry = s->delta.logprobs.emplace_back();
    for (const auto& [t, lp] : scratch_logprobs_) entry.push_back({t, lp});
  }
  if (s->detokenizer != nullptr) {
    const std::string text = s->detokenizer->Push({&token, 1});
    if (s->stop_matcher->Push(text, &s->delta.text)) {
      FinishSequence(r, s, FinishReason::kStopSequence, /*flush_text=*/false);
      return;
    }
  }
  if (s->num_output_tokens >= params.max_tokens) {
    FinishSequence(r, s, FinishReason::kLength, /*flush_text=*/true);
  } else if (static_cast<int32_t>(s->tokens.size()) >= config_.max_context_length) {
    FinishSequence(r, s, FinishReason::kContextLength, /*flush_text=*/true);
  }
}

void Scheduler::FinishSequence(Request* r, Sequence* s, FinishReason reason,
                               bool flush_text) {
  if (s->finished) return;
  s->finished = true;
  s->finish_reason = reason;
  if (flush_text && s->detokenizer != nullptr) {
    const size_t before = s->delta.text.size();
    const std::string tail = s->detokenizer->Flush();
    if (s->stop_matcher->Push(tail, &s->delta.text)) {
      s->finish_reason = FinishReason::kStopSequence;
    } else {
      s->stop_matcher->Flush(&s->delta.text);
    }
    if (s->delta.text.size() != before) Touch(r);
  }
  kv_->Free(&s->table);
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
  for (Sequence& s : r->seqs) {
    FinishSequence(r, &s, reason, /*flush_text=*/reason == FinishReason::kDeadline);
  }
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
    c.num_output_tokens = s.num_output_tokens;
    if (s.stop_matcher != nullptr) c.stop_matched = s.stop_matcher->matched();
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
