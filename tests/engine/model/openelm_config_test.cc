#include "engine/model/openelm_config.h"

#include <string>
#include <utility>
#include <vector>

#include "engine/base/json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Expands run-length pairs {value, count} ("12x5" in the doc) into a list.
std::vector<int32_t> Runs(std::initializer_list<std::pair<int32_t, int32_t>> runs) {
  std::vector<int32_t> out;
  for (const auto& [value, count] : runs) out.insert(out.end(), count, value);
  return out;
}

struct PublishedTable {
  const char* size;
  int32_t layers;
  int32_t model_dim;
  int32_t head_dim;
  int64_t parameters;
  std::vector<int32_t> q_heads;
  std::vector<int32_t> kv_heads;
  std::vector<int32_t> ffn;
};

// Written out from ../shared/docs/openelm-model.md ("Layer-wise scaling").
std::vector<PublishedTable> Tables() {
  return {
      {"270M",
       16,
       1280,
       64,
       271527168,
       Runs({{12, 5}, {16, 7}, {20, 4}}),
       Runs({{3, 5}, {4, 7}, {5, 4}}),
       {768, 1024, 1280, 1536, 1792, 2048, 2560, 2816, 3072, 3328, 3584, 3840, 4352, 4608,
        4864, 5120}},
      {"450M",
       20,
       1536,
       64,
       457179136,
       Runs({{12, 3}, {16, 7}, {20, 6}, {24, 4}}),
       Runs({{3, 3}, {4, 7}, {5, 6}, {6, 4}}),
       {768,  1024, 1280, 1536, 1792, 2304, 2560, 2816, 3072, 3328,
        3584, 3840, 4096, 4352, 4608, 5120, 5376, 5632, 5888, 6144}},
      {"1_1B",
       28,
       2048,
       64,
       1079891456,
       Runs({{16, 3}, {20, 7}, {24, 8}, {28, 6}, {32, 4}}),
       Runs({{4, 3}, {5, 7}, {6, 8}, {7, 6}, {8, 4}}),
       {1024, 1280, 1536, 1792, 2048, 2304, 2560, 2816, 3072, 3328,
        3584, 3840, 4096, 4608, 4608, 5120, 5376, 5632, 5888, 6144,
        6400, 6656, 6912, 7168, 7424, 7680, 7936, 8192}},
      {"3B",
       36,
       3072,
       128,
       3036647424,
       Runs({{12, 4}, {16, 14}, {20, 12}, {24, 6}}),
       Runs({{3, 4}, {4, 14}, {5, 12}, {6, 6}}),
       {1536, 1792, 2048, 2560, 2816,  3072,  3328,  3584,  4096,  4352,  4608,  4864,
        5120, 5632, 5888, 6144, 6400,  6656,  7168,  7424,  7680,  7936,  8192,  8704,
        8960, 9216, 9472, 9728, 10240, 10496, 10752, 11008, 11264, 11776, 12032, 12288}},
  };
}

TEST(OpenElmConfigTest, PublishedConfigsMatchTheDocTables) {
  for (const PublishedTable& t : Tables()) {
    SCOPED_TRACE(t.size);
    ASSERT_OK_AND_ASSIGN(OpenElmConfig c, MakeOpenElmConfig(t.size));
    EXPECT_EQ(c.num_layers, t.layers);
    EXPECT_EQ(c.model_dim, t.model_dim);
    EXPECT_EQ(c.head_dim, t.head_dim);
    EXPECT_EQ(c.num_gqa_groups, 4);
    EXPECT_EQ(c.vocab_size, 32000);
    EXPECT_EQ(c.max_context_length, 2048);
    EXPECT_EQ(c.rope_max_length, 4096);
    EXPECT_EQ(c.rope_freq_constant, 10000.0f);
    ASSERT_EQ(c.layers.size(), static_cast<size_t>(t.layers));
    std::vector<int32_t> q, kv, ffn;
    for (const LayerShape& l : c.layers) {
      q.push_back(l.num_query_heads);
      kv.push_back(l.num_kv_heads);
      ffn.push_back(l.ffn_dim);
    }
    EXPECT_THAT(q, ElementsAreArray(t.q_heads));
    EXPECT_THAT(kv, ElementsAreArray(t.kv_heads));
    EXPECT_THAT(ffn, ElementsAreArray(t.ffn));
    EXPECT_EQ(c.NumParameters(), t.parameters);
    EXPECT_EQ(c.SizeName(), t.size);
  }
}

TEST(OpenElmConfigTest, FfnMultipliersOf270MAreApples) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig c, MakeOpenElmConfig("270M"));
  EXPECT_THAT(
      c.ffn_multipliers,
      ElementsAreArray<float>({0.5f, 0.73f, 0.97f, 1.2f, 1.43f, 1.67f, 1.9f, 2.13f, 2.37f,
                               2.6f, 2.83f, 3.07f, 3.3f, 3.53f, 3.77f, 4.0f}));
  EXPECT_THAT(c.qkv_multipliers, ElementsAreArray<float>({0.5f, 1.0f}));
  EXPECT_THAT(
      OpenElmConfigToJson(c),
      HasSubstr("\"ffn_multipliers\": [0.5, 0.73, 0.97, 1.2, 1.43, 1.67, 1.9, 2.13, "
                "2.37, 2.6, 2.83, 3.07, 3.3, 3.53, 3.77, 4.0]"));
}

TEST(OpenElmConfigTest, TinyHasUnevenLayers) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig c, MakeOpenElmConfig("tiny"));
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.model_dim, 128);
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(c.num_gqa_groups, 2);
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.max_context_length, 2048);
  std::vector<int32_t> q, kv, ffn;
  for (const LayerShape& l : c.layers) {
    q.push_back(l.num_query_heads);
    kv.push_back(l.num_kv_heads);
    ffn.push_back(l.ffn_dim);
  }
  EXPECT_THAT(q, ElementsAreArray({2, 4, 6}));
  EXPECT_THAT(kv, ElementsAreArray({1, 2, 3}));
  EXPECT_THAT(ffn, ElementsAreArray({256, 384, 512}));
  EXPECT_EQ(c.max_q_heads(), 6);
  EXPECT_EQ(c.max_kv_heads(), 3);
  EXPECT_EQ(c.max_ffn_dim(), 512);
  EXPECT_EQ(c.SizeName(), "tiny");
  // 32000*128 + 128 + per layer (128 + (q+2kv)*32*128 + 64 + 128*q*32 + 128 + 3*f*128).
  EXPECT_EQ(c.NumParameters(), 4096000 + 128 +
                                   (128 + 4 * 4096 + 64 + 2 * 4096 + 128 + 98304) +
                                   (128 + 8 * 4096 + 64 + 4 * 4096 + 128 + 147456) +
                                   (128 + 12 * 4096 + 64 + 6 * 4096 + 128 + 196608));
}

TEST(OpenElmConfigTest, UnknownSizeIsRejected) {
  EXPECT_THAT(MakeOpenElmConfig("7B"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("unknown model size '7B'")));
}

TEST(OpenElmConfigTest, EveryConfigRoundTripsThroughJson) {
  for (const char* size : {"tiny", "270M", "450M", "1_1B", "3B"}) {
    SCOPED_TRACE(size);
    ASSERT_OK_AND_ASSIGN(OpenElmConfig want, MakeOpenElmConfig(size));
    const std::string json = OpenElmConfigToJson(want);
    ASSERT_OK_AND_ASSIGN(OpenElmConfig got, OpenElmConfig::FromJson(json, "mem"));
    EXPECT_EQ(got.num_layers, want.num_layers);
    EXPECT_EQ(got.model_dim, want.model_dim);
    EXPECT_EQ(got.head_dim, want.head_dim);
    EXPECT_EQ(got.vocab_size, want.vocab_size);
    EXPECT_EQ(got.max_context_length, want.max_context_length);
    EXPECT_EQ(got.num_gqa_groups, want.num_gqa_groups);
    EXPECT_EQ(got.ffn_dim_divisor, want.ffn_dim_divisor);
    EXPECT_EQ(got.rope_freq_constant, want.rope_freq_constant);
    EXPECT_EQ(got.rope_max_length, want.rope_max_length);
    EXPECT_EQ(got.bos_token_id, 1);
    EXPECT_EQ(got.eos_token_id, 2);
    EXPECT_EQ(got.activation, "swish");
    EXPECT_EQ(got.ffn_multipliers, want.ffn_multipliers);
    EXPECT_EQ(got.qkv_multipliers, want.qkv_multipliers);
    ASSERT_EQ(got.layers.size(), want.layers.size());
    for (size_t i = 0; i < got.layers.size(); ++i) {
      EXPECT_EQ(got.layers[i].num_query_heads, want.layers[i].num_query_heads) << i;
      EXPECT_EQ(got.layers[i].num_kv_heads, want.layers[i].num_kv_heads) << i;
      EXPECT_EQ(got.layers[i].ffn_dim, want.layers[i].ffn_dim) << i;
    }
    EXPECT_EQ(got.NumParameters(), want.NumParameters());
    EXPECT_EQ(OpenElmConfigToJson(got), json);
  }
}

TEST(OpenElmConfigTest, JsonHasTheHuggingFaceFields) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig c, MakeOpenElmConfig("270M"));
  ASSERT_OK_AND_ASSIGN(nlohmann::json j, ParseJson(OpenElmConfigToJson(c)));
  for (const char* field : {"num_transformer_layers",
                            "model_dim",
                            "head_dim",
                            "num_gqa_groups",
                            "num_query_heads",
                            "num_kv_heads",
                            "ffn_multipliers",
                            "ffn_dim_divisor",
                            "ffn_with_glu",
                            "normalize_qk_projections",
                            "share_input_output_layers",
                            "qkv_multipliers",
                            "rope_freq_constant",
                            "rope_max_length",
                            "max_context_length",
                            "vocab_size",
                            "bos_token_id",
                            "eos_token_id",
                            "activation_fn_name",
                            "model_type",
                            "architectures",
                            "torch_dtype"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
  EXPECT_EQ(j.at("model_type"), "openelm");
  EXPECT_EQ(JsonDump(j.at("architectures")), "[\"OpenELMForCausalLM\"]");
  EXPECT_EQ(j.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(JsonDump(j.at("num_query_heads")),
            "[12,12,12,12,12,16,16,16,16,16,16,16,20,20,20,20]");
  EXPECT_EQ(JsonDump(j.at("num_kv_heads")), "[3,3,3,3,3,4,4,4,4,4,4,4,5,5,5,5]");
  EXPECT_EQ(JsonDump(j.at("rope_freq_constant")), "10000");
  EXPECT_EQ(j.at("activation_fn_name"), "swish");
  EXPECT_EQ(ParseJson(OpenElmConfigToJson(c, "float32"))->at("torch_dtype"), "float32");
}

TEST(OpenElmConfigTest, KvBytesPerTokenSumsKvHeadsOverLayers) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig c270, MakeOpenElmConfig("270M"));
  // KV heads 3x5 + 4x7 + 5x4 = 63; K and V; head_dim 64.
  EXPECT_EQ(c270.KvBytesPerToken(2), 2 * 63 * 64 * 2);
  EXPECT_EQ(c270.KvBytesPerToken(4), 2 * 63 * 64 * 4);
  ASSERT_OK_AND_ASSIGN(OpenElmConfig c3b, MakeOpenElmConfig("3B"));
  // 3x4 + 4x14 + 5x12 + 6x6 = 164; head_dim 128.
  EXPECT_EQ(c3b.KvBytesPerToken(2), 2 * 164 * 128 * 2);
  ASSERT_OK_AND_ASSIGN(OpenElmConfig tiny, MakeOpenElmConfig("tiny"));
  EXPECT_EQ(tiny.KvBytesPerToken(4), 2 * (1 + 2 + 3) * 32 * 4);
}

TEST(OpenElmConfigTest, AcceptsApplesCompactMultiplierForms) {
  ASSERT_OK_AND_ASSIGN(OpenElmConfig c, MakeOpenElmConfig("1_1B"));
  ASSERT_OK_AND_ASSIGN(nlohmann::json o, ParseJson(OpenElmConfigToJson(c)));
  // [min, max] is spread over the layers exactly as Apple's config code does.
  o["ffn_multipliers"] = {0.5, 4.0};
  ASSERT_OK_AND_ASSIGN(OpenElmConfig spread, OpenElmConfig::FromJson(JsonDump(o), "mem"));
  for (int i = 0; i < c.num_layers; ++i)
    EXPECT_EQ(spread.layers[i].ffn_dim, c.layers[i].ffn_dim);
  // One number applies to every layer.
  o["ffn_multipliers"] = 2.0;
  ASSERT_OK_AND_ASSIGN(OpenElmConfig flat, OpenElmConfig::FromJson(JsonDump(o), "mem"));
  for (const LayerShape& l : flat.layers) EXPECT_EQ(l.ffn_dim, 4096);
}

// Edits one field of the published 270M config.json and parses the result.
class ConfigErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(OpenElmConfig c, MakeOpenElmConfig("270M"));
    ASSERT_OK_AND_ASSIGN(fields_, ParseJson(OpenElmConfigToJson(c)));
  }
  absl::Status ParseWith(const std::string& key, nlohmann::json value) {
    nlohmann::json o = fields_;
    o[key] = std::move(value);
    return OpenElmConfig::FromJson(JsonDump(o), "/ckpt/config.json").status();
  }
  absl::Status ParseWithout(const std::string& key) {
    nlohmann::json o = fields_;
    o.erase(key);
    return OpenElmConfig::FromJson(JsonDump(o), "/ckpt/config.json").status();
  }
  static nlohmann::json IntList(const std::vector<int64_t>& v) { return v; }
  std::vector<int64_t> Ints(const std::string& key) {
    return fields_.at(key).get<std::vector<int64_t>>();
  }
  nlohmann::json fields_;
};

MATCHER_P(InvalidWith, text, "") {
  return ::testing::ExplainMatchResult(
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("/ckpt/config.json"), HasSubstr(text))),
      arg, result_listener);
}

// Found by fuzz_config in CI: a huge multiplier overflowed the derived
// sizes (UBSan float-cast-overflow). Multipliers are bounded now.
TEST_F(ConfigErrorTest, HugeMultipliersAreRefused) {
  EXPECT_THAT(ParseWith("qkv_multipliers", nlohmann::json::array({0.5, 6.7e41})),
              InvalidWith("field 'qkv_multipliers[1]' must be at most 64, got 6.7e+41"));
  EXPECT_THAT(ParseWith("ffn_multipliers", 65.0),
              InvalidWith("field 'ffn_multipliers' must be at most 64, got 65"));
}

TEST_F(ConfigErrorTest, MissingFieldsAreNamed) {
  for (const char* field :
       {"model_type", "num_transformer_layers", "model_dim", "head_dim", "num_gqa_groups",
        "num_query_heads", "num_kv_heads", "ffn_multipliers", "ffn_dim_divisor",
        "ffn_with_glu", "normalize_qk_projections", "share_input_output_layers",
        "qkv_multipliers", "rope_freq_constant", "rope_max_length", "max_context_length",
        "vocab_size", "activation_fn_name"}) {
    EXPECT_THAT(ParseWithout(field),
                InvalidWith(std::string("field '") + field + "' is missing"));
  }
}

TEST_F(ConfigErrorTest, MistypedFieldsNameFieldAndValue) {
  EXPECT_THAT(ParseWith("model_dim", "1280"),
              InvalidWith("field 'model_dim' must be an integer, got \"1280\""));
  EXPECT_THAT(ParseWith("head_dim", 64.5),
              InvalidWith("field 'head_dim' must be an integer, got 64.5"));
  EXPECT_THAT(ParseWith("model_dim", -5),
              InvalidWith("field 'model_dim' must be in [1, 1048576], got -5"));
  EXPECT_THAT(ParseWith("ffn_with_glu", "true"),
              InvalidWith("field 'ffn_with_glu' must be true or false, got \"true\""));
  EXPECT_THAT(
      ParseWith("num_query_heads", 12),
      InvalidWith("field 'num_query_heads' must be a list of 16 integers, got 12"));
  EXPECT_THAT(ParseWith("rope_freq_constant", "1e4"),
              InvalidWith("field 'rope_freq_constant' must be a number, got \"1e4\""));
  EXPECT_THAT(ParseWith("ffn_multipliers", nlohmann::json::array({0.5, "x", 1.0})),
              InvalidWith("field 'ffn_multipliers[1]' must be a number, got \"x\""));
  EXPECT_THAT(ParseWith("bos_token_id", 32000),
              InvalidWith("field 'bos_token_id' must be in [0, 31999], got 32000"));
  EXPECT_THAT(ParseWith("activation_fn_name", 1),
              InvalidWith("field 'activation_fn_name' must be a string, got 1"));
}

TEST_F(ConfigErrorTest, ListLengthsMustMatchLayerCount) {
  std::vector<int64_t> kv = Ints("num_kv_heads");
  kv.pop_back();
  EXPECT_THAT(ParseWith("num_kv_heads", IntList(kv)),
              InvalidWith("field 'num_kv_heads' has 15 entries, expected "
                          "num_transformer_layers = 16"));
  std::vector<int64_t> q = Ints("num_query_heads");
  q.push_back(20);
  EXPECT_THAT(ParseWith("num_query_heads", IntList(q)),
              InvalidWith("field 'num_query_heads' has 17 entries"));
  EXPECT_THAT(ParseWith("ffn_multipliers", std::vector<double>(5, 1.5)),
              InvalidWith("field 'ffn_multipliers' has 5 entries, expected "
                          "num_transformer_layers = 16"));
}

TEST_F(ConfigErrorTest, InconsistentHeadsAreRejected) {
  std::vector<int64_t> kv = Ints("num_kv_heads");
  kv[2] = 4;
  EXPECT_THAT(ParseWith("num_kv_heads", IntList(kv)),
              InvalidWith("num_query_heads[2] = 12 but num_kv_heads[2] = 4 times "
                          "num_gqa_groups = 4 is 16"));
  EXPECT_THAT(ParseWith("num_gqa_groups", 3),
              InvalidWith("num_query_heads[0] = 12 but num_kv_heads[0] = 3 times "
                          "num_gqa_groups = 3 is 9"));
  // Self-consistent lists that disagree with qkv_multipliers.
  std::vector<int64_t> q = Ints("num_query_heads");
  kv = Ints("num_kv_heads");
  q[0] = 16;
  kv[0] = 4;
  nlohmann::json o = fields_;
  o["num_query_heads"] = IntList(q);
  o["num_kv_heads"] = IntList(kv);
  EXPECT_THAT(
      OpenElmConfig::FromJson(JsonDump(o), "/ckpt/config.json"),
      InvalidWith("num_query_heads[0] = 16 but qkv_multipliers [0.5, 1] give 12"));
}

TEST_F(ConfigErrorTest, UnsupportedVariantsAreRejected) {
  EXPECT_THAT(ParseWith("ffn_with_glu", false),
              InvalidWith("field 'ffn_with_glu' is false, which is unsupported"));
  EXPECT_THAT(
      ParseWith("share_input_output_layers", false),
      InvalidWith("field 'share_input_output_layers' is false, which is unsupported"));
  EXPECT_THAT(
      ParseWith("normalize_qk_projections", false),
      InvalidWith("field 'normalize_qk_projections' is false, which is unsupported"));
  EXPECT_THAT(ParseWith("activation_fn_name", "gelu"),
              InvalidWith("field 'activation_fn_name' is \"gelu\", only \"swish\""));
  EXPECT_THAT(ParseWith("model_type", "llama"),
              InvalidWith("field 'model_type' is \"llama\", expected \"openelm\""));
  EXPECT_THAT(ParseWith("architectures", nlohmann::json::array({"LlamaForCausalLM"})),
              InvalidWith("field 'architectures' is [\"LlamaForCausalLM\"]"));
  EXPECT_THAT(ParseWith("normalization_layer_name", "layer_norm"),
              InvalidWith("field 'normalization_layer_name' is \"layer_norm\""));
  EXPECT_THAT(ParseWith("head_dim", 63), InvalidWith("field 'head_dim' must be even"));
}

TEST_F(ConfigErrorTest, BrokenJsonAndFilesAreReported) {
  EXPECT_THAT(OpenElmConfig::FromJson("{\"model_dim\": 1280,}", "/ckpt/config.json"),
              InvalidWith("is not valid JSON: JSON parse error at byte 19"));
  EXPECT_THAT(OpenElmConfig::FromJson("[]", "/ckpt/config.json"),
              InvalidWith("must hold a JSON object"));
  EXPECT_THAT(
      OpenElmConfig::FromFile("/nonexistent/config.json"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/config.json")));
}

}  // namespace
}  // namespace openelm
