#include "engine/tenancy/fair_queue.h"

#include <algorithm>
#include <cmath>

#include "engine/base/check.h"

namespace openelm {

FairQueue::FairQueue(FairQueueOptions options) : options_(options) {}

FairQueue::TenantState* FairQueue::GetOrCreate(absl::string_view tenant) {
  auto it = tenants_.find(tenant);
  if (it != tenants_.end()) return it->second.get();
  auto state = std::make_unique<TenantState>();
  state->id = std::string(tenant);
  state->slot = static_cast<int32_t>(by_slot_.size());
  state->weight = weight(tenant);
  TenantState* raw = state.get();
  by_slot_.push_back(raw);
  tenants_.emplace(state->id, std::move(state));
  return raw;
}

int32_t FairQueue::TenantSlot(absl::string_view tenant) {
  return GetOrCreate(tenant)->slot;
}

FairQueue::RequestKey FairQueue::KeyOf(const FairQueueEntry& entry) const {
  const int64_t rank = options_.use_priority ? -static_cast<int64_t>(entry.priority) : 0;
  return RequestKey(rank, entry.arrival_seq, entry.id);
}

bool FairQueue::Enqueue(RequestId id, absl::string_view tenant, int32_t priority,
                        uint64_t arrival_seq) {
  if (entries_.contains(id)) return false;
  TenantState* state = GetOrCreate(tenant);
  if (state->queue.empty()) {
    // Becoming backlogged: lift the counter so that idle time earns nothing.
    const double floor =
        backlog_.empty() ? last_departed_counter_ : backlog_.begin()->counter;
    state->counter = std::max(state->counter, floor);
    state->join_seq = ++next_join_seq_;
    backlog_.insert(BacklogKey{state->counter, state->join_seq, state});
  }
  FairQueueEntry entry{id, state->id, state->slot, priority, arrival_seq};
  state->queue.insert(KeyOf(entry));
  state->entries.emplace(id, std::move(entry));
  entries_.emplace(id, state);
  return true;
}

const FairQueueEntry* FairQueue::PeekNext() const {
  if (backlog_.empty()) return nullptr;
  const TenantState* state = backlog_.begin()->tenant;
  OPENELM_DCHECK(!state->queue.empty());
  const RequestId id = std::get<2>(*state->queue.begin());
  auto it = state->entries.find(id);
  OPENELM_DCHECK(it != state->entries.end());
  return &it->second;
}

const FairQueueEntry* FairQueue::PeekNextWhere(
    absl::FunctionRef<bool(const FairQueueEntry&)> eligible) const {
  for (const BacklogKey& key : backlog_) {
    const TenantState* state = key.tenant;
    auto it = state->entries.find(std::get<2>(*state->queue.begin()));
    OPENELM_DCHECK(it != state->entries.end());
    if (eligible(it->second)) return &it->second;
  }
  return nullptr;
}

std::optional<FairQueueEntry> FairQueue::PopNext() {
  const FairQueueEntry* next = PeekNext();
  if (next == nullptr) return std::nullopt;
  FairQueueEntry entry = *next;
  Remove(entry.id);
  return entry;
}

void FairQueue::LeaveBacklogIfIdle(TenantState* state) {
  if (!state->queue.empty()) return;
  backlog_.erase(BacklogKey{state->counter, state->join_seq, state});
  last_departed_counter_ = state->counter;
}

bool FairQueue::Remove(RequestId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  TenantState* state = it->second;
  entries_.erase(it);
  auto entry_it = state->entries.find(id);
  OPENELM_CHECK(entry_it != state->entries.end());
  state->queue.erase(KeyOf(entry_it->second));
  state->entries.erase(entry_it);
  LeaveBacklogIfIdle(state);
  return true;
}

void FairQueue::Charge(absl::string_view tenant, int64_t prefill_tokens,
                       int64_t decode_tokens) {
  if (prefill_tokens <= 0 && decode_tokens <= 0) return;  // creates no tenant
  ChargeSlot(GetOrCreate(tenant)->slot, prefill_tokens, decode_tokens);
}

void FairQueue::ChargeSlot(int32_t slot, int64_t prefill_tokens, int64_t decode_tokens) {
  prefill_tokens = std::max<int64_t>(prefill_tokens, 0);
  decode_tokens = std::max<int64_t>(decode_tokens, 0);
  if (prefill_tokens == 0 && decode_tokens == 0) return;
  OPENELM_DCHECK(slot >= 0 && slot < num_tenant_slots());
  TenantState* state = by_slot_[slot];
  const double cost = (static_cast<double>(prefill_tokens) * options_.prefill_token_cost +
                       static_cast<double>(decode_tokens) * options_.decode_token_cost) /
                      state->weight;
  if (state->queue.empty()) {
    state->counter += cost;
    return;
  }
  // Re-key the backlog entry in place: moving the node keeps Charge()
  // allocation-free (it runs for every row of every step).
  auto node = backlog_.extract(BacklogKey{state->counter, state->join_seq, state});
  OPENELM_DCHECK(!node.empty());
  state->counter += cost;
  node.value().counter = state->counter;
  backlog_.insert(std::move(node));
}

void FairQueue::SetWeights(const absl::flat_hash_map<std::string, double>& weights) {
  weights_.clear();
  for (const auto& [tenant, w] : weights) {
    if (std::isfinite(w) && w > 0) weights_[tenant] = w;
  }
  for (auto& [id, state] : tenants_) state->weight = weight(id);
}

size_t FairQueue::num_queued(absl::string_view tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second->queue.size();
}

double FairQueue::counter(absl::string_view tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0.0 : it->second->counter;
}

double FairQueue::weight(absl::string_view tenant) const {
  auto it = weights_.find(tenant);
  if (it != weights_.end()) return it->second;
  const double w = options_.default_weight;
  return std::isfinite(w) && w > 0 ? w : 1.0;
}

}  // namespace openelm
