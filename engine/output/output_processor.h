#ifndef OPENELM_ENGINE_OUTPUT_OUTPUT_PROCESSOR_H_
#define OPENELM_ENGINE_OUTPUT_OUTPUT_PROCESSOR_H_

#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "engine/base/types.h"
#include "engine/output/stop_string_matcher.h"
#include "engine/scheduler/request.h"
#include "engine/scheduler/scheduler.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace openelm {

// Turns the tokens the scheduler accepted into text: one incremental
// detokenizer and one stop-string matcher per completion, kept here (not in
// the scheduler's requests). Runs on the engine thread after each
// Scheduler::Update (and after aborts), before the output is delivered:
//   - the new tokens of every touched completion are detokenized and passed
//     through its stop strings; a match ends the completion through
//     Scheduler::StopSequence (its blocks freed in the same step);
//   - a completion that finished for a reason that keeps its text (EOS, stop
//     id, length, context, deadline) has its held-back text flushed;
//   - finished requests get the stop string each completion matched.
// Without a tokenizer it only keeps nothing and produces no text.
//
// Thread-compatible: only the engine thread uses it.
class OutputProcessor {
 public:
  explicit OutputProcessor(const Tokenizer* tokenizer);  // may be null

  // A request enters the engine (before Scheduler::AddRequest).
  void Add(const Request& request);
  // See the class comment. Text goes into each completion's delta.
  void Process(Scheduler* scheduler, absl::Time now);
  // The request was delivered finished: drop its text state.
  void Forget(RequestId id);

  int32_t num_requests() const { return static_cast<int32_t>(texts_.size()); }

 private:
  struct CompletionText {
    CompletionText(const Tokenizer* tokenizer, const Request& request)
        : detokenizer(tokenizer, request.spec.continues_text),
          matcher(&request.spec.params.stop) {}
    IncrementalDetokenizer detokenizer;
    StopStringMatcher matcher;
    bool done = false;  // matched, or flushed at its finish
  };

  const Tokenizer* const tokenizer_;
  absl::flat_hash_map<RequestId, std::vector<std::unique_ptr<CompletionText>>> texts_;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_OUTPUT_OUTPUT_PROCESSOR_H_
