// OpenElmModel: KV sizing for the published shapes, allocation-free Forward,
// and the paged-KV invariants (chunking, batching, CopyBlock) on the tiny model.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "engine/kernels/onednn_context.h"
#include "engine/kernels/onednn_matmul.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "engine/model/openelm_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/alloc_counter.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::StatusIs;

// Published per-layer KV head counts (docs/openelm-model.md), written out
// independently of MakeOpenElmConfig.
std::vector<int32_t> Repeat(std::initializer_list<std::pair<int32_t, int32_t>> runs) {
  std::vector<int32_t> v;
  for (auto [value, count] : runs) v.insert(v.end(), count, value);
  return v;
}

TEST(KvLayoutTest, BytesPerBlockMatchTheFormulaForPublishedSizes) {
  struct Size {
    const char* name;
    int32_t head_dim;
    std::vector<int32_t> kv_heads;
  };
  const std::vector<Size> sizes = {
      {"270M", 64, Repeat({{3, 5}, {4, 7}, {5, 4}})},
      {"450M", 64, Repeat({{3, 3}, {4, 7}, {5, 6}, {6, 4}})},
      {"1_1B", 64, Repeat({{4, 3}, {5, 7}, {6, 8}, {7, 6}, {8, 4}})},
      {"3B", 128, Repeat({{3, 4}, {4, 14}, {5, 12}, {6, 6}})},
  };
  for (const Size& size : sizes) {
    ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig(size.name));
    ASSERT_EQ(config.num_layers, static_cast<int32_t>(size.kv_heads.size())) << size.name;
    const int64_t sum_kv =
        std::accumulate(size.kv_heads.begin(), size.kv_heads.end(), int64_t{0});
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      const int64_t bytes = dtype == DType::kF32 ? 4 : 2;
      for (int32_t block : {1, 16, 32}) {
        const int64_t want = block * 2 * sum_kv * size.head_dim * bytes;
        EXPECT_EQ(OpenElmModel::KvBytesPerBlockFor(config, dtype, block), want)
            << size.name << " block " << block;
      }
      EXPECT_EQ(OpenElmModel::KvBytesPerBlockFor(config, dtype, 1),
                config.KvBytesPerToken(bytes));
      // A 1 GiB budget buys floor(budget / bytes_per_block) blocks.
      const int64_t budget = int64_t{1} << 30;
      const int64_t per_block = OpenElmModel::KvBytesPerBlockFor(config, dtype, 16);
      const int64_t blocks = budget / per_block;
      EXPECT_LE(blocks * per_block, budget);
      EXPECT_GT((blocks + 1) * per_block, budget);
    }
  }
  // 270M in f32: 63 KV heads * 2 * 64 * 4 bytes = 32256 bytes per token.
  ASSERT_OK_AND_ASSIGN(OpenElmConfig c270, MakeOpenElmConfig("270M"));
  EXPECT_EQ(OpenElmModel::KvBytesPerBlockFor(c270, DType::kF32, 16), 16 * 32256);
}

class TinyModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path() /
                           ("openelm_kv_layout_test_" + std::to_string(::getpid())));
    ASSERT_OK_AND_ASSIGN(auto config, MakeOpenElmConfig("tiny"));
    ASSERT_OK(WriteRandomCheckpoint(config, /*seed=*/7, DType::kBF16, 1, *dir_));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  std::unique_ptr<OpenElmModel> MakeModel(OpenElmModelOptions options,
                                          int32_t max_logits_rows = kMaxTokens) {
    auto ckpt = Checkpoint::Open(*dir_);
    EXPECT_OK(ckpt.status());
    options.num_threads = 2;
    auto model = OpenElmModel::Create(**ckpt, options);
    EXPECT_OK(model.status());
    EXPECT_OK(
        (*model)->Prepare(kNumBlocks, kBlockSize, kMaxTokens, kMaxSeqs, max_logits_rows));
    return std::move(model).value();
  }

  static constexpr int32_t kNumBlocks = 64, kBlockSize = 4, kMaxTokens = 48, kMaxSeqs = 8;
  static std::string* dir_;
};
std::string* TinyModelTest::dir_ = nullptr;

std::vector<TokenId> Prompt(int32_t n, int32_t seed) {
  std::vector<TokenId> t(n);
  for (int32_t i = 0; i < n; ++i) t[i] = (seed * 7919 + i * 104729) % 32000;
  return t;
}

// One-row batch: tokens [from, to) of `prompt` on `table`.
void OneRow(const std::vector<TokenId>& prompt, int32_t from, int32_t to,
            const std::vector<BlockId>& table, BatchRow::Logits logits,
            ForwardBatch* batch) {
  batch->Clear();
  batch->tokens.assign(prompt.begin() + from, prompt.begin() + to);
  batch->rows.push_back({.request_id = 1,
                         .token_offset = 0,
                         .num_tokens = to - from,
                         .start_position = from,
                         .block_table = table.data(),
                         .num_blocks = static_cast<int32_t>(table.size()),
                         .logits = logits});
}

std::vector<float> Row(const LogitsView& v, int32_t i) {
  return std::vector<float>(v.row(i), v.row(i) + v.vocab_size);
}

TEST_F(TinyModelTest, ChunkedPrefillAndDecodeMatchOneShotPrefill) {
  std::unique_ptr<OpenElmModel> model = MakeModel({.weight_dtype = DType::kF32});
  const std::vector<TokenId> prompt = Prompt(23, 1);
  const std::vector<BlockId> table_a = {9, 3, 40, 17, 5, 60};  // scattered blocks
  const std::vector<BlockId> table_b = {1, 2, 30, 31, 50, 12};
  ForwardBatch batch;

  OneRow(prompt, 0, 23, table_a, BatchRow::Logits::kAll, &batch);
  ASSERT_OK_AND_ASSIGN(LogitsView all, model->Forward(batch));
  ASSERT_EQ(all.num_rows, 23);
  const std::vector<float> want_last = Row(all, 22);
  const std::vector<float> want_11 = Row(all, 11);

  // Same prompt on other blocks in chunks 0..5, 5..12 (crossing blocks), 12..22, then one
  // decode.
  OneRow(prompt, 0, 5, table_b, BatchRow::Logits::kNone, &batch);
  ASSERT_OK_AND_ASSIGN(LogitsView none, model->Forward(batch));
  EXPECT_EQ(none.num_rows, 0);
  OneRow(prompt, 5, 12, table_b, BatchRow::Logits::kLast, &batch);
  ASSERT_OK_AND_ASSIGN(LogitsView chunk, model->Forward(batch));
  ASSERT_EQ(chunk.num_rows, 1);
  EXPECT_THAT(Row(chunk, 0), ::testing::Pointwise(::testing::FloatNear(1e-4f), want_11));
  OneRow(prompt, 12, 22, table_b, BatchRow::Logits::kNone, &batch);
  ASSERT_OK(model->Forward(batch).status());
  OneRow(prompt, 22, 23, table_b, BatchRow::Logits::kLast, &batch);
  ASSERT_OK_AND_ASSIGN(LogitsView decode, model->Forward(batch));
  EXPECT_THAT(Row(decode, 0),
              ::testing::Pointwise(::testing::FloatNear(1e-4f), want_last));
}

TEST_F(TinyModelTest, BatchingSequencesTogetherChangesNothing) {
  std::unique_ptr<OpenElmModel> model = MakeModel({.weight_dtype = DType::kF32});
  const std::vector<TokenId> p1 = Prompt(9, 2), p2 = Prompt(14, 3);
  const std::vector<BlockId> t1 = {0, 1, 2}, t2 = {10, 11, 12, 13};
  ForwardBatch batch;
  OneRow(p1, 0, 9, t1, BatchRow::Logits::kLast, &batch);
  ASSERT_OK_AND_ASSIGN(LogitsView a, model->Forward(batch));
  const std::vector<float> want1 = Row(a, 0);
  OneRow(p2, 0, 14, t2, BatchRow::Logits::kLast, &batch);
  ASSERT_OK_AND_ASSIGN(LogitsView b, model->Forward(batch));
  const std::vector<float> want2 = Row(b, 0);

  // Both again, on fresh blocks, in one batch.
  const std::vector<BlockId> u1 = {20, 21, 22}, u2 = {30, 31, 32, 33};
  batch.Clear();
  batch.tokens = p1;
  batch.tokens.insert(batch.tokens.end(), p2.begin(), p2.end());
  batch.rows.push_back({.request_id = 1,
                        .token_offset = 0,
                        .num_tokens = 9,
                        .start_position = 0,
                        .block_table = u1.data(),
                        .num_blocks = 3});
  batch.rows.push_back({.request_id = 2,
                        .token_offset = 9,
                        .num_tokens = 14,
                        .start_position = 0,
                        .block_table = u2.data(),
                        .num_blocks = 4});
  ASSERT_OK_AND_ASSIGN(LogitsView both, model->Forward(batch));
  ASSERT_EQ(both.num_rows, 2);
  EXPECT_THAT(Row(both, 0), ::testing::Pointwise(::testing::FloatNear(1e-4f), want1));
  EXPECT_THAT(Row(both, 1), ::testing::Pointwise(::testing::FloatNear(1e-4f), want2));
}

TEST_F(TinyModelTest, CopyBlockCopiesAllLayers) {
  for (DType kv : {DType::kF32, DType::kBF16}) {
    std::unique_ptr<OpenElmModel> model =
        MakeModel({.weight_dtype = DType::kF32, .kv_dtype = kv});
    const std::vector<TokenId> prompt = Prompt(7, 4);  // blocks: 4 + 3 tokens
    const std::vector<BlockId> table = {5, 6};
    ForwardBatch batch;
    OneRow(prompt, 0, 6, table, BatchRow::Logits::kNone, &batch);
    ASSERT_OK(model->Forward(batch).status());
    OneRow(prompt, 6, 7, table, BatchRow::Logits::kLast, &batch);
    ASSERT_OK_AND_ASSIGN(LogitsView v, model->Forward(batch));
    const std::vector<float> want = Row(v, 0);

    // Fork: copy the partial block 6 into 44 and decode position 6 again there.
    model->CopyBlock(6, 44);
    const std::vector<BlockId> forked = {5, 44};
    OneRow(prompt, 6, 7, forked, BatchRow::Logits::kLast, &batch);
    ASSERT_OK_AND_ASSIGN(LogitsView f, model->Forward(batch));
    EXPECT_THAT(Row(f, 0), ::testing::Pointwise(::testing::FloatNear(1e-5f), want));
    // Without the copy, block 45 holds zeros for positions 4..5: different logits.
    const std::vector<BlockId> wrong = {5, 45};
    OneRow(prompt, 6, 7, wrong, BatchRow::Logits::kLast, &batch);
    ASSERT_OK_AND_ASSIGN(LogitsView g, model->Forward(batch));
    EXPECT_THAT(Row(g, 0),
                ::testing::Not(::testing::Pointwise(::testing::FloatNear(1e-3f), want)));
  }
}

TEST_F(TinyModelTest, ForwardAllocatesNothingAndCreatesNoPrimitiveAfterWarmUp) {
  // f32 throughout (oneDNN f32), and bf16 weights and KV with the plan's
  // activations (own bf16 kernels, or oneDNN bf16 where the CPU has it).
  for (bool bf16 : {false, true}) {
    std::unique_ptr<OpenElmModel> model =
        MakeModel({.weight_dtype = bf16 ? DType::kBF16 : DType::kF32,
                   .kv_dtype = bf16 ? DType::kBF16 : DType::kF32,
                   .bf16_activations = bf16 ? std::nullopt : std::optional<bool>(false)});
    const std::vector<TokenId> p1 = Prompt(20, 5), p2 = Prompt(3, 6);
    const std::vector<BlockId> t1 = {0, 1, 2, 3, 4, 5}, t2 = {8, 9};
    ForwardBatch batch;
    batch.tokens.reserve(kMaxTokens);
    batch.rows.reserve(kMaxSeqs);
    auto fill = [&]() {
      batch.Clear();
      batch.tokens.insert(batch.tokens.end(), p1.begin(), p1.end());
      batch.tokens.insert(batch.tokens.end(), p2.begin(), p2.end());
      batch.rows.push_back({.request_id = 1,
                            .token_offset = 0,
                            .num_tokens = 20,
                            .start_position = 0,
                            .block_table = t1.data(),
                            .num_blocks = 6,
                            .logits = BatchRow::Logits::kAll});
      batch.rows.push_back({.request_id = 2,
                            .token_offset = 20,
                            .num_tokens = 3,
                            .start_position = 0,
                            .block_table = t2.data(),
                            .num_blocks = 2});
    };
    fill();
    ASSERT_OK(model->Forward(batch).status());  // warm-up (OpenMP teams, lazy init)
    fill();
    const int64_t primitives = model->num_primitives_created();
    const int64_t runs_before = model->num_matmul_runs();
    ::openelm::testing::SetAllocationClassifier(&InsideOnednnExecute);
    absl::StatusOr<LogitsView> out = absl::InternalError("not run");
    const ::openelm::testing::AllocationCounts allocs =
        ::openelm::testing::CountAllocations([&] { out = model->Forward(batch); });
    ASSERT_OK(out.status());
    EXPECT_EQ(out->num_rows, 21);
    // 4 matmuls per layer plus the LM head, and no allocation of ours.
    const int64_t runs = model->num_matmul_runs() - runs_before;
    EXPECT_EQ(runs, 3 * 4 + 1);
    EXPECT_EQ(allocs.total - allocs.classified, 0) << "bf16=" << bf16;
    // oneDNN 2.6's own per-execution argument map (not ours to avoid); bounded.
    EXPECT_LE(allocs.classified, runs * 16);
    EXPECT_EQ(model->num_primitives_created(), primitives);
    for (int32_t r = 0; r < out->num_rows; ++r) {
      for (int32_t i = 0; i < out->vocab_size; ++i)
        ASSERT_TRUE(std::isfinite(out->row(r)[i]));
    }
  }
}

TEST_F(TinyModelTest, RejectsBatchesOutsideThePreparedLimits) {
  std::unique_ptr<OpenElmModel> model = MakeModel({});
  const std::vector<TokenId> prompt = Prompt(10, 8);
  const std::vector<BlockId> short_table = {0, 1};  // covers 8 positions only
  ForwardBatch batch;
  OneRow(prompt, 0, 10, short_table, BatchRow::Logits::kLast, &batch);
  EXPECT_THAT(model->Forward(batch), StatusIs(absl::StatusCode::kInvalidArgument));
  const std::vector<BlockId> bad_id = {0, 1, kNumBlocks};
  OneRow(prompt, 0, 10, bad_id, BatchRow::Logits::kLast, &batch);
  EXPECT_THAT(model->Forward(batch), StatusIs(absl::StatusCode::kInvalidArgument));
  const std::vector<TokenId> long_prompt = Prompt(kMaxTokens + 1, 9);
  std::vector<BlockId> big_table(kNumBlocks);
  std::iota(big_table.begin(), big_table.end(), 0);
  OneRow(long_prompt, 0, kMaxTokens + 1, big_table, BatchRow::Logits::kLast, &batch);
  EXPECT_THAT(model->Forward(batch), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(model->info().kv_bytes_per_token, model->KvBytesPerBlock(1));
  EXPECT_EQ(model->info().num_layers, 3);
}

// The logits buffer holds Prepare's max_logits_rows rows: a batch that asks
// for more is refused, one that fits gets the logits of an uncapped model.
TEST_F(TinyModelTest, LogitsRowsAreCappedAtPrepare) {
  std::unique_ptr<OpenElmModel> capped = MakeModel({}, /*max_logits_rows=*/3);
  std::unique_ptr<OpenElmModel> full = MakeModel({});
  const std::vector<TokenId> prompt = Prompt(20, 4);
  std::vector<BlockId> table(kNumBlocks);
  std::iota(table.begin(), table.end(), 0);
  ForwardBatch batch;
  OneRow(prompt, 0, 4, table, BatchRow::Logits::kAll, &batch);
  EXPECT_THAT(capped->Forward(batch), StatusIs(absl::StatusCode::kInvalidArgument));
  // 20 tokens, 3 rows of logits: the last 3 positions.
  OneRow(prompt, 0, 17, table, BatchRow::Logits::kNone, &batch);
  ASSERT_OK(capped->Forward(batch).status());
  ASSERT_OK(full->Forward(batch).status());
  OneRow(prompt, 17, 20, table, BatchRow::Logits::kAll, &batch);
  ASSERT_OK_AND_ASSIGN(LogitsView got, capped->Forward(batch));
  ASSERT_EQ(got.num_rows, 3);
  const std::vector<std::vector<float>> got_rows = {Row(got, 0), Row(got, 1),
                                                    Row(got, 2)};
  ASSERT_OK_AND_ASSIGN(LogitsView want, full->Forward(batch));
  for (int32_t r = 0; r < 3; ++r) EXPECT_EQ(got_rows[r], Row(want, r)) << "row " << r;
  MakeModel({}, /*max_logits_rows=*/1);  // the smallest allowed
  auto ckpt = Checkpoint::Open(*dir_);
  ASSERT_OK(ckpt.status());
  ASSERT_OK_AND_ASSIGN(auto model, OpenElmModel::Create(**ckpt, {}));
  EXPECT_THAT(
      model->Prepare(kNumBlocks, kBlockSize, kMaxTokens, kMaxSeqs, kMaxTokens + 1),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace openelm
