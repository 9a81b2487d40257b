#ifndef OPENELM_ENGINE_KV_CACHE_BLOCK_POOL_H_
#define OPENELM_ENGINE_KV_CACHE_BLOCK_POOL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"
#include "engine/base/types.h"

namespace openelm {

// A fixed set of KV blocks with reference counts and the prefix-cache index.
//
// Every block with ref count 0 sits on one free list, in the order it was
// freed. Allocate() takes from the front, so the least recently freed block is
// reused first. A free block may still carry a prefix-cache hash: it keeps its
// contents (and stays findable through LookUp()) until Allocate() reuses it,
// which evicts it from the index. Cached blocks are therefore evicted in LRU
// order, and "free" always includes "cached but unreferenced".
//
// Invariants (CheckInvariants()):
//   * a block is on the free list  <=>  its ref count is 0
//   * num_free_blocks() + |{b : ref_count(b) > 0}| == num_blocks()
//   * every hash in the index maps to a block that carries that hash
//
// Thread-compatible: only the engine thread uses it.
class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // Takes `n` blocks from the front of the free list (ref count 1 each,
  // evicting their cache hashes), or returns nullopt and changes nothing.
  std::optional<std::vector<BlockId>> Allocate(int32_t n);
  // Same, appending to `out` (no temporary vector). False: nothing changed.
  bool AllocateInto(int32_t n, std::vector<BlockId>* out);

  // Adds a reference to `block`; a free (cached) block leaves the free list.
  void Touch(BlockId block);

  // Drops one reference from each block, in the given order; blocks reaching
  // 0 are appended to the free list (so pass a table's blocks tail first to
  // have its tail evicted before its head).
  void Free(absl::Span<const BlockId> blocks);

  // Prefix-cache index. SetHash() registers a referenced block under `hash`
  // unless the hash is already taken or the block already has one (returns
  // whether it registered). LookUp() finds a block by hash (free or not).
  bool SetHash(BlockId block, uint64_t hash);
  std::optional<BlockId> LookUp(uint64_t hash) const;
  bool has_hash(BlockId block) const { return has_hash_[block]; }

  int32_t ref_count(BlockId block) const { return ref_counts_[block]; }
  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_free_blocks() const { return num_free_; }
  int32_t num_cached_blocks() const { return static_cast<int32_t>(index_.size()); }
  int64_t num_evictions() const { return num_evictions_; }

  // Verifies all invariants; returns false (and describes the first broken
  // one in `error` when not null) if any fails. O(num_blocks).
  bool CheckInvariants(std::string* error = nullptr) const;

 private:
  void PushBack(BlockId block);
  void Unlink(BlockId block);

  std::vector<int32_t> ref_counts_;  // indexed by BlockId
  // Intrusive doubly linked free list; index num_blocks() is the sentinel.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  int32_t num_free_ = 0;
  std::vector<uint64_t> hash_;  // valid where has_hash_
  std::vector<bool> has_hash_;
  absl::flat_hash_map<uint64_t, BlockId> index_;
  int64_t num_evictions_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KV_CACHE_BLOCK_POOL_H_
