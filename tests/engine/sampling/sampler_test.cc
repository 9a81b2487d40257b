// Sampler stages on hand-made logits, and SamplingParams validation.

#include "engine/sampling/sampler.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "engine/sampling/sampling_params.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::Pointwise;

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams Params() {
  SamplingParams p;
  p.temperature = 1.0f;
  return p;
}

// Logits whose softmax is exactly `probs`.
std::vector<float> FromProbs(const std::vector<float>& probs) {
  std::vector<float> logits;
  for (float p : probs) logits.push_back(std::log(p));
  return logits;
}

TEST(SamplerTest, GreedyTakesTheArgmaxAndDrawsNothing) {
  Sampler sampler(5);
  const std::vector<float> logits = {0.1f, 3.0f, -1.0f, 2.9f, 0.0f};
  SamplingParams p = Params();
  p.temperature = 0.0f;
  SamplerRng rng(7);
  const SamplerRng before = rng;
  EXPECT_EQ(sampler.Sample(logits.data(), p, {}, 0, &rng), 1);
  EXPECT_TRUE(rng == before);
}

TEST(SamplerTest, TopKKeepsTheKMostLikely) {
  Sampler sampler(6);
  const std::vector<float> logits = {0.0f, 5.0f, 1.0f, 4.0f, 3.0f, 2.0f};
  SamplingParams p = Params();
  p.top_k = 3;
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(1, 3, 4));
  p.top_k = 0;
  EXPECT_EQ(sampler.CandidateSet(logits.data(), p).size(), 6u);
}

TEST(SamplerTest, TopPKeepsTheSmallestNucleus) {
  Sampler sampler(4);
  const std::vector<float> logits = FromProbs({0.15f, 0.5f, 0.05f, 0.3f});
  SamplingParams p = Params();
  p.top_p = 0.79f;
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(1, 3));
  p.top_p = 0.81f;
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(0, 1, 3));
  p.top_p = 0.4f;
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(1));
}

TEST(SamplerTest, TopPOverALargeVocabulary) {
  // 1000 tokens: one at 0.5, the rest share 0.5 equally.
  const int v = 1000;
  std::vector<float> probs(v, 0.5f / (v - 1));
  probs[417] = 0.5f;
  Sampler sampler(v);
  SamplingParams p = Params();
  p.top_p = 0.75f;  // 0.5 + 0.25 -> about half of the others
  const std::vector<TokenId> kept = sampler.CandidateSet(FromProbs(probs).data(), p);
  EXPECT_NEAR(static_cast<double>(kept.size()), 1 + 499.5, 2.0);
  EXPECT_TRUE(std::find(kept.begin(), kept.end(), 417) != kept.end());
}

TEST(SamplerTest, MinPDropsTokensBelowAFractionOfTheBest) {
  Sampler sampler(4);
  const std::vector<float> logits = FromProbs({0.15f, 0.5f, 0.05f, 0.3f});
  SamplingParams p = Params();
  p.min_p = 0.5f;  // keep p >= 0.25
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(1, 3));
  p.min_p = 0.25f;  // keep p >= 0.125
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(0, 1, 3));
}

TEST(SamplerTest, TemperatureSharpensBeforeTruncation) {
  Sampler sampler(3);
  const std::vector<float> logits = FromProbs({0.4f, 0.35f, 0.25f});
  SamplingParams p = Params();
  p.min_p = 0.5f;
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(0, 1, 2));
  p.temperature = 0.1f;  // ratios ^10: 0.25/0.4 -> ~0.009
  EXPECT_THAT(sampler.CandidateSet(logits.data(), p), ElementsAre(0));
}

TEST(SamplerTest, RepetitionPenaltyFollowsHuggingFace) {
  Sampler sampler(5);
  std::vector<float> x = {2.0f, -2.0f, 1.0f, 1.0f, 4.0f};
  SamplingParams p = Params();
  p.repetition_penalty = 2.0f;
  const std::vector<TokenId> tokens = {0, 1, 1, /*output:*/ 2};
  sampler.ProcessLogits(p, tokens, /*num_prompt_tokens=*/3, x.data());
  // Prompt and output tokens alike, once per distinct token.
  EXPECT_THAT(
      x, Pointwise(FloatNear(1e-6f), std::vector<float>{1.0f, -4.0f, 0.5f, 1.0f, 4.0f}));
}

TEST(SamplerTest, FrequencyAndPresencePenaltiesCountOutputTokensOnly) {
  Sampler sampler(5);
  std::vector<float> x = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  SamplingParams p = Params();
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 1.0f;
  const std::vector<TokenId> tokens = {0, 4, /*output:*/ 2, 3, 2};
  sampler.ProcessLogits(p, tokens, 2, x.data());
  EXPECT_THAT(
      x, Pointwise(FloatNear(1e-6f), std::vector<float>{1.0f, 1.0f, -1.0f, -0.5f, 1.0f}));
  // Counts do not leak into the next call.
  std::vector<float> y = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  sampler.ProcessLogits(p, std::vector<TokenId>{0, 3}, 1, y.data());
  EXPECT_THAT(
      y, Pointwise(FloatNear(1e-6f), std::vector<float>{1.0f, 1.0f, 1.0f, -0.5f, 1.0f}));
}

TEST(SamplerTest, LogitBiasIsAdded) {
  Sampler sampler(4);
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f};
  SamplingParams p = Params();
  p.logit_bias = {{0, 10.0f}, {3, -100.0f}};
  sampler.ProcessLogits(p, {}, 0, x.data());
  EXPECT_THAT(x,
              Pointwise(FloatNear(1e-6f), std::vector<float>{11.0f, 2.0f, 3.0f, -96.0f}));
  p.temperature = 0.0f;
  SamplerRng rng(1);
  const std::vector<float> raw = {1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_EQ(sampler.Sample(raw.data(), p, {}, 0, &rng), 0);
}

TEST(SamplerTest, MinTokensSuppressesEosAndStopIds) {
  Sampler sampler(6);
  SamplingParams p = Params();
  p.min_tokens = 2;
  p.stop_token_ids = {5};
  std::vector<float> x(6, 0.0f);
  sampler.ProcessLogits(p, std::vector<TokenId>{9, 3}, 1, x.data());  // 1 output
  EXPECT_EQ(x[kEosTokenId], -kInf);
  EXPECT_EQ(x[5], -kInf);
  EXPECT_EQ(x[4], 0.0f);
  std::vector<float> y(6, 0.0f);
  sampler.ProcessLogits(p, std::vector<TokenId>{9, 3, 4}, 1, y.data());  // 2 outputs
  EXPECT_EQ(y[kEosTokenId], 0.0f);
  EXPECT_EQ(y[5], 0.0f);
  // ignore_eos: EOS is an ordinary token and is not suppressed.
  p.ignore_eos = true;
  std::vector<float> z(6, 0.0f);
  sampler.ProcessLogits(p, std::vector<TokenId>{9}, 1, z.data());
  EXPECT_EQ(z[kEosTokenId], 0.0f);
  EXPECT_EQ(z[5], -kInf);
}

TEST(SamplerTest, SeededSamplingIsReproducibleAndFollowsTheDistribution) {
  Sampler sampler(4);
  const std::vector<float> logits = FromProbs({0.1f, 0.2f, 0.3f, 0.4f});
  SamplingParams p = Params();
  std::vector<int> counts(4, 0);
  std::vector<TokenId> first, second;
  SamplerRng a(123), b(123);
  for (int i = 0; i < 20000; ++i) {
    const TokenId t = sampler.Sample(logits.data(), p, {}, 0, &a);
    ++counts[t];
    if (i < 50) first.push_back(t);
  }
  for (int i = 0; i < 50; ++i)
    second.push_back(sampler.Sample(logits.data(), p, {}, 0, &b));
  EXPECT_EQ(first, second);
  for (int t = 0; t < 4; ++t) {
    EXPECT_NEAR(counts[t] / 20000.0, 0.1 * (t + 1), 0.015) << "token " << t;
  }
}

TEST(SamplerTest, LogprobsAreOfTheRawLogits) {
  Sampler sampler(4);
  const std::vector<float> logits = FromProbs({0.1f, 0.2f, 0.3f, 0.4f});
  std::vector<LogprobEntry> out;
  sampler.Logprobs(logits.data(), 1, 2, &out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first, 1);
  EXPECT_NEAR(out[0].second, std::log(0.2f), 1e-5);
  EXPECT_EQ(out[1].first, 3);
  EXPECT_NEAR(out[1].second, std::log(0.4f), 1e-5);
  EXPECT_EQ(out[2].first, 2);
  EXPECT_NEAR(out[2].second, std::log(0.3f), 1e-5);
}

TEST(SamplingParamsTest, ValidateNamesTheField) {
  SamplingParams p;
  EXPECT_OK(p.Validate(32000));
  p.top_p = 0.0f;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::HasSubstr("top_p")));
  p = SamplingParams();
  p.temperature = -1.0f;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument));
  p = SamplingParams();
  p.logprobs = 21;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::HasSubstr("logprobs")));
  p = SamplingParams();
  p.logit_bias = {{32000, 1.0f}};
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument));
  p = SamplingParams();
  p.n = 9;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument));
  p = SamplingParams();
  p.stop = {""};
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument));
  p = SamplingParams();
  p.max_tokens = 0;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::HasSubstr("max_tokens")));
  p = SamplingParams();
  p.repetition_penalty = 0.0f;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument));
  p = SamplingParams();
  p.presence_penalty = 2.5f;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The EOS the sampler suppresses is the model's, not a constant.
TEST(SamplerTest, MinTokensSuppressesTheModelsEos) {
  Sampler sampler(5, /*eos_token_id=*/4);
  const std::vector<float> logits = {0.0f, 0.0f, 1.0f, 0.0f, 9.0f};
  SamplingParams p = Params();
  p.temperature = 0.0f;
  p.min_tokens = 1;
  SamplerRng rng(1);
  EXPECT_EQ(sampler.Sample(logits.data(), p, {}, 0, &rng), 2);  // 4 suppressed
  p.min_tokens = 0;
  EXPECT_EQ(sampler.Sample(logits.data(), p, {}, 0, &rng), 4);
}

// One range per parameter, shared with the front ends (issue 17.3: the
// engine used to accept temperature up to 100 and repetition_penalty up to
// 100 while the server stopped at 2 and 10).
TEST(SamplingParamsTest, OneRangeForEngineAndFrontEnds) {
  SamplingParams p;
  p.temperature = 2.5f;
  EXPECT_THAT(p.Validate(32000),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("temperature = 2.5 is out of range [0, 2]")));
  EXPECT_THAT(p.Validate(32000, 2048, "options."),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("options.temperature = 2.5")));
  p = SamplingParams();
  p.repetition_penalty = 11.0f;
  EXPECT_THAT(p.Validate(32000), StatusIs(absl::StatusCode::kInvalidArgument,
                                          ::testing::HasSubstr("(0, 10]")));
  p = SamplingParams();
  p.max_tokens = 3000;
  EXPECT_OK(p.Validate(32000));  // no context given
  EXPECT_THAT(p.Validate(32000, 2048),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("max_tokens = 3000")));
  EXPECT_THAT(CheckFitsContext(2000, 100, 2048),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::HasSubstr("exceeds the model's context length 2048")));
  EXPECT_OK(CheckFitsContext(1948, 100, 2048));
}

}  // namespace
}  // namespace openelm
