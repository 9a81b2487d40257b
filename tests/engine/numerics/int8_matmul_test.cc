// The int8 matmul (Int8Matmul, every ISA build): quantization checked
// against plain loops written from its definition, the product against exact
// integer sums of the same quantized values, and the error against the fp32
// product bounded by the quantization steps.
#include "engine/kernels/int8_matmul.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/int8_reference.h"
#include "tests/testing/isa_levels.h"
#include "tests/testing/random_vectors.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::QuantizeRowRef;
using ::openelm::testing::RandomVector;

using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;

struct Shape {
  int64_t n;
  int64_t k;
};

class Int8MatmulTest : public ::testing::TestWithParam<std::tuple<KernelBuild, Shape>> {};

TEST_P(Int8MatmulTest, MatchesIntegerSumsOfTheQuantizedValues) {
  const CpuKernels& kernels = OPENELM_KERNELS_OR_SKIP(std::get<0>(GetParam()));
  const auto [n, k] = std::get<1>(GetParam());
  // Up to 150 rows: more than one cache-blocking pass over the rows
  // (Int8Gemm::kRowsPerPass = 64), with an odd tail.
  constexpr int32_t kMaxM = 150;
  std::vector<float> w = RandomVector(n * k, 5, 0.02f);
  w[0] = 0.0f;  // one row with a zero
  auto scratch = std::make_shared<Int8ActivationScratch>();
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Int8Matmul> mm,
      Int8Matmul::Create(kernels, n, k, kMaxM, w.data(), scratch, 2, "w"));
  const int64_t kp = mm->padded_k();
  ASSERT_EQ(kp % kInt8Chunk, 0);
  ASSERT_GE(kp, k);
  const int64_t padded_n = (n + kInt8BlockRows - 1) / kInt8BlockRows * kInt8BlockRows;
  EXPECT_EQ(mm->packed_weight_bytes(), padded_n * (kp + 4));

  // Weights: the stored values are the reference quantization, padding zero.
  std::vector<std::vector<int32_t>> wq(n);
  std::vector<double> ws(n);
  for (int64_t j = 0; j < n; ++j) {
    QuantizeRowRef(&w[j * k], k, &wq[j], &ws[j]);
    ASSERT_FLOAT_EQ(mm->scales()[j], static_cast<float>(ws[j])) << j;
    for (int64_t c = 0; c < kp; ++c) {
      ASSERT_EQ(mm->WeightAt(j, c), c < k ? wq[j][c] : 0) << j << "," << c;
    }
  }
  // The embedding gather dequantizes a row.
  std::vector<float> row(k);
  mm->GatherRow(n - 1, row.data());
  for (int64_t c = 0; c < k; ++c)
    ASSERT_FLOAT_EQ(row[c], wq[n - 1][c] * static_cast<float>(ws[n - 1]));

  for (int32_t m : {1, 2, 3, 4, 5, 9, 65, 150}) {
    std::vector<float> src = RandomVector(int64_t{m} * k, 50 + m, 3.0f);
    constexpr int kGuard = 3;
    std::vector<float> dst((m + kGuard) * n, 777.0f);
    ASSERT_OK(mm->Run(src.data(), m, dst.data()));
    for (int32_t i = 0; i < m; ++i) {
      std::vector<int32_t> aq;
      double as = 0;
      QuantizeRowRef(&src[int64_t{i} * k], k, &aq, &as);
      for (int64_t j = 0; j < n; ++j) {
        int64_t dot = 0;
        double exact = 0, bound = 0;
        for (int64_t c = 0; c < k; ++c) {
          dot += int64_t{aq[c]} * wq[j][c];
          exact += double{src[i * k + c]} * w[j * k + c];
          // |a w - a_q s_a w_q s_w| <= |a| s_w / 2 + |w| s_a / 2 + s_a s_w / 4
          bound += std::fabs(src[i * k + c]) * ws[j] / 2 +
                   std::fabs(w[j * k + c]) * as / 2 + as * ws[j] / 4;
        }
        const double want = static_cast<double>(dot) * as * ws[j];
        const float got = dst[int64_t{i} * n + j];
        ASSERT_NEAR(got, want, 1e-5 * (1 + std::fabs(want)))
            << "m=" << m << " row " << i << " col " << j;
        ASSERT_NEAR(got, exact, bound + 1e-6) << "quantization error bound, m=" << m;
      }
    }
    for (int64_t i = int64_t{m} * n; i < int64_t{m + kGuard} * n; ++i) {
      ASSERT_EQ(dst[i], 777.0f) << "m=" << m << ": written past the last row";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllIsas, Int8MatmulTest,
    ::testing::Combine(::testing::ValuesIn(testing::KernelIsaLevels()),
                       ::testing::Values(Shape{1, 1}, Shape{9, 31}, Shape{13, 64},
                                         Shape{40, 100}, Shape{17, 1280}, Shape{6, 96},
                                         // 75 blocks: several passes of 32 blocks
                                         Shape{300, 100})),
    [](const ::testing::TestParamInfo<std::tuple<KernelBuild, Shape>>& info) {
      const Shape s = std::get<1>(info.param);
      return testing::IsaTestName(std::get<0>(info.param)) + "_n" + std::to_string(s.n) +
             "_k" + std::to_string(s.k);
    });

// Products at the ends of the range, +-127 x +-127 in every position and
// every sign pattern, over a long K: a 16-bit intermediate that saturated
// (or a sign that went to the wrong operand) would show here.
class Int8ExtremesTest : public ::testing::TestWithParam<KernelBuild> {};

TEST_P(Int8ExtremesTest, FullScaleProductsSumExactly) {
  const CpuKernels& kernels = OPENELM_KERNELS_OR_SKIP(GetParam());
  const testing::FullScaleCase f(8, 1280, 3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Int8Matmul> mm,
                       Int8Matmul::Create(kernels, f.n, f.k, f.m, f.w.data(),
                                          std::make_shared<Int8ActivationScratch>(), 2));
  std::vector<float> dst(f.m * f.n);
  ASSERT_OK(mm->Run(f.a.data(), f.m, dst.data()));
  f.ExpectOutput(dst.data());
}

INSTANTIATE_TEST_SUITE_P(AllIsas, Int8ExtremesTest,
                         ::testing::ValuesIn(testing::KernelIsaLevels()),
                         [](const ::testing::TestParamInfo<KernelBuild>& info) {
                           return testing::IsaTestName(info.param);
                         });

// The VNNI builds (vpdpbusd: AVX-VNNI and AVX512_VNNI) compute the same
// integer sums as the AVX2 build, so every output is bit-identical on random
// data of every row count.
class VnniInt8Test : public ::testing::TestWithParam<KernelBuild> {};

TEST_P(VnniInt8Test, BitIdenticalToTheAvx2Build) {
  const CpuKernels& vnni = OPENELM_KERNELS_OR_SKIP(GetParam());
  const CpuKernels& avx2 = OPENELM_KERNELS_OR_SKIP(KernelBuild::kAvx2);
  constexpr int64_t kN = 37, kK = 1000;
  constexpr int32_t kMaxM = 17;
  const std::vector<float> w = RandomVector(kN * kK, 11, 0.05f);
  auto scratch = std::make_shared<Int8ActivationScratch>();
  ASSERT_OK_AND_ASSIGN(auto a,
                       Int8Matmul::Create(vnni, kN, kK, kMaxM, w.data(), scratch, 2));
  ASSERT_OK_AND_ASSIGN(auto b,
                       Int8Matmul::Create(avx2, kN, kK, kMaxM, w.data(), scratch, 2));
  for (int32_t m = 1; m <= kMaxM; ++m) {
    const std::vector<float> src = RandomVector(int64_t{m} * kK, 100 + m, 2.0f);
    std::vector<float> da(m * kN), db(m * kN);
    ASSERT_OK(a->Run(src.data(), m, da.data()));
    ASSERT_OK(b->Run(src.data(), m, db.data()));
    for (int64_t i = 0; i < m * kN; ++i)
      ASSERT_EQ(da[i], db[i]) << "m=" << m << " at " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, VnniInt8Test,
                         ::testing::ValuesIn(testing::VnniKernelBuilds()),
                         [](const ::testing::TestParamInfo<KernelBuild>& info) {
                           return testing::IsaTestName(info.param);
                         });

TEST(Int8LayoutTest, BlocksOfFourRowsInterleaveChunkByChunk) {
  // kp = 64: row 5 is row 1 of block 1; its chunk 1 starts after block 0
  // (4 x 64 bytes), chunk 0 of block 1 (4 x 32) and row 0's chunk 1 (32).
  EXPECT_EQ(Int8WeightOffset(5, 32 + 3, 64), 4 * 64 + 4 * 32 + 1 * 32 + 3);
  EXPECT_EQ(Int8WeightOffset(0, 0, 64), 0);
  EXPECT_EQ(Int8WeightOffset(3, 31, 64), 3 * 32 + 31);
}

TEST(Int8MatmulTest, NonFiniteWeightIsRefusedNamingTheTensor) {
  std::vector<float> w(16, 0.5f);
  w[5] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(
      Int8Matmul::Create(ActiveKernels(), 4, 4, 1, w.data(),
                         std::make_shared<Int8ActivationScratch>(), 1, "layers.0.ffn"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               ::testing::AllOf(HasSubstr("layers.0.ffn"), HasSubstr("int8"))));
}

TEST(Int8MatmulTest, RowLimitAndSharedScratch) {
  std::vector<float> w = RandomVector(8 * 40, 1);
  auto scratch = std::make_shared<Int8ActivationScratch>();
  ASSERT_OK_AND_ASSIGN(
      auto a, Int8Matmul::Create(ActiveKernels(), 8, 40, 2, w.data(), scratch, 1));
  ASSERT_OK_AND_ASSIGN(
      auto b, Int8Matmul::Create(ActiveKernels(), 40, 8, 2, w.data(), scratch, 1));
  std::vector<float> src(3 * 40, 1.0f), dst(3 * 40);
  EXPECT_THAT(a->Run(src.data(), 3, dst.data()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(a->SetMaxM(3));
  EXPECT_OK(a->Run(src.data(), 3, dst.data()));
  EXPECT_OK(b->Run(src.data(), 2, dst.data()));
  EXPECT_EQ(a->num_runs() + b->num_runs(), 2);
}

}  // namespace
}  // namespace openelm
