// KvCacheManager: allocation, prefix cache, shared prefixes, CoW.

#include "engine/kv_cache/kv_cache_manager.h"

#include <numeric>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace openelm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::vector<TokenId> Iota(int n, TokenId start = 100) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

class KvCacheManagerTest : public ::testing::Test {
 protected:
  static constexpr int32_t kBs = 4;
  KvCacheManager kv_{/*num_blocks=*/8, kBs, /*enable_prefix_caching=*/true};
  const uint64_t salt_ = KvCacheManager::SaltHash("");

  // Allocates and "computes" all of `tokens` in a fresh table.
  BlockTable Compute(const std::vector<TokenId>& tokens, uint64_t salt) {
    return ComputeIn(kv_, tokens, salt);
  }
  // The same in any manager, with its declared shared prefixes applied.
  static BlockTable ComputeIn(KvCacheManager& kv, const std::vector<TokenId>& tokens,
                              uint64_t salt) {
    BlockTable t;
    PrefixHit hit;
    const int32_t shared = kv.SharedBlocks(tokens);
    kv.FindCachedPrefix(tokens, salt, shared, tokens.size() - 1, &hit);
    EXPECT_TRUE(kv.Allocate(&t, hit.num_tokens, tokens.size(), &hit));
    kv.CommitComputed(&t, tokens, tokens.size(), salt, shared);
    return t;
  }
  static int32_t HitTokens(const KvCacheManager& kv, const std::vector<TokenId>& tokens,
                           uint64_t salt) {
    PrefixHit hit;
    kv.FindCachedPrefix(tokens, salt, kv.SharedBlocks(tokens), tokens.size() - 1, &hit);
    return hit.num_tokens;
  }
  static std::vector<TokenId> Concat(std::vector<TokenId> a,
                                     const std::vector<TokenId>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
};

TEST_F(KvCacheManagerTest, AllocateCoversTokensAndIsAllOrNothing) {
  BlockTable a;
  ASSERT_TRUE(kv_.Allocate(&a, 0, 9, nullptr));
  EXPECT_THAT(a.blocks, SizeIs(3));
  BlockTable b;
  EXPECT_EQ(kv_.NumBlocksNeeded(b, 0, 21, nullptr), 6);
  EXPECT_FALSE(kv_.Allocate(&b, 0, 21, nullptr));  // 6 > 5 free
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(kv_.num_free_blocks(), 5);
  ASSERT_TRUE(kv_.Allocate(&a, 9, 12, nullptr));  // same block count
  EXPECT_THAT(a.blocks, SizeIs(3));
  ASSERT_TRUE(kv_.Allocate(&a, 12, 13, nullptr));
  EXPECT_THAT(a.blocks, SizeIs(4));
  kv_.Free(&a);
  EXPECT_EQ(kv_.num_free_blocks(), 8);
  EXPECT_TRUE(kv_.CheckInvariants());
}

TEST_F(KvCacheManagerTest, PrefixHitSharesFullBlocksOnly) {
  const std::vector<TokenId> prompt = Iota(10);  // 2 full blocks + 2 tokens
  BlockTable a = Compute(prompt, salt_);
  EXPECT_THAT(a.block_hashes, SizeIs(2));

  PrefixHit hit;
  kv_.FindCachedPrefix(prompt, salt_, 0, prompt.size() - 1, &hit);
  EXPECT_EQ(hit.num_tokens, 8);
  EXPECT_THAT(hit.blocks, ElementsAre(a.blocks[0], a.blocks[1]));
  // A different third token breaks the chain after block 0.
  std::vector<TokenId> other = prompt;
  other[5] = 7;
  kv_.FindCachedPrefix(other, salt_, 0, other.size() - 1, &hit);
  EXPECT_EQ(hit.num_tokens, 4);

  BlockTable b = Compute(prompt, salt_);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(b.blocks[1], a.blocks[1]);
  EXPECT_NE(b.blocks[2], a.blocks[2]);
  EXPECT_EQ(kv_.pool().ref_count(a.blocks[0]), 2);
  kv_.Free(&a);
  kv_.Free(&b);
  EXPECT_EQ(kv_.num_free_blocks(), 8);
  EXPECT_TRUE(kv_.CheckInvariants());
}

TEST_F(KvCacheManagerTest, FullyCachedPromptStillComputesItsLastToken) {
  const std::vector<TokenId> prompt = Iota(8);  // exactly 2 blocks
  BlockTable a = Compute(prompt, salt_);
  PrefixHit hit;
  kv_.FindCachedPrefix(prompt, salt_, 0, prompt.size() - 1, &hit);
  EXPECT_EQ(hit.num_tokens, 4);  // not 8: the last token must run
  kv_.Free(&a);
}

TEST_F(KvCacheManagerTest, DifferentSaltsNeverShare) {
  const std::vector<TokenId> prompt = Iota(12);
  BlockTable a = Compute(prompt, KvCacheManager::SaltHash("tenant-a"));
  PrefixHit hit;
  kv_.FindCachedPrefix(prompt, KvCacheManager::SaltHash("tenant-b"), 0, 11, &hit);
  EXPECT_EQ(hit.num_tokens, 0);
  kv_.FindCachedPrefix(prompt, salt_, 0, 11, &hit);
  EXPECT_EQ(hit.num_tokens, 0);
  kv_.FindCachedPrefix(prompt, KvCacheManager::SaltHash("tenant-a"), 0, 11, &hit);
  EXPECT_EQ(hit.num_tokens, 8);
  kv_.Free(&a);
}

// A declared shared prefix is shared across salts, whole blocks only; what a
// tenant adds after it (even the same text) stays private to its salt.
TEST_F(KvCacheManagerTest, DeclaredSharedPrefixIsSharedAcrossSaltsOnly) {
  KvCacheManager kv(32, kBs, true);
  const std::vector<TokenId> system = Iota(10, 1000);  // 2 full blocks + 2
  kv.SetSharedPrefixes({{system, /*pinned=*/false}});
  const std::vector<TokenId> prompt = Concat(system, Iota(10, 50));  // 20 tokens
  EXPECT_EQ(kv.SharedBlocks(prompt), 2);
  EXPECT_EQ(kv.SharedBlocks(Iota(20, 50)), 0);
  const uint64_t a = KvCacheManager::SaltHash("tenant-a");
  const uint64_t b = KvCacheManager::SaltHash("tenant-b");
  BlockTable ta = ComputeIn(kv, prompt, a);
  EXPECT_EQ(HitTokens(kv, prompt, a), 16);  // its own blocks, all 4 full ones
  EXPECT_EQ(HitTokens(kv, prompt, b), 8);   // only the 2 shared blocks
  BlockTable tb = ComputeIn(kv, prompt, b);
  EXPECT_EQ(tb.blocks[0], ta.blocks[0]);
  EXPECT_EQ(tb.blocks[1], ta.blocks[1]);
  EXPECT_NE(tb.blocks[2], ta.blocks[2]);  // straddles the end of the prefix
  EXPECT_NE(tb.blocks[3], ta.blocks[3]);
  // Without the declaration nothing crosses salts.
  KvCacheManager plain(32, kBs, true);
  BlockTable pa = ComputeIn(plain, prompt, a);
  EXPECT_EQ(HitTokens(plain, prompt, b), 0);
  plain.Free(&pa);
  kv.Free(&ta);
  kv.Free(&tb);
  EXPECT_EQ(kv.num_free_blocks(), 32);
  EXPECT_TRUE(kv.CheckInvariants());
}

// Pinned shared blocks hold a reference: a workload that cycles every free
// block through other prompts evicts an unpinned shared prefix but never a
// pinned one, and dropping the declaration returns the blocks to the pool.
TEST_F(KvCacheManagerTest, PinnedSharedPrefixSurvivesCacheThrashing) {
  for (const bool pinned : {false, true}) {
    SCOPED_TRACE(pinned ? "pinned" : "not pinned");
    KvCacheManager kv(8, kBs, true);
    const std::vector<TokenId> system = Iota(8, 1000);  // 2 full blocks
    kv.SetSharedPrefixes({{system, pinned}});
    const uint64_t a = KvCacheManager::SaltHash("tenant-a");
    const uint64_t b = KvCacheManager::SaltHash("tenant-b");
    BlockTable first = ComputeIn(kv, Concat(system, Iota(3, 7)), a);
    kv.Free(&first);
    EXPECT_EQ(kv.num_pinned_blocks(), pinned ? 2 : 0);
    EXPECT_EQ(kv.num_free_blocks(), pinned ? 6 : 8);
    for (int i = 0; i < 10; ++i) {  // 5 blocks each, other text: thrash
      BlockTable t = ComputeIn(kv, Iota(20, 5000 + 100 * i), b);
      kv.Free(&t);
    }
    EXPECT_EQ(HitTokens(kv, Concat(system, Iota(3, 9)), b), pinned ? 8 : 0);
    EXPECT_TRUE(kv.CheckInvariants());
    kv.SetSharedPrefixes({});
    EXPECT_EQ(kv.num_pinned_blocks(), 0);
    EXPECT_EQ(kv.num_free_blocks(), 8);
    EXPECT_TRUE(kv.CheckInvariants());
  }
}

// A prefix declared pinned after it was computed is pinned at once if it is
// still cached.
TEST_F(KvCacheManagerTest, PinningFindsAnAlreadyCachedPrefix) {
  KvCacheManager kv(8, kBs, true);
  const std::vector<TokenId> system = Iota(8, 1000);
  kv.SetSharedPrefixes({{system, false}});
  BlockTable t = ComputeIn(kv, Concat(system, Iota(2, 3)), KvCacheManager::SaltHash("x"));
  kv.Free(&t);
  EXPECT_EQ(kv.num_pinned_blocks(), 0);
  kv.SetSharedPrefixes({{system, true}});
  EXPECT_EQ(kv.num_pinned_blocks(), 2);
  EXPECT_EQ(kv.num_free_blocks(), 6);
  kv.SetSharedPrefixes({});
  EXPECT_EQ(kv.num_free_blocks(), 8);
  EXPECT_TRUE(kv.CheckInvariants());
}

TEST_F(KvCacheManagerTest, UnreferencedCachedBlocksAreEvictedLru) {
  BlockTable a = Compute(Iota(8, 100), salt_);  // 2 blocks
  BlockTable b = Compute(Iota(8, 200), salt_);  // 2 blocks
  kv_.Free(&a);  // a's blocks freed first: least recently used
  kv_.Free(&b);
  EXPECT_EQ(kv_.num_free_blocks(), 8);
  EXPECT_EQ(kv_.pool().num_cached_blocks(), 4);
  // Needs 5 of the 8 free blocks: the 4 never-cached ones, then the least
  // recently freed cached one: a's tail (tables are freed tail first).
  BlockTable c;
  ASSERT_TRUE(kv_.Allocate(&c, 0, 20, nullptr));
  PrefixHit hit;
  kv_.FindCachedPrefix(Iota(8, 100), salt_, 0, 8, &hit);
  EXPECT_EQ(hit.num_tokens, 4);
  kv_.FindCachedPrefix(Iota(8, 200), salt_, 0, 8, &hit);
  EXPECT_EQ(hit.num_tokens, 8);
  // A hit on free cached blocks consumes free-list entries when adopted.
  BlockTable d;
  EXPECT_EQ(kv_.NumBlocksNeeded(d, hit.num_tokens, 9, &hit), 3);
  ASSERT_TRUE(kv_.Allocate(&d, hit.num_tokens, 9, &hit));
  EXPECT_EQ(kv_.num_free_blocks(), 0);
  kv_.Free(&c);
  kv_.Free(&d);
  EXPECT_EQ(kv_.num_free_blocks(), 8);
  EXPECT_TRUE(kv_.CheckInvariants());
}

TEST_F(KvCacheManagerTest, ForkSharesAndCopiesThePartialBlockOnWrite) {
  BlockTable parent;
  ASSERT_TRUE(kv_.Allocate(&parent, 0, 6, nullptr));  // blocks: full + partial
  BlockTable child;
  kv_.Fork(parent, &child);
  EXPECT_EQ(child.blocks, parent.blocks);
  EXPECT_EQ(kv_.pool().ref_count(parent.blocks[1]), 2);
  EXPECT_EQ(kv_.num_free_blocks(), 6);

  // The child writes position 6 (into the shared partial block): CoW.
  EXPECT_EQ(kv_.NumBlocksNeeded(child, 6, 7, nullptr), 1);
  ASSERT_TRUE(kv_.Allocate(&child, 6, 7, nullptr));
  EXPECT_EQ(child.blocks[0], parent.blocks[0]);  // full block still shared
  EXPECT_NE(child.blocks[1], parent.blocks[1]);
  EXPECT_THAT(kv_.TakePendingCopies(),
              ElementsAre(std::make_pair(parent.blocks[1], child.blocks[1])));
  // The parent is now the only owner: it writes in place, no copy.
  EXPECT_EQ(kv_.NumBlocksNeeded(parent, 6, 7, nullptr), 0);
  ASSERT_TRUE(kv_.Allocate(&parent, 6, 7, nullptr));
  EXPECT_THAT(kv_.TakePendingCopies(), IsEmpty());
  kv_.Free(&parent);
  kv_.Free(&child);
  EXPECT_EQ(kv_.num_free_blocks(), 8);
  EXPECT_TRUE(kv_.CheckInvariants());
}

TEST_F(KvCacheManagerTest, ForkAtBlockBoundaryNeedsNoCopy) {
  BlockTable parent;
  ASSERT_TRUE(kv_.Allocate(&parent, 0, 8, nullptr));
  BlockTable child;
  kv_.Fork(parent, &child);
  ASSERT_TRUE(kv_.Allocate(&child, 8, 9, nullptr));
  EXPECT_THAT(kv_.TakePendingCopies(), IsEmpty());
  EXPECT_THAT(child.blocks, SizeIs(3));
  kv_.Free(&parent);
  kv_.Free(&child);
  EXPECT_EQ(kv_.num_free_blocks(), 8);
}

TEST(KvCacheManagerNoCacheTest, DisabledCachingNeverHits) {
  KvCacheManager kv(4, 4, /*enable_prefix_caching=*/false);
  const std::vector<TokenId> prompt = Iota(9);
  BlockTable a;
  ASSERT_TRUE(kv.Allocate(&a, 0, 9, nullptr));
  kv.CommitComputed(&a, prompt, 9, 0);
  PrefixHit hit;
  kv.FindCachedPrefix(prompt, 0, 0, 8, &hit);
  EXPECT_EQ(hit.num_tokens, 0);
  kv.Free(&a);
}

}  // namespace
}  // namespace openelm
