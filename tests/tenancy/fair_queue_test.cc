#include "engine/tenancy/fair_queue.h"

#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace openelm {
namespace {

using ::testing::ElementsAre;

std::vector<RequestId> DrainIds(FairQueue& q) {
  std::vector<RequestId> ids;
  while (auto e = q.PopNext()) ids.push_back(e->id);
  return ids;
}

TEST(FairQueueTest, EmptyQueueHasNothingToAdmit) {
  FairQueue q;
  EXPECT_EQ(q.PeekNext(), nullptr);
  EXPECT_FALSE(q.PopNext().has_value());
  EXPECT_FALSE(q.Remove(7));
  EXPECT_EQ(q.size(), 0u);
}

TEST(FairQueueTest, FcfsWithinTenant) {
  FairQueue q;
  q.Enqueue(/*id=*/3, "a", 0, /*arrival_seq=*/30);
  q.Enqueue(1, "a", 0, 10);
  q.Enqueue(2, "a", 0, 20);
  EXPECT_THAT(DrainIds(q), ElementsAre(1, 2, 3));
}

TEST(FairQueueTest, PriorityThenFcfsWithinTenant) {
  FairQueue q;
  q.Enqueue(1, "a", /*priority=*/0, 1);
  q.Enqueue(2, "a", 5, 2);
  q.Enqueue(3, "a", 5, 3);
  q.Enqueue(4, "a", -1, 0);
  EXPECT_THAT(DrainIds(q), ElementsAre(2, 3, 1, 4));
}

TEST(FairQueueTest, PriorityIgnoredWhenDisabled) {
  FairQueue q(FairQueueOptions{.use_priority = false});
  q.Enqueue(1, "a", 0, 1);
  q.Enqueue(2, "a", 5, 2);
  q.Enqueue(3, "a", 9, 0);
  EXPECT_THAT(DrainIds(q), ElementsAre(3, 1, 2));
}

TEST(FairQueueTest, DuplicateEnqueueIsRefused) {
  FairQueue q;
  EXPECT_TRUE(q.Enqueue(1, "a", 0, 1));
  EXPECT_FALSE(q.Enqueue(1, "b", 0, 2));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.num_queued("b"), 0u);
}

TEST(FairQueueTest, RemoveCancelsQueuedRequest) {
  FairQueue q;
  q.Enqueue(1, "a", 0, 1);
  q.Enqueue(2, "a", 0, 2);
  q.Enqueue(3, "b", 0, 3);
  EXPECT_TRUE(q.Remove(1));
  EXPECT_FALSE(q.Remove(1));
  EXPECT_TRUE(q.Remove(3));
  EXPECT_EQ(q.num_backlogged_tenants(), 1u);
  EXPECT_FALSE(q.Contains(3));
  EXPECT_THAT(DrainIds(q), ElementsAre(2));
  EXPECT_EQ(q.num_backlogged_tenants(), 0u);
}

TEST(FairQueueTest, PreemptedRequestGetsItsPlaceBack) {
  FairQueue q;
  q.Enqueue(1, "a", 0, 1);
  q.Enqueue(2, "a", 0, 2);
  ASSERT_EQ(q.PopNext()->id, 1u);
  q.Enqueue(1, "a", 0, 1);  // preempted: same arrival_seq
  EXPECT_THAT(DrainIds(q), ElementsAre(1, 2));
}

TEST(FairQueueTest, SmallestCounterGoesFirst) {
  FairQueue q;
  q.Enqueue(1, "a", 0, 1);
  q.Enqueue(2, "b", 0, 2);
  q.Charge("a", 10, 0);
  EXPECT_EQ(q.PeekNext()->tenant, "b");
  q.Charge("b", 0, 6);  // 12 virtual tokens
  EXPECT_EQ(q.PeekNext()->tenant, "a");
  EXPECT_DOUBLE_EQ(q.counter("a"), 10.0);
  EXPECT_DOUBLE_EQ(q.counter("b"), 12.0);
}

TEST(FairQueueTest, ChargeIsDividedByWeightAndUsesTokenCosts) {
  FairQueue q(FairQueueOptions{.prefill_token_cost = 1.0, .decode_token_cost = 3.0});
  q.SetWeights({{"heavy", 4.0}, {"bad", -1.0}});
  q.Charge("heavy", 8, 4);  // (8 + 12) / 4
  q.Charge("light", 8, 4);  // default weight 1
  q.Charge("bad", 1, 0);    // invalid weight -> default
  EXPECT_DOUBLE_EQ(q.counter("heavy"), 5.0);
  EXPECT_DOUBLE_EQ(q.counter("light"), 20.0);
  EXPECT_DOUBLE_EQ(q.counter("bad"), 1.0);
  q.Charge("light", -5, -5);  // ignored
  EXPECT_DOUBLE_EQ(q.counter("light"), 20.0);
}

TEST(FairQueueTest, ReturningTenantIsLiftedToBackloggedMinimum) {
  FairQueue q;
  q.Enqueue(1, "a", 0, 1);
  q.Enqueue(2, "c", 0, 2);
  q.Charge("a", 100, 0);
  q.Charge("c", 300, 0);
  // b was never served: counter 0, but it may not undercut a (100).
  q.Enqueue(3, "b", 0, 3);
  EXPECT_DOUBLE_EQ(q.counter("b"), 100.0);
  // A tenant that is ahead keeps its own (larger) counter.
  q.Charge("d", 500, 0);
  q.Enqueue(4, "d", 0, 4);
  EXPECT_DOUBLE_EQ(q.counter("d"), 500.0);
}

TEST(FairQueueTest, ReturningTenantIsLiftedToLastDepartureWhenAloneAgain) {
  FairQueue q;
  q.Enqueue(1, "a", 0, 1);
  ASSERT_TRUE(q.PopNext().has_value());
  q.Charge("a", 50, 0);
  q.Enqueue(2, "a", 0, 2);
  ASSERT_TRUE(q.PopNext().has_value());  // a leaves the backlog at 50
  q.Enqueue(3, "b", 0, 3);
  EXPECT_DOUBLE_EQ(q.counter("b"), 50.0);
}

// A small continuous-batching simulator: `slots` rows, each running request
// prefills `prompt` tokens in its admission step and then decodes one token
// per step. The queue is charged exactly as the scheduler would charge it.
class BatchSimulator {
 public:
  BatchSimulator(FairQueue* q, int slots, int prompt, int output)
      : q_(q), slots_(slots), prompt_(prompt), output_(output) {}

  void Submit(const std::string& tenant) {
    const RequestId id = next_id_++;
    q_->Enqueue(id, tenant, 0, id);
  }

  // One engine step. Counts generated tokens per tenant when `measure`.
  void Step(bool measure) {
    while (static_cast<int>(running_.size()) < slots_) {
      std::optional<FairQueueEntry> e = q_->PopNext();
      if (!e) break;
      q_->Charge(e->tenant, prompt_, 0);  // prefill chunk scheduled now
      running_.push_back(Running{e->tenant, 0});
    }
    for (Running& r : running_) {
      q_->Charge(r.tenant, 0, 1);
      ++r.generated;
      if (measure) ++generated_[r.tenant];
    }
    std::erase_if(running_, [&](const Running& r) { return r.generated >= output_; });
  }

  double Share(const std::string& tenant) const {
    int64_t total = 0;
    for (const auto& [t, n] : generated_) total += n;
    auto it = generated_.find(tenant);
    return total == 0 || it == generated_.end()
               ? 0.0
               : static_cast<double>(it->second) / static_cast<double>(total);
  }
  size_t queued(const std::string& tenant) const { return q_->num_queued(tenant); }

 private:
  struct Running {
    std::string tenant;
    int generated;
  };
  FairQueue* q_;
  const int slots_, prompt_, output_;
  RequestId next_id_ = 1;
  std::vector<Running> running_;
  std::map<std::string, int64_t> generated_;
};

// Both tenants keep requests queued; "flood" submits 10x as many as "light".
void RunFlood(BatchSimulator& sim, int steps, bool measure) {
  for (int step = 0; step < steps; ++step) {
    if (step % 2 == 0) sim.Submit("light");
    for (int i = 0; i < 5; ++i) sim.Submit("flood");
    sim.Step(measure);
  }
}

TEST(FairQueueTest, EqualWeightsShareTokensDespiteTenfoldFlood) {
  FairQueue q;
  BatchSimulator sim(&q, /*slots=*/8, /*prompt=*/32, /*output=*/24);
  RunFlood(sim, 200, /*measure=*/false);  // warm-up
  RunFlood(sim, 1000, /*measure=*/true);
  ASSERT_GT(sim.queued("light"), 0u) << "light must stay backlogged";
  ASSERT_GT(sim.queued("flood"), 0u);
  std::printf("generated-token share: light %.3f flood %.3f\n", sim.Share("light"),
              sim.Share("flood"));
  EXPECT_GE(sim.Share("light"), 0.45);
  EXPECT_GE(sim.Share("flood"), 0.45);
}

TEST(FairQueueTest, WeightsThreeToOneGiveSeventyFiveTwentyFive) {
  FairQueue q;
  q.SetWeights({{"gold", 3.0}, {"bronze", 1.0}});
  BatchSimulator sim(&q, 8, 32, 24);
  for (int step = 0; step < 1200; ++step) {
    for (int i = 0; i < 3; ++i) sim.Submit("gold");
    for (int i = 0; i < 3; ++i) sim.Submit("bronze");
    sim.Step(/*measure=*/step >= 200);
  }
  ASSERT_GT(sim.queued("gold"), 0u);
  ASSERT_GT(sim.queued("bronze"), 0u);
  std::printf("generated-token share: gold %.3f bronze %.3f\n", sim.Share("gold"),
              sim.Share("bronze"));
  EXPECT_NEAR(sim.Share("gold"), 0.75, 0.05);
  EXPECT_NEAR(sim.Share("bronze"), 0.25, 0.05);
}

TEST(FairQueueTest, IdleTenantReturningGetsNoBurst) {
  FairQueue q;
  BatchSimulator sim(&q, 8, 32, 24);
  // "busy" runs alone for a long time and accumulates a large counter.
  for (int step = 0; step < 500; ++step) {
    sim.Submit("busy");
    sim.Step(false);
  }
  const double busy_counter = q.counter("busy");
  ASSERT_GT(busy_counter, 1000.0);
  EXPECT_DOUBLE_EQ(q.counter("idle"), 0.0);
  // "idle" comes back with a backlog of its own; its counter starts at the
  // backlogged minimum, not at 0, so it cannot monopolise the server.
  sim.Submit("idle");
  EXPECT_GE(q.counter("idle"), busy_counter - 1e-9);
  for (int i = 0; i < 200; ++i) sim.Submit("idle");
  for (int step = 0; step < 300; ++step) {
    sim.Submit("busy");
    sim.Step(true);
  }
  // Without the lift, "idle" would take every slot for the whole window
  // (its counter is ~busy_counter behind). With it, it gets about half.
  std::printf("returning tenant share: %.3f\n", sim.Share("idle"));
  EXPECT_LE(sim.Share("idle"), 0.55);
  EXPECT_GE(sim.Share("idle"), 0.45);
}

}  // namespace
}  // namespace openelm
