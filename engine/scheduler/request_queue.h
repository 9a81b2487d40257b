#ifndef OPENELM_ENGINE_SCHEDULER_REQUEST_QUEUE_H_
#define OPENELM_ENGINE_SCHEDULER_REQUEST_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <map>

#include "absl/functional/function_ref.h"
#include "absl/types/span.h"
#include "engine/scheduler/request.h"

namespace openelm {

// The waiting queue's admission order, behind an interface so that a
// weighted-fair policy between tenants can replace FCFS. Holds non-owning
// pointers; the Scheduler owns the requests.
//
// Thread-compatible: only the engine thread uses it.
class RequestQueue {
 public:
  virtual ~RequestQueue() = default;
  // Adds a new or preempted request.
  virtual void Add(Request* request) = 0;
  // The request to admit next, or nullptr when empty.
  virtual Request* Front() const = 0;
  virtual void PopFront() = 0;
  // Removes `request` if queued; returns whether it was.
  virtual bool Remove(Request* request) = 0;
  virtual size_t size() const = 0;
  bool empty() const { return size() == 0; }
  // Visits every queued request (in admission order).
  virtual void ForEach(absl::FunctionRef<void(Request*)> fn) const = 0;
  // Service `request` receives in the step being planned, reported by the
  // scheduler for every row (prefill chunk or decode tokens). A fair policy
  // charges it to the request's tenant; FCFS ignores it.
  virtual void OnScheduled(const Request& /*request*/, int32_t /*prefill_tokens*/,
                           int32_t /*decode_tokens*/) {}
  // What the running requests hold, reported by the scheduler before it
  // asks for Front() or ChooseVictim(), and again whenever the running set
  // changed (admissions are reported by PopFront()). A fair policy uses it
  // to share the seats and the KV blocks between tenants; FCFS ignores it.
  struct Capacity {
    int32_t max_num_seqs = 0;
    int32_t num_blocks = 0;
  };
  virtual void SetRunning(absl::Span<Request* const> /*running*/,
                          const Capacity& /*capacity*/) {}
  // Fairness preemption. Called at the start of a step, after SetRunning(),
  // when `front` (the current Front()) does not fit beside the running
  // requests: it lacks seats and/or KV blocks (it needs `front_blocks` for
  // its first chunk). Returns the running request whose place it should
  // take, or nullptr to let it wait. None of `running` is scheduled yet in
  // this step. FCFS never preempts for admission.
  struct Shortage {
    bool seats = false;
    bool blocks = false;
    int32_t front_blocks = 0;
  };
  virtual Request* ChooseVictim(const Request& /*front*/,
                                absl::Span<Request* const> /*running*/,
                                const Shortage& /*shortage*/) {
    return nullptr;
  }
};

// First come, first served by arrival; a preempted request gets its original
// place back (ahead of everything that arrived after it).
class FcfsQueue final : public RequestQueue {
 public:
  void Add(Request* request) override { queue_.emplace(request->arrival_seq, request); }
  Request* Front() const override {
    return queue_.empty() ? nullptr : queue_.begin()->second;
  }
  void PopFront() override { queue_.erase(queue_.begin()); }
  bool Remove(Request* request) override {
    return queue_.erase(request->arrival_seq) > 0;
  }
  size_t size() const override { return queue_.size(); }
  void ForEach(absl::FunctionRef<void(Request*)> fn) const override {
    for (const auto& [seq, request] : queue_) fn(request);
  }

 private:
  std::map<uint64_t, Request*> queue_;  // arrival_seq -> request
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_SCHEDULER_REQUEST_QUEUE_H_
