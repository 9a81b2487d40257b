#ifndef OPENELM_ENGINE_SCHEDULER_STEP_SAMPLES_H_
#define OPENELM_ENGINE_SCHEDULER_STEP_SAMPLES_H_

#include <cstdint>
#include <vector>

#include "engine/base/types.h"
#include "engine/request/request_types.h"

namespace openelm {

// What sampling the forward step's logits produced, for Scheduler::Update.
// Filled by the engine's StepSampler, parallel to ScheduledStep::rows. Flat
// arrays whose capacity is kept from step to step, so a steady-state step
// allocates nothing.
//
// Row i owns tokens [token_begin[i], token_begin[i + 1]): one per completion
// (in completion order) when a root row completes the prompt for the first
// time, one when a completion's row leaves it fully computed, none
// otherwise. Token t's logprob entries (chosen token first, then the top
// alternatives; only when the request asked for logprobs) are
// entries[entry_begin[t], entry_begin[t + 1]).
//
// Row i's prompt logprobs (root rows with all logits): prompt positions
// prompt_position[prompt_begin[i] .. prompt_begin[i + 1]), each with entries
// entries[prompt_entry_begin[p], prompt_entry_begin[p + 1]).
struct StepSamples {
  std::vector<int32_t> token_begin;  // rows + 1
  std::vector<TokenId> tokens;
  std::vector<int32_t> entry_begin;   // tokens + 1
  std::vector<int32_t> prompt_begin;  // rows + 1
  std::vector<int32_t> prompt_position;
  std::vector<int32_t> prompt_entry_begin;  // prompt positions + 1
  std::vector<TokenLogprob> entries;

  void Clear() {
    token_begin.assign(1, 0);
    tokens.clear();
    entry_begin.assign(1, 0);
    prompt_begin.assign(1, 0);
    prompt_position.clear();
    prompt_entry_begin.assign(1, 0);
    entries.clear();
  }
  int32_t num_rows() const { return static_cast<int32_t>(token_begin.size()) - 1; }
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_SCHEDULER_STEP_SAMPLES_H_
