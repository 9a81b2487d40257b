#include "engine/tokenizer/tokenizer.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kModelPath[] = OPENELM_TEST_TOKENIZER_MODEL;

// Texts whose Decode(Encode(text)) must give the text back.
const std::vector<std::string>& RoundTripTexts() {
  static const auto* const texts = new std::vector<std::string>{
      "Hello world",
      "Hello, world!",
      "Once upon a time there was",
      " leading space",
      "  two leading spaces and trailing  ",
      "line one\nline two\n\n\ttabbed",
      "日本語のテキストです。",
      "中文测试：你好，世界！",
      "Emoji 😀🎉 and flags 🇯🇵",
      "Mixed: naïve café Ωmega – “quotes” — 𠮷野家",
      "\n",
      "x",
  };
  return *texts;
}

class TokenizerTest : public ::testing::Test {
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

  static Tokenizer* tokenizer_;
};

Tokenizer* TokenizerTest::tokenizer_ = nullptr;

TEST_F(TokenizerTest, EncodesReferenceSentencesWithBos) {
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> hello,
                       tokenizer_->Encode("Hello world", /*add_bos=*/true));
  EXPECT_THAT(hello, ElementsAre(1, 15043, 3186));
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> punct,
                       tokenizer_->Encode("Hello, world!", /*add_bos=*/true));
  EXPECT_THAT(punct, ElementsAre(1, 15043, 29892, 3186, 29991));
  ASSERT_OK_AND_ASSIGN(
      std::vector<TokenId> story,
      tokenizer_->Encode("Once upon a time there was", /*add_bos=*/true));
  EXPECT_THAT(story, ElementsAre(1, 9038, 2501, 263, 931, 727, 471));
}

TEST_F(TokenizerTest, EncodeWithoutBosHasNoSpecialTokens) {
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids,
                       tokenizer_->Encode("Hello world", /*add_bos=*/false));
  EXPECT_THAT(ids, ElementsAre(15043, 3186));
}

TEST_F(TokenizerTest, EncodeEmptyText) {
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> with_bos, tokenizer_->Encode("", true));
  EXPECT_THAT(with_bos, ElementsAre(kBosTokenId));
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> without, tokenizer_->Encode("", false));
  EXPECT_THAT(without, IsEmpty());
}

TEST_F(TokenizerTest, SpecialIdsAndVocabulary) {
  EXPECT_EQ(tokenizer_->vocab_size(), 32000);
  EXPECT_EQ(tokenizer_->bos_id(), kBosTokenId);
  EXPECT_EQ(tokenizer_->eos_id(), kEosTokenId);
  EXPECT_TRUE(tokenizer_->IsControl(1));
  EXPECT_TRUE(tokenizer_->IsControl(2));
  EXPECT_FALSE(tokenizer_->IsControl(0));  // <unk> is not a control piece
  EXPECT_FALSE(tokenizer_->IsControl(15043));
  EXPECT_FALSE(tokenizer_->IsControl(-1));
  EXPECT_FALSE(tokenizer_->IsControl(32000));
}

TEST_F(TokenizerTest, PieceTable) {
  EXPECT_EQ(tokenizer_->IdToPiece(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(tokenizer_->PieceBytes(15043), " Hello");
  EXPECT_EQ(tokenizer_->IdToPiece(13), "<0x0A>");
  EXPECT_EQ(tokenizer_->PieceBytes(13), "\n");
  EXPECT_EQ(tokenizer_->IdToPiece(1), "<s>");
  EXPECT_EQ(tokenizer_->PieceBytes(1), "");
  EXPECT_EQ(tokenizer_->PieceBytes(2), "");
  EXPECT_EQ(tokenizer_->IdToPiece(29871), "\xE2\x96\x81");
  EXPECT_EQ(tokenizer_->PieceBytes(29871), " ");
  // Byte pieces <0x00>..<0xFF> are ids 3..258.
  EXPECT_EQ(tokenizer_->PieceBytes(3), std::string(1, '\0'));
  EXPECT_EQ(tokenizer_->PieceBytes(258), "\xFF");
  // Out of range: empty, no crash.
  EXPECT_EQ(tokenizer_->IdToPiece(-5), "");
  EXPECT_EQ(tokenizer_->PieceBytes(32000), "");
}

TEST_F(TokenizerTest, UnknownPieceBytesAreWhatDecodePrints) {
  ASSERT_OK_AND_ASSIGN(std::string decoded, tokenizer_->Decode({0}));
  EXPECT_EQ(tokenizer_->PieceBytes(0), decoded);
  EXPECT_EQ(decoded, " \xE2\x81\x87 ");  // SentencePiece's default " ⁇ "
}

// PieceBytes(id) must be exactly what Decode appends for `id` after other
// text, for every non-byte piece of the vocabulary.
TEST_F(TokenizerTest, PieceBytesMatchDecodeForWholeVocabulary) {
  constexpr TokenId kHello = 15043;
  ASSERT_OK_AND_ASSIGN(std::string prefix, tokenizer_->Decode({kHello}));
  int checked = 0;
  for (TokenId id = 0; id < tokenizer_->vocab_size(); ++id) {
    if (id >= 3 && id <= 258) continue;  // byte pieces: tested separately
    ASSERT_OK_AND_ASSIGN(std::string decoded, tokenizer_->Decode({kHello, id}));
    ASSERT_EQ(decoded, prefix + tokenizer_->PieceBytes(id)) << "id " << id;
    ++checked;
  }
  EXPECT_EQ(checked, 32000 - 256);
}

TEST_F(TokenizerTest, DecodeRoundTrips) {
  for (const std::string& text : RoundTripTexts()) {
    ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, tokenizer_->Encode(text, true));
    ASSERT_OK_AND_ASSIGN(std::string decoded, tokenizer_->Decode(ids));
    EXPECT_EQ(decoded, text);
  }
}

TEST_F(TokenizerTest, RareCharactersUseByteFallback) {
  // U+20BB7 is not in the vocabulary: it must be spelled with byte pieces.
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, tokenizer_->Encode("𠮷", false));
  std::vector<std::string> pieces;
  for (TokenId id : ids) pieces.push_back(tokenizer_->IdToPiece(id));
  EXPECT_THAT(pieces,
              ElementsAre("\xE2\x96\x81", "<0xF0>", "<0xA0>", "<0xAE>", "<0xB7>"));
}

TEST_F(TokenizerTest, DecodeDropsControlTokensAndFirstLeadingSpace) {
  ASSERT_OK_AND_ASSIGN(std::string text, tokenizer_->Decode({1, 15043, 3186, 2}));
  EXPECT_EQ(text, "Hello world");
  ASSERT_OK_AND_ASSIGN(std::string no_bos, tokenizer_->Decode({15043, 3186}));
  EXPECT_EQ(no_bos, "Hello world");
  ASSERT_OK_AND_ASSIGN(std::string empty, tokenizer_->Decode({}));
  EXPECT_EQ(empty, "");
}

TEST_F(TokenizerTest, DecodeRejectsIdsOutsideVocabulary) {
  EXPECT_THAT(tokenizer_->Decode({15043, 32000}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("32000")));
  EXPECT_THAT(tokenizer_->Decode({-1}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TokenizerTest, EncodeRejectsInvalidUtf8) {
  const std::vector<std::string> bad = {
      "\xFF",                  // never valid
      "abc\xC3",               // truncated two-byte sequence
      "\xE6\x97",              // truncated three-byte sequence
      "\xC0\xAF",              // overlong '/'
      "\xED\xA0\x80",          // UTF-16 surrogate
      "\xF4\x90\x80\x80",      // above U+10FFFF
      "ok \x80 continuation",  // stray continuation byte
  };
  for (const std::string& text : bad) {
    EXPECT_THAT(tokenizer_->Encode(text, true),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")))
        << "text bytes: " << text.size();
  }
  // The replacement character itself is fine.
  EXPECT_THAT(tokenizer_->Encode("\xEF\xBF\xBD", true), ::openelm::testing::IsOk());
}

TEST_F(TokenizerTest, ConcurrentEncodeMatchesSerialEncode) {
  std::vector<std::string> texts = RoundTripTexts();
  texts.push_back(std::string(2000, 'a') + " long tail " + std::string(500, 'z'));
  std::vector<std::vector<TokenId>> expected;
  for (const std::string& text : texts) {
    ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, tokenizer_->Encode(text, true));
    expected.push_back(ids);
  }
  constexpr int kThreads = 8;
  constexpr int kRounds = 20;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          // Each thread walks the texts in a different order.
          const size_t k = (i + t + round) % texts.size();
          absl::StatusOr<std::vector<TokenId>> ids = tokenizer_->Encode(texts[k], true);
          if (!ids.ok() || *ids != expected[k]) ++mismatches[t];
          absl::StatusOr<std::string> text = tokenizer_->Decode(expected[k]);
          if (!text.ok() || *text != texts[k]) ++mismatches[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(TokenizerLoadTest, MissingModelIsNotFoundNamingThePath) {
  const std::string path = "/nonexistent/dir/tokenizer.model";
  EXPECT_THAT(Tokenizer::Load(path),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
}

TEST(TokenizerLoadTest, DirectoryIsInvalidArgument) {
  EXPECT_THAT(Tokenizer::Load("/tmp"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/tmp")));
}

TEST(TokenizerLoadTest, CorruptModelIsInvalidArgumentNamingThePath) {
  const char* tmpdir = getenv("TMPDIR");
  std::string path = absl::StrCat(tmpdir != nullptr ? tmpdir : "/tmp",
                                  "/openelm_bad_tokenizer_", getpid(), ".model");
  {
    std::ofstream out(path, std::ios::binary);
    out << "this is not a sentencepiece model \xFF\xFF\xFF\xFF";
  }
  EXPECT_THAT(Tokenizer::Load(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
  unlink(path.c_str());
}

TEST(TokenizerLoadTest, SeveralTokenizersCoexist) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> first, Tokenizer::Load(kModelPath));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> second, Tokenizer::Load(kModelPath));
  first.reset();  // unloading one must not disturb the other
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, second->Encode("Hello world", true));
  EXPECT_THAT(ids, ElementsAre(1, 15043, 3186));
  // Loading many times reuses the one bridge namespace (glibc allows 16).
  for (int i = 0; i < 17; ++i) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> again, Tokenizer::Load(kModelPath));
  }
}

// The bound a server uses to refuse oversized prompts without encoding them
// must hold for every text: never more input bytes per token than it says.
TEST_F(TokenizerTest, BytesPerTokenBoundHoldsAndIsTight) {
  const int32_t bound = tokenizer_->max_bytes_per_token();
  // Llama-2: byte fallback and an identity normalizer, so a bound exists;
  // its longest pieces are runs of spaces / long words (well under 64).
  ASSERT_GT(bound, 1);
  EXPECT_LT(bound, 64);
  std::vector<std::string> texts = RoundTripTexts();
  texts.push_back(std::string(5000, ' '));
  texts.push_back(std::string(5000, 'a'));
  texts.push_back(std::string(3000, '\n'));
  std::string words;
  for (int i = 0; i < 300; ++i) absl::StrAppend(&words, "the international ");
  texts.push_back(words);
  // A run of the longest piece itself is the densest text there is.
  std::string longest;
  for (TokenId id = 0; id < tokenizer_->vocab_size(); ++id) {
    if (!tokenizer_->IsControl(id) &&
        tokenizer_->PieceBytes(id).size() > longest.size()) {
      longest = tokenizer_->PieceBytes(id);
    }
  }
  EXPECT_EQ(static_cast<int32_t>(longest.size()), bound);
  std::string dense;
  for (int i = 0; i < 200; ++i) dense += longest;
  texts.push_back(dense);
  for (const std::string& text : texts) {
    ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids,
                         tokenizer_->Encode(text, /*add_bos=*/false));
    EXPECT_GE(static_cast<int64_t>(ids.size()),
              MinTokensForBytes(*tokenizer_, static_cast<int64_t>(text.size())))
        << "text of " << text.size() << " bytes";
  }
  EXPECT_EQ(MinTokensForBytes(*tokenizer_, 0), 0);
  EXPECT_EQ(MinTokensForBytes(*tokenizer_, 1), 1);
  EXPECT_EQ(MinTokensForBytes(*tokenizer_, bound + 1), 2);
}

}  // namespace
}  // namespace openelm
