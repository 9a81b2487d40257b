#include "engine/kv_cache/kv_cache_manager.h"

#include <algorithm>

#include "engine/base/check.h"

namespace openelm {
namespace {

// splitmix64's finaliser: a cheap, well-mixing 64-bit permutation.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

KvCacheManager::KvCacheManager(int32_t num_blocks, int32_t block_size_tokens,
                               bool enable_prefix_caching)
    : block_size_tokens_(block_size_tokens),
      enable_prefix_caching_(enable_prefix_caching),
      pool_(num_blocks),
      cached_parent_(enable_prefix_caching ? num_blocks : 0, 0),
      cached_tokens_(enable_prefix_caching
                         ? static_cast<size_t>(num_blocks) * block_size_tokens
                         : 0) {
  OPENELM_CHECK(block_size_tokens > 0);
}

uint64_t KvCacheManager::SaltHash(absl::string_view cache_salt) {
  uint64_t h = Mix(0x5a17ULL + cache_salt.size());
  for (unsigned char c : cache_salt) h = Mix(h ^ c);
  return h;
}

namespace {
// Root of the chain of declared shared prefixes: the same for every salt.
constexpr uint64_t kSharedRoot = 0x5a17c0ffee5eed01ULL;
}  // namespace

uint64_t KvCacheManager::Parent(int32_t i, uint64_t prev, uint64_t salt_hash,
                                int32_t shared_blocks) {
  if (i == 0) return shared_blocks > 0 ? kSharedRoot : salt_hash;
  if (i == shared_blocks) return Mix(prev ^ Mix(salt_hash));  // back to private
  return prev;
}

void KvCacheManager::SetSharedPrefixes(std::vector<SharedPrefix> prefixes) {
  shared_prefixes_ = std::move(prefixes);
  pinned_hashes_.clear();
  if (!enable_prefix_caching_) return;
  for (const SharedPrefix& prefix : shared_prefixes_) {
    if (!prefix.pinned) continue;
    const int32_t n = static_cast<int32_t>(prefix.tokens.size()) / block_size_tokens_;
    uint64_t prev = 0;
    for (int32_t i = 0; i < n; ++i) {
      const uint64_t parent = Parent(i, prev, 0, n);
      prev = BlockHash(parent, absl::MakeConstSpan(prefix.tokens)
                                   .subspan(static_cast<size_t>(i) * block_size_tokens_,
                                            block_size_tokens_));
      pinned_hashes_.emplace(prev, parent);
    }
  }
  // Unpin what is no longer declared; pin what is already cached.
  for (auto it = pinned_.begin(); it != pinned_.end();) {
    if (pinned_hashes_.contains(it->first)) {
      ++it;
      continue;
    }
    pool_.Free({&it->second, 1});
    pinned_.erase(it++);
  }
  for (const auto& [hash, parent] : pinned_hashes_) MaybePin(hash);
}

int32_t KvCacheManager::SharedBlocks(absl::Span<const TokenId> tokens) const {
  size_t best = 0;
  for (const SharedPrefix& prefix : shared_prefixes_) {
    const size_t n = std::min(tokens.size(), prefix.tokens.size());
    size_t common = 0;
    while (common < n && tokens[common] == prefix.tokens[common]) ++common;
    best = std::max(best, common);
  }
  return static_cast<int32_t>(best / block_size_tokens_);
}

void KvCacheManager::MaybePin(uint64_t hash) {
  auto want = pinned_hashes_.find(hash);
  if (want == pinned_hashes_.end() || pinned_.contains(hash)) return;
  std::optional<BlockId> b = pool_.LookUp(hash);
  if (!b.has_value() || cached_parent_[*b] != want->second) return;
  pool_.Touch(*b);
  pinned_.emplace(hash, *b);
}

uint64_t KvCacheManager::BlockHash(uint64_t parent,
                                   absl::Span<const TokenId> tokens) const {
  uint64_t h = Mix(parent);
  for (TokenId t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

bool KvCacheManager::Matches(BlockId block, uint64_t parent,
                             absl::Span<const TokenId> tokens) const {
  if (cached_parent_[block] != parent) return false;
  const TokenId* stored =
      cached_tokens_.data() + static_cast<size_t>(block) * block_size_tokens_;
  return std::equal(tokens.begin(), tokens.end(), stored);
}

void KvCacheManager::FindCachedPrefix(absl::Span<const TokenId> tokens,
                                      uint64_t salt_hash, int32_t shared_blocks,
                                      int32_t max_tokens, PrefixHit* hit) const {
  hit->Clear();
  if (!enable_prefix_caching_) return;
  const int32_t limit = std::min<int32_t>(max_tokens, tokens.size());
  const int32_t max_blocks = std::max(limit, 0) / block_size_tokens_;
  uint64_t prev = 0;
  for (int32_t i = 0; i < max_blocks; ++i) {
    absl::Span<const TokenId> block_tokens =
        tokens.subspan(static_cast<size_t>(i) * block_size_tokens_, block_size_tokens_);
    const uint64_t parent = Parent(i, prev, salt_hash, shared_blocks);
    const uint64_t h = BlockHash(parent, block_tokens);
    std::optional<BlockId> b = pool_.LookUp(h);
    if (!b.has_value() || !Matches(*b, parent, block_tokens)) break;
    hit->blocks.push_back(*b);
    hit->hashes.push_back(h);
    prev = h;
  }
  hit->num_tokens = static_cast<int32_t>(hit->blocks.size()) * block_size_tokens_;
}

int32_t KvCacheManager::NumBlocksNeeded(const BlockTable& table,
                                        int32_t num_computed_tokens,
                                        int32_t num_total_tokens,
                                        const PrefixHit* hit) const {
  int32_t needed = 0;
  int32_t have = static_cast<int32_t>(table.blocks.size());
  if (hit != nullptr && !hit->blocks.empty()) {
    for (BlockId b : hit->blocks) {
      if (pool_.ref_count(b) == 0) ++needed;
    }
    have = static_cast<int32_t>(hit->blocks.size());
  } else if (num_total_tokens > num_computed_tokens &&
             num_computed_tokens % block_size_tokens_ != 0) {
    const int32_t i = num_computed_tokens / block_size_tokens_;
    if (i < have && pool_.ref_count(table.blocks[i]) > 1) ++needed;  // CoW
  }
  needed += std::max(0, BlocksFor(num_total_tokens) - have);
  return needed;
}

bool KvCacheManager::Allocate(BlockTable* table, int32_t num_computed_tokens,
                              int32_t num_total_tokens, const PrefixHit* hit) {
  const int32_t needed =
      NumBlocksNeeded(*table, num_computed_tokens, num_total_tokens, hit);
  if (needed > pool_.num_free_blocks()) return false;
  if (hit != nullptr && !hit->blocks.empty()) {
    OPENELM_CHECK(table->empty()) << "only an empty table adopts a prefix hit";
    for (BlockId b : hit->blocks) {
      pool_.Touch(b);
      table->blocks.push_back(b);
    }
    table->block_hashes = hit->hashes;
  } else if (num_total_tokens > num_computed_tokens &&
             num_computed_tokens % block_size_tokens_ != 0) {
    const size_t i = num_computed_tokens / block_size_tokens_;
    if (i < table->blocks.size() && pool_.ref_count(table->blocks[i]) > 1) {
      const BlockId shared = table->blocks[i];
      std::vector<BlockId> fresh;
      OPENELM_CHECK(pool_.AllocateInto(1, &fresh));
      pending_copies_.emplace_back(shared, fresh[0]);
      table->blocks[i] = fresh[0];
      pool_.Free({&shared, 1});
      // A partial block never has a hash, so block_hashes is unaffected.
    }
  }
  const int32_t more =
      BlocksFor(num_total_tokens) - static_cast<int32_t>(table->blocks.size());
  if (more > 0) {
    OPENELM_CHECK(pool_.AllocateInto(more, &table->blocks));
  }
  return true;
}

void KvCacheManager::CommitComputed(BlockTable* table, absl::Span<const TokenId> tokens,
                                    int32_t num_computed_tokens, uint64_t salt_hash,
                                    int32_t shared_blocks) {
  if (!enable_prefix_caching_) return;
  const size_t num_full =
      std::min<size_t>(num_computed_tokens / block_size_tokens_, table->blocks.size());
  uint64_t prev = table->block_hashes.empty() ? 0 : table->block_hashes.back();
  for (size_t i = table->block_hashes.size(); i < num_full; ++i) {
    absl::Span<const TokenId> block_tokens =
        tokens.subspan(i * block_size_tokens_, block_size_tokens_);
    const uint64_t parent =
        Parent(static_cast<int32_t>(i), prev, salt_hash, shared_blocks);
    const uint64_t h = BlockHash(parent, block_tokens);
    const BlockId b = table->blocks[i];
    if (pool_.SetHash(b, h)) {
      cached_parent_[b] = parent;
      std::copy(block_tokens.begin(), block_tokens.end(),
                cached_tokens_.begin() + static_cast<size_t>(b) * block_size_tokens_);
    }
    if (static_cast<int32_t>(i) < shared_blocks && !pinned_hashes_.empty()) MaybePin(h);
    table->block_hashes.push_back(h);
    prev = h;
  }
}

void KvCacheManager::Fork(const BlockTable& src, BlockTable* dst) {
  OPENELM_CHECK(dst->empty());
  for (BlockId b : src.blocks) pool_.Touch(b);
  dst->blocks = src.blocks;
  dst->block_hashes = src.block_hashes;
}

void KvCacheManager::Free(BlockTable* table) {
  for (auto it = table->blocks.rbegin(); it != table->blocks.rend(); ++it) {
    pool_.Free({&*it, 1});
  }
  table->blocks.clear();
  table->block_hashes.clear();
}

std::vector<std::pair<BlockId, BlockId>> KvCacheManager::TakePendingCopies() {
  std::vector<std::pair<BlockId, BlockId>> out;
  out.swap(pending_copies_);
  return out;
}

}  // namespace openelm
