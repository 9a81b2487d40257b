#ifndef OPENELM_ENGINE_TENANCY_FAIR_REQUEST_QUEUE_H_
#define OPENELM_ENGINE_TENANCY_FAIR_REQUEST_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "engine/base/check.h"
#include "engine/scheduler/request.h"
#include "engine/scheduler/request_queue.h"
#include "engine/tenancy/fair_queue.h"

namespace openelm {

// The scheduler's waiting queue with VTC fairness between tenants: a
// RequestQueue (drop-in for FcfsQueue) over FairQueue. The tenant is
// GenerateSpec::tenant ("" is an account like any other), the in-tenant
// order GenerateSpec::priority then arrival_seq.
//
// The scheduler must report the service each request receives with
// Charge(): every scheduled row, prefill chunks and decode tokens alike
// (Scheduler::AddRow is the one place that sees them all). Without charges
// the policy degenerates to round-robin by request.
//
// Holds non-owning pointers; the Scheduler owns the requests.
// Thread-compatible: only the engine thread uses it.
class FairRequestQueue final : public RequestQueue {
 public:
  explicit FairRequestQueue(FairQueueOptions options = {}) : fair_(options) {}

  void Add(Request* request) override {
    const bool added = fair_.Enqueue(request->id, request->spec.tenant,
                                     request->spec.priority, request->arrival_seq);
    OPENELM_DCHECK(added);
    if (added) by_arrival_[request->arrival_seq] = request;
  }

  Request* Front() const override {
    const FairQueueEntry* next = fair_.PeekNext();
    return next == nullptr ? nullptr : by_arrival_.at(next->arrival_seq);
  }

  void PopFront() override {
    std::optional<FairQueueEntry> next = fair_.PopNext();
    if (next.has_value()) by_arrival_.erase(next->arrival_seq);
  }

  bool Remove(Request* request) override {
    if (!fair_.Remove(request->id)) return false;
    by_arrival_.erase(request->arrival_seq);
    return true;
  }

  size_t size() const override { return fair_.size(); }

  // Visits queued requests by arrival (the cross-tenant admission order is
  // only defined one request ahead).
  void ForEach(absl::FunctionRef<void(Request*)> fn) const override {
    for (const auto& [seq, request] : by_arrival_) fn(request);
  }

  void OnScheduled(const Request& request, int32_t prefill_tokens,
                   int32_t decode_tokens) override {
    Charge(request, prefill_tokens, decode_tokens);
  }

  // Service given to `request` in one step (see the class comment).
  void Charge(const Request& request, int32_t prefill_tokens, int32_t decode_tokens) {
    fair_.Charge(request.spec.tenant, prefill_tokens, decode_tokens);
  }

  // New weights after a tenants-config reload (TenantRegistry::Weights()).
  // The engine thread must apply them (post them through the inbox).
  void SetWeights(const absl::flat_hash_map<std::string, double>& weights) {
    fair_.SetWeights(weights);
  }

  const FairQueue& policy() const { return fair_; }

 private:
  FairQueue fair_;
  std::map<uint64_t, Request*> by_arrival_;  // arrival_seq -> request
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_TENANCY_FAIR_REQUEST_QUEUE_H_
