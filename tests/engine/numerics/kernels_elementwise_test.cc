// RMSNorm, RoPE, SwiGLU, FastExp and bf16 conversion against naive loops.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/kernels/bf16.h"
#include "engine/kernels/fast_math.h"
#include "engine/kernels/rms_norm.h"
#include "engine/kernels/rope.h"
#include "engine/kernels/swiglu.h"
#include "gtest/gtest.h"
#include "tests/testing/random_vectors.h"

namespace openelm {
namespace {

using ::openelm::testing::RandomVector;

TEST(FastExpTest, MatchesStdExpToAFewUlps) {
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double want = std::exp(double{x});
    ASSERT_NEAR(FastExp(x), want, 4e-7 * want) << "x=" << x;
  }
  EXPECT_EQ(FastExp(-1000.0f), FastExp(-87.3f));
  EXPECT_LT(FastExp(-1000.0f), 1e-37f);
  EXPECT_EQ(FastExp(0.0f), 1.0f);
}

TEST(Bf16Test, ConversionRoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(F32ToBf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(F32ToBf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::nanf("")))));
  const std::vector<float> v = RandomVector(1001, 3);
  std::vector<uint16_t> b(v.size());
  std::vector<float> back(v.size());
  ConvertF32ToBf16(v.data(), static_cast<int64_t>(v.size()), b.data());
  ConvertBf16ToF32(b.data(), static_cast<int64_t>(b.size()), back.data());
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_EQ(b[i], F32ToBf16(v[i]));
    ASSERT_EQ(back[i], Bf16ToF32(b[i]));
    ASSERT_NEAR(back[i], v[i], std::abs(v[i]) / 256);
  }
}

TEST(RmsNormTest, MatchesNaiveLoops) {
  constexpr int32_t kRows = 37, kDim = 200;
  const std::vector<float> x = RandomVector(kRows * kDim, 1, 3.0f);
  const std::vector<float> w = RandomVector(kDim, 2);
  std::vector<float> out(x.size());
  RmsNorm(x.data(), w.data(), kRows, kDim, 1e-6f, out.data(), 2);
  for (int32_t r = 0; r < kRows; ++r) {
    double ss = 0;
    for (int32_t i = 0; i < kDim; ++i) ss += double(x[r * kDim + i]) * x[r * kDim + i];
    const double inv = 1.0 / std::sqrt(ss / kDim + 1e-6);
    for (int32_t i = 0; i < kDim; ++i) {
      const double want = x[r * kDim + i] * inv * w[i];
      ASSERT_NEAR(out[r * kDim + i], want, 1e-5 * (1 + std::abs(want)));
    }
  }
  // In place gives the same result.
  std::vector<float> y = x;
  RmsNorm(y.data(), w.data(), kRows, kDim, 1e-6f, y.data(), 1);
  EXPECT_EQ(y, out);
}

TEST(RmsNormTest, PerHeadNormalisesEachHeadAndLeavesTheRestAlone) {
  constexpr int32_t kRows = 9, kHeads = 5, kHd = 32,
                    kStride = 7 * kHd;  // 2 heads of V after
  std::vector<float> x = RandomVector(kRows * kStride, 4, 2.0f);
  const std::vector<float> orig = x;
  const std::vector<float> w = RandomVector(kHd, 5);
  RmsNormHeads(x.data(), kStride, kRows, kHeads, kHd, w.data(), 1e-6f, 2);
  for (int32_t r = 0; r < kRows; ++r) {
    for (int32_t h = 0; h < kHeads; ++h) {
      const float* v = &orig[r * kStride + h * kHd];
      double ss = 0;
      for (int32_t i = 0; i < kHd; ++i) ss += double(v[i]) * v[i];
      const double inv = 1.0 / std::sqrt(ss / kHd + 1e-6);
      for (int32_t i = 0; i < kHd; ++i) {
        ASSERT_NEAR(x[r * kStride + h * kHd + i], v[i] * inv * w[i], 1e-5);
      }
    }
    for (int32_t i = kHeads * kHd; i < kStride; ++i) {
      ASSERT_EQ(x[r * kStride + i], orig[r * kStride + i]);
    }
  }
}

TEST(RopeTest, RotateHalfLayoutMatchesNaiveLoops) {
  constexpr int32_t kHd = 64, kHeads = 3, kRows = 6, kStride = 4 * kHd;
  const RopeTable table(kHd, 2048, 10000.0f);
  const std::vector<int32_t> positions = {0, 1, 7, 100, 1500, 2047};
  std::vector<float> x = RandomVector(kRows * kStride, 6);
  const std::vector<float> orig = x;
  table.Apply(positions.data(), kRows, x.data(), kStride, kHeads, 2);
  for (int32_t r = 0; r < kRows; ++r) {
    for (int32_t h = 0; h < kHeads; ++h) {
      const float* v = &orig[r * kStride + h * kHd];
      for (int32_t i = 0; i < kHd; ++i) {
        const int32_t j = i % (kHd / 2);
        // As Hugging Face computes it: fp32 inverse frequency and angle.
        const float inv_freq = 1.0f / std::pow(10000.0f, float(2 * j) / float(kHd));
        const double angle = float(positions[r]) * inv_freq;
        const double rotated =
            i < kHd / 2 ? -double(v[i + kHd / 2]) : double(v[i - kHd / 2]);
        const double want = v[i] * std::cos(angle) + rotated * std::sin(angle);
        ASSERT_NEAR(x[r * kStride + h * kHd + i], want, 2e-6) << "r=" << r << " i=" << i;
      }
    }
    // The fourth head is not touched.
    for (int32_t i = kHeads * kHd; i < kStride; ++i)
      ASSERT_EQ(x[r * kStride + i], orig[r * kStride + i]);
  }
  // Position 0 is the identity.
  for (int32_t i = 0; i < kHd; ++i) EXPECT_EQ(x[i], orig[i]);
}

TEST(SwiGluTest, GateIsTheFirstHalf) {
  constexpr int32_t kRows = 11, kFfn = 300;
  const std::vector<float> in = RandomVector(kRows * 2 * kFfn, 7, 4.0f);
  std::vector<float> out(kRows * kFfn);
  SwiGlu(in.data(), kRows, kFfn, out.data(), 2);
  for (int32_t r = 0; r < kRows; ++r) {
    for (int32_t i = 0; i < kFfn; ++i) {
      const double g = in[r * 2 * kFfn + i];
      const double u = in[r * 2 * kFfn + kFfn + i];
      const double want = g / (1 + std::exp(-g)) * u;
      ASSERT_NEAR(out[r * kFfn + i], want, 1e-5 * (1 + std::abs(want)));
    }
  }
}

TEST(SwiGluTest, AddInPlaceAddsEveryElement) {
  const std::vector<float> x = RandomVector(100003, 8);
  std::vector<float> y = RandomVector(100003, 9);
  const std::vector<float> y0 = y;
  AddInPlace(x.data(), static_cast<int64_t>(x.size()), y.data(), 2);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], y0[i] + x[i]);
}

}  // namespace
}  // namespace openelm
