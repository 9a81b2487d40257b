// Checkpoint::Open on damaged or inconsistent checkpoints: every kind of
// damage gets its own error, and none crashes (run under ASan too).

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/base/json.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string LittleEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file split into its header (as JSON members) and data area.
struct Safetensors {
  nlohmann::json header;
  std::string data;

  static Safetensors Load(const std::string& path) {
    const std::string bytes = ReadBytes(path);
    uint64_t len = 0;
    std::memcpy(&len, bytes.data(), 8);
    Safetensors s;
    s.header = *ParseJson(bytes.substr(8, len));
    s.data = bytes.substr(8 + len);
    return s;
  }

  void Save(const std::string& path) const {
    std::string text = JsonDump(header);
    text.append((8 - text.size() % 8) % 8, ' ');
    WriteBytes(path, LittleEndian64(text.size()) + text + data);
  }

  std::pair<int64_t, int64_t> Offsets(const std::string& name) const {
    const nlohmann::json& o = header.at(name).at("data_offsets");
    return {o.at(0).get<int64_t>(), o.at(1).get<int64_t>()};
  }

  void Set(const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
           int64_t begin, int64_t end) {
    header[name] = {{"dtype", dtype},
                    {"shape", std::move(shape)},
                    {"data_offsets", nlohmann::json::array({begin, end})}};
  }
};

// Each test starts from a valid tiny bf16 checkpoint in a fresh directory.
class CorruptCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/ckpt_corrupt_XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    file_ = dir_ + "/model.safetensors";
    ASSERT_OK_AND_ASSIGN(config_, MakeOpenElmConfig("tiny"));
    ASSERT_OK(WriteRandomCheckpoint(config_, 3, DType::kBF16, 1, dir_));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  absl::Status Open() { return Checkpoint::Open(dir_).status(); }

  std::string dir_;
  std::string file_;
  OpenElmConfig config_;
};

MATCHER_P(InvalidWith, text, "") {
  return ::testing::ExplainMatchResult(
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(text)), arg,
      result_listener);
}

TEST_F(CorruptCheckpointTest, ValidCheckpointOpens) { EXPECT_OK(Open()); }

TEST_F(CorruptCheckpointTest, TruncatedDataArea) {
  const std::string bytes = ReadBytes(file_);
  WriteBytes(file_, bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(Open(), InvalidWith(absl::StrCat("safetensors file '", file_,
                                               "' is truncated: its tensors need")));
}

TEST_F(CorruptCheckpointTest, TooShortForHeaderLength) {
  WriteBytes(file_, ReadBytes(file_).substr(0, 5));
  EXPECT_THAT(Open(), InvalidWith("5 bytes, too short for the 8-byte header length"));
  WriteBytes(file_, "");
  EXPECT_THAT(Open(), InvalidWith("0 bytes, too short for the 8-byte header length"));
}

TEST_F(CorruptCheckpointTest, HeaderLengthPastEndOfFile) {
  std::string bytes = ReadBytes(file_);
  const std::string len = LittleEndian64(bytes.size());
  bytes.replace(0, 8, len);
  WriteBytes(file_, bytes);
  EXPECT_THAT(Open(), InvalidWith(absl::StrCat("header length ", bytes.size(),
                                               " runs past the end of the file (",
                                               bytes.size(), " bytes)")));
}

TEST_F(CorruptCheckpointTest, HeaderLengthOverLimit) {
  std::string bytes = ReadBytes(file_);
  bytes.replace(0, 8, LittleEndian64(uint64_t{1} << 62));
  WriteBytes(file_, bytes);
  EXPECT_THAT(Open(), InvalidWith("exceeds the 100 MiB limit"));
}

TEST_F(CorruptCheckpointTest, InvalidHeaderJson) {
  std::string bytes = ReadBytes(file_);
  bytes[8] = 'x';
  WriteBytes(file_, bytes);
  EXPECT_THAT(Open(), InvalidWith("invalid header JSON: JSON parse error at byte 0"));
  // Valid JSON that is not an object.
  WriteBytes(file_, LittleEndian64(8) + "[1]     ");
  EXPECT_THAT(Open(), InvalidWith("header must be a JSON object"));
}

TEST_F(CorruptCheckpointTest, UnknownDtype) {
  Safetensors s = Safetensors::Load(file_);
  const auto [b, e] = s.Offsets("transformer.norm.weight");
  s.Set("transformer.norm.weight", "I8", {256}, b, e);
  s.Save(file_);
  EXPECT_THAT(Open(), InvalidWith("tensor 'transformer.norm.weight' in '" + file_ +
                                  "' has unsupported dtype \"I8\""));
}

TEST_F(CorruptCheckpointTest, MalformedEntry) {
  Safetensors s = Safetensors::Load(file_);
  s.header["transformer.norm.weight"] = {{"dtype", "BF16"}};
  s.Save(file_);
  EXPECT_THAT(Open(),
              InvalidWith("entry for tensor 'transformer.norm.weight' must be an object "
                          "with dtype, shape and data_offsets"));
  s.Set("transformer.norm.weight", "BF16", {-128}, 0, 256);
  s.Save(file_);
  EXPECT_THAT(Open(), InvalidWith("has invalid shape [-128]"));
  s.Set("transformer.norm.weight", "BF16", {128}, 256, 0);
  s.Save(file_);
  EXPECT_THAT(Open(), InvalidWith("has invalid data_offsets [256,0]"));
  // Offsets and dimensions must be exact integers: no floats, nothing
  // beyond int64, no negatives.
  const auto [b, e] = s.Offsets("transformer.layers.0.attn_norm.weight");
  for (const char* offsets :
       {"[0.0,256]", "[0,256.0]", "[-256,0]", "[0,9223372036854775808]", "[0]",
        "[0,\"256\"]", "{\"begin\":0,\"end\":256}"}) {
    SCOPED_TRACE(offsets);
    s.Set("transformer.norm.weight", "BF16", {128}, b, e);
    s.header["transformer.norm.weight"]["data_offsets"] = nlohmann::json::parse(offsets);
    s.Save(file_);
    EXPECT_THAT(Open(), InvalidWith(absl::StrCat(
                            "tensor 'transformer.norm.weight' in '", file_,
                            "' has invalid data_offsets ", offsets,
                            ": expected [begin, end] with 0 <= begin <= end")));
  }
  s.Set("transformer.norm.weight", "BF16", {128}, b, e);
  s.header["transformer.norm.weight"]["shape"] = {128.0};
  s.Save(file_);
  EXPECT_THAT(Open(), InvalidWith("has invalid shape [128.0]"));
}

TEST_F(CorruptCheckpointTest, OffsetsOutOfRange) {
  Safetensors s = Safetensors::Load(file_);
  const std::string name = "transformer.layers.0.attn_norm.weight";
  const auto [b, e] = s.Offsets(name);
  const int64_t past = static_cast<int64_t>(s.data.size()) + 8;
  s.Set(name, "BF16", {128}, past, past + (e - b));
  s.Save(file_);
  EXPECT_THAT(Open(),
              InvalidWith(absl::StrCat(
                  "tensor '", name, "' in '", file_, "' has data_offsets [", past, ", ",
                  past + e - b, "] outside the data area of ", s.data.size(), " bytes")));
}

TEST_F(CorruptCheckpointTest, OverlappingOffsets) {
  Safetensors s = Safetensors::Load(file_);
  const auto [b, e] = s.Offsets("transformer.layers.0.attn.q_norm.weight");
  s.Set("transformer.layers.0.attn.k_norm.weight", "BF16", {32}, b + 2, e + 2);
  s.Save(file_);
  EXPECT_THAT(Open(),
              InvalidWith(absl::StrCat(
                  "tensors 'transformer.layers.0.attn.q_norm.weight' [", b, ", ", e,
                  ") and "
                  "'transformer.layers.0.attn.k_norm.weight' [",
                  b + 2, ", ", e + 2, ") overlap in '", file_, "'")));
}

TEST_F(CorruptCheckpointTest, ByteSizeDisagreesWithShape) {
  Safetensors s = Safetensors::Load(file_);
  const auto [b, e] = s.Offsets("transformer.norm.weight");
  s.Set("transformer.norm.weight", "BF16", {129}, b, e);
  s.Save(file_);
  EXPECT_THAT(
      Open(),
      InvalidWith("tensor 'transformer.norm.weight' in '" + file_ +
                  "' has data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                  "] (256 bytes) but shape [129] of BF16 needs 258 bytes"));
}

TEST_F(CorruptCheckpointTest, WrongShape) {
  Safetensors s = Safetensors::Load(file_);
  const auto [b, e] = s.Offsets("transformer.norm.weight");
  s.Set("transformer.norm.weight", "BF16", {2, 64}, b, e);
  s.Save(file_);
  EXPECT_THAT(Open(), InvalidWith("tensor 'transformer.norm.weight' in '" + file_ +
                                  "' has shape [2, 64], expected [128]"));
}

TEST_F(CorruptCheckpointTest, MissingTensor) {
  Safetensors s = Safetensors::Load(file_);
  s.header.erase("transformer.layers.1.ffn_norm.weight");
  s.Save(file_);
  EXPECT_THAT(Open(), InvalidWith("missing tensor 'transformer.layers.1.ffn_norm.weight' "
                                  "(shape [128]) in checkpoint '" +
                                  dir_ + "'"));
}

TEST_F(CorruptCheckpointTest, ExtraTensor) {
  Safetensors s = Safetensors::Load(file_);
  const int64_t end = static_cast<int64_t>(s.data.size());
  s.data.append(256, '\0');
  s.Set("transformer.layers.3.attn_norm.weight", "BF16", {128}, end, end + 256);
  s.Save(file_);
  EXPECT_THAT(
      Open(),
      InvalidWith("unexpected tensor 'transformer.layers.3.attn_norm.weight' in '" +
                  file_ + "': not part of an OpenELM model with this config.json"));
}

TEST_F(CorruptCheckpointTest, ConfigDisagreesWithFfnTensors) {
  ASSERT_OK_AND_ASSIGN(nlohmann::json o, ParseJson(ReadBytes(dir_ + "/config.json")));
  o["ffn_multipliers"] = {2.0, 3.0, 3.0};
  WriteBytes(dir_ + "/config.json", JsonDump(o));
  EXPECT_THAT(Open(),
              InvalidWith("tensor 'transformer.layers.2.ffn.proj_1.weight' in '" + file_ +
                          "' does not match config.json: it has 1024 rows but "
                          "config.json layer 2 (num_query_heads 6, num_kv_heads 3, "
                          "head_dim 32, ffn_dim 384) needs 2 * ffn_dim = 768"));
}

TEST_F(CorruptCheckpointTest, QkvRowsDisagreeWithConfigHeads) {
  Safetensors s = Safetensors::Load(file_);
  const std::string name = "transformer.layers.1.attn.qkv_proj.weight";
  const auto [b, e] = s.Offsets(name);
  s.Set(name, "BF16", {192, 128}, b, b + 192 * 128 * 2);
  s.Save(file_);
  EXPECT_THAT(Open(),
              InvalidWith("tensor '" + name + "' in '" + file_ +
                          "' does not match config.json: it has 192 rows but config.json "
                          "layer 1 (num_query_heads 4, num_kv_heads 2, head_dim 32, "
                          "ffn_dim 384) needs (q + 2 * kv) * head_dim = 256"));
  s.Set("transformer.layers.1.attn.out_proj.weight", "BF16", {128, 96},
        s.Offsets("transformer.layers.1.attn.out_proj.weight").first,
        s.Offsets("transformer.layers.1.attn.out_proj.weight").first + 128 * 96 * 2);
  s.Set(name, "BF16", {256, 128}, b, e);
  s.Save(file_);
  EXPECT_THAT(Open(),
              InvalidWith("'transformer.layers.1.attn.out_proj.weight' in '" + file_ +
                          "' does not match config.json: it has 96 columns"));
}

TEST_F(CorruptCheckpointTest, MissingFiles) {
  std::filesystem::remove(file_);
  EXPECT_THAT(Open(), StatusIs(absl::StatusCode::kNotFound,
                               HasSubstr("has neither model.safetensors nor "
                                         "model.safetensors.index.json")));
  std::filesystem::remove(dir_ + "/config.json");
  EXPECT_THAT(Open(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("has no config.json")));
}

TEST_F(CorruptCheckpointTest, RandomHeaderDamageNeverCrashes) {
  const std::string pristine = ReadBytes(file_);
  uint64_t header_len = 0;
  std::memcpy(&header_len, pristine.data(), 8);
  std::fstream f(file_, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.is_open());
  uint64_t rng = 12345;
  int rejected = 0;
  for (int i = 0; i < 300; ++i) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    const uint64_t pos = (rng >> 33) % (8 + header_len);
    const char byte = static_cast<char>(rng >> 13);
    f.seekp(static_cast<std::streamoff>(pos));
    f.put(byte);
    f.flush();
    const absl::Status s = Open();
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument) << s;
    rejected += !s.ok();
    f.seekp(static_cast<std::streamoff>(pos));
    f.put(pristine[pos]);
    f.flush();
  }
  EXPECT_GT(rejected, 200);
  EXPECT_OK(Open());
}

// ---------------------------------------------------------------------------
// Sharded checkpoints
// ---------------------------------------------------------------------------

class CorruptShardedTest : public CorruptCheckpointTest {
 protected:
  void SetUp() override {
    CorruptCheckpointTest::SetUp();
    std::filesystem::remove(file_);
    ASSERT_OK(WriteRandomCheckpoint(config_, 3, DType::kBF16, 3, dir_));
    index_ = dir_ + "/model.safetensors.index.json";
    ASSERT_OK_AND_ASSIGN(nlohmann::json index, ParseJson(ReadBytes(index_)));
    weight_map_ = index.at("weight_map");
  }
  void SaveIndex() {
    WriteBytes(index_, JsonDump({{"metadata", nlohmann::json::object()},
                                 {"weight_map", weight_map_}}));
  }

  std::string index_;
  nlohmann::json weight_map_;
};

TEST_F(CorruptShardedTest, ValidShardsOpen) { EXPECT_OK(Open()); }

TEST_F(CorruptShardedTest, IndexPointsAtMissingShard) {
  std::filesystem::remove(dir_ + "/model-00002-of-00003.safetensors");
  EXPECT_THAT(Open(),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("index '" + index_ + "' maps tensor '"),
                             HasSubstr("to shard 'model-00002-of-00003.safetensors', "
                                       "which does not exist"))));
}

TEST_F(CorruptShardedTest, IndexedTensorAbsentFromItsShard) {
  weight_map_["transformer.layers.0.attn.extra.weight"] =
      "model-00001-of-00003.safetensors";
  SaveIndex();
  EXPECT_THAT(
      Open(),
      InvalidWith("tensor 'transformer.layers.0.attn.extra.weight' is listed in '" +
                  index_ +
                  "' for shard 'model-00001-of-00003.safetensors' but "
                  "that shard does not contain it"));
}

TEST_F(CorruptShardedTest, ShardTensorNotListedForItsShard) {
  std::string moved;
  for (auto& [name, shard] : weight_map_.items()) {
    if (shard == "model-00001-of-00003.safetensors") {
      moved = name;
      shard = "model-00002-of-00003.safetensors";
      break;
    }
  }
  ASSERT_FALSE(moved.empty());
  SaveIndex();
  EXPECT_THAT(Open(),
              InvalidWith("tensor '" + moved + "' in shard '" + dir_ +
                          "/model-00001-of-00003.safetensors' is not listed for that "
                          "shard in '" +
                          index_ + "'"));
}

TEST_F(CorruptShardedTest, BadIndexFiles) {
  WriteBytes(index_, "{\"weight_map\": ");
  EXPECT_THAT(Open(), InvalidWith("index '" + index_ + "' is not valid JSON"));
  WriteBytes(index_, "{\"metadata\": {}}");
  EXPECT_THAT(Open(), InvalidWith("has no weight_map object"));
  weight_map_["transformer.norm.weight"] = "../model.safetensors";
  SaveIndex();
  EXPECT_THAT(Open(),
              InvalidWith("maps tensor 'transformer.norm.weight' to an invalid shard "
                          "name \"../model.safetensors\""));
}

}  // namespace
}  // namespace openelm
