// The own bf16-weight matmul (Bf16Matmul, every ISA build) against a plain
// double-precision triple loop over the same bf16 weights.
#include "engine/kernels/bf16_matmul.h"

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "engine/kernels/bf16.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/isa_levels.h"
#include "tests/testing/random_vectors.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::RandomVector;

using ::openelm::testing::StatusIs;

std::vector<uint16_t> RandomBf16(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint16_t> v(n);
  for (uint16_t& x : v) x = F32ToBf16(dist(rng));
  return v;
}

struct Shape {
  int64_t n;
  int64_t k;
};

class Bf16MatmulTest : public ::testing::TestWithParam<std::tuple<KernelBuild, Shape>> {};

// Row counts cover every tile shape (1-6 rows, 1-4 panels) and their tails;
// n covers partial panels; k covers partial and several 256-wide K slices.
TEST_P(Bf16MatmulTest, MatchesDoubleLoopsForEveryRowCount) {
  const CpuKernels& kernels = OPENELM_KERNELS_OR_SKIP(std::get<0>(GetParam()));
  const auto [n, k] = std::get<1>(GetParam());
  constexpr int32_t kMaxM = 70;
  const std::vector<uint16_t> w = RandomBf16(n * k, 7);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Bf16Matmul> mm,
                       Bf16Matmul::Create(kernels, n, k, kMaxM, w.data(), 2));
  EXPECT_EQ(mm->packed_weight_bytes(), PackedBf16Words(n, k, kernels.matmul_lanes) * 4);
  int32_t runs = 0;
  for (int32_t m : {1, 2, 3, 4, 5, 6, 7, 11, 13, 64, 70}) {
    const std::vector<float> src = RandomVector(int64_t{m} * k, 100 + m);
    constexpr int kGuard = 5;
    std::vector<float> dst((m + kGuard) * n, 12345.0f);
    ASSERT_OK(mm->Run(src.data(), m, dst.data()));
    ++runs;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double want = 0;
        for (int64_t c = 0; c < k; ++c)
          want += double(src[i * k + c]) * Bf16ToF32(w[j * k + c]);
        ASSERT_NEAR(dst[i * n + j], want, 2e-5 * (std::sqrt(double(k)) + std::abs(want)))
            << "m=" << m << " row " << i << " col " << j;
      }
    }
    for (int64_t i = int64_t{m} * n; i < int64_t{m + kGuard} * n; ++i) {
      ASSERT_EQ(dst[i], 12345.0f) << "m=" << m << ": written past the last row";
    }
  }
  EXPECT_EQ(mm->num_runs(), runs);

  // Every row of W reads back exactly from the packed copy.
  std::vector<float> row(k);
  for (int64_t j : {int64_t{0}, n / 2, n - 1}) {
    mm->GatherRow(j, row.data());
    for (int64_t c = 0; c < k; ++c)
      ASSERT_EQ(row[c], Bf16ToF32(w[j * k + c])) << j << "," << c;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllIsas, Bf16MatmulTest,
    ::testing::Combine(::testing::ValuesIn(testing::KernelIsaLevels()),
                       ::testing::Values(Shape{1, 1}, Shape{17, 7}, Shape{48, 64},
                                         Shape{100, 300}, Shape{130, 600},
                                         Shape{64, 513})),
    [](const ::testing::TestParamInfo<std::tuple<KernelBuild, Shape>>& info) {
      const Shape s = std::get<1>(info.param);
      return testing::IsaTestName(std::get<0>(info.param)) + "_n" + std::to_string(s.n) +
             "_k" + std::to_string(s.k);
    });

TEST(Bf16MatmulTest, RejectsBadShapesAndTooManyRows) {
  const CpuKernels& kernels = ActiveKernels();
  const std::vector<uint16_t> w = RandomBf16(64, 1);
  EXPECT_THAT(Bf16Matmul::Create(kernels, 0, 8, 4, w.data(), 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Bf16Matmul> mm,
                       Bf16Matmul::Create(kernels, 8, 8, 4, w.data(), 1));
  std::vector<float> src(8 * 8), dst(8 * 8);
  EXPECT_THAT(mm->Run(src.data(), 5, dst.data()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(mm->SetMaxM(8));
  EXPECT_OK(mm->Run(src.data(), 5, dst.data()));
  EXPECT_OK(mm->Run(src.data(), 0, dst.data()));
  EXPECT_EQ(mm->num_runs(), 1);
}

TEST(Bf16PackingTest, PairsColumnsLanesApart) {
  // n = 20, lanes = 8: panel 0 holds columns 0-15, panel 1 columns 16-19 (+ zeros).
  constexpr int64_t kN = 20, kK = 3;
  std::vector<uint16_t> w(kN * kK);
  for (int64_t j = 0; j < kN; ++j) {
    for (int64_t c = 0; c < kK; ++c) w[j * kK + c] = static_cast<uint16_t>(100 * j + c);
  }
  ASSERT_EQ(PackedBf16Words(kN, kK, 8), 2 * kK * 8);
  std::vector<uint32_t> packed(PackedBf16Words(kN, kK, 8));
  PackBf16Panels(w.data(), kN, kK, 8, packed.data(), 1);
  // Word (panel 0, feature 2, lane 3) = column 3 | column 11 << 16.
  EXPECT_EQ(packed[2 * 8 + 3], (100u * 3 + 2) | ((100u * 11 + 2) << 16));
  // Panel 1, feature 1, lane 2: column 18 and (past n) zero.
  EXPECT_EQ(packed[kK * 8 + 1 * 8 + 2], 100u * 18 + 1);
}

}  // namespace
}  // namespace openelm
