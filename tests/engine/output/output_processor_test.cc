// The OutputProcessor's stop strings, through an LlmEngine over the FakeDecoder
// with the real Llama-2 tokenizer: matches across token boundaries, the stop
// string is never emitted, held text is released.

#include <memory>
#include <string>
#include <vector>

#include "engine/llm_engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_harness.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

class StopStringsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_OK_AND_ASSIGN(auto tokenizer, Tokenizer::Load(OPENELM_TOKENIZER_MODEL_PATH));
    tokenizer_ = tokenizer.release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }

  // Runs a request whose greedy output is `text` (then EOS) and returns the
  // sink's text for completion 0 and the finish info.
  // Use as ASSERT_NO_FATAL_FAILURE(Run(..., &result)).
  void Run(const std::string& text, std::vector<std::string> stops,
           std::pair<std::string, FinishInfo>* result,
           std::vector<std::string>* deltas = nullptr) {
    FakeDecoderOptions fake;
    fake.vocab_size = 32000;
    EngineOptions options;
    options.num_blocks = 64;
    options.block_size_tokens = 4;
    EngineHarness h(options, fake, tokenizer_);
    ASSERT_OK_AND_ASSIGN(std::vector<TokenId> prompt,
                         tokenizer_->Encode("Story:", /*add_bos=*/true));
    ASSERT_OK_AND_ASSIGN(std::vector<TokenId> script,
                         tokenizer_->Encode(text, /*add_bos=*/false));
    script.push_back(kEosTokenId);
    h.fake().SetScript(static_cast<int32_t>(prompt.size()), script);
    GenerateSpec spec = Spec(prompt, 64);
    spec.params.stop = std::move(stops);
    EXPECT_OK(h.Submit(1, std::move(spec)));
    EXPECT_TRUE(h.RunUntilDone());
    h.ExpectNoViolations();
    h.ExpectPoolFull();
    if (deltas != nullptr) {
      for (const OutputDelta& d : h.sink(1).deltas()) deltas->push_back(d.text);
    }
    *result = {h.sink(1).text(), h.sink(1).info()};
  }

  static const Tokenizer* tokenizer_;
};

const Tokenizer* StopStringsTest::tokenizer_ = nullptr;

constexpr char kText[] = "The quick brown fox jumps over the lazy dog.";

TEST_F(StopStringsTest, WithoutStopsTheWholeTextIsEmitted) {
  std::pair<std::string, FinishInfo> result;
  ASSERT_NO_FATAL_FAILURE((Run(kText, {}, &result)));
  auto [text, info] = result;
  EXPECT_EQ(text, std::string(" ") + kText);
  EXPECT_EQ(info.completions[0].reason, FinishReason::kEos);
}

TEST_F(StopStringsTest, StopAcrossTokenBoundariesIsCutAndNeverEmitted) {
  std::vector<std::string> deltas;
  std::pair<std::string, FinishInfo> result;
  ASSERT_NO_FATAL_FAILURE((Run(kText, {"fox jumps"}, &result, &deltas)));
  auto [text, info] = result;
  EXPECT_EQ(text, " The quick brown ");
  EXPECT_EQ(info.completions[0].reason, FinishReason::kStopSequence);
  EXPECT_EQ(info.completions[0].stop_matched, "fox jumps");
  for (const std::string& d : deltas) EXPECT_EQ(d.find("fox"), std::string::npos);
}

TEST_F(StopStringsTest, StopInsideAWordMatches) {
  std::pair<std::string, FinishInfo> result;
  ASSERT_NO_FATAL_FAILURE((Run(kText, {"own f", "zzz"}, &result)));
  auto [text, info] = result;
  EXPECT_EQ(text, " The quick br");
  EXPECT_EQ(info.completions[0].stop_matched, "own f");
}

TEST_F(StopStringsTest, HeldTextIsReleasedWhenTheStopNeverCompletes) {
  std::vector<std::string> deltas;
  std::pair<std::string, FinishInfo> result;
  ASSERT_NO_FATAL_FAILURE((Run(kText, {"lazy cat"}, &result, &deltas)));
  auto [text, info] = result;
  EXPECT_EQ(text, std::string(" ") + kText);
  EXPECT_EQ(info.completions[0].reason, FinishReason::kEos);
  // "lazy" was held until it could no longer become "lazy cat".
  bool lazy_alone = false;
  for (const std::string& d : deltas) {
    if (d.find("lazy") != std::string::npos && d.find("dog") == std::string::npos) {
      lazy_alone = true;
    }
  }
  EXPECT_FALSE(lazy_alone);
}

}  // namespace
}  // namespace openelm::testing
