#include "engine/step_sampler.h"

#include <omp.h>

#include <algorithm>

#include "absl/types/span.h"
#include "engine/base/check.h"

namespace openelm {
namespace {

// Below this many draws a parallel region costs more than it saves.
constexpr size_t kMinParallelTasks = 8;

}  // namespace

StepSampler::StepSampler(int32_t vocab_size, TokenId eos_token_id) {
  const int threads = std::max(omp_get_max_threads(), 1);
  for (int t = 0; t < threads; ++t) {
    samplers_.push_back(std::make_unique<Sampler>(vocab_size, eos_token_id));
    scratch_.emplace_back();
  }
}

void StepSampler::Run(int32_t thread, const Task& task) {
  Sampler& sampler = *samplers_[thread];
  const Request& r = *task.request;
  const SamplingParams& params = r.spec.params;
  absl::Span<const TokenId> history(task.history->tokens.data(), task.num_history);
  const TokenId token =
      sampler.Sample(task.logits, params, history, r.num_prompt_tokens(), task.rng);
  samples_.tokens[task.token_index] = token;
  if (params.logprobs >= 0) {
    std::vector<LogprobEntry>& scratch = scratch_[thread];
    scratch.clear();
    sampler.Logprobs(task.logits, token, params.logprobs, &scratch);
    const int32_t begin = samples_.entry_begin[task.token_index];
    const int32_t end = samples_.entry_begin[task.token_index + 1];
    OPENELM_CHECK(end - begin == static_cast<int32_t>(scratch.size()));
    for (int32_t e = begin; e < end; ++e) {
      samples_.entries[e] = {scratch[e - begin].first, scratch[e - begin].second};
    }
  }
}

const StepSamples& StepSampler::Sample(const ScheduledStep& step,
                                       const LogitsView& logits) {
  samples_.Clear();
  tasks_.clear();
  prompt_tasks_.clear();
  const int32_t vocab = logits.vocab_size;
  int32_t token_entries = 0;   // logprob entries of sampled tokens
  int32_t prompt_entries = 0;  // of prompt positions (stored after them)
  // Entries of one logprob answer: the chosen token then the top ones.
  auto answer_size = [vocab](int32_t num_top) { return 1 + std::min(num_top, vocab); };

  // Plan: which rows draw, in which slots; the same walk as Update's.
  int32_t logits_row = 0;
  for (size_t i = 0; i < step.rows.size(); ++i) {
    const BatchRow& br = step.batch.rows[i];
    Request* r = step.rows[i].request;
    Sequence* s = step.rows[i].sequence;
    const int32_t first_row = logits_row;
    logits_row += br.logits == BatchRow::Logits::kAll    ? br.num_tokens
                  : br.logits == BatchRow::Logits::kLast ? 1
                                                         : 0;
    OPENELM_CHECK(logits_row <= logits.num_rows) << "too few logits rows";
    const float* last = nullptr;
    if (br.logits == BatchRow::Logits::kAll) {
      last = logits.row(first_row + br.num_tokens - 1);
    } else if (br.logits == BatchRow::Logits::kLast) {
      last = logits.row(first_row);
    }
    const bool live = r->state != RequestState::kFinished;
    const int32_t computed_after = s->num_computed_tokens + br.num_tokens;

    if (live && step.rows[i].is_root && br.logits == BatchRow::Logits::kAll) {
      // Logits at position q score prompt token q + 1; positions scored
      // before (a chunk recomputed after a preemption) are skipped.
      const int32_t scored =
          std::max<int32_t>(static_cast<int32_t>(r->prompt_logprobs.size()), 1);
      for (int32_t j = 0; j < br.num_tokens; ++j) {
        const int32_t next = br.start_position + j + 1;
        if (next < scored || next >= r->num_prompt_tokens()) continue;
        const int32_t num_top = r->spec.params.prompt_logprobs;
        prompt_tasks_.push_back({logits.row(first_row + j), r->spec.prompt[next], num_top,
                                 static_cast<int32_t>(samples_.prompt_position.size())});
        samples_.prompt_position.push_back(next);
        prompt_entries += answer_size(num_top);
        samples_.prompt_entry_begin.push_back(prompt_entries);
      }
    }
    samples_.prompt_begin.push_back(
        static_cast<int32_t>(samples_.prompt_position.size()));

    auto add_task = [&](Sequence* seq, const Sequence* history, int32_t num_history) {
      OPENELM_CHECK(last != nullptr);
      const int32_t t = static_cast<int32_t>(samples_.tokens.size());
      tasks_.push_back({last, r, history, num_history, &seq->rng, t});
      samples_.tokens.push_back(0);
      if (r->spec.params.logprobs >= 0)
        token_entries += answer_size(r->spec.params.logprobs);
      samples_.entry_begin.push_back(token_entries);
    };
    if (live && step.rows[i].is_root) {
      if (!r->started && computed_after >= r->num_prompt_tokens()) {
        // The prompt is complete: each completion's first token, from the
        // prompt's last logits, penalties over the prompt.
        for (Sequence& seq : r->seqs) add_task(&seq, &r->root, r->num_prompt_tokens());
      }
    } else if (live && static_cast<int32_t>(s->tokens.size()) == computed_after) {
      add_task(s, s, static_cast<int32_t>(s->tokens.size()));
    }
    samples_.token_begin.push_back(static_cast<int32_t>(samples_.tokens.size()));
  }
  // Prompt-logprob entries come after the token entries.
  for (int32_t& e : samples_.prompt_entry_begin) e += token_entries;
  samples_.entries.resize(token_entries + prompt_entries);

  // Draw.
  const int64_t num_tasks = static_cast<int64_t>(tasks_.size());
  const int num_threads = static_cast<int>(samplers_.size());
#pragma omp parallel for num_threads(num_threads)                                    \
    schedule(dynamic, 1) if (static_cast <size_t>(num_tasks) >= kMinParallelTasks && \
                             num_threads > 1)
  for (int64_t k = 0; k < num_tasks; ++k) {
    Run(omp_get_thread_num(), tasks_[k]);
  }
  for (const PromptTask& p : prompt_tasks_) {
    std::vector<LogprobEntry>& scratch = scratch_[0];
    scratch.clear();
    samplers_[0]->Logprobs(p.logits, p.token, p.num_top, &scratch);
    const int32_t begin = samples_.prompt_entry_begin[p.index];
    OPENELM_CHECK(samples_.prompt_entry_begin[p.index + 1] - begin ==
                  static_cast<int32_t>(scratch.size()));
    for (size_t e = 0; e < scratch.size(); ++e) {
      samples_.entries[begin + e] = {scratch[e].first, scratch[e].second};
    }
  }
  return samples_;
}

}  // namespace openelm
