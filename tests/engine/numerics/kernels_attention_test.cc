// Paged attention against naive dense attention over gathered K/V.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/bf16.h"
#include "engine/kernels/paged_attention.h"
#include "gtest/gtest.h"
#include "tests/testing/isa_levels.h"

namespace openelm {
namespace {

struct SeqSpec {
  int32_t start_position;  // cached prefix length
  int32_t num_tokens;      // new tokens
};

struct AttentionCase {
  std::string name;
  int32_t q_heads;
  int32_t kv_heads;
  int32_t head_dim;
  int32_t block_size;
  bool bf16_kv;
  std::vector<SeqSpec> seqs;
};

// Builds random paged K/V for every position of every sequence, with block
// tables drawn at random from a shuffled pool, then compares PagedAttention
// with a dense softmax(QK^T)V in double over the same (decoded) K/V.
void RunCase(const AttentionCase& c, const CpuKernels& kernels) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int32_t hd = c.head_dim, bs = c.block_size;
  const PagedKvLayout layout{
      .num_kv_heads = c.kv_heads, .head_dim = hd, .block_size = bs, .bf16 = c.bf16_kv};

  int32_t total_blocks = 0, total_tokens = 0;
  for (const SeqSpec& s : c.seqs) {
    total_blocks += (s.start_position + s.num_tokens + bs - 1) / bs;
    total_tokens += s.num_tokens;
  }
  const int32_t pool_blocks = total_blocks + 5;  // some blocks unused
  std::vector<BlockId> pool(pool_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);

  const int64_t kv_elems = layout.elements_per_block() * pool_blocks;
  std::vector<float> kv_f32(kv_elems);
  for (float& x : kv_f32) x = dist(rng);
  std::vector<uint16_t> kv_bf16(kv_elems);
  for (int64_t i = 0; i < kv_elems; ++i) {
    kv_bf16[i] = F32ToBf16(kv_f32[i]);
    if (c.bf16_kv) kv_f32[i] = Bf16ToF32(kv_bf16[i]);  // what the kernel sees
  }

  const int64_t q_stride =
      int64_t{c.q_heads} * hd + 3 * hd;  // q rows inside a wider qkv row
  std::vector<float> q(total_tokens * q_stride);
  for (float& x : q) x = dist(rng) * 2.0f;

  std::vector<std::vector<BlockId>> tables;
  std::vector<AttentionSeq> seqs;
  int32_t next_block = 0, offset = 0;
  for (const SeqSpec& s : c.seqs) {
    const int32_t nb = (s.start_position + s.num_tokens + bs - 1) / bs;
    tables.emplace_back(pool.begin() + next_block, pool.begin() + next_block + nb);
    next_block += nb;
  }
  for (size_t i = 0; i < c.seqs.size(); ++i) {
    seqs.push_back({.token_offset = offset,
                    .num_tokens = c.seqs[i].num_tokens,
                    .start_position = c.seqs[i].start_position,
                    .block_table = tables[i].data(),
                    .num_blocks = static_cast<int32_t>(tables[i].size())});
    offset += c.seqs[i].num_tokens;
  }

  const int64_t out_stride = int64_t{c.q_heads} * hd;
  std::vector<float> out(total_tokens * out_stride, std::nanf(""));
  PagedAttentionScratch scratch(total_tokens, c.kv_heads);
  const PagedAttentionShape shape{
      .num_q_heads = c.q_heads, .layout = layout, .scale = 1.0f / std::sqrt(float(hd))};
  const void* kv = c.bf16_kv ? static_cast<const void*>(kv_bf16.data()) : kv_f32.data();
  PagedAttention(shape, seqs, q.data(), q_stride, kv, out.data(), out_stride, scratch, 2,
                 &kernels);

  const int32_t group = c.q_heads / c.kv_heads;
  for (size_t si = 0; si < seqs.size(); ++si) {
    const AttentionSeq& s = seqs[si];
    for (int32_t t = 0; t < s.num_tokens; ++t) {
      const int32_t row = s.token_offset + t;
      const int32_t pos = s.start_position + t;
      for (int32_t h = 0; h < c.q_heads; ++h) {
        const int32_t g = h / group;
        const float* qv = &q[row * q_stride + h * hd];
        std::vector<double> scores(pos + 1);
        double mx = -1e300;
        for (int32_t p = 0; p <= pos; ++p) {
          const float* k = &kv_f32[layout.offset(s.block_table[p / bs], g, 0, p % bs)];
          double dot = 0;
          for (int32_t d = 0; d < hd; ++d) dot += double(qv[d]) * k[d];
          scores[p] = dot / std::sqrt(double(hd));
          mx = std::max(mx, scores[p]);
        }
        double sum = 0;
        for (double& sc : scores) sum += (sc = std::exp(sc - mx));
        for (int32_t d = 0; d < hd; ++d) {
          double want = 0;
          for (int32_t p = 0; p <= pos; ++p) {
            want += scores[p] / sum *
                    kv_f32[layout.offset(s.block_table[p / bs], g, 1, p % bs) + d];
          }
          ASSERT_NEAR(out[row * out_stride + h * hd + d], want, 2e-5)
              << c.name << " seq " << si << " token " << t << " head " << h << " d " << d;
        }
      }
    }
  }
}

std::vector<AttentionCase> Cases() {
  // Decode rows (1 token after a prefix), prefill chunks with and without a
  // cached prefix, chunks crossing block edges, a single-token sequence.
  const std::vector<SeqSpec> mixed = {{0, 1},   {40, 1}, {0, 19}, {37, 20},
                                      {16, 16}, {5, 1},  {63, 9}};
  return {
      {"Group4F32", 12, 3, 64, 16, false, mixed},
      {"Group4Bf16", 12, 3, 64, 16, true, mixed},
      {"Group1F32", 4, 4, 32, 8, false, mixed},
      {"Group5Bf16", 10, 2, 32, 16, true, mixed},
      {"Group16F32", 16, 1, 16, 4, false, {{0, 9}, {30, 3}}},
      {"OddHeadDimF32", 6, 3, 24, 16, false, {{0, 12}, {17, 2}}},  // portable path only
      {"HeadDim128Bf16", 8, 2, 128, 32, true, {{0, 3}, {100, 1}, {31, 40}}},
      {"LongContextDecode", 4, 1, 64, 16, false, {{700, 1}, {1000, 2}}},
  };
}

// Every case on every ISA build of the kernel (skipped, by name, where the
// host cannot run that ISA).
class PagedAttentionTest
    : public ::testing::TestWithParam<std::tuple<AttentionCase, KernelBuild>> {};

TEST_P(PagedAttentionTest, MatchesDenseAttention) {
  const CpuKernels& kernels = OPENELM_KERNELS_OR_SKIP(std::get<1>(GetParam()));
  RunCase(std::get<0>(GetParam()), kernels);
}

INSTANTIATE_TEST_SUITE_P(
    AllIsas, PagedAttentionTest,
    ::testing::Combine(::testing::ValuesIn(Cases()),
                       ::testing::ValuesIn(testing::KernelIsaLevels())),
    [](const ::testing::TestParamInfo<std::tuple<AttentionCase, KernelBuild>>& info) {
      return std::get<0>(info.param).name + "_" +
             testing::IsaTestName(std::get<1>(info.param));
    });

TEST(PagedAttentionLayoutTest, OffsetsFollowTheDocumentedLayout) {
  const PagedKvLayout l{.num_kv_heads = 3, .head_dim = 8, .block_size = 4, .bf16 = false};
  EXPECT_EQ(l.elements_per_block(), 3 * 2 * 4 * 8);
  // [block][head][K/V][slot][dim]
  EXPECT_EQ(l.offset(0, 0, 0, 0), 0);
  EXPECT_EQ(l.offset(0, 0, 0, 1), 8);
  EXPECT_EQ(l.offset(0, 0, 1, 0), 4 * 8);
  EXPECT_EQ(l.offset(0, 1, 0, 0), 2 * 4 * 8);
  EXPECT_EQ(l.offset(2, 0, 0, 0), 2 * l.elements_per_block());
  EXPECT_EQ(l.offset(2, 2, 1, 3), 2 * l.elements_per_block() + (2 * 2 + 1) * 32 + 3 * 8);
}

}  // namespace
}  // namespace openelm
