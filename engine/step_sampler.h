#ifndef OPENELM_ENGINE_STEP_SAMPLER_H_
#define OPENELM_ENGINE_STEP_SAMPLER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/base/types.h"
#include "engine/model/decoder_model.h"
#include "engine/sampling/sampler.h"
#include "engine/scheduler/scheduler.h"
#include "engine/scheduler/step_samples.h"

namespace openelm {

// The sampling half of a forward step: for every row of a scheduled step
// that needs a token, samples it from the row's logits (each completion with
// its own RNG and penalties over its own tokens), with the logprobs the
// request asked for, and the prompt logprobs of prompt rows that asked for
// them. Reads the scheduler's requests, writes only their RNG state and the
// returned StepSamples; the scheduler then does the bookkeeping (Update).
//
// The samples of one step are independent, so with many of them they are
// drawn on the OpenMP team the forward pass just left idle, one Sampler
// (vocabulary-sized scratch) per thread. The result does not depend on the
// thread count. A steady-state step allocates nothing.
//
// Thread-compatible: only the engine thread uses it.
class StepSampler {
 public:
  StepSampler(int32_t vocab_size, TokenId eos_token_id);

  const StepSamples& Sample(const ScheduledStep& step, const LogitsView& logits);

 private:
  // One token to draw.
  struct Task {
    const float* logits = nullptr;
    const Request* request = nullptr;
    const Sequence* history = nullptr;  // penalties read its tokens
    int32_t num_history = 0;            // tokens of `history` that count
    SamplerRng* rng = nullptr;
    int32_t token_index = 0;  // slot in StepSamples::tokens
  };
  // One prompt position to score.
  struct PromptTask {
    const float* logits = nullptr;
    TokenId token = 0;
    int32_t num_top = 0;
    int32_t index = 0;  // slot in StepSamples::prompt_position
  };

  void Run(int32_t thread, const Task& task);

  std::vector<std::unique_ptr<Sampler>> samplers_;  // one per OpenMP thread
  std::vector<std::vector<LogprobEntry>> scratch_;  // likewise
  std::vector<Task> tasks_;
  std::vector<PromptTask> prompt_tasks_;
  StepSamples samples_;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_STEP_SAMPLER_H_
