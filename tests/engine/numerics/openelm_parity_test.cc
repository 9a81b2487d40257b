// Parity of the oneDNN OpenElmModel with the scalar OpenElmReference on the
// generated "tiny" model (3 layers, d=128, hd=32, uneven heads), through the
// engine's public DecoderModel API only.
//
// Tolerances (absolute, on logits; the tiny model's logits have a standard
// deviation of about 0.3, so 1e-3 is ~0.3% of their spread):
//   * f32 weights, f32 KV vs reference:           1e-3, argmax equal everywhere
//   * bf16 weights, f32 KV vs reference on the
//     same bf16 weights:                          1e-3
//   * bf16 KV (K and V rounded to bf16 in the
//     cache, rel. error 2^-9) vs reference:       1e-2
//   * bf16 activations into the matmuls (the
//     non-default fast path) vs reference:        2e-2
//   * chunked vs one-shot prefill, decode vs
//     one-shot, mixed batch vs alone (same
//     engine, same dtypes):                       1e-5 (measured: bitwise
//     equal with h3's engine at the time of writing; the tolerance leaves
//     room for batch-size-dependent matmul kernels)
// Argmax: exact for f32; for bf16 a flip is allowed only between near-ties
// (the two candidates within the tolerance in the reference's logits).
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/model/checkpoint.h"
#include "engine/model/decoder_model.h"
#include "engine/model/openelm_config.h"
#include "engine/model/openelm_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/numerics/reference/openelm_reference.h"
#include "tests/engine/numerics/reference/parity_harness.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

// f32 activations (oneDNN f32 for f32 weights, the own bf16-weight kernel
// for bf16 weights) differ from the double reference by fp32 rounding only:
// 6.6e-7 / 7.2e-7 measured on AVX2 and the portable plan; 1e-4 is the
// fidelity bar of the f32 plan (issue 14).
constexpr double kF32Tol = 1e-4;
constexpr double kBf16WeightTol = 1e-4;
constexpr double kBf16KvTol = 1e-2;
constexpr double kBf16ActivationTol = 2e-2;
constexpr double kSelfTol = 1e-5;
// Engine vs itself with a bf16 KV cache: another chunking changes the row
// count of the matmuls before the cache, so their fp32 sums round differently
// (~1e-7 relative), which may flip the bf16 rounding of a stored K or V value
// by one bf16 step (2^-8 relative). Seen: 2.6e-4 with oneDNN's f32 matmul on
// AVX2; 2.4e-4 for a sequence in a mixed batch against it alone, with the
// emulated AVX-512 kernels (tests/emulated_isa). Still 10x tighter than
// kBf16KvTol, and the argmax must not move.
constexpr double kSelfBf16KvTol = 1e-3;

constexpr int32_t kBlockSize = 16;
constexpr int32_t kNumBlocks = 64;
constexpr int32_t kMaxBatchedTokens = 128;
constexpr int32_t kMaxSeqs = 8;
constexpr int32_t kPromptLen = 40;

// Deterministic pseudo-random prompt: BOS, then ids spread over the vocab.
std::vector<TokenId> MakePrompt(int32_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t = {kBosTokenId};
  while (static_cast<int32_t>(t.size()) < n) {
    t.push_back(3 + static_cast<TokenId>(rng() % 31997));
  }
  return t;
}

// Block ids 0..n-1 shuffled, so tables are not contiguous.
std::vector<BlockId> ShuffledBlocks(int32_t n, uint32_t seed) {
  std::vector<BlockId> ids(n);
  for (int32_t i = 0; i < n; ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937(seed));
  return ids;
}

struct Fixture {
  std::string dir;
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<OpenElmReference> reference;
};

class OpenElmParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    f32_ = Load(DType::kF32).release();
    bf16_ = Load(DType::kBF16).release();
  }
  static void TearDownTestSuite() {
    for (Fixture* f : {f32_, bf16_}) {
      if (f == nullptr) continue;
      f->checkpoint.reset();
      std::filesystem::remove_all(f->dir);
      delete f;
    }
    f32_ = bf16_ = nullptr;
  }

  // Same seed for both dtypes: the bf16 checkpoint is the f32 one rounded.
  static std::unique_ptr<Fixture> Load(DType dtype) {
    auto f = std::make_unique<Fixture>();
    f->dir = absl::StrCat(::testing::TempDir(), "/openelm_parity_", DTypeName(dtype), "_",
                          getpid());
    absl::StatusOr<OpenElmConfig> config = MakeOpenElmConfig("tiny");
    if (!config.ok()) return f;
    if (!WriteRandomCheckpoint(*config, /*seed=*/42, dtype, 1, f->dir).ok()) return f;
    auto ckpt = Checkpoint::Open(f->dir);
    if (!ckpt.ok()) return f;
    f->checkpoint = *std::move(ckpt);
    auto ref = OpenElmReference::Create(*f->checkpoint);
    if (ref.ok()) f->reference = *std::move(ref);
    return f;
  }

  void SetUp() override {
    ASSERT_NE(f32_, nullptr);
    ASSERT_NE(f32_->reference, nullptr) << "tiny f32 checkpoint failed to load";
    ASSERT_NE(bf16_->reference, nullptr) << "tiny bf16 checkpoint failed to load";
  }

  static absl::StatusOr<std::unique_ptr<OpenElmModel>> MakeModel(
      const Fixture& f, DType weights, DType kv, bool bf16_activations = false) {
    OpenElmModelOptions options;
    options.weight_dtype = weights;
    options.kv_dtype = kv;
    options.bf16_activations = bf16_activations;
    options.num_threads = 2;
    OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<OpenElmModel> model,
                             OpenElmModel::Create(*f.checkpoint, options));
    OPENELM_RETURN_IF_ERROR(model->Prepare(kNumBlocks, kBlockSize, kMaxBatchedTokens,
                                           kMaxSeqs,
                                           /*max_logits_rows=*/kMaxBatchedTokens));
    return model;
  }

  // Engine logits for every position of `tokens` in one prefill row.
  static absl::StatusOr<LogitRows> OneShot(DecoderModel& model,
                                           const std::vector<TokenId>& tokens,
                                           uint32_t block_seed = 1) {
    const std::vector<int32_t> one = {static_cast<int32_t>(tokens.size())};
    return RunSequenceInChunks(model, tokens, one, ShuffledBlocks(kNumBlocks, block_seed),
                               kBlockSize);
  }

  static Fixture* f32_;
  static Fixture* bf16_;
};

Fixture* OpenElmParityTest::f32_ = nullptr;
Fixture* OpenElmParityTest::bf16_ = nullptr;

TEST_F(OpenElmParityTest, F32WeightsF32KvMatchReferenceAtEveryPosition) {
  ASSERT_OK_AND_ASSIGN(auto model, MakeModel(*f32_, DType::kF32, DType::kF32));
  const std::vector<TokenId> prompt = MakePrompt(kPromptLen, 7);
  ASSERT_OK_AND_ASSIGN(LogitRows want, f32_->reference->ForwardAll(prompt));
  ASSERT_OK_AND_ASSIGN(LogitRows got, OneShot(*model, prompt));
  ASSERT_EQ(got.size(), want.size());
  const Diff d = CompareLogits(got, want);
  ReportDiff("f32 weights + f32 KV vs reference, 40 positions", d);
  EXPECT_LE(d.max_abs, kF32Tol) << "worst position " << d.worst_row;
  EXPECT_EQ(d.argmax_mismatches, 0);
}

TEST_F(OpenElmParityTest, Bf16WeightsMatchReferenceOnSameWeights) {
  ASSERT_OK_AND_ASSIGN(auto model, MakeModel(*bf16_, DType::kBF16, DType::kF32));
  const std::vector<TokenId> prompt = MakePrompt(kPromptLen, 8);
  ASSERT_OK_AND_ASSIGN(LogitRows want, bf16_->reference->ForwardAll(prompt));
  ASSERT_OK_AND_ASSIGN(LogitRows got, OneShot(*model, prompt));
  ASSERT_EQ(got.size(), want.size());
  const Diff d = CompareLogits(got, want, kBf16WeightTol);
  ReportDiff("bf16 weights + f32 KV vs reference (same bf16 weights)", d);
  EXPECT_LE(d.max_abs, kBf16WeightTol) << "worst position " << d.worst_row;
  EXPECT_EQ(d.hard_argmax_mismatches, 0);

  // An f32 checkpoint loaded with bf16 weights: the engine rounds the matmul
  // weights and the embedding table to bf16 (the generator's bf16 file holds
  // the round-to-nearest of the same f32 values) but keeps the small RMSNorm
  // weights in f32. The reference gets exactly that mix.
  ReferenceWeights mixed = bf16_->reference->weights();
  const ReferenceWeights& exact = f32_->reference->weights();
  mixed.norm = exact.norm;
  for (size_t l = 0; l < mixed.layers.size(); ++l) {
    mixed.layers[l].attn_norm = exact.layers[l].attn_norm;
    mixed.layers[l].q_norm = exact.layers[l].q_norm;
    mixed.layers[l].k_norm = exact.layers[l].k_norm;
    mixed.layers[l].ffn_norm = exact.layers[l].ffn_norm;
  }
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<OpenElmReference> mixed_ref,
      OpenElmReference::FromWeights(bf16_->reference->config(), std::move(mixed)));
  ASSERT_OK_AND_ASSIGN(LogitRows want_mixed, mixed_ref->ForwardAll(prompt));
  ASSERT_OK_AND_ASSIGN(auto rounded, MakeModel(*f32_, DType::kBF16, DType::kF32));
  ASSERT_OK_AND_ASSIGN(LogitRows got_rounded, OneShot(*rounded, prompt));
  const Diff r = CompareLogits(got_rounded, want_mixed, kBf16WeightTol);
  ReportDiff("f32 checkpoint loaded as bf16 vs reference (bf16 matmuls, f32 norms)", r);
  EXPECT_LE(r.max_abs, kBf16WeightTol);
  EXPECT_EQ(r.hard_argmax_mismatches, 0);
  // ...and visibly not the f32 model: the rounding did happen.
  ASSERT_OK_AND_ASSIGN(LogitRows want_f32, f32_->reference->ForwardAll(prompt));
  const Diff vs_f32 = CompareLogits(got, want_f32);
  ReportDiff("bf16-weight engine vs f32-weight reference (rounding effect)", vs_f32);
  EXPECT_GT(vs_f32.max_abs, 10 * d.max_abs);
}

TEST_F(OpenElmParityTest, Bf16KvStaysWithinItsTolerance) {
  const std::vector<TokenId> prompt = MakePrompt(kPromptLen, 9);
  for (Fixture* f : {f32_, bf16_}) {
    const DType weights = f == f32_ ? DType::kF32 : DType::kBF16;
    ASSERT_OK_AND_ASSIGN(auto model, MakeModel(*f, weights, DType::kBF16));
    ASSERT_OK_AND_ASSIGN(LogitRows want, f->reference->ForwardAll(prompt));
    ASSERT_OK_AND_ASSIGN(LogitRows got, OneShot(*model, prompt));
    ASSERT_EQ(got.size(), want.size());
    const Diff d = CompareLogits(got, want, kBf16KvTol);
    ReportDiff(absl::StrCat(DTypeName(weights), " weights + bf16 KV vs reference"), d);
    EXPECT_LE(d.max_abs, kBf16KvTol);
    EXPECT_EQ(d.hard_argmax_mismatches, 0);
    // Rounding the cache must change something, or the option did nothing.
    ASSERT_OK_AND_ASSIGN(auto f32_kv, MakeModel(*f, weights, DType::kF32));
    ASSERT_OK_AND_ASSIGN(LogitRows exact_kv, OneShot(*f32_kv, prompt));
    const Diff vs_f32_kv = CompareLogits(got, exact_kv);
    ReportDiff(absl::StrCat(DTypeName(weights), " weights: bf16 KV vs f32 KV"),
               vs_f32_kv);
    EXPECT_GT(vs_f32_kv.max_abs, 0.0);
  }
}

TEST_F(OpenElmParityTest, Bf16ActivationsStayWithinTheirTolerance) {
  if (static_cast<int>(EffectiveCpuIsa()) < static_cast<int>(CpuIsa::kAvx512Bf16)) {
    GTEST_SKIP() << "bf16 activations need avx512_bf16 or amx; this CPU runs "
                 << CpuIsaName(EffectiveCpuIsa());
  }
  ASSERT_OK_AND_ASSIGN(auto model, MakeModel(*bf16_, DType::kBF16, DType::kF32,
                                             /*bf16_activations=*/true));
  const std::vector<TokenId> prompt = MakePrompt(kPromptLen, 12);
  ASSERT_OK_AND_ASSIGN(LogitRows want, bf16_->reference->ForwardAll(prompt));
  ASSERT_OK_AND_ASSIGN(LogitRows got, OneShot(*model, prompt));
  ASSERT_EQ(got.size(), want.size());
  const Diff d = CompareLogits(got, want, kBf16ActivationTol);
  ReportDiff("bf16 weights + bf16 activations vs reference", d);
  EXPECT_LE(d.max_abs, kBf16ActivationTol);
  EXPECT_EQ(d.hard_argmax_mismatches, 0);
}

TEST_F(OpenElmParityTest, ChunkedPrefillEqualsOneShot) {
  const std::vector<TokenId> prompt = MakePrompt(kPromptLen, 10);
  for (DType kv : {DType::kF32, DType::kBF16}) {
    ASSERT_OK_AND_ASSIGN(auto model, MakeModel(*f32_, DType::kF32, kv));
    ASSERT_OK_AND_ASSIGN(LogitRows whole, OneShot(*model, prompt));
    for (int32_t chunk : {1, 3, 7, 16}) {
      ASSERT_OK_AND_ASSIGN(
          LogitRows chunked,
          RunSequenceInChunks(*model, prompt, EvenChunks(kPromptLen, chunk),
                              ShuffledBlocks(kNumBlocks, 100 + chunk), kBlockSize));
      const Diff d = CompareLogits(chunked, whole);
      ReportDiff(absl::StrCat("chunk ", chunk, " vs one-shot, KV ", DTypeName(kv)), d);
      EXPECT_LE(d.max_abs, kv == DType::kF32 ? kSelfTol : kSelfBf16KvTol)
          << "chunk " << chunk;
      EXPECT_EQ(d.argmax_mismatches, 0) << "chunk " << chunk;
    }
    // Uneven chunk boundaries that cross blocks.
    const std::vector<int32_t> uneven = {5, 11, 2, 17, 5};
    ASSERT_OK_AND_ASSIGN(LogitRows chunked,
                         RunSequenceInChunks(*model, prompt, uneven,
                                             ShuffledBlocks(kNumBlocks, 99), kBlockSize));
    const Diff d = CompareLogits(chunked, whole);
    ReportDiff(absl::StrCat("chunks 5/11/2/17/5 vs one-shot, KV ", DTypeName(kv)), d);
    EXPECT_LE(d.max_abs, kv == DType::kF32 ? kSelfTol : kSelfBf16KvTol);
    EXPECT_EQ(d.argmax_mismatches, 0);
  }
}

TEST_F(OpenElmParityTest, PrefillThenDecodeEqualsRecomputation) {
  ASSERT_OK_AND_ASSIGN(auto model, MakeModel(*f32_, DType::kF32, DType::kF32));
  std::vector<TokenId> seq = MakePrompt(12, 11);
  const int32_t prompt_len = static_cast<int32_t>(seq.size());
  const std::vector<BlockId> table = ShuffledBlocks(kNumBlocks, 5);
  constexpr int32_t kDecodeSteps = 20;

  // Prefill, then greedy decode one token per step with kLast.
  LogitRows decode_logits;  // logits that produced seq[prompt_len + i]
  ASSERT_OK_AND_ASSIGN(LogitRows prefill,
                       RunSequenceInChunks(*model, seq, std::vector<int32_t>{prompt_len},
                                           table, kBlockSize));
  decode_logits.push_back(prefill.back());
  seq.push_back(ArgMax(prefill.back()));
  ForwardBatch batch;
  for (int32_t step = 1; step < kDecodeSteps; ++step) {
    const int32_t pos = static_cast<int32_t>(seq.size()) - 1;
    batch.Clear();
    batch.tokens.push_back(seq.back());
    BatchRow row;
    row.request_id = 3;
    row.num_tokens = 1;
    row.start_position = pos;
    row.block_table = table.data();
    row.num_blocks = BlocksFor(pos + 1, kBlockSize);
    row.logits = BatchRow::Logits::kLast;
    batch.rows.push_back(row);
    ASSERT_OK_AND_ASSIGN(LogitsView view, model->Forward(batch));
    ASSERT_EQ(view.num_rows, 1);
    decode_logits.push_back(CopyRows(view, 0, 1)[0]);
    seq.push_back(ArgMax(decode_logits.back()));
  }

  // The same positions recomputed over the whole sequence at once.
  const std::vector<TokenId> all(seq.begin(), seq.end() - 1);
  ASSERT_OK_AND_ASSIGN(LogitRows want_ref, f32_->reference->ForwardAll(all));
  ASSERT_OK_AND_ASSIGN(LogitRows want_engine, OneShot(*model, all, 77));
  const LogitRows ref_tail(want_ref.begin() + prompt_len - 1, want_ref.end());
  const LogitRows engine_tail(want_engine.begin() + prompt_len - 1, want_engine.end());
  ASSERT_EQ(ref_tail.size(), decode_logits.size());

  const Diff vs_ref = CompareLogits(decode_logits, ref_tail);
  ReportDiff("prefill + 20 decode steps vs reference recomputation", vs_ref);
  EXPECT_LE(vs_ref.max_abs, kF32Tol);
  EXPECT_EQ(vs_ref.argmax_mismatches, 0);
  const Diff vs_engine = CompareLogits(decode_logits, engine_tail);
  ReportDiff("prefill + 20 decode steps vs engine one-shot", vs_engine);
  EXPECT_LE(vs_engine.max_abs, kSelfTol);
  EXPECT_EQ(vs_engine.argmax_mismatches, 0);
}

// Several sequences in one batch: prefill chunks of different lengths, decode
// rows and a fully skipped-logits chunk, each on shuffled, interleaved blocks.
// Every sequence must see the logits it gets when run alone.
TEST_F(OpenElmParityTest, MixedBatchMatchesEachSequenceAlone) {
  for (DType kv : {DType::kF32, DType::kBF16}) {
    ASSERT_OK_AND_ASSIGN(auto model, MakeModel(*f32_, DType::kF32, kv));
    struct Seq {
      std::vector<TokenId> tokens;
      std::vector<BlockId> table;
      int32_t done = 0;
      LogitRows logits;       // per position, filled where logits were asked
      std::vector<bool> has;  // which positions have logits
    };
    std::vector<Seq> seqs(4);
    seqs[0].tokens = MakePrompt(24, 21);
    seqs[1].tokens = MakePrompt(40, 22);
    seqs[2].tokens = MakePrompt(11, 23);
    seqs[3].tokens = MakePrompt(3, 24);
    // Interleave the sequences' blocks across the pool (a, b, c, d, a, ...)
    // after shuffling, so no table is contiguous.
    const std::vector<BlockId> pool = ShuffledBlocks(kNumBlocks, 31);
    for (int32_t i = 0; i < 16; ++i) {
      for (int32_t s = 0; s < 4; ++s) seqs[s].table.push_back(pool[i * 4 + s]);
    }
    for (Seq& s : seqs) {
      s.logits.resize(s.tokens.size());
      s.has.assign(s.tokens.size(), false);
    }
    // Per step: {sequence, tokens this step, logits mode}. Tokens after the
    // first step of a sequence are teacher-forced (taken from its list), so a
    // one-token part is a decode row.
    struct Part {
      int32_t seq;
      int32_t n;
      BatchRow::Logits logits;
    };
    const std::vector<std::vector<Part>> plan = {
        // 39 tokens: a non-final chunk without logits, two prefill chunks, a
        // one-token prompt.
        {{0, 16, BatchRow::Logits::kNone},
         {1, 13, BatchRow::Logits::kAll},
         {2, 9, BatchRow::Logits::kLast},
         {3, 1, BatchRow::Logits::kAll}},
        // 28 tokens: decode rows first, then chunks.
        {{3, 1, BatchRow::Logits::kLast},
         {2, 1, BatchRow::Logits::kLast},
         {0, 7, BatchRow::Logits::kAll},
         {1, 19, BatchRow::Logits::kLast}},
        // 11 tokens: decode rows around the last chunk of sequence 1.
        {{2, 1, BatchRow::Logits::kAll},
         {1, 8, BatchRow::Logits::kAll},
         {3, 1, BatchRow::Logits::kLast},
         {0, 1, BatchRow::Logits::kLast}},
    };
    ForwardBatch batch;
    for (const std::vector<Part>& step : plan) {
      batch.Clear();
      for (const Part& p : step) {
        Seq& s = seqs[p.seq];
        BatchRow row;
        row.request_id = static_cast<RequestId>(p.seq + 1);
        row.token_offset = batch.num_tokens();
        row.num_tokens = p.n;
        row.start_position = s.done;
        row.block_table = s.table.data();
        row.num_blocks = BlocksFor(s.done + p.n, kBlockSize);
        row.logits = p.logits;
        batch.tokens.insert(batch.tokens.end(), s.tokens.begin() + s.done,
                            s.tokens.begin() + s.done + p.n);
        batch.rows.push_back(row);
      }
      ASSERT_OK_AND_ASSIGN(LogitsView view, model->Forward(batch));
      int32_t out_row = 0;
      for (const BatchRow& row : batch.rows) {
        Seq& s = seqs[row.request_id - 1];
        const int32_t first = row.logits == BatchRow::Logits::kAll    ? 0
                              : row.logits == BatchRow::Logits::kLast ? row.num_tokens - 1
                                                                      : row.num_tokens;
        for (int32_t t = first; t < row.num_tokens; ++t, ++out_row) {
          ASSERT_LT(out_row, view.num_rows);
          const int32_t pos = row.start_position + t;
          s.logits[pos].assign(view.row(out_row), view.row(out_row) + view.vocab_size);
          s.has[pos] = true;
        }
        s.done += row.num_tokens;
      }
      ASSERT_EQ(out_row, view.num_rows);
    }
    for (const Seq& s : seqs) ASSERT_EQ(s.done, static_cast<int32_t>(s.tokens.size()));

    // Each sequence alone, one-shot, on other blocks of the same cache.
    for (int32_t i = 0; i < 4; ++i) {
      const Seq& s = seqs[i];
      const std::vector<TokenId> done(s.tokens.begin(), s.tokens.begin() + s.done);
      ASSERT_OK_AND_ASSIGN(LogitRows alone, OneShot(*model, done, 500 + i));
      LogitRows got, want;
      for (int32_t pos = 0; pos < s.done; ++pos) {
        if (!s.has[pos]) continue;
        got.push_back(s.logits[pos]);
        want.push_back(alone[pos]);
      }
      ASSERT_FALSE(got.empty()) << "sequence " << i;
      const Diff d = CompareLogits(got, want);
      ReportDiff(absl::StrCat("mixed batch vs alone, seq ", i, " (", got.size(),
                              " rows), KV ", DTypeName(kv)),
                 d);
      // Other batches change the matmuls' row counts, as other chunkings do
      // (see kSelfBf16KvTol).
      EXPECT_LE(d.max_abs, kv == DType::kF32 ? kSelfTol : kSelfBf16KvTol)
          << "sequence " << i;
      EXPECT_EQ(d.argmax_mismatches, 0) << "sequence " << i;
      if (kv == DType::kF32) {
        ASSERT_OK_AND_ASSIGN(LogitRows ref, f32_->reference->ForwardAll(done));
        LogitRows ref_rows;
        for (int32_t pos = 0; pos < s.done; ++pos) {
          if (s.has[pos]) ref_rows.push_back(ref[pos]);
        }
        const Diff r = CompareLogits(got, ref_rows);
        ReportDiff(absl::StrCat("mixed batch vs reference, seq ", i), r);
        EXPECT_LE(r.max_abs, kF32Tol) << "sequence " << i;
      }
    }
  }
}

}  // namespace
}  // namespace openelm::testing
