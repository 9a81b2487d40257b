// BlockPool: allocation, ref counts, the cached free blocks' LRU eviction.

#include "engine/kv_cache/block_pool.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace openelm {
namespace {

using ::testing::ElementsAre;

void ExpectInvariants(const BlockPool& pool) {
  std::string error;
  EXPECT_TRUE(pool.CheckInvariants(&error)) << error;
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

}  // namespace
}  // namespace openelm
