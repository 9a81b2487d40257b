// What --weight_dtype=int8 costs in accuracy, measured against the scalar
// double-precision reference on the same (f32 or bf16) weights:
//   - teacher-forced top-1 agreement: at every position of a prompt, does
//     the int8 engine's argmax equal the reference's?
//   - |dlogprob|: |log p_int8(t) - log p_ref(t)| for the reference's top-1
//     token t at each position, max and mean;
//   - greedy agreement length (tiny model): tokens generated greedily before
//     the two first differ (up to 24).
// The bars asserted are the measured values with margin; README states them
// next to the flag.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "engine/model/openelm_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/numerics/reference/openelm_reference.h"
#include "tests/engine/numerics/reference/parity_harness.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

// Positions whose reference top-1 leads its runner-up by at least this many
// logits are "clear"; random weights leave most positions closer than that.
constexpr double kClearMargin = 0.2;

struct Accuracy {
  int32_t positions = 0;
  int32_t top1_agree = 0;
  int32_t clear = 0;        // positions with a reference margin >= kClearMargin
  int32_t clear_agree = 0;  // ... where the top-1 agrees
  double max_dlogprob = 0;
  double mean_dlogprob = 0;
  double max_missed_margin = 0;  // largest reference margin of a disagreement
  double top1() const { return positions > 0 ? double(top1_agree) / positions : 0; }
  double clear_top1() const { return clear > 0 ? double(clear_agree) / clear : 1; }
  void Add(const Accuracy& a) {
    mean_dlogprob = (mean_dlogprob * positions + a.mean_dlogprob * a.positions) /
                    std::max(1, positions + a.positions);
    positions += a.positions;
    top1_agree += a.top1_agree;
    clear += a.clear;
    clear_agree += a.clear_agree;
    max_dlogprob = std::max(max_dlogprob, a.max_dlogprob);
    max_missed_margin = std::max(max_missed_margin, a.max_missed_margin);
  }
};

// Top-1 logit minus the runner-up's.
double Margin(const std::vector<float>& v, int32_t top) {
  float second = -INFINITY;
  for (size_t i = 0; i < v.size(); ++i) {
    if (static_cast<int32_t>(i) != top) second = std::max(second, v[i]);
  }
  return double{v[top]} - second;
}

std::vector<double> LogSoftmax(const std::vector<float>& v) {
  double mx = -1e300;
  for (float x : v) mx = std::max(mx, double{x});
  double sum = 0;
  for (float x : v) sum += std::exp(double{x} - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = double{v[i]} - lse;
  return out;
}

Accuracy Compare(const LogitRows& got, const LogitRows& want) {
  Accuracy a;
  for (size_t r = 0; r < got.size() && r < want.size(); ++r) {
    const int32_t t = ArgMax(want[r]);
    const double margin = Margin(want[r], t);
    const bool agree = ArgMax(got[r]) == t;
    ++a.positions;
    if (agree) ++a.top1_agree;
    if (margin >= kClearMargin) {
      ++a.clear;
      if (agree) ++a.clear_agree;
    }
    if (!agree) a.max_missed_margin = std::max(a.max_missed_margin, margin);
    const double d = std::fabs(LogSoftmax(got[r])[t] - LogSoftmax(want[r])[t]);
    a.max_dlogprob = std::max(a.max_dlogprob, d);
    a.mean_dlogprob += d;
  }
  if (a.positions > 0) a.mean_dlogprob /= a.positions;
  return a;
}

void Report(const std::string& what, const Accuracy& a) {
  std::cout << "[int8 accuracy] " << what << ": top-1 agreement " << a.top1_agree << "/"
            << a.positions << " = " << 100.0 * a.top1() << "%, |dlogprob| max "
            << a.max_dlogprob << " mean " << a.mean_dlogprob << "; at clear positions"
            << " (reference margin >= " << kClearMargin << "): " << a.clear_agree << "/"
            << a.clear << "; largest margin missed " << a.max_missed_margin << std::endl;
}

std::vector<TokenId> Prompt(int32_t n, uint32_t seed) {
  std::vector<TokenId> p = {1};
  uint32_t s = seed;
  while (static_cast<int32_t>(p.size()) < n) {
    s = s * 1664525u + 1013904223u;
    p.push_back(static_cast<TokenId>(100 + (s >> 8) % 31000));
  }
  return p;
}

absl::StatusOr<std::unique_ptr<OpenElmModel>> Int8Model(const Checkpoint& ckpt,
                                                        int32_t max_tokens,
                                                        bool own_int8_kernels = false) {
  OpenElmModelOptions options;
  options.weight_dtype = DType::kI8;
  options.own_int8_kernels = own_int8_kernels;
  options.kv_dtype = DType::kF32;
  options.num_threads = 2;
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<OpenElmModel> model,
                           OpenElmModel::Create(ckpt, options));
  OPENELM_RETURN_IF_ERROR(model->Prepare(/*num_blocks=*/64, /*block_size_tokens=*/16,
                                         max_tokens, 1,
                                         /*max_logits_rows=*/max_tokens));
  return model;
}

absl::StatusOr<LogitRows> Logits(DecoderModel& model,
                                 const std::vector<TokenId>& tokens) {
  std::vector<BlockId> table(64);
  for (int32_t i = 0; i < 64; ++i) table[i] = 63 - i;
  const std::vector<int32_t> one = {static_cast<int32_t>(tokens.size())};
  return RunSequenceInChunks(model, tokens, one, table, 16);
}

// The reference with the int8 scheme applied in plain code: every weight row
// of the matmuls (LM head / embedding included) and every matmul input
// quantized and dequantized in groups of `group` (kWholeRow: per output
// channel and per token, the engine's scheme), to at most `weight_levels` /
// `input_levels` in magnitude (127: 8 bits; 63: 7 bits).
absl::StatusOr<std::unique_ptr<OpenElmReference>> QuantizedReference(
    const OpenElmReference& exact, int64_t group, int32_t weight_levels = 127,
    int32_t input_levels = 127) {
  ReferenceWeights w = exact.weights();
  const OpenElmConfig& c = exact.config();
  auto rows = [group, weight_levels](std::vector<float>& m, int64_t cols) {
    for (size_t r = 0; r * cols < m.size(); ++r) {
      ReferenceQuantize8(absl::MakeSpan(m.data() + r * cols, cols), group, weight_levels);
    }
  };
  rows(w.token_embeddings, c.model_dim);
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const LayerShape& s = c.layers[l];
    ReferenceLayerWeights& lw = w.layers[l];
    rows(lw.qkv_proj, c.model_dim);
    rows(lw.out_proj, int64_t{s.num_query_heads} * c.head_dim);
    rows(lw.proj_1, c.model_dim);
    rows(lw.proj_2, s.ffn_dim);
  }
  return OpenElmReference::FromWeights(
      c, std::move(w), {.int8_input_group = group, .int8_input_levels = input_levels});
}

class ScopedDir {
 public:
  explicit ScopedDir(std::string d) : dir_(std::move(d)) {}
  ~ScopedDir() { std::filesystem::remove_all(dir_); }
  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
};

// Both int8 backends: the own kernels (OwnKernels, every host) and the plan's
// choice where that is oneDNN's int8 (Plan: VNNI hosts only).
class Int8AccuracyTest : public ::testing::TestWithParam<bool> {};

TEST_P(Int8AccuracyTest, TinyModelAgainstTheReference) {
  const bool own_kernels = GetParam();
  if (!own_kernels && KernelBuildFor(EffectiveCpuIsa()) != KernelBuild::kAvx512Vnni) {
    GTEST_SKIP() << "the plan runs the own int8 kernels here (OwnKernels covers them); "
                    "oneDNN int8 needs AVX512_VNNI at the effective level, this CPU runs "
                 << CpuIsaName(EffectiveCpuIsa());
  }
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("tiny"));
  ScopedDir dir(absl::StrCat(::testing::TempDir(), "/openelm_int8_tiny_", getpid()));
  ASSERT_OK(WriteRandomCheckpoint(config, /*seed=*/42, DType::kF32, 1, dir.path()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir.path()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmModel> model,
                       Int8Model(*ckpt, 128, own_kernels));
  EXPECT_EQ(model->info().weight_dtype, "int8");
  EXPECT_THAT(
      model->plan().Describe(),
      ::testing::HasSubstr(own_kernels ? "matmul=own-int8" : "matmul=onednn-int8"));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> ref,
                       OpenElmReference::Create(*ckpt));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> same_scheme,
                       QuantizedReference(*ref, kWholeRow));

  Accuracy total, scheme;
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::vector<TokenId> prompt = Prompt(40, seed);
    ASSERT_OK_AND_ASSIGN(LogitRows got, Logits(*model, prompt));
    ASSERT_OK_AND_ASSIGN(LogitRows want, ref->ForwardAll(prompt));
    ASSERT_OK_AND_ASSIGN(LogitRows want_q, same_scheme->ForwardAll(prompt));
    total.Add(Compare(got, want));
    scheme.Add(Compare(got, want_q));
  }
  Report("tiny, 3 x 40 positions, teacher-forced", total);
  Report("tiny against the reference quantized the same way", scheme);

  // Greedy continuation of one prompt, recomputed from scratch each step.
  std::vector<TokenId> seq_int8 = Prompt(8, 9), seq_ref = seq_int8;
  int32_t agree = 0;
  for (int32_t step = 0; step < 24; ++step) {
    ASSERT_OK_AND_ASSIGN(LogitRows got, Logits(*model, seq_int8));
    ASSERT_OK_AND_ASSIGN(std::vector<float> want, ref->ForwardLast(seq_ref));
    const TokenId a = ArgMax(got.back()), b = ArgMax(want);
    if (a != b) break;
    ++agree;
    seq_int8.push_back(a);
    seq_ref.push_back(b);
  }
  std::cout << "[int8 accuracy] tiny greedy agreement length: " << agree << " of 24"
            << std::endl;

  EXPECT_GE(total.top1(), 0.95);
  EXPECT_LE(total.mean_dlogprob, 0.02);
  EXPECT_GE(agree, 8);
  EXPECT_EQ(total.clear_agree, total.clear);
  // The kernels implement the stated scheme: against a reference quantized the
  // same way (per channel, per token) the difference is well under the
  // scheme's own cost (measured 0.41x; what is left is f32-vs-double inputs
  // rounding to the neighbouring step now and then, which d = 128 feels). A
  // reference with groups of 16 instead measured 1.0-1.2x.
  EXPECT_EQ(scheme.clear_agree, scheme.clear);
  EXPECT_LE(scheme.mean_dlogprob, 0.6 * total.mean_dlogprob);
}

INSTANTIATE_TEST_SUITE_P(Backends, Int8AccuracyTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "OwnKernels" : "Plan");
                         });

TEST(Int8AccuracyTest270m, OpenElm270mAgainstTheReference) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("270M"));
  ScopedDir dir(absl::StrCat(::testing::TempDir(), "/openelm_int8_270m_", getpid()));
  ASSERT_OK(WriteRandomCheckpoint(config, /*seed=*/270, DType::kBF16, 1, dir.path()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir.path()));
  // CI runs one 32-token prompt (about 15 s; 8 tokens in sanitizer builds);
  // OPENELM_INT8_ACCURACY_PROMPTS=N measures N of them (BENCHMARKS.md used
  // 8). OPENELM_INT8_SCHEME_STUDY=1 also measures other scale granularities
  // on the reference itself (QuantizedReference; a few minutes).
  const char* env = std::getenv("OPENELM_INT8_ACCURACY_PROMPTS");
  const int32_t num_prompts = env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : 1;
  std::vector<std::vector<TokenId>> prompts;
#ifdef OPENELM_SANITIZER_BUILD
  constexpr int32_t kPromptLen = 8;  // instrumented code is ~10x slower
#else
  constexpr int32_t kPromptLen = 32;
#endif
  for (int32_t i = 0; i < num_prompts; ++i) prompts.push_back(Prompt(kPromptLen, 5 + i));
  std::vector<LogitRows> got(num_prompts);
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmModel> model, Int8Model(*ckpt, 64));
    for (int32_t i = 0; i < num_prompts; ++i) {
      ASSERT_OK_AND_ASSIGN(got[i], Logits(*model, prompts[i]));
    }
  }  // frees the engine's weights before the reference loads its own
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> ref,
                       OpenElmReference::Create(*ckpt));
  ckpt.reset();
  LogitRows all_got, all_want;
  for (int32_t i = 0; i < num_prompts; ++i) {
    ASSERT_OK_AND_ASSIGN(LogitRows want, ref->ForwardAll(prompts[i]));
    for (size_t r = 0; r < want.size(); ++r) {
      all_got.push_back(got[i][r]);
      all_want.push_back(want[r]);
    }
  }
  const Accuracy a = Compare(all_got, all_want);
  Report(absl::StrCat("270M, ", num_prompts, " x ", kPromptLen,
                      " positions, teacher-forced"),
         a);
  // Measured (8 x 32 positions): see BENCHMARKS.md; the bars keep a margin.
  // Random weights leave the top two logits within 0.2 of each other at most
  // positions (179 of 256); every disagreement measured was at one of those.
  EXPECT_GE(a.top1(), kPromptLen >= 32 ? 0.90 : 0.75);  // 8 positions: at most 2 misses
  EXPECT_EQ(a.clear_agree, a.clear);
  EXPECT_LE(a.mean_dlogprob, 0.06);

  const char* study = std::getenv("OPENELM_INT8_SCHEME_STUDY");
  if (study == nullptr || std::string(study) != "1") return;
  // Other schemes, applied to the reference in plain code (not the engine).
  auto run_scheme = [&](const std::string& name, int64_t group, int32_t weight_levels,
                        int32_t input_levels) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> q,
                         QuantizedReference(*ref, group, weight_levels, input_levels));
    LogitRows all_q;
    for (int32_t i = 0; i < num_prompts; ++i) {
      ASSERT_OK_AND_ASSIGN(LogitRows rows, q->ForwardAll(prompts[i]));
      for (std::vector<float>& row : rows) all_q.push_back(std::move(row));
    }
    Report(absl::StrCat("scheme study: ", name), Compare(all_q, all_want));
  };
  // Per channel / per token as the engine does, then groups of G along K for
  // both weights and inputs.
  run_scheme("per channel / per token", kWholeRow, 127, 127);
  for (int64_t group : {int64_t{32}, int64_t{64}, int64_t{128}, int64_t{256}}) {
    run_scheme(absl::StrCat("groups of ", group, " along K"), group, 127, 127);
  }
  // 7-bit variants of the engine's scheme: what an AVX2 kernel needs to drop
  // the sign step of its dot product (unsigned activations + 128 times weights
  // within +-63, or activations within +-63, never overflow maddubs' 16-bit
  // pairs; oneDNN 2.6's AVX2 u8s8 matmul is exact only then).
  run_scheme("per channel / per token, 7-bit weights", kWholeRow, 63, 127);
  run_scheme("per channel / per token, 7-bit activations", kWholeRow, 127, 63);
}

}  // namespace
}  // namespace openelm::testing
