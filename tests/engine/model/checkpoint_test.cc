#include "engine/model/checkpoint.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/json.h"
#include "engine/model/half_float.h"
#include "engine/model/openelm_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// A fresh directory under $TMPDIR, removed at the end of each test.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/ckpt_test_XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string Dir(const std::string& name) { return root_ + "/" + name; }

  std::string root_;
};

// ---------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------

TensorView ViewOf(DType dtype, const void* data, int64_t n) {
  TensorView t;
  t.name = "t";
  t.dtype = dtype;
  t.shape = {n};
  t.data = data;
  t.num_bytes = n * DTypeBytes(dtype);
  return t;
}

TEST(CheckpointConversionTest, DecodesF16IncludingSubnormalsAndSpecials) {
  const uint16_t bits[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                           0x7c00, 0xfc00, 0x8000, 0x3555, 0x8001};
  std::vector<float> out;
  TensorToF32(ViewOf(DType::kF16, bits, 11), &out);
  ASSERT_EQ(out.size(), 11u);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(out[3], std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(out[4], std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(out[5], 65504.0f);                  // largest finite
  EXPECT_EQ(out[6], INFINITY);
  EXPECT_EQ(out[7], -INFINITY);
  EXPECT_EQ(out[8], 0.0f);
  EXPECT_TRUE(std::signbit(out[8]));
  EXPECT_EQ(out[9], std::ldexp(1365.0f, -12));  // 2^-2 * (1 + 341/1024)
  EXPECT_EQ(out[10], -std::ldexp(1.0f, -24));
  const uint16_t nan_bits = 0x7e00;
  TensorToF32(ViewOf(DType::kF16, &nan_bits, 1), &out);
  EXPECT_TRUE(std::isnan(out[0]));
}

TEST(CheckpointConversionTest, F16EncodeDecodeIsExactForEveryFiniteValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    if ((bits & 0x7c00) == 0x7c00 && (bits & 0x3ff) != 0) continue;  // NaN payloads
    ASSERT_EQ(F32ToF16(F16ToF32(bits)), bits) << std::hex << h;
  }
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);                      // rounds to infinity
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);         // tie to even: 0
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);         // tie to even: 2
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even: 1.0
}

TEST(CheckpointConversionTest, Bf16RoundsToNearestEven) {
  const uint32_t f32_bits[] = {
      0x3f800000,  // 1.0 -> exact
      0x3f808000,  // tie, kept bit even -> down
      0x3f818000,  // tie, kept bit odd -> up
      0x3f808001,  // above the tie -> up
      0x3f807fff,  // below the tie -> down
      0x7f7fffff,  // max float -> rounds up to infinity
      0xff800000,  // -inf
      0x7fc00001,  // NaN stays NaN
  };
  float f32[8];
  std::memcpy(f32, f32_bits, sizeof(f32));
  std::vector<uint16_t> out;
  TensorToBF16(ViewOf(DType::kF32, f32, 8), &out);
  EXPECT_EQ(out[0], 0x3f80);
  EXPECT_EQ(out[1], 0x3f80);
  EXPECT_EQ(out[2], 0x3f82);
  EXPECT_EQ(out[3], 0x3f81);
  EXPECT_EQ(out[4], 0x3f80);
  EXPECT_EQ(out[5], 0x7f80);
  EXPECT_EQ(out[6], 0xff80);
  EXPECT_TRUE(std::isnan(BF16ToF32(out[7])));

  // BF16 -> F32 is exact, and F16 -> BF16 rounds once from the exact value.
  std::vector<float> back;
  TensorToF32(ViewOf(DType::kBF16, out.data(), 5), &back);
  EXPECT_EQ(back[2], BitsToFloat(0x3f820000));
  const uint16_t f16 = 0x3c01;  // 1 + 2^-10: not representable in bf16
  TensorToBF16(ViewOf(DType::kF16, &f16, 1), &out);
  EXPECT_EQ(out[0], 0x3f80);
}

// ---------------------------------------------------------------------------
// Generated checkpoints
// ---------------------------------------------------------------------------

class GeneratedCheckpointTest : public TempDirTest {};

TEST_F(GeneratedCheckpointTest, Published270MBf16HasExactSizes) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("270M"));
  const std::string dir = Dir("270m");
  ASSERT_OK(WriteRandomCheckpoint(config, /*seed=*/7, DType::kBF16, 1, dir));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(dir));
  EXPECT_EQ(ckpt->tensors().size(), 130u);
  EXPECT_EQ(ckpt->total_tensor_bytes(), 543054336);
  EXPECT_EQ(ckpt->total_parameters(), 271527168);
  EXPECT_EQ(ckpt->config().SizeName(), "270M");
  EXPECT_EQ(ckpt->Find("lm_head.weight"), nullptr);

  // Data follows an 8-byte aligned header whose keys are sorted.
  const std::string head = ReadBytes(dir + "/model.safetensors").substr(0, 64);
  uint64_t header_len = 0;
  std::memcpy(&header_len, head.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);
  EXPECT_EQ(head.substr(8, 16), "{\"__metadata__\":");

  // Weights look like N(0, 0.02); norm weights like 1 + N(0, 0.02).
  const TensorView* emb = ckpt->Find("transformer.token_embeddings.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::kBF16);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{32000, 1280}));
  std::vector<float> w;
  TensorToF32(*emb, &w);
  double sum = 0, sum_sq = 0;
  for (float x : w) {
    sum += x;
    sum_sq += static_cast<double>(x) * x;
  }
  const double mean = sum / w.size();
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(std::sqrt(sum_sq / w.size() - mean * mean), 0.02, 2e-4);
  const TensorView* norm = ckpt->Find("transformer.layers.3.attn.q_norm.weight");
  ASSERT_NE(norm, nullptr);
  TensorToF32(*norm, &w);
  for (float x : w) EXPECT_NEAR(x, 1.0f, 0.15f);
}

TEST_F(GeneratedCheckpointTest, SameSeedGivesIdenticalBytes) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("tiny"));
  ASSERT_OK(WriteRandomCheckpoint(config, 42, DType::kBF16, 1, Dir("a")));
  ASSERT_OK(WriteRandomCheckpoint(config, 42, DType::kBF16, 1, Dir("b")));
  ASSERT_OK(WriteRandomCheckpoint(config, 43, DType::kBF16, 1, Dir("c")));
  const std::string a = ReadBytes(Dir("a") + "/model.safetensors");
  EXPECT_GT(a.size(), 8000000u);
  EXPECT_TRUE(a == ReadBytes(Dir("b") + "/model.safetensors"));
  EXPECT_EQ(ReadBytes(Dir("a") + "/config.json"), ReadBytes(Dir("b") + "/config.json"));
  const std::string c = ReadBytes(Dir("c") + "/model.safetensors");
  ASSERT_EQ(a.size(), c.size());  // same layout, different values
  EXPECT_FALSE(a == c);
}

TEST_F(GeneratedCheckpointTest, ShardedTinyEqualsSingleFile) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("tiny"));
  ASSERT_OK(WriteRandomCheckpoint(config, 5, DType::kF32, 1, Dir("single")));
  ASSERT_OK(WriteRandomCheckpoint(config, 5, DType::kF32, 3, Dir("sharded")));
  EXPECT_FALSE(std::filesystem::exists(Dir("sharded") + "/model.safetensors"));
  for (const char* f :
       {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors", "model.safetensors.index.json"}) {
    EXPECT_TRUE(std::filesystem::exists(Dir("sharded") + "/" + f)) << f;
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> single,
                       Checkpoint::Open(Dir("single")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> sharded,
                       Checkpoint::Open(Dir("sharded")));
  ASSERT_EQ(single->tensors().size(), 26u);
  ASSERT_EQ(sharded->tensors().size(), 26u);
  std::map<std::string, int> files;
  for (size_t i = 0; i < single->tensors().size(); ++i) {
    const TensorView& a = single->tensors()[i];
    const TensorView& b = sharded->tensors()[i];
    ASSERT_EQ(a.name, b.name);
    EXPECT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.num_bytes, b.num_bytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.num_bytes), 0) << a.name;
    ++files[b.file];
  }
  EXPECT_EQ(files.size(), 3u);  // every shard holds tensors
  EXPECT_EQ(sharded->total_tensor_bytes(), single->total_tensor_bytes());
  ASSERT_OK_AND_ASSIGN(
      nlohmann::json index,
      ParseJson(ReadBytes(Dir("sharded") + "/model.safetensors.index.json")));
  EXPECT_EQ(index.at("metadata").at("total_size"), single->total_tensor_bytes());
}

TEST_F(GeneratedCheckpointTest, DtypesHoldTheSameValues) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("tiny"));
  ASSERT_OK(WriteRandomCheckpoint(config, 9, DType::kF32, 1, Dir("f32")));
  ASSERT_OK(WriteRandomCheckpoint(config, 9, DType::kBF16, 1, Dir("bf16")));
  ASSERT_OK(WriteRandomCheckpoint(config, 9, DType::kF16, 1, Dir("f16")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> f32, Checkpoint::Open(Dir("f32")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> bf16, Checkpoint::Open(Dir("bf16")));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Checkpoint> f16, Checkpoint::Open(Dir("f16")));
  EXPECT_EQ(ParseJson(ReadBytes(Dir("f16") + "/config.json"))->at("torch_dtype"),
            "float16");
  for (const char* name :
       {"transformer.layers.2.ffn.proj_1.weight", "transformer.norm.weight"}) {
    SCOPED_TRACE(name);
    std::vector<uint16_t> from_f32, native;
    TensorToBF16(*f32->Find(name), &from_f32);
    TensorToBF16(*bf16->Find(name), &native);
    EXPECT_EQ(from_f32, native);  // the generator rounds the same f32 values
    std::vector<float> exact, half;
    TensorToF32(*f32->Find(name), &exact);
    TensorToF32(*f16->Find(name), &half);
    ASSERT_EQ(exact.size(), half.size());
    for (size_t i = 0; i < exact.size(); ++i) {
      ASSERT_NEAR(half[i], exact[i], std::fabs(exact[i]) * 4.9e-4 + 3e-8) << i;
    }
  }
}

TEST_F(GeneratedCheckpointTest, RejectsBadArguments) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig config, MakeOpenElmConfig("tiny"));
  EXPECT_THAT(WriteRandomCheckpoint(config, 1, DType::kBF16, 0, Dir("x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_shards")));
  EXPECT_THAT(WriteRandomCheckpoint(config, 1, DType::kBF16, 27, Dir("x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_shards")));
}

}  // namespace
}  // namespace openelm
