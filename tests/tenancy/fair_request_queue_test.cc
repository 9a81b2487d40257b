#include "engine/tenancy/fair_request_queue.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace openelm {
namespace {

using ::testing::ElementsAre;

class FairRequestQueueTest : public ::testing::Test {
 protected:
  Request* Make(RequestId id, const std::string& tenant, uint64_t seq,
                int32_t priority = 0) {
    auto r = std::make_unique<Request>();
    r->id = id;
    r->spec.tenant = tenant;
    r->spec.priority = priority;
    r->arrival_seq = seq;
    requests_.push_back(std::move(r));
    return requests_.back().get();
  }
  std::vector<RequestId> Drain() {
    std::vector<RequestId> ids;
    while (!queue_.empty()) {
      Request* r = queue_.Front();
      ids.push_back(r->id);
      queue_.PopFront();
      queue_.Charge(*r, /*prefill_tokens=*/10, /*decode_tokens=*/0);
    }
    return ids;
  }

  FairRequestQueue queue_;
  std::vector<std::unique_ptr<Request>> requests_;
};

TEST_F(FairRequestQueueTest, AlternatesBetweenTenantsWhenCharged) {
  RequestQueue& q = queue_;  // used through the scheduler's interface
  for (int i = 0; i < 4; ++i) q.Add(Make(i, "flood", i));
  q.Add(Make(10, "light", 10));
  q.Add(Make(11, "light", 11));
  EXPECT_EQ(q.size(), 6u);
  // Equal counters: light joined the backlog last and goes first; then
  // whichever was charged less.
  EXPECT_THAT(Drain(), ElementsAre(10, 0, 11, 1, 2, 3));
}

TEST_F(FairRequestQueueTest, RemoveAndForEachByArrival) {
  Request* a = Make(1, "x", 5);
  Request* b = Make(2, "y", 3);
  Request* c = Make(3, "x", 4);
  queue_.Add(a);
  queue_.Add(b);
  queue_.Add(c);
  std::vector<RequestId> seen;
  queue_.ForEach([&](Request* r) { seen.push_back(r->id); });
  EXPECT_THAT(seen, ElementsAre(2, 3, 1));
  EXPECT_TRUE(queue_.Remove(c));
  EXPECT_FALSE(queue_.Remove(c));
  EXPECT_EQ(queue_.size(), 2u);
  EXPECT_THAT(Drain(), ElementsAre(2, 1));  // y joined the backlog last
}

TEST_F(FairRequestQueueTest, WeightsFromConfigApply) {
  queue_.SetWeights({{"gold", 3.0}});
  queue_.Charge(*Make(1, "gold", 1), 30, 0);
  queue_.Charge(*Make(2, "bronze", 2), 30, 0);
  EXPECT_DOUBLE_EQ(queue_.policy().counter("gold"), 10.0);
  EXPECT_DOUBLE_EQ(queue_.policy().counter("bronze"), 30.0);
}

}  // namespace
}  // namespace openelm
