// Sanity tests of the scalar reference itself: each building block against
// values worked out by hand, a hand-computed one-layer toy model, and
// structural properties (causality, RoPE order sensitivity) on random models.
#include "tests/engine/numerics/reference/openelm_reference.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;

TEST(ReferenceRmsNormTest, MatchesHandComputedValues) {
  // mean(x^2) = (9 + 16) / 2 = 12.5; 1/sqrt(12.5) = 0.28284271...
  const std::vector<double> x = {3.0, 4.0};
  const std::vector<float> w = {1.0f, 2.0f};
  EXPECT_THAT(ReferenceRmsNorm(x, w, 1e-6),
              ElementsAre(DoubleNear(0.848528103, 1e-8), DoubleNear(2.262741609, 1e-8)));
}

TEST(ReferenceRmsNormTest, EpsilonKeepsZeroVectorFinite) {
  const std::vector<double> x = {0.0, 0.0, 0.0, 0.0};
  const std::vector<float> w = {1.0f, 1.0f, 1.0f, 1.0f};
  EXPECT_THAT(ReferenceRmsNorm(x, w, 1e-6), ElementsAre(0.0, 0.0, 0.0, 0.0));
}

TEST(ReferenceRopeTest, RotatesHalvesWithNeoxLayout) {
  // hd = 4: inv_freq = {10000^0, 10000^(-1/2)} = {1, 0.01}. At position 1 the
  // pair (x0, x2) turns by 1 rad and the pair (x1, x3) by 0.01 rad:
  //   out0 = 1 cos 1 - 3 sin 1,  out2 = 3 cos 1 + 1 sin 1,
  //   out1 = 2 cos .01 - 4 sin .01, out3 = 4 cos .01 + 2 sin .01.
  const std::vector<double> x = {1.0, 2.0, 3.0, 4.0};
  EXPECT_THAT(
      ReferenceRope(x, 1, 10000.0),
      ElementsAre(DoubleNear(-1.984110648556, 1e-10), DoubleNear(1.959900667497, 1e-10),
                  DoubleNear(2.462377902412, 1e-10), DoubleNear(4.019799668335, 1e-10)));
}

TEST(ReferenceRopeTest, PositionZeroIsIdentity) {
  const std::vector<double> x = {0.5, -1.5, 2.5, 7.0, -3.0, 1.0};
  EXPECT_EQ(ReferenceRope(x, 0, 10000.0), x);
}

TEST(ReferenceRopeTest, DotProductDependsOnlyOnRelativePosition) {
  std::mt19937 rng(5);
  std::normal_distribution<double> normal;
  std::vector<double> q(64), k(64);
  for (double& v : q) v = normal(rng);
  for (double& v : k) v = normal(rng);
  auto dot = [](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
  };
  const double d_7_3 = dot(ReferenceRope(q, 7, 1e4), ReferenceRope(k, 3, 1e4));
  const double d_107_103 = dot(ReferenceRope(q, 107, 1e4), ReferenceRope(k, 103, 1e4));
  const double d_7_4 = dot(ReferenceRope(q, 7, 1e4), ReferenceRope(k, 4, 1e4));
  EXPECT_NEAR(d_7_3, d_107_103, 1e-9);
  EXPECT_GT(std::abs(d_7_3 - d_7_4), 1e-3);
}

TEST(ReferenceSoftmaxTest, RowsSumToOneAndKeepOrder) {
  std::mt19937 rng(11);
  std::normal_distribution<double> normal(0.0, 30.0);  // wide: tests the max shift
  for (int n : {1, 2, 7, 100}) {
    std::vector<double> x(n);
    for (double& v : x) v = normal(rng);
    const std::vector<double> p = ReferenceSoftmax(x);
    double sum = 0.0;
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(std::isfinite(p[i]));
      EXPECT_GE(p[i], 0.0);
      sum += p[i];
      for (int j = 0; j < n; ++j) {
        if (x[i] < x[j]) {
          EXPECT_LE(p[i], p[j]);
        }
      }
    }
    EXPECT_NEAR(sum, 1.0, 1e-12) << "n=" << n;
  }
  EXPECT_THAT(ReferenceSoftmax(std::vector<double>{0.0, std::log(3.0)}),
              ElementsAre(DoubleNear(0.25, 1e-15), DoubleNear(0.75, 1e-15)));
}

TEST(ReferenceSiluTest, MatchesDefinition) {
  EXPECT_EQ(ReferenceSilu(0.0), 0.0);
  EXPECT_NEAR(ReferenceSilu(1.0), 1.0 / (1.0 + std::exp(-1.0)), 1e-15);
  EXPECT_NEAR(ReferenceSilu(-20.0), -20.0 * std::exp(-20.0), 1e-15);
}

// One layer, d = 2, hd = 2, one query head, one KV head, ffn = 1, vocab 2.
// All norm weights 1. Q rows of qkv_proj are zero, so every attention score is
// 0 and attention is the plain mean of V over the causal prefix. V = diag(1,2),
// out_proj = identity, proj_1 = [gate row (1,0); up row (0,1)],
// proj_2 = (1, 0)^T, embeddings e0 = (1,1), e1 = (1,-1).
absl::StatusOr<std::unique_ptr<OpenElmReference>> MakeHandToy() {
  OpenElmConfig config;
  config.num_layers = 1;
  config.model_dim = 2;
  config.head_dim = 2;
  config.vocab_size = 2;
  config.layers = {LayerShape{/*num_query_heads=*/1, /*num_kv_heads=*/1,
                              /*ffn_dim=*/1}};
  ReferenceWeights w;
  w.token_embeddings = {1, 1, 1, -1};
  w.norm = {1, 1};
  ReferenceLayerWeights lw;
  lw.attn_norm = {1, 1};
  lw.qkv_proj = {0, 0, 0, 0,   // Q (2 rows)
                 1, 0, 0, 1,   // K (2 rows)
                 1, 0, 0, 2};  // V (2 rows)
  lw.q_norm = {1, 1};
  lw.k_norm = {1, 1};
  lw.out_proj = {1, 0, 0, 1};
  lw.ffn_norm = {1, 1};
  lw.proj_1 = {1, 0, 0, 1};
  lw.proj_2 = {1, 0};
  w.layers.push_back(lw);
  return OpenElmReference::FromWeights(config, std::move(w));
}

TEST(ReferenceQuantize8Test, RoundsToTheGroupScale) {
  // Groups of 2: scales 127/127 = 1 and 2.54/127 = 0.02; the zero group stays.
  std::vector<double> x = {127.0, -0.4, 2.54, 0.011, 0.0, 0.0};
  ReferenceQuantize8(absl::MakeSpan(x), 2);
  EXPECT_DOUBLE_EQ(x[0], 127.0);
  EXPECT_DOUBLE_EQ(x[1], 0.0);  // -0.4 rounds to step 0
  EXPECT_NEAR(x[2], 2.54, 1e-12);
  EXPECT_NEAR(x[3], 0.02, 1e-12);  // 0.55 steps round up to 1
  EXPECT_EQ(x[4], 0.0);
  EXPECT_EQ(x[5], 0.0);
  // One group: the small values lose their resolution.
  std::vector<float> y = {127.0f, 0.4f, 0.6f};
  ReferenceQuantize8(absl::MakeSpan(y), kWholeRow);
  EXPECT_EQ(y[0], 127.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 1.0f);
}

TEST(OpenElmReferenceTest, HandComputedOneLayerToy) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> ref, MakeHandToy());
  ASSERT_OK_AND_ASSIGN(auto logits, ref->ForwardAll(std::vector<TokenId>{0, 1}));
  ASSERT_EQ(logits.size(), 2u);
  // Position 0 (token 0): h = rms(1,1) = (1,1); v = (1,2); x = (2,3).
  //   ffn: h = (2,3)/sqrt(6.5) = (0.78446, 1.17670); silu(0.78446) = 0.53865;
  //   act = 0.53865 * 1.17670 = 0.63382; x = (2.63382, 3).
  //   final: x / sqrt((2.63382^2 + 9)/2) = (0.93304, 1.06275).
  //   logits = (e0 . x, e1 . x) = (1.99579, -0.12972).
  EXPECT_THAT(logits[0], ElementsAre(FloatNear(1.995788715f, 2e-6f),
                                     FloatNear(-0.129718559f, 2e-6f)));
  // Position 1 (token 1): v1 = (1,-2); attention = mean(v0, v1) = (1, 0);
  //   x = (1,-1) + (1,0) = (2,-1); ffn: h = (2,-1)/sqrt(2.5) = (1.26491,
  //   -0.63246); act = silu(1.26491) * -0.63246 = -0.62390; x = (1.37610, -1).
  //   final: (1.14404, -0.83136); logits = (0.31268, 1.97541).
  EXPECT_THAT(logits[1], ElementsAre(FloatNear(0.312678719f, 2e-6f),
                                     FloatNear(1.975406099f, 2e-6f)));
  ASSERT_OK_AND_ASSIGN(std::vector<float> last,
                       ref->ForwardLast(std::vector<TokenId>{0, 1}));
  EXPECT_EQ(last, logits[1]);
}

TEST(OpenElmReferenceTest, GqaMapsQueryHeadToKvHeadByDivision) {
  // d = 2, hd = 2, 4 query heads, 2 KV heads (group size 2), FFN disabled
  // (proj_2 = 0). One token, so each query head returns its KV head's V.
  // V of KV head 0 is 0, V of KV head 1 is h = (1,1). Query heads 0,1 must use
  // KV head 0 and heads 2,3 KV head 1: attention = (0,0, 0,0, 1,1, 1,1).
  // out_proj row 0 sums heads 0-1, row 1 sums heads 2-3: o = (0, 4), so
  // x = (1,1) + (0,4) = (1,5); final norm x / sqrt(13); logits
  // (e0 . x, e1 . x) = (6, -4) / sqrt(13). (A j % kv mapping would give
  // o = (2,2) and logits (6, 0) / sqrt(10).)
  OpenElmConfig config;
  config.num_layers = 1;
  config.model_dim = 2;
  config.head_dim = 2;
  config.vocab_size = 2;
  config.layers = {LayerShape{/*num_query_heads=*/4, /*num_kv_heads=*/2,
                              /*ffn_dim=*/1}};
  ReferenceWeights w;
  w.token_embeddings = {1, 1, 1, -1};
  w.norm = {1, 1};
  ReferenceLayerWeights lw;
  lw.attn_norm = {1, 1};
  lw.qkv_proj.assign((4 + 2 * 2) * 2 * 2, 0.0f);  // Q and K zero
  // V rows start at row (4 + 2) * 2 = 12; KV head 1 is rows 14-15: identity.
  lw.qkv_proj[14 * 2 + 0] = 1.0f;
  lw.qkv_proj[15 * 2 + 1] = 1.0f;
  lw.q_norm = {1, 1};
  lw.k_norm = {1, 1};
  lw.out_proj = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
  lw.ffn_norm = {1, 1};
  lw.proj_1 = {1, 0, 0, 1};
  lw.proj_2 = {0, 0};
  w.layers.push_back(lw);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> ref,
                       OpenElmReference::FromWeights(config, std::move(w)));
  ASSERT_OK_AND_ASSIGN(std::vector<float> logits,
                       ref->ForwardLast(std::vector<TokenId>{0}));
  EXPECT_THAT(logits, ElementsAre(FloatNear(6.0f / std::sqrt(13.0f), 1e-5f),
                                  FloatNear(-4.0f / std::sqrt(13.0f), 1e-5f)));
}

// A random model built in memory: `num_layers` layers, d = 32, hd = 8, GQA
// groups of 2, vocab 50. Normal(0, 0.3) weights keep attention non-uniform.
std::unique_ptr<OpenElmReference> MakeRandomToy(int num_layers, uint32_t seed,
                                                ReferenceOptions options = {}) {
  OpenElmConfig config;
  config.num_layers = num_layers;
  config.model_dim = 32;
  config.head_dim = 8;
  config.vocab_size = 50;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  auto fill = [&](int64_t n, float offset) {
    std::vector<float> v(n);
    for (float& x : v) x = offset + normal(rng);
    return v;
  };
  ReferenceWeights w;
  w.token_embeddings = fill(50 * 32, 0.0f);
  w.norm = fill(32, 1.0f);
  for (int l = 0; l < num_layers; ++l) {
    const LayerShape s{/*num_query_heads=*/4, /*num_kv_heads=*/2,
                       /*ffn_dim=*/48 + 16 * l};
    config.layers.push_back(s);
    ReferenceLayerWeights lw;
    lw.attn_norm = fill(32, 1.0f);
    lw.qkv_proj = fill((4 + 2 * 2) * 8 * 32, 0.0f);
    lw.q_norm = fill(8, 1.0f);
    lw.k_norm = fill(8, 1.0f);
    lw.out_proj = fill(32 * 4 * 8, 0.0f);
    lw.ffn_norm = fill(32, 1.0f);
    lw.proj_1 = fill(2 * s.ffn_dim * 32, 0.0f);
    lw.proj_2 = fill(32 * s.ffn_dim, 0.0f);
    w.layers.push_back(std::move(lw));
  }
  auto ref = OpenElmReference::FromWeights(config, std::move(w), options);
  EXPECT_TRUE(ref.ok()) << ref.status();
  return ref.ok() ? *std::move(ref) : nullptr;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

TEST(OpenElmReferenceTest, Int8InputsMoveLogitsByQuantizationSteps) {
  std::unique_ptr<OpenElmReference> exact = MakeRandomToy(2, 1);
  std::unique_ptr<OpenElmReference> per_row =
      MakeRandomToy(2, 1, {.int8_input_group = kWholeRow});
  std::unique_ptr<OpenElmReference> groups = MakeRandomToy(2, 1, {.int8_input_group = 8});
  ASSERT_NE(exact, nullptr);
  ASSERT_NE(per_row, nullptr);
  ASSERT_NE(groups, nullptr);
  const std::vector<TokenId> tokens = {1, 7, 3, 3, 9};
  ASSERT_OK_AND_ASSIGN(auto a, exact->ForwardAll(tokens));
  ASSERT_OK_AND_ASSIGN(auto b, per_row->ForwardAll(tokens));
  ASSERT_OK_AND_ASSIGN(auto c, groups->ForwardAll(tokens));
  float row_err = 0.0f, group_err = 0.0f;
  for (size_t t = 0; t < a.size(); ++t) {
    row_err = std::max(row_err, MaxAbsDiff(a[t], b[t]));
    group_err = std::max(group_err, MaxAbsDiff(a[t], c[t]));
  }
  EXPECT_GT(row_err, 0.0f);  // the inputs were rounded...
  EXPECT_LT(row_err, 0.2f);  // ...by 8-bit steps only
  EXPECT_GT(group_err, 0.0f);
  EXPECT_LT(group_err, row_err);  // finer scales, smaller error
  ReferenceWeights w = exact->weights();
  EXPECT_FALSE(
      OpenElmReference::FromWeights(exact->config(), w, {.int8_input_group = -2}).ok());
}

TEST(OpenElmReferenceTest, LogitsAtPositionDoNotDependOnLaterTokens) {
  std::unique_ptr<OpenElmReference> ref = MakeRandomToy(2, 1);
  ASSERT_NE(ref, nullptr);
  const std::vector<TokenId> a = {1, 7, 3, 3, 9, 21, 40, 2};
  std::vector<TokenId> b = a;
  b[5] = 33;  // differ from position 5 on
  b[7] = 12;
  ASSERT_OK_AND_ASSIGN(auto la, ref->ForwardAll(a));
  ASSERT_OK_AND_ASSIGN(auto lb, ref->ForwardAll(b));
  for (int t = 0; t < 5; ++t) EXPECT_EQ(la[t], lb[t]) << "position " << t;
  for (int t = 5; t < 8; ++t) EXPECT_GT(MaxAbsDiff(la[t], lb[t]), 1e-4) << t;
  // A prefix alone gives the same logits as inside the longer sequence.
  ASSERT_OK_AND_ASSIGN(auto prefix,
                       ref->ForwardAll(absl::MakeConstSpan(a).subspan(0, 4)));
  for (int t = 0; t < 4; ++t) EXPECT_EQ(prefix[t], la[t]);
}

TEST(OpenElmReferenceTest, RepeatedTokenGivesSameLogitsAtEveryPosition) {
  // With identical tokens every position holds the same V, so attention
  // returns it whatever the weights; nothing else in the model sees position.
  std::unique_ptr<OpenElmReference> ref = MakeRandomToy(3, 2);
  ASSERT_NE(ref, nullptr);
  ASSERT_OK_AND_ASSIGN(auto logits, ref->ForwardAll(std::vector<TokenId>(6, 17)));
  for (int t = 1; t < 6; ++t) EXPECT_LT(MaxAbsDiff(logits[t], logits[0]), 1e-5);
}

TEST(OpenElmReferenceTest, RopeMakesAttentionOrderSensitive) {
  // In one layer without positional information the last position would see
  // its prefix as a set; RoPE makes swapping the first two tokens matter.
  std::unique_ptr<OpenElmReference> ref = MakeRandomToy(1, 3);
  ASSERT_NE(ref, nullptr);
  ASSERT_OK_AND_ASSIGN(std::vector<float> abc,
                       ref->ForwardLast(std::vector<TokenId>{4, 11, 25}));
  ASSERT_OK_AND_ASSIGN(std::vector<float> bac,
                       ref->ForwardLast(std::vector<TokenId>{11, 4, 25}));
  EXPECT_GT(MaxAbsDiff(abc, bac), 1e-3);
}

TEST(OpenElmReferenceTest, RejectsBadInput) {
  std::unique_ptr<OpenElmReference> ref = MakeRandomToy(1, 4);
  ASSERT_NE(ref, nullptr);
  EXPECT_THAT(ref->ForwardAll(std::vector<TokenId>{}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ref->ForwardAll(std::vector<TokenId>{1, 50}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("50")));
  EXPECT_THAT(ref->ForwardAll(std::vector<TokenId>{-1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ReferenceWeights bad = ref->weights();
  bad.layers[0].proj_2.pop_back();
  EXPECT_THAT(OpenElmReference::FromWeights(ref->config(), std::move(bad)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("proj_2")));
}

TEST(OpenElmReferenceTest, LoadsGeneratedCheckpoint) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("tiny"));
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/openelm_ref_ckpt_", getpid());
  ASSERT_OK(WriteRandomCheckpoint(config, /*seed=*/3, DType::kBF16, 1, dir));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> ref,
                       OpenElmReference::Create(*ckpt));
  ckpt.reset();  // the reference owns its copy
  std::filesystem::remove_all(dir);
  // Tied LM head: the embedding of a token, read back from the reference.
  EXPECT_EQ(ref->weights().token_embeddings.size(),
            static_cast<size_t>(config.vocab_size) * config.model_dim);
  const std::vector<TokenId> tokens = {1, 450, 4996, 17354, 1701};
  ASSERT_OK_AND_ASSIGN(auto logits, ref->ForwardAll(tokens));
  ASSERT_EQ(logits.size(), tokens.size());
  for (const std::vector<float>& row : logits) {
    ASSERT_EQ(row.size(), static_cast<size_t>(config.vocab_size));
    for (float v : row) ASSERT_TRUE(std::isfinite(v));
  }
  EXPECT_GT(MaxAbsDiff(logits[0], logits[1]), 1e-4);
}

}  // namespace
}  // namespace openelm::testing
