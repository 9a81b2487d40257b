#include "engine/tokenizer/incremental_detokenizer.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "engine/base/types.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::testing::ElementsAre;

constexpr char kModelPath[] = OPENELM_TEST_TOKENIZER_MODEL;
constexpr TokenId kHello = 15043;  // "▁Hello"
constexpr TokenId kWorld = 3186;   // "▁world"
constexpr TokenId kSpace = 29871;  // "▁"
constexpr TokenId kUnk = 0;
constexpr TokenId kFirstByte = 3;  // <0x00>; <0xNN> is kFirstByte + NN

TokenId Byte(int value) { return kFirstByte + value; }

const std::vector<std::string>& StreamTexts() {
  static const auto* const texts = new std::vector<std::string>{
      "Hello world",
      "日本語のテキストです。漢字とかな",
      "中文测试：你好，世界！",
      "Emoji 😀🎉🚀 and a flag 🇯🇵 end",
      "𠮷野家 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters",
      "Mixed: naïve café Ωmega – “quotes” — done",
      "line one\nline two\n\n\tindented\r\nwindows",
      " leading space",
      "\n\nstarts with newlines",
      "😀",
  };
  return *texts;
}

class IncrementalDetokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> loaded, Tokenizer::Load(kModelPath));
    tokenizer_ = loaded.release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    tokenizer_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(tokenizer_, nullptr); }

  // Feeds `ids` in chunks of `chunk` ids, checks that every delta is valid
  // UTF-8, and returns the concatenation of all deltas and Flush().
  static std::string Stream(absl::Span<const TokenId> ids, bool leading_text_exists,
                            size_t chunk = 1) {
    IncrementalDetokenizer detokenizer(tokenizer_, leading_text_exists);
    std::string all;
    for (size_t i = 0; i < ids.size(); i += chunk) {
      const std::string delta = detokenizer.Push(ids.subspan(i, chunk));
      EXPECT_TRUE(utf8::IsValid(delta)) << "broken UTF-8 after id index " << i;
      all += delta;
    }
    const std::string tail = detokenizer.Flush();
    EXPECT_TRUE(utf8::IsValid(tail));
    return all + tail;
  }

  static std::string Decode(absl::Span<const TokenId> ids) {
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids);
    EXPECT_TRUE(text.ok()) << text.status().ToString();
    return text.ok() ? *text : "";
  }

  static Tokenizer* tokenizer_;
};

Tokenizer* IncrementalDetokenizerTest::tokenizer_ = nullptr;

TEST_F(IncrementalDetokenizerTest, TokenByTokenEqualsDecode) {
  for (const std::string& text : StreamTexts()) {
    for (bool add_bos : {true, false}) {
      ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, tokenizer_->Encode(text, add_bos));
      EXPECT_EQ(Stream(ids, /*leading_text_exists=*/false), Decode(ids)) << text;
      EXPECT_EQ(Stream(ids, false), text);
    }
  }
}

TEST_F(IncrementalDetokenizerTest, ChunkedPushesEqualDecode) {
  for (const std::string& text : StreamTexts()) {
    ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, tokenizer_->Encode(text, true));
    for (size_t chunk : {2, 3, 5, 1000}) {
      EXPECT_EQ(Stream(ids, false, chunk), text) << text << " chunk " << chunk;
    }
  }
}

TEST_F(IncrementalDetokenizerTest, HoldsBytesUntilCharacterIsComplete) {
  // "😀" is F0 9F 98 80, spelled with four byte-fallback pieces.
  IncrementalDetokenizer detokenizer(tokenizer_, /*leading_text_exists=*/true);
  EXPECT_EQ(detokenizer.Push({kHello}), " Hello");
  EXPECT_EQ(detokenizer.Push({Byte(0xF0)}), "");
  EXPECT_EQ(detokenizer.Push({Byte(0x9F)}), "");
  EXPECT_EQ(detokenizer.Push({Byte(0x98)}), "");
  EXPECT_EQ(detokenizer.Push({Byte(0x80)}), "😀");
  EXPECT_EQ(detokenizer.Push({kWorld}), " world");
  EXPECT_EQ(detokenizer.Flush(), "");
}

TEST_F(IncrementalDetokenizerTest, LeadingSpaceOfFirstPieceDependsOnContext) {
  IncrementalDetokenizer fresh(tokenizer_, /*leading_text_exists=*/false);
  EXPECT_EQ(fresh.Push({kHello}), "Hello");
  EXPECT_EQ(fresh.Push({kWorld}), " world");

  IncrementalDetokenizer continued(tokenizer_, /*leading_text_exists=*/true);
  EXPECT_EQ(continued.Push({kHello}), " Hello");

  // BOS does not count as the first piece; a lone "▁" does.
  IncrementalDetokenizer after_bos(tokenizer_, false);
  EXPECT_EQ(after_bos.Push({kBosTokenId, kHello}), "Hello");
  IncrementalDetokenizer after_space(tokenizer_, false);
  EXPECT_EQ(after_space.Push({kSpace}), "");
  EXPECT_EQ(after_space.Push({kHello}), " Hello");
  EXPECT_EQ(Decode({kSpace, kHello}), " Hello");
}

TEST_F(IncrementalDetokenizerTest, ControlTokensProduceNoText) {
  IncrementalDetokenizer detokenizer(tokenizer_, true);
  EXPECT_EQ(detokenizer.Push({kBosTokenId}), "");
  EXPECT_EQ(detokenizer.Push({kHello}), " Hello");
  EXPECT_EQ(detokenizer.Push({kEosTokenId}), "");
  EXPECT_EQ(detokenizer.Flush(), "");
}

TEST_F(IncrementalDetokenizerTest, UnknownPieceUsesDecodeSurface) {
  EXPECT_EQ(Stream({kHello, kUnk, kWorld}, false), Decode({kHello, kUnk, kWorld}));
  EXPECT_EQ(Stream({kUnk, kWorld}, false), Decode({kUnk, kWorld}));
}

TEST_F(IncrementalDetokenizerTest, FlushTurnsIncompleteBytesIntoReplacement) {
  IncrementalDetokenizer detokenizer(tokenizer_, true);
  EXPECT_EQ(detokenizer.Push({kHello, Byte(0xF0), Byte(0x9F)}), " Hello");
  const std::string tail = detokenizer.Flush();
  EXPECT_EQ(tail, "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tail, Decode({Byte(0xF0), Byte(0x9F)}));
  EXPECT_EQ(detokenizer.Flush(), "");  // nothing held any more
}

TEST_F(IncrementalDetokenizerTest, BrokenByteRunEndsAtNextPiece) {
  // An incomplete character followed by a normal piece or a control piece is
  // replaced right away, as in Decode.
  const std::vector<TokenId> by_text = {kHello, Byte(0xE6), Byte(0x97), kWorld};
  EXPECT_EQ(Stream(by_text, false), Decode(by_text));
  const std::vector<TokenId> by_control = {kHello, Byte(0xF0), kEosTokenId, Byte(0x9F)};
  EXPECT_EQ(Stream(by_control, false), Decode(by_control));
}

// Randomized check against SentencePiece's own Decode: sequences mixing byte
// pieces (valid and invalid UTF-8), text pieces, "▁", <unk> and controls.
TEST_F(IncrementalDetokenizerTest, RandomSequencesMatchDecode) {
  std::mt19937 rng(1234);
  const std::vector<TokenId> others = {kHello,         kWorld,      kSpace,
                                       kUnk,           kBosTokenId, kEosTokenId,
                                       30325 /* 日 */, 29892 /* , */};
  // Bytes that make valid characters likely: ASCII, lead bytes, continuations.
  const std::vector<int> bytes = {0x41, 0x0A, 0x20, 0xC3, 0xA9, 0xE6, 0x97, 0xA5,
                                  0xF0, 0x9F, 0x98, 0x80, 0xED, 0xA0, 0xC0, 0xFF};
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<TokenId> ids(1 + rng() % 24);
    for (TokenId& id : ids) {
      if (rng() % 3 == 0) {
        id = others[rng() % others.size()];
      } else {
        id = Byte(rng() % 4 == 0 ? static_cast<int>(rng() % 256)
                                 : bytes[rng() % bytes.size()]);
      }
    }
    const std::string want = Decode(ids);
    ASSERT_EQ(Stream(ids, false), want) << "trial " << trial;
    ASSERT_EQ(Stream(ids, false, 3), want) << "trial " << trial;
  }
}

// With leading_text_exists, streaming the output after a prompt gives what
// Decode(prompt + output) adds to Decode(prompt), for every split point that
// does not cut a run of byte pieces.
TEST_F(IncrementalDetokenizerTest, ContinuationEqualsDifferenceOfDecodes) {
  for (const std::string& text : StreamTexts()) {
    ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, tokenizer_->Encode(text, true));
    const std::string whole = Decode(ids);
    for (size_t split = 1; split < ids.size(); ++split) {
      const bool cuts_byte_run = ids[split - 1] >= Byte(0) &&
                                 ids[split - 1] <= Byte(255) && ids[split] >= Byte(0) &&
                                 ids[split] <= Byte(255);
      if (cuts_byte_run) continue;
      const absl::Span<const TokenId> all(ids);
      const std::string prompt = Decode(all.subspan(0, split));
      ASSERT_EQ(whole.substr(0, prompt.size()), prompt);
      // The prompt "has text" once it holds any non-control piece, even one
      // that printed nothing (a lone "▁" at the start).
      bool leading_text_exists = false;
      for (size_t i = 0; i < split; ++i) {
        if (!tokenizer_->IsControl(ids[i])) leading_text_exists = true;
      }
      EXPECT_EQ(Stream(all.subspan(split), leading_text_exists),
                whole.substr(prompt.size()))
          << text << " split " << split;
    }
  }
}

TEST_F(IncrementalDetokenizerTest, IdsOutsideVocabularyAreIgnored) {
  IncrementalDetokenizer detokenizer(tokenizer_, false);
  EXPECT_EQ(detokenizer.Push({-1, 32000, kHello}), "Hello");
}

TEST(Utf8Test, ValidCharLength) {
  EXPECT_EQ(utf8::ValidCharLength("a"), 1u);
  EXPECT_EQ(utf8::ValidCharLength("\xC3\xA9x"), 2u);
  EXPECT_EQ(utf8::ValidCharLength("\xE6\x97\xA5"), 3u);
  EXPECT_EQ(utf8::ValidCharLength("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(utf8::ValidCharLength(""), 0u);
  EXPECT_EQ(utf8::ValidCharLength("\xE6\x97"), 0u);
  EXPECT_EQ(utf8::ValidCharLength("\xC0\x80"), 0u);          // overlong
  EXPECT_EQ(utf8::ValidCharLength("\xE0\x80\x80"), 0u);      // overlong
  EXPECT_EQ(utf8::ValidCharLength("\xED\xBF\xBF"), 0u);      // surrogate
  EXPECT_EQ(utf8::ValidCharLength("\xF4\x90\x80\x80"), 0u);  // > U+10FFFF
  EXPECT_EQ(utf8::ValidCharLength("\xF4\x8F\xBF\xBF"), 4u);  // U+10FFFF
  EXPECT_TRUE(utf8::IsIncompletePrefix("\xF0\x9F\x98"));
  EXPECT_TRUE(utf8::IsIncompletePrefix("\xE6"));
  EXPECT_FALSE(utf8::IsIncompletePrefix("\xE6\x41"));
  EXPECT_FALSE(utf8::IsIncompletePrefix("\x80"));
  EXPECT_FALSE(utf8::IsIncompletePrefix("a"));
}

}  // namespace
}  // namespace openelm
