// BlockPool and KvCacheManager: allocation, ref counts, prefix cache, CoW.

#include <numeric>
#include <string>
#include <vector>

#include "engine/kv_cache/block_pool.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace openelm {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

void ExpectInvariants(const BlockPool& pool) {
  std::string error;
  EXPECT_TRUE(pool.CheckInvariants(&error)) << error;
}

std::vector<TokenId> Iota(int n, TokenId start = 100) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(BlockPoolTest, AllocateIsAllOrNothing) {
  BlockPool pool(4);
  auto three = pool.Allocate(3);
  ASSERT_TRUE(three.has_value());
  EXPECT_THAT(*three, ElementsAre(0, 1, 2));
  EXPECT_FALSE(pool.Allocate(2).has_value());
  EXPECT_EQ(pool.num_free_blocks(), 1);
  ExpectInvariants(pool);
  pool.Free(*three);
  EXPECT_EQ(pool.num_free_blocks(), 4);
  ExpectInvariants(pool);
}

TEST(BlockPoolTest, FreeListIsFifo) {
  BlockPool pool(4);
  auto all = *pool.Allocate(4);
  pool.Free({all[2]});
  pool.Free({all[0]});
  auto next = *pool.Allocate(2);
  EXPECT_THAT(next, ElementsAre(2, 0));  // least recently freed first
  ExpectInvariants(pool);
}

TEST(BlockPoolTest, RefCountsKeepSharedBlocksAlive) {
  BlockPool pool(2);
  auto b = *pool.Allocate(1);
  pool.Touch(b[0]);
  EXPECT_EQ(pool.ref_count(b[0]), 2);
  pool.Free(b);
  EXPECT_EQ(pool.num_free_blocks(), 1);
  pool.Free(b);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  ExpectInvariants(pool);
}

TEST(BlockPoolTest, CachedFreeBlocksAreEvictedInLruOrder) {
  BlockPool pool(3);
  auto all = *pool.Allocate(3);
  ASSERT_TRUE(pool.SetHash(all[0], 10));
  ASSERT_TRUE(pool.SetHash(all[1], 11));
  ASSERT_FALSE(pool.SetHash(all[2], 10));  // hash taken
  pool.Free({all[1]});
  pool.Free({all[0]});
  // Still findable while free.
  EXPECT_EQ(pool.LookUp(10), all[0]);
  EXPECT_EQ(pool.num_free_blocks(), 2);
  // The first reuse evicts the least recently freed cached block (11).
  auto one = *pool.Allocate(1);
  EXPECT_EQ(one[0], all[1]);
  EXPECT_FALSE(pool.LookUp(11).has_value());
  EXPECT_TRUE(pool.LookUp(10).has_value());
  EXPECT_EQ(pool.num_evictions(), 1);
  // Touching a cached free block takes it off the free list.
  pool.Touch(all[0]);
  EXPECT_EQ(pool.num_free_blocks(), 0);
  ExpectInvariants(pool);
}

class KvCacheManagerTest : public ::testing::Test {
 protected:
  static constexpr int32_t kBs = 4;
  KvCacheManager kv_{/*num_blocks=*/8, kBs, /*enable_prefix_caching=*/true};
  const uint64_t salt_ = KvCacheManager::SaltHash("");

  // Allocates and "computes" all of `tokens` in a fresh table.
  BlockTable Compute(const std::vector<TokenId>& tokens, uint64_t salt) {
    BlockTable t;
    PrefixHit hit;
    kv_.FindCachedPrefix(tokens, salt, tokens.size() - 1, &hit);
    EXPECT_TRUE(kv_.Allocate(&t, hit.num_tokens, tokens.size(), &hit));
    kv_.CommitComputed(&t, tokens, tokens.size(), salt);
    return t;
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
  kv_.FindCachedPrefix(prompt, salt_, prompt.size() - 1, &hit);
  EXPECT_EQ(hit.num_tokens, 8);
  EXPECT_THAT(hit.blocks, ElementsAre(a.blocks[0], a.blocks[1]));
  // A different third token breaks the chain after block 0.
  std::vector<TokenId> other = prompt;
  other[5] = 7;
  kv_.FindCachedPrefix(other, salt_, other.size() - 1, &hit);
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
  kv_.FindCachedPrefix(prompt, salt_, prompt.size() - 1, &hit);
  EXPECT_EQ(hit.num_tokens, 4);  // not 8: the last token must run
  kv_.Free(&a);
}

TEST_F(KvCacheManagerTest, DifferentSaltsNeverShare) {
  const std::vector<TokenId> prompt = Iota(12);
  BlockTable a = Compute(prompt, KvCacheManager::SaltHash("tenant-a"));
  PrefixHit hit;
  kv_.FindCachedPrefix(prompt, KvCacheManager::SaltHash("tenant-b"), 11, &hit);
  EXPECT_EQ(hit.num_tokens, 0);
  kv_.FindCachedPrefix(prompt, salt_, 11, &hit);
  EXPECT_EQ(hit.num_tokens, 0);
  kv_.FindCachedPrefix(prompt, KvCacheManager::SaltHash("tenant-a"), 11, &hit);
  EXPECT_EQ(hit.num_tokens, 8);
  kv_.Free(&a);
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
  kv_.FindCachedPrefix(Iota(8, 100), salt_, 8, &hit);
  EXPECT_EQ(hit.num_tokens, 4);
  kv_.FindCachedPrefix(Iota(8, 200), salt_, 8, &hit);
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
  kv.FindCachedPrefix(prompt, 0, 8, &hit);
  EXPECT_EQ(hit.num_tokens, 0);
  kv.Free(&a);
}

}  // namespace
}  // namespace openelm
