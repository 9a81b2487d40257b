// LlmEngine over the real OpenElmModel (tiny random-weight checkpoint written
// at test time): batching, seeding and prefix caching must not change results.

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/llm_engine.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "engine/model/openelm_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/recording_sink.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::RecordingSink;

class EngineModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path() /
                           ("openelm_engine_model_test_" + std::to_string(getpid())));
    ASSERT_OK_AND_ASSIGN(auto config, MakeOpenElmConfig("tiny"));
    ASSERT_OK(WriteRandomCheckpoint(config, /*seed=*/11, DType::kF32, 1, *dir_));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  // Use as ASSERT_NO_FATAL_FAILURE(MakeEngine(&engine, ...)).
  void MakeEngine(std::unique_ptr<LlmEngine>* engine, int32_t budget = 64,
                  bool prefix_caching = true) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(*dir_));
    OpenElmModelOptions model_options;
    model_options.weight_dtype = DType::kF32;
    model_options.kv_dtype = DType::kF32;
    model_options.num_threads = 1;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmModel> model,
                         OpenElmModel::Create(*checkpoint, model_options));
    EngineOptions options;
    options.num_blocks = 256;
    options.block_size_tokens = 8;
    options.max_num_batched_tokens = budget;
    options.max_num_seqs = 16;
    options.enable_prefix_caching = prefix_caching;
    options.start_thread = false;
    ASSERT_OK_AND_ASSIGN(*engine,
                         LlmEngine::Create(options, std::move(model), nullptr, nullptr));
  }

  static std::vector<TokenId> Prompt(int n, int salt) {
    std::vector<TokenId> p = {kBosTokenId};
    for (int i = 1; i < n; ++i) p.push_back(3 + (i * 131 + salt * 977) % 31000);
    return p;
  }

  // Runs `specs` together to completion; returns the sinks.
  static std::vector<std::unique_ptr<RecordingSink>> RunAll(
      LlmEngine& engine, std::vector<GenerateSpec> specs) {
    std::vector<std::unique_ptr<RecordingSink>> sinks;
    for (size_t i = 0; i < specs.size(); ++i) {
      sinks.push_back(std::make_unique<RecordingSink>());
      EXPECT_OK(engine.Submit(i + 1, std::move(specs[i]), sinks.back().get()));
    }
    for (int step = 0; step < 2000; ++step) {
      bool done = true;
      for (const auto& s : sinks) done = done && s->finished();
      if (done) break;
      EXPECT_OK(engine.StepForTesting());
    }
    for (const auto& s : sinks) EXPECT_TRUE(s->finished());
    return sinks;
  }

  static GenerateSpec Spec(std::vector<TokenId> prompt, int32_t max_tokens,
                           float temperature, std::optional<uint64_t> seed = {}) {
    GenerateSpec spec;
    spec.prompt = std::move(prompt);
    spec.params.max_tokens = max_tokens;
    spec.params.temperature = temperature;
    spec.params.seed = seed;
    spec.params.ignore_eos = true;
    spec.params.logprobs = 2;
    return spec;
  }

  // Per token: [chosen, top1, top2] logprobs, flattened from the deltas.
  static std::vector<std::vector<TokenLogprob>> Logprobs(const RecordingSink& sink,
                                                         int index = 0) {
    std::vector<std::vector<TokenLogprob>> out;
    for (const OutputDelta& d : sink.deltas()) {
      if (d.index != index) continue;
      out.insert(out.end(), d.logprobs.begin(), d.logprobs.end());
    }
    return out;
  }

  // Greedy runs must agree token by token, with logprobs within `tol`; they
  // may only part where the reference has a near tie between its top two.
  static void ExpectSameGreedy(const RecordingSink& want, const RecordingSink& got,
                               float tol) {
    const auto a = Logprobs(want);
    const auto b = Logprobs(got);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i][0].token != b[i][0].token) {
        EXPECT_LT(a[i][1].logprob - a[i][2].logprob, 10 * tol)
            << "diverged at " << i << " without a near tie";
        return;
      }
      EXPECT_NEAR(a[i][0].logprob, b[i][0].logprob, tol) << i;
    }
  }

  static std::string* dir_;
};

std::string* EngineModelTest::dir_ = nullptr;

TEST_F(EngineModelTest, GreedyOutputIsTheSameAloneAndInABusyChunkedBatch) {
  std::unique_ptr<LlmEngine> alone_engine;
  ASSERT_NO_FATAL_FAILURE(MakeEngine(&alone_engine));
  auto alone = RunAll(*alone_engine, {Spec(Prompt(21, 0), 12, 0.0f)});
  std::unique_ptr<LlmEngine> busy_engine;
  ASSERT_NO_FATAL_FAILURE(MakeEngine(&busy_engine, /*budget=*/16));
  std::vector<GenerateSpec> specs = {Spec(Prompt(21, 0), 12, 0.0f)};
  for (int i = 1; i <= 5; ++i) specs.push_back(Spec(Prompt(5 + 7 * i, i), 10, 0.0f));
  auto busy = RunAll(*busy_engine, std::move(specs));
  ExpectSameGreedy(*alone[0], *busy[0], 2e-3f);
}

TEST_F(EngineModelTest, SeededSamplingIsTheSameAloneAndInABusyBatch) {
  std::unique_ptr<LlmEngine> alone_engine;
  ASSERT_NO_FATAL_FAILURE(MakeEngine(&alone_engine));
  auto alone = RunAll(*alone_engine, {Spec(Prompt(13, 3), 16, 1.0f, 99)});
  std::unique_ptr<LlmEngine> busy_engine;
  ASSERT_NO_FATAL_FAILURE(MakeEngine(&busy_engine, /*budget=*/16));
  std::vector<GenerateSpec> specs;
  for (int i = 1; i <= 4; ++i) specs.push_back(Spec(Prompt(9 + 5 * i, i), 10, 0.8f));
  specs.push_back(Spec(Prompt(13, 3), 16, 1.0f, 99));
  auto busy = RunAll(*busy_engine, std::move(specs));
  EXPECT_EQ(alone[0]->tokens(), busy[4]->tokens());
}

TEST_F(EngineModelTest, TwoCompletionsWithTheSameSeedAreDeterministic) {
  using Tokens = std::pair<std::vector<TokenId>, std::vector<TokenId>>;
  auto run = [&](Tokens* out) {
    std::unique_ptr<LlmEngine> engine;
    ASSERT_NO_FATAL_FAILURE(MakeEngine(&engine));
    GenerateSpec spec = Spec(Prompt(11, 5), 12, 1.0f, 1234);
    spec.params.n = 2;
    auto sinks = RunAll(*engine, {std::move(spec)});
    *out = std::make_pair(sinks[0]->tokens(0), sinks[0]->tokens(1));
  };
  Tokens first;
  Tokens second;
  ASSERT_NO_FATAL_FAILURE(run(&first));
  ASSERT_NO_FATAL_FAILURE(run(&second));
  EXPECT_EQ(first, second);
  EXPECT_EQ(first.first.size(), 12u);
  EXPECT_NE(first.first, first.second);
}

TEST_F(EngineModelTest, PrefixCacheHitGivesTheSameLogprobsAsAMiss) {
  std::unique_ptr<LlmEngine> engine;
  ASSERT_NO_FATAL_FAILURE(MakeEngine(&engine));
  auto miss = RunAll(*engine, {Spec(Prompt(27, 7), 8, 0.0f)});
  auto hit = RunAll(*engine, {Spec(Prompt(27, 7), 8, 0.0f)});
  EXPECT_EQ(miss[0]->info().num_cached_tokens, 0);
  EXPECT_EQ(hit[0]->info().num_cached_tokens, 24);
  ExpectSameGreedy(*miss[0], *hit[0], 1e-4f);
}

}  // namespace
}  // namespace openelm
