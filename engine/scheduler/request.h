#ifndef OPENELM_ENGINE_SCHEDULER_REQUEST_H_
#define OPENELM_ENGINE_SCHEDULER_REQUEST_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/base/types.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/request/request_types.h"
#include "engine/sampling/sampler.h"

namespace openelm {

// WAITING -> RUNNING -> FINISHED, with RUNNING -> PREEMPTED (blocks freed,
// back in the waiting queue) -> RUNNING on re-admission. A request may also
// finish from WAITING/PREEMPTED (cancel, deadline, shutdown).
enum class RequestState { kWaiting, kRunning, kPreempted, kFinished };
const char* RequestStateName(RequestState state);

// One completion of a request (index < n), or the request's shared prompt
// ("root") sequence while the prompt is being computed.
struct Sequence {
  int32_t index = 0;
  // Prompt then generated tokens. For the root: the prompt only.
  std::vector<TokenId> tokens;
  int32_t num_computed_tokens = 0;  // tokens whose K/V are in `table`
  BlockTable table;
  SamplerRng rng;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kUnspecified;
  int32_t num_output_tokens = 0;  // generated, including an EOS / stop id
  // Output not yet delivered to the sink.
  OutputDelta delta;

  int32_t num_uncomputed_tokens() const {
    return static_cast<int32_t>(tokens.size()) - num_computed_tokens;
  }
};

// A request inside the engine: its spec, its sink, its sequences and its
// bookkeeping. Owned by the Scheduler; used only on the engine thread.
//
// Lifecycle of the sequences: while `in_prompt_phase`, only `root` computes
// (the prompt, once, whatever n is). When the prompt is done, root's table is
// forked into every live completion (copy-on-write of the partial last block)
// and released. The first time, each completion samples its first token from
// the prompt's last logits with its own RNG. After a preemption the request
// starts over in the prompt phase and, once forked again, each completion
// recomputes its own generated tokens.
struct Request {
  RequestId id = 0;
  GenerateSpec spec;
  TokenSink* sink = nullptr;  // not owned
  uint64_t arrival_seq = 0;   // order of arrival (FCFS key)
  uint64_t salt_hash = 0;
  int32_t shared_blocks = 0;  // leading blocks in a declared shared prefix
  uint64_t seed = 0;          // the completion i stream is seeded with seed + i
  // The queue policy's index of spec.tenant, -1 until RequestQueue::Add
  // sets it (the fair queue keeps its per-tenant tables in arrays).
  int32_t tenant_slot = -1;

  RequestState state = RequestState::kWaiting;
  bool in_prompt_phase = true;
  bool started = false;  // completions have their first token
  Sequence root;
  std::vector<Sequence> seqs;  // n completions (created at arrival)

  int64_t last_scheduled_step = -1;
  int64_t touched_step = -1;
  int32_t num_cached_tokens = 0;
  bool cache_counted = false;
  int32_t num_preemptions = 0;
  std::vector<std::vector<TokenLogprob>> prompt_logprobs;
  RequestTimings timings;
  FinishInfo finish;  // filled when the request finishes

  int32_t num_prompt_tokens() const { return static_cast<int32_t>(spec.prompt.size()); }
  bool wants_prompt_logprobs() const { return spec.params.prompt_logprobs >= 0; }
  // Completions that have not finished: the batch rows (seats) the request
  // holds while running (n before the first token).
  int32_t num_live_sequences() const {
    int32_t live = 0;
    for (const Sequence& s : seqs) live += s.finished ? 0 : 1;
    return live;
  }
  // KV blocks referenced by the request's tables (a block shared between
  // its completions counts once per table).
  int32_t num_blocks_held() const {
    size_t held = root.table.blocks.size();
    for (const Sequence& s : seqs) held += s.table.blocks.size();
    return static_cast<int32_t>(held);
  }
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_SCHEDULER_REQUEST_H_
