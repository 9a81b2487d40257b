// One step of the oneDNN OpenElmModel at the true OpenELM-270M shape (16
// layers, d=1280, 12..20 query heads, FFN 768..5120), bf16 weights as
// published, against the scalar reference on the same bf16 weights. The
// checkpoint has random weights (normal(0, 0.02)) and is generated into a temp
// dir; only the last position of an 8-token prompt is compared, to keep the
// scalar reference within a few seconds.
//
// Tolerance: 1e-3 absolute on logits (f32 activations, f32 KV; the engine
// accumulates in f32, the reference in double).
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

constexpr double k270mTol = 1e-3;

TEST(OpenElm270mParityTest, OneStepMatchesReferenceAtLastPosition) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("270M"));
  ASSERT_EQ(config.num_layers, 16);
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/openelm_parity_270m_", getpid());
  ASSERT_OK(WriteRandomCheckpoint(config, /*seed=*/270, DType::kBF16, 1, dir));
  struct Cleanup {
    std::string dir;
    ~Cleanup() { std::filesystem::remove_all(dir); }
  } cleanup{dir};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  EXPECT_EQ(ckpt->total_parameters(), 271527168);

  // "Once upon a time there was" plus one more id.
  const std::vector<TokenId> prompt = {1, 9038, 2501, 263, 931, 727, 471, 263};

  LogitRows got;
  {
    OpenElmModelOptions options;  // bf16 weights, f32 KV, f32 activations
    options.kv_dtype = DType::kF32;
    options.bf16_activations = false;
    options.num_threads = 2;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmModel> model,
                         OpenElmModel::Create(*ckpt, options));
    constexpr int32_t kBlockSize = 16;
    ASSERT_OK(model->Prepare(/*num_blocks=*/4, kBlockSize,
                             /*max_num_batched_tokens=*/16, /*max_num_seqs=*/1,
                             /*max_logits_rows=*/1));
    const std::vector<BlockId> table = {3, 1};
    ForwardBatch batch;
    batch.tokens = prompt;
    BatchRow row;
    row.request_id = 1;
    row.num_tokens = static_cast<int32_t>(prompt.size());
    row.block_table = table.data();
    row.num_blocks = 1;
    row.logits = BatchRow::Logits::kLast;
    batch.rows.push_back(row);
    ASSERT_OK_AND_ASSIGN(LogitsView view, model->Forward(batch));
    ASSERT_EQ(view.num_rows, 1);
    ASSERT_EQ(view.vocab_size, 32000);
    got = CopyRows(view, 0, 1);
  }  // frees the engine's copy of the weights before the reference's

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OpenElmReference> ref,
                       OpenElmReference::Create(*ckpt));
  ckpt.reset();
  ASSERT_OK_AND_ASSIGN(std::vector<float> want, ref->ForwardLast(prompt));
  const Diff d = CompareLogits(got, LogitRows{want}, k270mTol);
  ReportDiff("270M bf16 weights, 8-token prompt, last position", d);
  EXPECT_LE(d.max_abs, k270mTol);
  EXPECT_EQ(d.hard_argmax_mismatches, 0);
}

}  // namespace
}  // namespace openelm::testing
