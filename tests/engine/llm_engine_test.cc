// Continuous batching through LlmEngine + Scheduler with the FakeDecoder.

#include "engine/llm_engine.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_harness.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

EngineOptions Options(int32_t num_blocks = 64, int32_t block_size = 4,
                      int32_t budget = 64, int32_t max_seqs = 8) {
  EngineOptions o;
  o.num_blocks = num_blocks;
  o.block_size_tokens = block_size;
  o.max_num_batched_tokens = budget;
  o.max_num_seqs = max_seqs;
  return o;
}

TEST(LlmEngineTest, GreedyOutputMatchesTheReference) {
  EngineHarness h(Options());
  const auto prompt = Prompt(10);
  ASSERT_OK(h.Submit(1, Spec(prompt, 20)));
  ASSERT_TRUE(h.RunUntilDone());
  EXPECT_EQ(h.sink(1).tokens(), h.fake().ReferenceGreedy(prompt, 20, false));
  const FinishInfo info = h.sink(1).info();
  EXPECT_OK(info.status);
  ASSERT_THAT(info.completions, SizeIs(1));
  EXPECT_EQ(info.completions[0].reason, FinishReason::kLength);
  EXPECT_EQ(info.num_prompt_tokens, 10);
  EXPECT_EQ(info.num_output_tokens, 20);
  EXPECT_EQ(h.observer().num_finished(), 1);
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, RunningRequestsAreScheduledBeforeWaitingOnes) {
  EngineHarness h(Options(64, 4, /*budget=*/9));
  ASSERT_OK(h.Submit(1, Spec(Prompt(4), 5)));
  h.Step();  // request 1: whole prompt, first token
  ASSERT_OK(h.Submit(2, Spec(Prompt(12, 1), 5)));
  h.Step();
  const auto& steps = h.fake().steps();
  ASSERT_THAT(steps, SizeIs(2));
  ASSERT_THAT(steps[1], SizeIs(2));
  EXPECT_EQ(steps[1][0].request_id, 1u);  // decode row first
  EXPECT_EQ(steps[1][0].num_tokens, 1);
  EXPECT_EQ(steps[1][1].request_id, 2u);
  // 8 budget tokens left; a non-final chunk ends on a block boundary.
  EXPECT_EQ(steps[1][1].num_tokens, 8);
  EXPECT_EQ(steps[1][1].logits, BatchRow::Logits::kNone);
  ASSERT_TRUE(h.RunUntilDone());
  EXPECT_EQ(h.sink(2).tokens(), h.fake().ReferenceGreedy(Prompt(12, 1), 5, false));
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, LongPromptsAreChunkedAndStillCorrect) {
  EngineHarness h(Options(64, 4, /*budget=*/16));
  const auto prompt = Prompt(50);
  ASSERT_OK(h.Submit(1, Spec(prompt, 3)));
  ASSERT_TRUE(h.RunUntilDone());
  std::vector<int32_t> chunks;
  for (const auto& step : h.fake().steps()) chunks.push_back(step[0].num_tokens);
  EXPECT_THAT(chunks, ElementsAre(16, 16, 16, 2, 1, 1));
  EXPECT_EQ(h.sink(1).tokens(), h.fake().ReferenceGreedy(prompt, 3, false));
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, TokenBudgetAndMaxNumSeqsHoldEveryStep) {
  EngineHarness h(Options(256, 4, /*budget=*/20, /*max_seqs=*/3));
  for (RequestId id = 1; id <= 10; ++id) {
    ASSERT_OK(h.Submit(id, Spec(Prompt(5 + 3 * id, id), 4 + id % 3)));
  }
  ASSERT_TRUE(h.RunUntilDone());
  for (const auto& step : h.fake().steps()) {
    int tokens = 0;
    for (const auto& row : step) tokens += row.num_tokens;
    EXPECT_LE(tokens, 20);
    EXPECT_LE(step.size(), 3u);
    // Decode rows (past the prompt) come before prefill rows.
    bool seen_prefill = false;
    for (const auto& row : step) {
      const int prompt_len = 5 + 3 * static_cast<int>(row.request_id);
      const bool decode = row.start_position >= prompt_len;
      if (!decode) seen_prefill = true;
      EXPECT_FALSE(decode && seen_prefill) << "decode row after a prefill row";
    }
  }
  for (const StepStats& stats : h.observer().steps()) {
    EXPECT_LE(stats.num_running, 3);
    EXPECT_LE(stats.num_prefill_tokens + stats.num_decode_tokens, 20);
  }
  for (RequestId id = 1; id <= 10; ++id) {
    EXPECT_EQ(h.sink(id).tokens(),
              h.fake().ReferenceGreedy(Prompt(5 + 3 * id, id), 4 + id % 3, false));
  }
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

// Runs the same requests in a big pool and in a tiny one; the tiny one
// preempts, and every output must be identical.
TEST(LlmEngineTest, PreemptionAndResumeGiveIdenticalOutput) {
  auto run = [](int32_t num_blocks, int* preemptions) {
    EngineHarness h(Options(num_blocks, 4, /*budget=*/32, /*max_seqs=*/8));
    for (RequestId id = 1; id <= 6; ++id) {
      GenerateSpec spec = Spec(Prompt(6 + id, id), 24, id % 2 ? 0.0f : 0.9f);
      spec.params.seed = 1000 + id;
      if (id == 3) spec.params.n = 2;
      EXPECT_OK(h.Submit(id, std::move(spec)));
    }
    EXPECT_TRUE(h.RunUntilDone());
    std::vector<std::vector<TokenId>> out;
    *preemptions = 0;
    for (RequestId id = 1; id <= 6; ++id) {
      out.push_back(h.sink(id).tokens(0));
      if (id == 3) out.push_back(h.sink(id).tokens(1));
      *preemptions += h.sink(id).info().num_preemptions;
      EXPECT_EQ(h.sink(id).info().completions[0].reason, FinishReason::kLength);
    }
    h.ExpectNoViolations();
    h.ExpectPoolFull();
    return out;
  };
  int big_preemptions = 0, small_preemptions = 0;
  const auto big = run(256, &big_preemptions);
  const auto small = run(20, &small_preemptions);
  EXPECT_EQ(big_preemptions, 0);
  EXPECT_GT(small_preemptions, 0);
  EXPECT_EQ(big, small);
}

GenerateSpec TenantSpec(const char* tenant, std::vector<TokenId> prompt,
                        int32_t max_tokens) {
  GenerateSpec spec = Spec(std::move(prompt), max_tokens);
  spec.tenant = tenant;
  return spec;
}

bool StepHasRequest(const std::vector<FakeDecoder::RecordedRow>& step, RequestId id) {
  return std::any_of(step.begin(), step.end(),
                     [id](const auto& row) { return row.request_id == id; });
}

// A light tenant's request arriving while a heavy tenant holds every seat
// starts in the very next step: the heavy tenant's newest request yields its
// seat (and is recomputed later with identical output).
TEST(LlmEngineTest, FairnessPreemptionSeatsALightTenantAtOnce) {
  EngineHarness h(Options(256, 4, /*budget=*/64, /*max_seqs=*/2));
  for (RequestId id = 1; id <= 4; ++id) {
    ASSERT_OK(h.Submit(id, TenantSpec("heavy", Prompt(6, id), 30)));
  }
  h.Step(3);
  ASSERT_EQ(h.engine().load().num_running, 2);
  ASSERT_OK(h.Submit(10, TenantSpec("light", Prompt(5, 10), 5)));
  h.Step();
  const auto& last = h.fake().steps().back();
  ASSERT_TRUE(StepHasRequest(last, 10)) << "the light request waited";
  EXPECT_EQ(last.size(), 2u);  // one heavy decode row + the light prefill
  EXPECT_EQ(h.observer().steps().back().num_preemptions, 1);
  ASSERT_TRUE(h.RunUntilDone());
  int heavy_preemptions = 0;
  for (RequestId id = 1; id <= 4; ++id) {
    heavy_preemptions += h.sink(id).info().num_preemptions;
    EXPECT_EQ(h.sink(id).tokens(), h.fake().ReferenceGreedy(Prompt(6, id), 30, false));
  }
  EXPECT_EQ(heavy_preemptions, 1);
  EXPECT_EQ(h.sink(10).info().num_preemptions, 0);
  EXPECT_EQ(h.sink(10).tokens(), h.fake().ReferenceGreedy(Prompt(5, 10), 5, false));
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

// Seats are only taken up to the weighted share: requests of the tenant that
// already holds every seat never preempt each other, and a tenant at its
// share waits instead of preempting one that is also at its share.
TEST(LlmEngineTest, FairnessPreemptionStopsAtTheShare) {
  EngineHarness h(Options(256, 4, /*budget=*/64, /*max_seqs=*/2));
  ASSERT_OK(h.Submit(1, TenantSpec("a", Prompt(6, 1), 40)));
  ASSERT_OK(h.Submit(2, TenantSpec("a", Prompt(6, 2), 40)));
  h.Step(2);
  ASSERT_OK(h.Submit(3, TenantSpec("a", Prompt(6, 3), 40)));
  h.Step();
  EXPECT_FALSE(StepHasRequest(h.fake().steps().back(), 3));  // same tenant: waits
  ASSERT_OK(h.Submit(4, TenantSpec("b", Prompt(6, 4), 40)));
  h.Step();
  EXPECT_TRUE(StepHasRequest(h.fake().steps().back(), 4));  // b below its share
  ASSERT_OK(h.Submit(5, TenantSpec("b", Prompt(6, 5), 40)));
  h.Step(5);
  for (const auto& step :
       std::vector(h.fake().steps().end() - 5, h.fake().steps().end())) {
    EXPECT_FALSE(StepHasRequest(step, 5));  // b at its share (1 of 2): waits
  }
  ASSERT_TRUE(h.RunUntilDone());
  int preemptions = 0;
  for (RequestId id = 1; id <= 5; ++id) {
    preemptions += h.sink(id).info().num_preemptions;
    EXPECT_EQ(h.sink(id).tokens(), h.fake().ReferenceGreedy(Prompt(6, id), 40, false));
  }
  EXPECT_EQ(preemptions, 1);
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

// The same holds when KV blocks, not seats, are what the light request lacks.
TEST(LlmEngineTest, FairnessPreemptionAlsoFreesKvBlocks) {
  // 12 blocks of 4 tokens: two heavy requests of 6 + 18 tokens fill them.
  EngineHarness h(Options(12, 4, /*budget=*/64, /*max_seqs=*/8));
  ASSERT_OK(h.Submit(1, TenantSpec("heavy", Prompt(6, 1), 18)));
  ASSERT_OK(h.Submit(2, TenantSpec("heavy", Prompt(6, 2), 18)));
  h.Step(12);
  ASSERT_EQ(h.engine().load().num_running, 2);
  ASSERT_LE(h.engine().load().num_free_blocks, 2);
  ASSERT_OK(h.Submit(10, TenantSpec("light", Prompt(11, 10), 3)));
  h.Step();
  EXPECT_TRUE(StepHasRequest(h.fake().steps().back(), 10));
  ASSERT_TRUE(h.RunUntilDone());
  EXPECT_EQ(h.sink(1).info().num_preemptions + h.sink(2).info().num_preemptions, 1);
  for (RequestId id = 1; id <= 2; ++id) {
    EXPECT_EQ(h.sink(id).tokens(), h.fake().ReferenceGreedy(Prompt(6, id), 18, false));
  }
  EXPECT_EQ(h.sink(10).tokens(), h.fake().ReferenceGreedy(Prompt(11, 10), 3, false));
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, CancellationFinishesAndFreesBlocksWithinOneStep) {
  EngineHarness h(Options());
  ASSERT_OK(h.Submit(1, Spec(Prompt(20), 100)));
  ASSERT_OK(h.Submit(2, Spec(Prompt(8, 2), 100)));
  h.Step(3);
  EXPECT_LT(h.engine().load().num_free_blocks, 64);
  h.engine().Cancel(1);
  h.engine().Cancel(2);
  h.Step();
  ASSERT_TRUE(h.sink(1).finished());
  ASSERT_TRUE(h.sink(2).finished());
  EXPECT_THAT(h.sink(1).info().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(h.sink(1).info().completions[0].reason, FinishReason::kCancelled);
  EXPECT_GT(h.sink(1).tokens().size(), 0u);
  h.engine().Cancel(1);   // finished: no-op
  h.engine().Cancel(77);  // unknown: no-op
  h.Step();
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, QueuedRequestPastItsDeadlineNeverRuns) {
  EngineHarness h(Options());
  GenerateSpec spec = Spec(Prompt(8), 10);
  spec.deadline = absl::Now() - absl::Seconds(1);
  ASSERT_OK(h.Submit(1, std::move(spec)));
  h.Step();
  ASSERT_TRUE(h.sink(1).finished());
  EXPECT_TRUE(h.fake().steps().empty());
  EXPECT_THAT(h.sink(1).deltas(), IsEmpty());
  const FinishInfo info = h.sink(1).info();
  EXPECT_OK(info.status);
  EXPECT_EQ(info.completions[0].reason, FinishReason::kDeadline);
  EXPECT_EQ(info.num_output_tokens, 0);
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, RunningRequestPastItsDeadlineKeepsPartialOutput) {
  EngineHarness h(Options(512));
  GenerateSpec spec = Spec(Prompt(8), 1000);
  spec.deadline = absl::Now() + absl::Milliseconds(200);
  ASSERT_OK(h.Submit(1, std::move(spec)));
  h.Step(3);
  ASSERT_FALSE(h.sink(1).finished());
  absl::SleepFor(absl::Milliseconds(250));
  h.Step();
  ASSERT_TRUE(h.sink(1).finished());
  const FinishInfo info = h.sink(1).info();
  EXPECT_OK(info.status);
  EXPECT_EQ(info.completions[0].reason, FinishReason::kDeadline);
  EXPECT_EQ(info.num_output_tokens, 3);
  EXPECT_EQ(h.sink(1).tokens(), h.fake().ReferenceGreedy(Prompt(8), 3, false));
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, PrefixCacheHitGivesTheSameOutput) {
  EngineHarness h(Options());
  const auto prompt = Prompt(18);
  ASSERT_OK(h.Submit(1, Spec(prompt, 5)));
  ASSERT_TRUE(h.RunUntilDone());
  ASSERT_OK(h.Submit(2, Spec(prompt, 5)));
  GenerateSpec other_tenant = Spec(prompt, 5);
  other_tenant.cache_salt = "tenant-b";
  ASSERT_OK(h.Submit(3, std::move(other_tenant)));
  ASSERT_TRUE(h.RunUntilDone());
  EXPECT_EQ(h.sink(1).info().num_cached_tokens, 0);
  EXPECT_EQ(h.sink(2).info().num_cached_tokens, 16);  // 4 full blocks of 4
  EXPECT_EQ(h.sink(3).info().num_cached_tokens, 0);   // different salt
  EXPECT_EQ(h.sink(2).tokens(), h.sink(1).tokens());
  EXPECT_EQ(h.sink(3).tokens(), h.sink(1).tokens());
  int hits = 0;
  for (const StepStats& s : h.observer().steps()) hits += s.prefix_cache_hits;
  EXPECT_EQ(hits, 16);
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, NGreaterThanOneSharesThePromptAndCopiesOnWrite) {
  EngineHarness h(Options());
  const auto prompt = Prompt(10);  // partial last block: CoW needed
  GenerateSpec spec = Spec(prompt, 8);
  spec.params.n = 3;
  ASSERT_OK(h.Submit(1, std::move(spec)));
  ASSERT_TRUE(h.RunUntilDone());
  const auto want = h.fake().ReferenceGreedy(prompt, 8, false);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.sink(1).tokens(i), want) << i;
  // Prompt computed once.
  int prompt_tokens = 0;
  for (const auto& step : h.fake().steps()) {
    for (const auto& row : step) {
      if (row.start_position < 10) prompt_tokens += row.num_tokens;
    }
  }
  EXPECT_EQ(prompt_tokens, 10);
  EXPECT_EQ(h.fake().num_copies(), 2);  // two of three writers copy
  const FinishInfo info = h.sink(1).info();
  ASSERT_THAT(info.completions, SizeIs(3));
  EXPECT_EQ(info.num_output_tokens, 24);
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, SeededCompletionsAreDeterministicAndIndependentOfTheBatch) {
  auto run = [](bool busy) {
    EngineHarness h(Options(256, 4, 64, 16));
    if (busy) {
      for (RequestId id = 10; id < 16; ++id) {
        EXPECT_OK(h.Submit(id, Spec(Prompt(5 + id, id), 12, 1.0f)));
      }
    }
    GenerateSpec spec = Spec(Prompt(9), 16, 1.0f);
    spec.params.seed = 42;
    spec.params.n = 2;
    EXPECT_OK(h.Submit(1, std::move(spec)));
    EXPECT_TRUE(h.RunUntilDone());
    h.ExpectNoViolations();
    return std::make_pair(h.sink(1).tokens(0), h.sink(1).tokens(1));
  };
  const auto alone = run(false);
  const auto busy = run(true);
  EXPECT_EQ(alone, busy);
  EXPECT_EQ(alone, run(false));
  EXPECT_NE(alone.first, alone.second);  // streams seed + 0 and seed + 1
}

TEST(LlmEngineTest, StopTokenEosIgnoreEosAndMinTokens) {
  FakeDecoderOptions fake;
  fake.eos_period = 4;  // EOS is the favourite now and then
  EngineHarness h(Options(256), fake);
  // Find a prompt whose greedy continuation hits EOS early.
  std::vector<TokenId> prompt;
  std::vector<TokenId> ref;
  for (int salt = 0; salt < 200; ++salt) {
    prompt = Prompt(6, salt);
    ref = h.fake().ReferenceGreedy(prompt, 30, true);
    if (ref.back() == kEosTokenId && ref.size() >= 3 && ref.size() < 30 &&
        ref[0] != ref[1]) {
      break;
    }
  }
  ASSERT_EQ(ref.back(), kEosTokenId);
  ASSERT_OK(h.Submit(1, Spec(prompt, 30)));
  GenerateSpec ignore = Spec(prompt, 30);
  ignore.params.ignore_eos = true;
  ASSERT_OK(h.Submit(2, std::move(ignore)));
  GenerateSpec stop_id = Spec(prompt, 30);
  stop_id.params.stop_token_ids = {ref[1]};
  ASSERT_OK(h.Submit(3, std::move(stop_id)));
  ASSERT_TRUE(h.RunUntilDone());

  // EOS: counted, not delivered.
  std::vector<TokenId> without_eos(ref.begin(), ref.end() - 1);
  EXPECT_EQ(h.sink(1).tokens(), without_eos);
  EXPECT_EQ(h.sink(1).info().completions[0].reason, FinishReason::kEos);
  EXPECT_EQ(h.sink(1).info().num_output_tokens, static_cast<int>(ref.size()));
  // ignore_eos: runs to max_tokens with EOS as an ordinary token.
  EXPECT_EQ(h.sink(2).info().completions[0].reason, FinishReason::kLength);
  EXPECT_EQ(h.sink(2).tokens(), h.fake().ReferenceGreedy(prompt, 30, false));
  // Stop id.
  EXPECT_EQ(h.sink(3).info().completions[0].reason, FinishReason::kStopToken);
  EXPECT_EQ(h.sink(3).tokens(), std::vector<TokenId>{ref[0]});
  h.ExpectNoViolations();
  h.ExpectPoolFull();

  // min_tokens suppresses EOS and stop ids until reached.
  GenerateSpec min_tokens = Spec(prompt, 30);
  min_tokens.params.min_tokens = static_cast<int32_t>(ref.size()) + 1;
  min_tokens.params.stop_token_ids = {ref[1]};
  ASSERT_OK(h.Submit(4, std::move(min_tokens)));
  ASSERT_TRUE(h.RunUntilDone());
  const auto out = h.sink(4).tokens();
  ASSERT_GE(out.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NE(out[i], kEosTokenId);
  EXPECT_NE(out[1], ref[1]);
}

TEST(LlmEngineTest, LogprobsAndPromptLogprobsAreOfTheRawModel) {
  EngineHarness h(Options(64, 4, /*budget=*/8));
  const auto prompt = Prompt(11);
  GenerateSpec spec = Spec(prompt, 3);
  spec.params.logprobs = 2;
  spec.params.prompt_logprobs = 1;
  ASSERT_OK(h.Submit(1, std::move(spec)));
  ASSERT_TRUE(h.RunUntilDone());
  const int v = h.fake().info().vocab_size;
  auto raw_logprob = [&](std::vector<TokenId> prefix, TokenId t) {
    std::vector<float> logits(v);
    h.fake().Logits(prefix, logits.data());
    double z = 0;
    for (float x : logits) z += std::exp(x);
    return logits[t] - std::log(z);
  };
  const FinishInfo info = h.sink(1).info();
  ASSERT_THAT(info.prompt_logprobs, SizeIs(11));
  EXPECT_THAT(info.prompt_logprobs[0], IsEmpty());
  for (int i = 1; i < 11; ++i) {
    ASSERT_THAT(info.prompt_logprobs[i], SizeIs(2));
    EXPECT_EQ(info.prompt_logprobs[i][0].token, prompt[i]);
    EXPECT_NEAR(info.prompt_logprobs[i][0].logprob,
                raw_logprob({prompt.begin(), prompt.begin() + i}, prompt[i]), 1e-4);
  }
  std::vector<TokenId> seq = prompt;
  int k = 0;
  for (const OutputDelta& d : h.sink(1).deltas()) {
    ASSERT_EQ(d.logprobs.size(), d.tokens.size());
    for (size_t j = 0; j < d.tokens.size(); ++j, ++k) {
      ASSERT_THAT(d.logprobs[j], SizeIs(3));
      EXPECT_EQ(d.logprobs[j][0].token, d.tokens[j]);
      EXPECT_NEAR(d.logprobs[j][0].logprob, raw_logprob(seq, d.tokens[j]), 1e-4);
      // Greedy: the chosen token is the top alternative.
      EXPECT_EQ(d.logprobs[j][1].token, d.tokens[j]);
      seq.push_back(d.tokens[j]);
    }
  }
  EXPECT_EQ(k, 3);
  h.ExpectNoViolations();
}

// A step computes at most max_logits_rows rows of logits: a prompt-logprobs
// prompt is cut into chunks that fit beside the other rows' sampled tokens,
// and its values are those of the uncut prompt.
TEST(LlmEngineTest, PromptLogprobsChunksFitTheLogitsRows) {
  EngineOptions options = Options(128, 4, /*budget=*/64, /*max_seqs=*/4);
  options.max_logits_rows = 6;
  EngineHarness h(options);
  EXPECT_EQ(h.fake().max_logits_rows(), 6);
  ASSERT_OK(h.Submit(1, Spec(Prompt(3, 7), 12)));  // decodes beside the others
  h.Step();
  const auto prompt = Prompt(40);
  GenerateSpec spec = Spec(prompt, 2);
  spec.params.prompt_logprobs = 0;
  ASSERT_OK(h.Submit(2, std::move(spec)));
  ASSERT_OK(h.Submit(3, Spec(Prompt(9, 3), 4)));  // no logprobs: one row at its end
  ASSERT_TRUE(h.RunUntilDone());
  int max_rows = 0, cut_steps = 0;
  for (const auto& step : h.fake().steps()) {
    int rows = 0, tokens = 0;
    for (const auto& row : step) {
      rows += BatchRow::NumLogitsRows(row.logits, row.num_tokens);
      tokens += row.num_tokens;
      if (row.request_id == 2 && row.logits == BatchRow::Logits::kAll) ++cut_steps;
    }
    EXPECT_LE(rows, 6);
    EXPECT_LE(tokens, 64);
    max_rows = std::max(max_rows, rows);
  }
  EXPECT_EQ(max_rows, 6);        // the cap was reached, not just respected
  EXPECT_GE(cut_steps, 40 / 6);  // 40 prompt rows at most 6 a step
  const int v = h.fake().info().vocab_size;
  const FinishInfo info = h.sink(2).info();
  ASSERT_THAT(info.prompt_logprobs, SizeIs(40));
  for (int i = 1; i < 40; ++i) {
    std::vector<float> logits(v);
    const std::vector<TokenId> prefix(prompt.begin(), prompt.begin() + i);
    h.fake().Logits(prefix, logits.data());
    double z = 0;
    for (float x : logits) z += std::exp(x);
    ASSERT_THAT(info.prompt_logprobs[i], SizeIs(1));
    EXPECT_EQ(info.prompt_logprobs[i][0].token, prompt[i]);
    EXPECT_NEAR(info.prompt_logprobs[i][0].logprob, logits[prompt[i]] - std::log(z),
                1e-4);
  }
  EXPECT_EQ(h.sink(1).tokens().size(), 12u);
  EXPECT_EQ(h.sink(3).tokens().size(), 4u);
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, FailedForwardFailsOnlyThatBatch) {
  EngineHarness h(Options());
  ASSERT_OK(h.Submit(1, Spec(Prompt(8), 5)));
  h.fake().FailNextForward(absl::InternalError("kernel exploded"));
  h.Step();
  ASSERT_TRUE(h.sink(1).finished());
  EXPECT_THAT(h.sink(1).info().status, StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(h.sink(1).info().completions[0].reason, FinishReason::kError);
  ASSERT_OK(h.Submit(2, Spec(Prompt(8), 5)));
  ASSERT_TRUE(h.RunUntilDone());
  EXPECT_EQ(h.sink(2).tokens(), h.fake().ReferenceGreedy(Prompt(8), 5, false));
  h.ExpectPoolFull();
}

TEST(LlmEngineTest, SubmitRejectsBadRequests) {
  EngineOptions o = Options(/*num_blocks=*/16, 4);
  o.max_queued_requests = 2;
  FakeDecoderOptions fake;
  fake.max_context_length = 100;
  EngineHarness h(o, fake);
  const auto code = [&](RequestId id, GenerateSpec spec) {
    return h.Submit(id, std::move(spec)).code();
  };
  EXPECT_EQ(code(1, Spec({}, 5)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(1, Spec({1, 128}, 5)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(1, Spec({1, -1}, 5)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(1, Spec(Prompt(90), 11)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(1, Spec(Prompt(40), 40)),
            absl::StatusCode::kInvalidArgument);  // > 16 blocks
  GenerateSpec bad = Spec(Prompt(4), 5);
  bad.params.top_p = 2.0f;
  EXPECT_EQ(code(1, std::move(bad)), absl::StatusCode::kInvalidArgument);
  GenerateSpec stop = Spec(Prompt(4), 5);
  stop.params.stop = {"x"};  // no tokenizer
  EXPECT_EQ(code(1, std::move(stop)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(1, Spec(Prompt(4), 5)), absl::StatusCode::kOk);
  EXPECT_EQ(code(1, Spec(Prompt(4), 5)), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(code(2, Spec(Prompt(4), 5)), absl::StatusCode::kOk);
  EXPECT_EQ(code(3, Spec(Prompt(4), 5)), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(h.RunUntilDone());
  EXPECT_EQ(code(3, Spec(Prompt(4), 5)), absl::StatusCode::kOk);
  h.engine().Shutdown();
  EXPECT_TRUE(h.sink(3).finished());
  EXPECT_THAT(h.sink(3).info().status, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(h.sink(3).info().completions[0].reason, FinishReason::kShutdown);
  EXPECT_EQ(code(4, Spec(Prompt(4), 5)), absl::StatusCode::kUnavailable);
}

TEST(LlmEngineTest, CreateSizesThePoolFromTheMemoryBudget) {
  EngineOptions o = Options(0, 16);
  o.kv_memory_bytes = 64 * 16 * 10 + 5;  // fake: 64 bytes per token
  EngineHarness h(o);
  EXPECT_EQ(h.engine().load().num_blocks, 10);
  EXPECT_EQ(h.fake().num_blocks(), 10);
  EXPECT_EQ(h.fake().block_size_tokens(), 16);
  EXPECT_EQ(h.engine().load().block_size_tokens, 16);

  EngineOptions none = Options(0, 16);
  auto engine =
      LlmEngine::Create(none, std::make_unique<FakeDecoder>(), nullptr, nullptr);
  EXPECT_THAT(engine, StatusIs(absl::StatusCode::kFailedPrecondition));

  // Fewer logits rows than sequences in a full batch: a request of n = 8
  // could never decode. Refused, naming the flag's value and the minimum.
  EngineOptions few = Options(64, 4, /*budget=*/64, /*max_seqs=*/8);
  few.max_logits_rows = 7;
  EXPECT_THAT(LlmEngine::Create(few, std::make_unique<FakeDecoder>(), nullptr, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::AllOf(::testing::HasSubstr("max_logits_rows (7)"),
                                        ::testing::HasSubstr("= 8"))));
  few.max_logits_rows = 8;
  EXPECT_OK(
      LlmEngine::Create(few, std::make_unique<FakeDecoder>(), nullptr, nullptr).status());
}

TEST(LlmEngineTest, ThreadedEngineServesConcurrentRequests) {
  EngineHarness h(Options(1024, 4, 32, 8), {}, nullptr, /*start_thread=*/true);
  for (RequestId id = 1; id <= 12; ++id) {
    ASSERT_OK(h.Submit(id, Spec(Prompt(4 + id, id), 6 + id)));
  }
  ASSERT_OK(h.Submit(100, Spec(Prompt(8), 2000)));
  for (RequestId id = 1; id <= 12; ++id) {
    ASSERT_TRUE(h.sink(id).WaitForFinish(absl::Seconds(20)));
    EXPECT_EQ(h.sink(id).tokens(),
              h.fake().ReferenceGreedy(Prompt(4 + id, id), 6 + id, false));
  }
  h.engine().Cancel(100);
  ASSERT_TRUE(h.sink(100).WaitForFinish(absl::Seconds(20)));
  EXPECT_THAT(h.sink(100).info().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_OK(h.Submit(101, Spec(Prompt(8), 2000)));
  h.engine().Shutdown();  // finishes 101 with kShutdown and joins
  ASSERT_TRUE(h.sink(101).finished());
  EXPECT_THAT(h.sink(101).info().status, StatusIs(absl::StatusCode::kUnavailable));
  h.ExpectNoViolations();
  h.ExpectPoolFull();
}

// The engine's waiting queue is weighted-fair between tenants (VTC): with one
// slot, a tenant that queued after another tenant's burst runs before the
// rest of that burst (equal counters: the last tenant to join goes first),
// not after all of it (FCFS would).
TEST(LlmEngineTest, TenantsShareSlotsFairlyAndWeightsApply) {
  auto first_rows = [](EngineHarness& h) {
    std::vector<RequestId> order;
    for (const auto& step : h.fake().steps()) {
      for (const auto& row : step) {
        if (std::find(order.begin(), order.end(), row.request_id) == order.end()) {
          order.push_back(row.request_id);
        }
      }
    }
    return order;
  };
  {
    EngineHarness h(Options(64, 4, 64, /*max_seqs=*/1));
    for (RequestId id = 1; id <= 4; ++id) {
      GenerateSpec spec = Spec(Prompt(4, static_cast<TokenId>(id)), 4);
      spec.tenant = "a";
      ASSERT_OK(h.Submit(id, std::move(spec)));
    }
    GenerateSpec b = Spec(Prompt(4, 9), 4);
    b.tenant = "b";
    ASSERT_OK(h.Submit(5, std::move(b)));
    ASSERT_TRUE(h.RunUntilDone());
    EXPECT_THAT(first_rows(h), ElementsAre(5, 1, 2, 3, 4));
    h.ExpectNoViolations();
  }
  {
    // Weight 3 for "a": it gets about three requests per one of "b".
    EngineHarness h(Options(64, 4, 64, /*max_seqs=*/1));
    h.engine().SetTenantWeights({{"a", 3.0}, {"b", 1.0}});
    for (RequestId id = 1; id <= 8; ++id) {
      GenerateSpec spec = Spec(Prompt(4, static_cast<TokenId>(id)), 4);
      spec.tenant = id <= 4 ? "a" : "b";
      ASSERT_OK(h.Submit(id, std::move(spec)));
    }
    ASSERT_TRUE(h.RunUntilDone());
    const std::vector<RequestId> order = first_rows(h);
    ASSERT_THAT(order, SizeIs(8));
    // Among the first five admissions, "a" (ids 1-4) has at least three.
    const int a_first = static_cast<int>(std::count_if(
        order.begin(), order.begin() + 5, [](RequestId id) { return id <= 4; }));
    EXPECT_GE(a_first, 3);
    EXPECT_LE(a_first, 4);
  }
}

}  // namespace
}  // namespace openelm::testing
