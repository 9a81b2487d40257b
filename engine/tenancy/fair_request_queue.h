#ifndef OPENELM_ENGINE_TENANCY_FAIR_REQUEST_QUEUE_H_
#define OPENELM_ENGINE_TENANCY_FAIR_REQUEST_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
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
    request->tenant_slot = fair_.TenantSlot(request->spec.tenant);
    if (usage_.size() < static_cast<size_t>(fair_.num_tenant_slots())) {
      usage_.resize(fair_.num_tenant_slots());  // only for a tenant never seen
    }
    const bool added = fair_.Enqueue(request->id, request->spec.tenant,
                                     request->spec.priority, request->arrival_seq);
    OPENELM_DCHECK(added);
    if (added) by_arrival_[request->arrival_seq] = request;
  }

  // VTC order, except that a tenant holding its weighted share of the seats
  // (see SetRunning) goes after the tenants below theirs.
  Request* Front() const override {
    const FairQueueEntry* next = Next();
    return next == nullptr ? nullptr : by_arrival_.at(next->arrival_seq);
  }

  void PopFront() override {
    const FairQueueEntry* next = Next();
    if (next == nullptr) return;
    Request* r = by_arrival_.at(next->arrival_seq);
    const bool removed = fair_.Remove(next->id);
    OPENELM_DCHECK(removed);
    by_arrival_.erase(r->arrival_seq);
    if (have_usage_) {  // the admitted request now holds its seats
      usage_[r->tenant_slot].seats += r->num_live_sequences();
    }
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

  // The active tenants (running or queued) share the seats and the KV
  // blocks in proportion to their weights. O(running + tenants), no
  // allocation (the table is an array by tenant slot, sized in Add()).
  void SetRunning(absl::Span<Request* const> running, const Capacity& capacity) override {
    for (Usage& u : usage_) u = Usage{};
    for (const Request* r : running) {
      OPENELM_CHECK(r->tenant_slot >= 0) << "request " << r->id << " never queued";
      Usage& u = usage_[r->tenant_slot];
      u.active = true;
      u.seats += r->num_live_sequences();
      u.blocks += r->num_blocks_held();
    }
    fair_.ForEachBackloggedTenant([this](int32_t slot) { usage_[slot].active = true; });
    double total_weight = 0;
    for (size_t slot = 0; slot < usage_.size(); ++slot) {
      if (usage_[slot].active) total_weight += fair_.slot_weight(slot);
    }
    for (size_t slot = 0; slot < usage_.size(); ++slot) {
      Usage& u = usage_[slot];
      if (!u.active) continue;
      const double fraction = fair_.slot_weight(slot) / total_weight;
      u.seat_share = capacity.max_num_seqs * fraction;
      u.block_share = capacity.num_blocks * fraction;
    }
    have_usage_ = true;
  }

  // Share-based preemption, for each resource the front lacks:
  //   * its tenant, with the front admitted, must stay within its share;
  //   * seats: the victim's tenant, without the victim, must still hold at
  //     least its share, so two tenants at their shares never trade seats;
  //   * blocks: the victim's tenant must hold more than its share.
  // The victim is the most recently admitted eligible request of the tenant
  // furthest over its share (least work lost on recomputation).
  Request* ChooseVictim(const Request& front, absl::Span<Request* const> running,
                        const Shortage& shortage) override {
    const Usage& mine = usage_[front.tenant_slot];
    if (shortage.seats &&
        mine.seats + front.num_live_sequences() > mine.seat_share + kSlack) {
      return nullptr;
    }
    if (shortage.blocks &&
        mine.blocks + shortage.front_blocks > mine.block_share + kSlack) {
      return nullptr;
    }
    Request* victim = nullptr;
    double worst = 0;
    for (auto it = running.rbegin(); it != running.rend(); ++it) {
      Request* r = *it;
      if (r->tenant_slot == front.tenant_slot) continue;
      const Usage& u = usage_[r->tenant_slot];
      if (shortage.seats && u.seats - r->num_live_sequences() < u.seat_share - kSlack) {
        continue;
      }
      if (shortage.blocks && u.blocks <= u.block_share + kSlack) continue;
      const double over =
          shortage.seats ? u.seats / u.seat_share : u.blocks / u.block_share;
      if (over > worst) {  // strict: the newest request of the worst tenant
        worst = over;
        victim = r;
      }
    }
    return victim;
  }

  // Service given to `request` in one step (see the class comment).
  void Charge(const Request& request, int32_t prefill_tokens, int32_t decode_tokens) {
    if (request.tenant_slot >= 0) {
      fair_.ChargeSlot(request.tenant_slot, prefill_tokens, decode_tokens);
    } else {  // never queued here
      fair_.Charge(request.spec.tenant, prefill_tokens, decode_tokens);
    }
  }

  // New weights after a tenants-config reload (TenantRegistry::Weights()).
  // The engine thread must apply them (post them through the inbox).
  void SetWeights(const absl::flat_hash_map<std::string, double>& weights) {
    fair_.SetWeights(weights);
  }

  const FairQueue& policy() const { return fair_; }

 private:
  struct Usage {
    bool active = false;  // running or queued requests
    double seats = 0;     // live sequences running
    double blocks = 0;    // KV blocks held by running requests
    double seat_share = 0;
    double block_share = 0;
  };
  static constexpr double kSlack = 1e-9;

  // The VTC head among tenants below their seat share; the plain VTC head
  // when there is none (or SetRunning was never called).
  const FairQueueEntry* Next() const {
    if (!have_usage_) return fair_.PeekNext();
    const FairQueueEntry* below = fair_.PeekNextWhere([this](const FairQueueEntry& e) {
      const Usage& u = usage_[e.tenant_slot];
      return u.seats + by_arrival_.at(e.arrival_seq)->num_live_sequences() <=
             u.seat_share + kSlack;
    });
    return below != nullptr ? below : fair_.PeekNext();
  }

  FairQueue fair_;
  std::map<uint64_t, Request*> by_arrival_;  // arrival_seq -> request
  std::vector<Usage> usage_;                 // by tenant slot, from SetRunning()
  bool have_usage_ = false;                  // SetRunning() was called
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_TENANCY_FAIR_REQUEST_QUEUE_H_
