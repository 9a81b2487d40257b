// Randomised soak: hundreds of requests with random lengths, parameters,
// cancellations and deadlines against a small KV pool.

#include <map>
#include <random>
#include <vector>

#include "absl/time/clock.h"
#include "engine/llm_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_harness.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

struct Planned {
  RequestId id = 0;
  GenerateSpec spec;
  int submit_step = 0;
  int cancel_step = -1;  // -1: never cancelled
  bool check_greedy = false;
};

void RunSoak(uint32_t seed, bool prefix_caching, int num_requests) {
  std::mt19937 rng(seed);
  auto uniform = [&rng](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  EngineOptions options;
  options.num_blocks = 48;
  options.block_size_tokens = 4;
  options.max_num_batched_tokens = 32;
  options.max_num_seqs = 8;
  // Fewer logits rows than tokens per step: prompt-logprobs chunks are cut.
  options.max_logits_rows = 12;
  options.max_queued_requests = 100000;
  options.enable_prefix_caching = prefix_caching;
  FakeDecoderOptions fake_options;
  fake_options.eos_period = 16;
  EngineHarness h(options, fake_options);

  std::vector<std::vector<TokenId>> bases;
  for (int b = 0; b < 4; ++b) bases.push_back(Prompt(24, 50 + b));

  std::vector<Planned> plan;
  int step_at = 0;
  for (int i = 0; i < num_requests; ++i) {
    Planned p;
    p.id = 1000 + i;
    step_at += uniform(0, 2);
    p.submit_step = step_at;
    std::vector<TokenId> prompt(bases[uniform(0, 3)]);
    prompt.resize(uniform(1, 24));
    for (int t = uniform(0, 12); t > 0; --t) prompt.push_back(uniform(3, 127));
    GenerateSpec& spec = p.spec;
    spec.prompt = prompt;
    spec.params.max_tokens = uniform(1, 24);
    spec.params.n = uniform(0, 5) == 0 ? uniform(2, 3) : 1;
    spec.cache_salt = uniform(0, 4) == 0 ? "other" : "";
    const int kind = uniform(0, 9);
    if (kind < 4) {
      spec.params.temperature = 0.0f;
    } else {
      spec.params.temperature = 0.7f;
      if (uniform(0, 1)) spec.params.seed = uniform(0, 1 << 20);
      if (uniform(0, 1)) spec.params.top_k = uniform(1, 20);
      if (uniform(0, 1)) spec.params.top_p = 0.9f;
      if (uniform(0, 2) == 0) spec.params.repetition_penalty = 1.2f;
      if (uniform(0, 2) == 0) spec.params.frequency_penalty = 0.5f;
    }
    if (uniform(0, 4) == 0) spec.params.logprobs = uniform(0, 3);
    if (uniform(0, 9) == 0) spec.params.prompt_logprobs = 1;
    if (uniform(0, 6) == 0) spec.params.ignore_eos = true;
    const int fate = uniform(0, 19);
    if (fate < 2) {
      p.cancel_step = p.submit_step + uniform(0, 15);
    } else if (fate == 2) {
      spec.deadline = absl::Now() - absl::Seconds(1);
    } else if (fate == 3) {
      spec.deadline = absl::Now() + absl::Milliseconds(uniform(0, 20));
    } else {
      p.check_greedy = spec.params.temperature == 0.0f;
    }
    plan.push_back(std::move(p));
  }

  std::multimap<int, RequestId> cancels;
  size_t next = 0;
  int steps = 0;
  constexpr int kMaxSteps = 50000;
  while (steps < kMaxSteps) {
    while (next < plan.size() && plan[next].submit_step <= steps) {
      ASSERT_OK(h.Submit(plan[next].id, plan[next].spec));
      if (plan[next].cancel_step >= 0) {
        cancels.emplace(plan[next].cancel_step, plan[next].id);
      }
      ++next;
    }
    for (auto it = cancels.begin(); it != cancels.end() && it->first <= steps;) {
      h.engine().Cancel(it->second);
      it = cancels.erase(it);
    }
    if (next == plan.size() && cancels.empty() && h.AllFinished()) break;
    ASSERT_OK(h.engine().StepForTesting());
    ++steps;
    const EngineLoad load = h.engine().load();
    ASSERT_GE(load.num_free_blocks, 0);
    ASSERT_LE(load.num_free_blocks, load.num_blocks);
    ASSERT_LE(load.num_running, options.max_num_seqs);
  }
  ASSERT_LT(steps, kMaxSteps) << "no progress: deadlock or livelock";

  int preemptions = 0;
  for (const Planned& p : plan) {
    RecordingSink& sink = h.sink(p.id);
    ASSERT_TRUE(sink.finished()) << p.id;
    EXPECT_EQ(sink.num_finish_calls(), 1) << p.id;
    EXPECT_EQ(sink.contract_violations(), 0) << p.id;
    const FinishInfo info = sink.info();
    ASSERT_EQ(info.completions.size(), static_cast<size_t>(p.spec.params.n));
    preemptions += info.num_preemptions;
    int total = 0;
    for (const CompletionFinish& c : info.completions) {
      EXPECT_LE(c.num_output_tokens, p.spec.params.max_tokens);
      total += c.num_output_tokens;
      const std::vector<TokenId> got = sink.tokens(c.index);
      EXPECT_LE(got.size(), static_cast<size_t>(c.num_output_tokens));
    }
    EXPECT_EQ(total, info.num_output_tokens);
    if (p.spec.deadline < absl::Now() - absl::Milliseconds(500)) {
      EXPECT_EQ(info.num_output_tokens, 0) << "an expired request ran";
    }
    if (p.check_greedy) {
      EXPECT_OK(info.status);
      std::vector<TokenId> want = h.fake().ReferenceGreedy(
          p.spec.prompt, p.spec.params.max_tokens, !p.spec.params.ignore_eos);
      if (!p.spec.params.ignore_eos && !want.empty() && want.back() == kEosTokenId) {
        want.pop_back();
      }
      for (int i = 0; i < p.spec.params.n; ++i) {
        EXPECT_EQ(sink.tokens(i), want) << "request " << p.id << " completion " << i;
      }
      if (p.spec.params.prompt_logprobs >= 0) {
        EXPECT_EQ(info.prompt_logprobs.size(), p.spec.prompt.size());
      }
    }
  }
  EXPECT_EQ(h.observer().num_finished(), num_requests);
  // The pool is small enough that preemption must have happened.
  EXPECT_GT(preemptions, 0);
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(EngineRandomTest, EveryRequestEndsExactlyOnceWithPrefixCaching) {
  RunSoak(/*seed=*/20261129, /*prefix_caching=*/true, /*num_requests=*/300);
}

TEST(EngineRandomTest, EveryRequestEndsExactlyOnceWithoutPrefixCaching) {
  RunSoak(/*seed=*/7, /*prefix_caching=*/false, /*num_requests=*/200);
}

}  // namespace
}  // namespace openelm::testing
