#ifndef OPENELM_ENGINE_TENANCY_FAIR_QUEUE_H_
#define OPENELM_ENGINE_TENANCY_FAIR_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "engine/base/types.h"

namespace openelm {

struct FairQueueOptions {
  // Cost of one token in virtual tokens, before dividing by the tenant's
  // weight. Decode tokens cost more than prefill tokens because a decode
  // token occupies a batch row for a whole step (VTC's w_q > w_p).
  double prefill_token_cost = 1.0;
  double decode_token_cost = 2.0;
  // Weight of a tenant that SetWeights() did not name.
  double default_weight = 1.0;
  // Order inside a tenant: higher priority first, then arrival order. When
  // false, priority is ignored (pure FCFS per tenant).
  bool use_priority = true;
};

// One queued request as the scheduler handed it in.
struct FairQueueEntry {
  RequestId id = 0;
  std::string tenant;
  int32_t tenant_slot = 0;  // FairQueue::TenantSlot(tenant)
  int32_t priority = 0;
  uint64_t arrival_seq = 0;
};

// Weighted-fair admission order between tenants using a virtual token counter
// (VTC; Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024).
//
// Every tenant has a counter that grows by the service it received:
//   counter += (prefill_tokens * prefill_token_cost
//               + decode_tokens * decode_token_cost) / weight
// The next request to admit is the head of the *backlogged* tenant (one with
// queued requests) whose counter is smallest (ties: the tenant that joined
// the backlog last). Inside a
// tenant, requests leave by priority (higher first, optional) and then by
// arrival_seq (FCFS).
//
// Idle tenants do not bank credit: when a tenant goes from no queued request
// to one, its counter is lifted to max(own, min over the other backlogged
// tenants); when nobody else is backlogged, to max(own, counter of the tenant
// that most recently left the backlog). So a tenant returning after a pause
// competes as an equal, never with a burst of saved-up service.
//
// Charging is the caller's job (Charge()): the scheduler charges a request's
// prefill chunk when it schedules it (right after PopNext(), before the next
// admission decision) and one decode token per decode row per step. Running
// requests are charged even though they are no longer queued.
//
// Complexity: Enqueue/PopNext/Remove/Charge are O(log T + log R_t) (T
// backlogged tenants, R_t requests of that tenant); PeekNext is O(1).
// Tenant state is kept for every tenant ever seen (tenants come from a
// bounded config); each gets a dense slot number, so per-step callers can
// index arrays instead of hashing names. Charge() allocates nothing.
//
// Thread-compatible: only the engine thread uses it.
class FairQueue {
 public:
  explicit FairQueue(FairQueueOptions options = {});
  FairQueue(const FairQueue&) = delete;
  FairQueue& operator=(const FairQueue&) = delete;

  // Queues request `id`. A preempted request may come back with its original
  // arrival_seq, which puts it back in its old place inside its tenant.
  // Returns false (and changes nothing) when `id` is already queued.
  bool Enqueue(RequestId id, absl::string_view tenant, int32_t priority,
               uint64_t arrival_seq);

  // The request to admit next, or nullptr when the queue is empty. The
  // pointer is valid until the next non-const call.
  const FairQueueEntry* PeekNext() const;
  // The head of the first backlogged tenant, in PeekNext() order, whose head
  // request satisfies `eligible`; nullptr when none does.
  const FairQueueEntry* PeekNextWhere(
      absl::FunctionRef<bool(const FairQueueEntry&)> eligible) const;
  // Removes and returns the request PeekNext() names; nullopt when empty.
  std::optional<FairQueueEntry> PopNext();

  // Removes `id` (cancelled or expired while queued). False if not queued.
  bool Remove(RequestId id);

  // Adds served tokens to `tenant`'s counter (see the class comment). Unknown
  // tenants are created (idle). Negative counts are ignored.
  void Charge(absl::string_view tenant, int64_t prefill_tokens, int64_t decode_tokens);
  // The same for the tenant in `slot` (< num_tenant_slots()).
  void ChargeSlot(int32_t slot, int64_t prefill_tokens, int64_t decode_tokens);

  // The dense slot of `tenant` (0, 1, ... in order of first sight), creating
  // its (idle) state when new. Slots are never reused.
  int32_t TenantSlot(absl::string_view tenant);
  int32_t num_tenant_slots() const { return static_cast<int32_t>(by_slot_.size()); }
  double slot_weight(int32_t slot) const { return by_slot_[slot]->weight; }

  // Replaces the weights (> 0; non-positive or non-finite values fall back to
  // default_weight). Tenants not in the map get default_weight. Affects only
  // charges made after the call; counters are not rescaled.
  void SetWeights(const absl::flat_hash_map<std::string, double>& weights);

  // Introspection (tests, metrics, debugging).
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  bool Contains(RequestId id) const { return entries_.contains(id); }
  size_t num_backlogged_tenants() const { return backlog_.size(); }
  size_t num_queued(absl::string_view tenant) const;
  // The tenant's virtual counter; 0 for a tenant never seen.
  double counter(absl::string_view tenant) const;
  double weight(absl::string_view tenant) const;
  // Visits every backlogged tenant's slot.
  void ForEachBackloggedTenant(absl::FunctionRef<void(int32_t slot)> fn) const {
    for (const BacklogKey& key : backlog_) fn(key.tenant->slot);
  }

 private:
  // Order inside a tenant: (-priority, arrival_seq, id) ascending.
  using RequestKey = std::tuple<int64_t, uint64_t, RequestId>;

  struct TenantState {
    std::string id;
    int32_t slot = 0;
    double weight = 1.0;
    double counter = 0.0;
    uint64_t join_seq = 0;  // when it last joined the backlog
    std::set<RequestKey> queue;
    absl::flat_hash_map<RequestId, FairQueueEntry> entries;  // by request id
  };

  // Backlog order: counter, then the most recent to join the backlog first
  // (a tenant lifted to the minimum ties with the tenants already there, and
  // they have just been served up to it); the pointer is stable (unique_ptr).
  struct BacklogKey {
    double counter;
    uint64_t join_seq;
    const TenantState* tenant;
    bool operator<(const BacklogKey& other) const {
      if (counter != other.counter) return counter < other.counter;
      return join_seq > other.join_seq;
    }
  };

  TenantState* GetOrCreate(absl::string_view tenant);
  RequestKey KeyOf(const FairQueueEntry& entry) const;
  // Takes `state` out of the backlog when its queue became empty.
  void LeaveBacklogIfIdle(TenantState* state);

  const FairQueueOptions options_;
  absl::flat_hash_map<std::string, std::unique_ptr<TenantState>> tenants_;
  std::vector<TenantState*> by_slot_;  // slot -> tenant
  absl::flat_hash_map<std::string, double> weights_;
  std::set<BacklogKey> backlog_;  // tenants with at least one queued request
  absl::flat_hash_map<RequestId, TenantState*> entries_;  // queued requests
  double last_departed_counter_ = 0.0;
  uint64_t next_join_seq_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_TENANCY_FAIR_QUEUE_H_
