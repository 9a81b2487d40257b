#ifndef OPENELM_ENGINE_KV_CACHE_KV_CACHE_MANAGER_H_
#define OPENELM_ENGINE_KV_CACHE_KV_CACHE_MANAGER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/kv_cache/block_pool.h"

namespace openelm {

// The blocks of one sequence, shared by all layers: block i holds positions
// [i * block_size_tokens, (i + 1) * block_size_tokens). Owned by the sequence
// (a plain value); its blocks are references held in the KvCacheManager's
// pool and must be returned with KvCacheManager::Free().
struct BlockTable {
  std::vector<BlockId> blocks;
  // Prefix-cache hash of each leading full block whose hash is known
  // (block_hashes.size() <= blocks.size()). The chain: hash(i) =
  // H(hash(i - 1), tokens of block i), hash(-1) = H(cache salt).
  std::vector<uint64_t> block_hashes;
  bool empty() const { return blocks.empty(); }
};

// A prefix found in the cache: leading full blocks of a token sequence.
struct PrefixHit {
  std::vector<BlockId> blocks;
  std::vector<uint64_t> hashes;
  int32_t num_tokens = 0;  // blocks.size() * block_size_tokens
  void Clear() {
    blocks.clear();
    hashes.clear();
    num_tokens = 0;
  }
};

// Paged KV bookkeeping for all sequences: allocation (all or nothing),
// automatic prefix caching and copy-on-write between forked sequences. It
// holds no K/V data; the model does, and executes the copies this class asks
// for (TakePendingCopies()).
//
// Prefix caching (vLLM-style): a full block is identified by a hash chain over
// (parent hash, its tokens), rooted at the hash of the cache salt, so equal
// prefixes under different salts never share. Blocks are registered once the
// step that wrote them has finished (CommitComputed()). Unreferenced cached
// blocks stay in the pool's free list and are evicted LRU (BlockPool).
//
// Declared shared prefixes (SetSharedPrefixes(): e.g. a deployment's system
// prompt, public by declaration) are shared across salts: a sequence's
// leading full blocks that lie inside one (SharedBlocks()) are chained from
// one public root instead of its salt, and the chain is re-salted right
// after them, so everything a tenant adds to the public text stays private.
// Blocks of a prefix declared `pinned` hold one extra reference from the
// moment they are computed (or found cached) until the declaration goes
// away: they are never on the free list, so eviction never drops them.
//
// Copy-on-write: Fork() shares every block. Before a sequence writes into a
// block it shares (only a partial last block can be written), Allocate()
// gives it a fresh block and queues a (src, dst) copy that must run before the
// step's Forward.
//
// Thread-compatible: only the engine thread uses it.
class KvCacheManager {
 public:
  KvCacheManager(int32_t num_blocks, int32_t block_size_tokens,
                 bool enable_prefix_caching);
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  // The salt root of the hash chain.
  static uint64_t SaltHash(absl::string_view cache_salt);

  // Replaces the declared shared prefixes (token sequences as prompts start
  // with them). Only their full blocks are shared. Pins the cached blocks of
  // newly pinned prefixes and unpins those no longer declared pinned.
  struct SharedPrefix {
    std::vector<TokenId> tokens;
    bool pinned = false;
  };
  void SetSharedPrefixes(std::vector<SharedPrefix> prefixes);
  // Leading full blocks of `tokens` inside a declared shared prefix (the
  // longest common prefix with any of them, whole blocks only).
  int32_t SharedBlocks(absl::Span<const TokenId> tokens) const;
  int32_t num_pinned_blocks() const { return static_cast<int32_t>(pinned_.size()); }

  // Longest run of leading full blocks of `tokens` found in the cache, at most
  // max_tokens / block_size_tokens blocks (callers pass len - 1 so the last
  // token is always computed). No side effects. Fills `hit` (cleared first).
  // `shared_blocks` is SharedBlocks(tokens) (0: all blocks under the salt).
  void FindCachedPrefix(absl::Span<const TokenId> tokens, uint64_t salt_hash,
                        int32_t shared_blocks, int32_t max_tokens, PrefixHit* hit) const;

  // Free-list blocks that Allocate(table, ...) with the same arguments would
  // consume (new blocks, a copy-on-write block, and hit blocks that are
  // currently unreferenced). No side effects.
  int32_t NumBlocksNeeded(const BlockTable& table, int32_t num_computed_tokens,
                          int32_t num_total_tokens, const PrefixHit* hit) const;

  // Makes `table` cover `num_total_tokens` positions for writing from
  // `num_computed_tokens` on. `hit` (may be null) is adopted first; only an
  // empty table may adopt one. All or nothing: false means nothing changed.
  bool Allocate(BlockTable* table, int32_t num_computed_tokens, int32_t num_total_tokens,
                const PrefixHit* hit);

  // After a successful step: registers the full blocks among the first
  // `num_computed_tokens` of `tokens` (the sequence's whole token list) in the
  // prefix cache. No-op when caching is off.
  void CommitComputed(BlockTable* table, absl::Span<const TokenId> tokens,
                      int32_t num_computed_tokens, uint64_t salt_hash,
                      int32_t shared_blocks = 0);

  // `dst` (must be empty) shares all of `src`'s blocks.
  void Fork(const BlockTable& src, BlockTable* dst);

  // Returns the table's blocks to the pool (tail first) and clears it.
  void Free(BlockTable* table);

  // Copies (src, dst) queued by Allocate() since the last call.
  std::vector<std::pair<BlockId, BlockId>> TakePendingCopies();
  bool has_pending_copies() const { return !pending_copies_.empty(); }

  // Prefix-cache counters (tokens): queries/hits recorded by RecordLookup().
  void RecordLookup(int32_t num_query_tokens, int32_t num_hit_tokens) {
    query_tokens_ += num_query_tokens;
    hit_tokens_ += num_hit_tokens;
  }
  int64_t prefix_query_tokens() const { return query_tokens_; }
  int64_t prefix_hit_tokens() const { return hit_tokens_; }

  bool prefix_caching_enabled() const { return enable_prefix_caching_; }
  int32_t block_size_tokens() const { return block_size_tokens_; }
  int32_t num_blocks() const { return pool_.num_blocks(); }
  int32_t num_free_blocks() const { return pool_.num_free_blocks(); }
  int32_t BlocksFor(int32_t num_tokens) const {
    return (num_tokens + block_size_tokens_ - 1) / block_size_tokens_;
  }
  const BlockPool& pool() const { return pool_; }
  bool CheckInvariants(std::string* error = nullptr) const {
    return pool_.CheckInvariants(error);
  }

 private:
  uint64_t BlockHash(uint64_t parent, absl::Span<const TokenId> tokens) const;
  // The parent hash of block i given the previous block's hash (`prev`,
  // unused for i == 0): the chain's root, or the re-salting after the
  // shared blocks.
  static uint64_t Parent(int32_t i, uint64_t prev, uint64_t salt_hash,
                         int32_t shared_blocks);
  // Pins the block registered under `hash` if it is cached, valid and not
  // pinned yet.
  void MaybePin(uint64_t hash);
  // Whether cached block `block` really holds (parent, tokens) (guards
  // against hash collisions).
  bool Matches(BlockId block, uint64_t parent, absl::Span<const TokenId> tokens) const;

  const int32_t block_size_tokens_;
  const bool enable_prefix_caching_;
  BlockPool pool_;
  // Per block, what it was registered with: parent hash and tokens.
  std::vector<uint64_t> cached_parent_;
  std::vector<TokenId> cached_tokens_;  // [num_blocks, block_size_tokens]
  std::vector<std::pair<BlockId, BlockId>> pending_copies_;
  std::vector<SharedPrefix> shared_prefixes_;
  // Hash of each full block of the pinned prefixes -> its parent hash (for
  // the collision check in MaybePin); and the blocks pinned now, by hash.
  absl::flat_hash_map<uint64_t, uint64_t> pinned_hashes_;  // hash -> parent
  absl::flat_hash_map<uint64_t, BlockId> pinned_;
  int64_t query_tokens_ = 0;
  int64_t hit_tokens_ = 0;
};

}  // namespace openelm

#endif  // OPENELM_ENGINE_KV_CACHE_KV_CACHE_MANAGER_H_
