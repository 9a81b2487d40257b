// Checks the scalar reference against logits it produced earlier and that
// were committed under tests/data/golden/ (see golden_file.h). A failure means
// the reference changed its numbers: if the change is intended, regenerate
// with openelm_reference_golden_gen and review the diff.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model/openelm_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/numerics/reference/golden_file.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

using ::testing::HasSubstr;

// Logits are printed with 9 significant digits (exact for float); the slack
// covers libm differences in exp/sin/cos across toolchains.
constexpr double kGoldenTol = 1e-5;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> GoldenFiles() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(OPENELM_GOLDEN_DIR)) {
    if (e.path().extension() == ".golden") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(ReferenceGoldenTest, ReferenceReproducesCommittedLogits) {
  const std::vector<std::string> files = GoldenFiles();
  ASSERT_FALSE(files.empty()) << "no .golden files in " << OPENELM_GOLDEN_DIR;
  for (const std::string& path : files) {
    SCOPED_TRACE(path);
    const std::string text = ReadFile(path);
    EXPECT_LT(text.size(), 200u * 1024u);
    ASSERT_OK_AND_ASSIGN(GoldenLogits want, ParseGolden(text));
    ASSERT_OK_AND_ASSIGN(GoldenLogits got, ComputeGolden(want));
    ASSERT_EQ(got.sampled.size(), want.sampled.size());
    double max_diff = 0.0;
    for (size_t p = 0; p < want.sampled.size(); ++p) {
      EXPECT_EQ(got.argmax[p], want.argmax[p]) << "position " << p;
      ASSERT_EQ(got.sampled[p].size(), want.sampled[p].size());
      for (size_t i = 0; i < want.sampled[p].size(); ++i) {
        max_diff = std::max(max_diff, std::abs(static_cast<double>(got.sampled[p][i]) -
                                               want.sampled[p][i]));
      }
    }
    std::cout << "[golden] " << path << ": max_abs_diff=" << max_diff << "\n";
    EXPECT_LE(max_diff, kGoldenTol);
  }
}

TEST(ReferenceGoldenTest, SyntheticWeightsAreStable) {
  // The golden files depend on these exact values; pin a few.
  OpenElmConfig config;
  config.num_layers = 1;
  config.model_dim = 4;
  config.head_dim = 2;
  config.vocab_size = 3;
  config.layers = {LayerShape{2, 1, 3}};
  const ReferenceWeights a = SyntheticWeights(config, 7);
  const ReferenceWeights b = SyntheticWeights(config, 7);
  const ReferenceWeights c = SyntheticWeights(config, 8);
  EXPECT_EQ(a.token_embeddings, b.token_embeddings);
  EXPECT_EQ(a.layers[0].proj_2, b.layers[0].proj_2);
  EXPECT_NE(a.token_embeddings, c.token_embeddings);
  ASSERT_EQ(a.layers[0].qkv_proj.size(), 4u * 2u * 4u);
  for (float v : a.layers[0].qkv_proj) EXPECT_LE(std::abs(v), 0.0347f);
  for (float v : a.norm) EXPECT_NEAR(v, 1.0f, 0.0347f);
}

TEST(ReferenceGoldenTest, SerializationRoundTrips) {
  GoldenLogits g;
  g.seed = 9;
  g.model_dim = 128;
  g.head_dim = 32;
  g.vocab_size = 5;
  g.layers = {LayerShape{2, 1, 256}, LayerShape{4, 2, 384}};
  g.tokens = {1, 4};
  g.stride = 2;
  g.argmax = {3, 0};
  g.sampled = {{0.125f, -1.0f / 3.0f, 7e-8f}, {1e9f, -0.0f, 3.14159274f}};
  ASSERT_OK_AND_ASSIGN(GoldenLogits back, ParseGolden(SerializeGolden(g)));
  EXPECT_EQ(back.seed, g.seed);
  EXPECT_EQ(back.model_dim, g.model_dim);
  ASSERT_EQ(back.layers.size(), 2u);
  EXPECT_EQ(back.layers[1].num_query_heads, 4);
  EXPECT_EQ(back.layers[1].num_kv_heads, 2);
  EXPECT_EQ(back.layers[1].ffn_dim, 384);
  EXPECT_EQ(back.tokens, g.tokens);
  EXPECT_EQ(back.argmax, g.argmax);
  EXPECT_EQ(back.sampled, g.sampled);  // %.9g round-trips floats exactly

  std::string broken = SerializeGolden(g);
  broken.replace(broken.find("stride 2"), 8, "stride 3");
  EXPECT_THAT(ParseGolden(broken), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("number of values")));
  EXPECT_THAT(ParseGolden("NOT_A_GOLDEN 1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace openelm::testing
