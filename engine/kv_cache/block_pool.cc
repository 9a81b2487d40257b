#include "engine/kv_cache/block_pool.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "engine/base/check.h"

namespace openelm {

BlockPool::BlockPool(int32_t num_blocks)
    : ref_counts_(num_blocks, 0),
      prev_(num_blocks + 1),
      next_(num_blocks + 1),
      hash_(num_blocks, 0),
      has_hash_(num_blocks, false) {
  OPENELM_CHECK(num_blocks >= 0);
  // At most one hash per block; twice that leaves room for the tombstones of
  // erased hashes, so registering a hash never rehashes into a new array.
  index_.reserve(2 * static_cast<size_t>(num_blocks));
  const int32_t sentinel = num_blocks;
  prev_[sentinel] = sentinel;
  next_[sentinel] = sentinel;
  for (BlockId b = 0; b < num_blocks; ++b) PushBack(b);
}

void BlockPool::PushBack(BlockId block) {
  const int32_t sentinel = num_blocks();
  const int32_t last = prev_[sentinel];
  next_[last] = block;
  prev_[block] = last;
  next_[block] = sentinel;
  prev_[sentinel] = block;
  ++num_free_;
}

void BlockPool::Unlink(BlockId block) {
  next_[prev_[block]] = next_[block];
  prev_[next_[block]] = prev_[block];
  prev_[block] = next_[block] = -1;
  --num_free_;
}

bool BlockPool::AllocateInto(int32_t n, std::vector<BlockId>* out) {
  if (n < 0 || n > num_free_) return false;
  const int32_t sentinel = num_blocks();
  for (int32_t i = 0; i < n; ++i) {
    const BlockId b = next_[sentinel];
    Unlink(b);
    if (has_hash_[b]) {  // evict: the contents are about to be overwritten
      index_.erase(hash_[b]);
      has_hash_[b] = false;
      ++num_evictions_;
    }
    ref_counts_[b] = 1;
    out->push_back(b);
  }
  return true;
}

std::optional<std::vector<BlockId>> BlockPool::Allocate(int32_t n) {
  std::vector<BlockId> blocks;
  if (!AllocateInto(n, &blocks)) return std::nullopt;
  return blocks;
}

void BlockPool::Touch(BlockId block) {
  OPENELM_CHECK(block >= 0 && block < num_blocks());
  if (ref_counts_[block] == 0) Unlink(block);
  ++ref_counts_[block];
}

void BlockPool::Free(absl::Span<const BlockId> blocks) {
  for (BlockId b : blocks) {
    OPENELM_CHECK(b >= 0 && b < num_blocks() && ref_counts_[b] > 0)
        << "double free of block " << b;
    if (--ref_counts_[b] == 0) PushBack(b);
  }
}

bool BlockPool::SetHash(BlockId block, uint64_t hash) {
  OPENELM_CHECK(ref_counts_[block] > 0);
  if (has_hash_[block] || index_.contains(hash)) return false;
  index_.emplace(hash, block);
  hash_[block] = hash;
  has_hash_[block] = true;
  return true;
}

std::optional<BlockId> BlockPool::LookUp(uint64_t hash) const {
  auto it = index_.find(hash);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

bool BlockPool::CheckInvariants(std::string* error) const {
  auto fail = [error](std::string message) {
    if (error != nullptr) *error = std::move(message);
    return false;
  };
  const int32_t sentinel = num_blocks();
  std::vector<bool> on_list(num_blocks(), false);
  int32_t count = 0;
  for (int32_t b = next_[sentinel]; b != sentinel; b = next_[b]) {
    if (b < 0 || b >= num_blocks() || on_list[b]) {
      return fail(absl::StrCat("free list corrupt at ", b));
    }
    on_list[b] = true;
    if (++count > num_blocks()) return fail("free list cycle");
  }
  if (count != num_free_) {
    return fail(absl::StrCat("free count ", num_free_, " but list has ", count));
  }
  for (BlockId b = 0; b < num_blocks(); ++b) {
    if (ref_counts_[b] < 0) return fail(absl::StrCat("negative ref of ", b));
    if ((ref_counts_[b] == 0) != on_list[b]) {
      return fail(absl::StrCat("block ", b, " ref ", ref_counts_[b],
                               on_list[b] ? " on" : " not on", " free list"));
    }
  }
  for (const auto& [hash, b] : index_) {
    if (!has_hash_[b] || hash_[b] != hash) {
      return fail(absl::StrCat("index entry for block ", b, " is stale"));
    }
  }
  return true;
}

}  // namespace openelm
