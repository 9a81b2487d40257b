// The scheduler's steady state allocates nothing: once requests are admitted,
// Schedule(), the step's sampling (StepSampler) and Update() of decode steps (block
// boundaries crossed, tenants backlogged behind a full batch, the fair queue's share
// bookkeeping run every step) make no heap allocation. Admission, preemption and
// finishing are per-request events and may allocate.
//
// Its own executable because it replaces the global operator new
// (tests/testing/alloc_counter.h).

#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "engine/kv_cache/kv_cache_manager.h"
#include "engine/scheduler/request.h"
#include "engine/scheduler/scheduler.h"
#include "engine/step_sampler.h"
#include "engine/tenancy/fair_request_queue.h"
#include "gtest/gtest.h"
#include "tests/testing/alloc_counter.h"

namespace openelm {
namespace {

constexpr int32_t kVocab = 64;

using ::openelm::testing::CountAllocations;

class SchedulerAllocTest : public ::testing::Test {
 protected:
  // `max_seqs` seats; blocks of 4 tokens, so a decode crosses a block
  // boundary every 4 steps.
  void Init(int32_t max_seqs, std::unique_ptr<RequestQueue> queue) {
    kv_ = std::make_unique<KvCacheManager>(/*num_blocks=*/512, /*block_size_tokens=*/4,
                                           /*enable_prefix_caching=*/true);
    SchedulerConfig config;
    config.max_num_seqs = max_seqs;
    config.max_num_batched_tokens = 256;
    config.max_context_length = 1024;
    scheduler_ = std::make_unique<Scheduler>(config, kv_.get(), std::move(queue));
    logits_.assign(static_cast<size_t>(max_seqs) * kVocab, 0.0f);
  }

  void Add(RequestId id, const std::string& tenant, int32_t max_tokens) {
    auto r = std::make_unique<Request>();
    r->id = id;
    for (int32_t i = 0; i < 7; ++i) r->spec.prompt.push_back(1 + (id * 7 + i) % 60);
    r->spec.params.temperature = 0;
    r->spec.params.max_tokens = max_tokens;
    r->spec.params.ignore_eos = true;
    r->spec.tenant = tenant;
    r->spec.cache_salt = tenant;
    scheduler_->AddRequest(std::move(r), /*seed=*/id, absl::Now());
  }

  // One engine step; returns the step's rows. Logits make token (step % 50)
  // the greedy choice, so outputs are not all the same token.
  int32_t Step(int64_t* schedule_allocs, int64_t* update_allocs) {
    const absl::Time now = absl::Now();
    const ScheduledStep* step = nullptr;
    *schedule_allocs +=
        CountAllocations([&] { step = &scheduler_->Schedule(now); }).total;
    const int32_t rows = static_cast<int32_t>(step->rows.size());
    if (rows == 0) return 0;
    std::fill(logits_.begin(), logits_.end(), 0.0f);
    for (int32_t i = 0; i < rows; ++i) logits_[i * kVocab + 2 + step_ % 50] = 5.0f;
    ++step_;
    const LogitsView view{logits_.data(), rows, kVocab};
    *update_allocs += CountAllocations([&] {
                        scheduler_->Update(sampler_.Sample(*step, view), now);
                      }).total;
    scheduler_->ClearEvents();
    return rows;
  }

  std::unique_ptr<KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  StepSampler sampler_{kVocab, kEosTokenId};
  std::vector<float> logits_;
  int32_t step_ = 0;
};

TEST_F(SchedulerAllocTest, FcfsDecodeStepsAllocateNothing) {
  Init(/*max_seqs=*/4, std::make_unique<FcfsQueue>());
  for (RequestId id = 1; id <= 6; ++id) Add(id, "", /*max_tokens=*/200);
  int64_t schedule = 0, update = 0;
  for (int i = 0; i < 5; ++i) Step(&schedule, &update);  // admission, prefill
  ASSERT_EQ(scheduler_->num_running(), 4);
  ASSERT_EQ(scheduler_->num_waiting(), 2);
  schedule = update = 0;
  for (int i = 0; i < 60; ++i) ASSERT_EQ(Step(&schedule, &update), 4);
  EXPECT_EQ(schedule, 0) << "Schedule() allocated in decode steps";
  EXPECT_EQ(update, 0) << "sampling or Update() allocated in decode steps";
}

// Three tenants with names longer than the small-string buffer, all at
// their seat shares, each with requests waiting: the fair queue recomputes
// the shares every step and looks for a victim, and must not allocate.
TEST_F(SchedulerAllocTest, FairQueueDecodeStepsWithBackloggedTenantsAllocateNothing) {
  Init(/*max_seqs=*/6, std::make_unique<FairRequestQueue>());
  const std::vector<std::string> tenants = {"tenant-with-a-long-name-alpha",
                                            "tenant-with-a-long-name-bravo",
                                            "tenant-with-a-long-name-charlie"};
  RequestId id = 1;
  for (int round = 0; round < 3; ++round) {
    for (const std::string& t : tenants) Add(id++, t, /*max_tokens=*/200);
  }
  int64_t schedule = 0, update = 0;
  for (int i = 0; i < 5; ++i) Step(&schedule, &update);
  ASSERT_EQ(scheduler_->num_running(), 6);
  ASSERT_EQ(scheduler_->num_waiting(), 3);
  const int64_t preemptions = scheduler_->num_preemptions_total();
  schedule = update = 0;
  for (int i = 0; i < 60; ++i) ASSERT_EQ(Step(&schedule, &update), 6);
  EXPECT_EQ(scheduler_->num_preemptions_total(), preemptions);  // all at their share
  EXPECT_EQ(schedule, 0) << "Schedule() allocated in decode steps";
  EXPECT_EQ(update, 0) << "sampling or Update() allocated in decode steps";
}

}  // namespace
}  // namespace openelm
