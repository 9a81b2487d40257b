// PackedMatmul (oneDNN) against a naive triple loop.
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "engine/kernels/bf16.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/onednn_context.h"
#include "engine/kernels/onednn_matmul.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/int8_reference.h"
#include "tests/testing/random_vectors.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::QuantizeRowRef;
using ::openelm::testing::RandomVector;
using ::testing::HasSubstr;

using ::openelm::testing::StatusIs;

// dst[i, j] = sum_c src[i, c] * w[j, c], in double.
std::vector<double> NaiveMatmul(const std::vector<float>& src,
                                const std::vector<float>& w, int64_t m, int64_t n,
                                int64_t k) {
  std::vector<double> dst(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < k; ++c) s += double(src[i * k + c]) * w[j * k + c];
      dst[i * n + j] = s;
    }
  }
  return dst;
}

std::vector<float> RoundToBf16(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Bf16ToF32(F32ToBf16(v[i]));
  return out;
}

TEST(MatmulBucketsTest, BucketsAscendEndAtMaxAndCoverEveryM) {
  for (int32_t max_m : {1, 2, 7, 64, 100, 512}) {
    const std::vector<int32_t> b = MatmulBuckets(max_m);
    ASSERT_FALSE(b.empty());
    EXPECT_EQ(b.back(), max_m);
    for (size_t i = 1; i < b.size(); ++i) EXPECT_LT(b[i - 1], b[i]);
    for (int32_t m = 1; m <= max_m; ++m) {
      const int32_t bucket = MatmulBucketFor(m, max_m);
      EXPECT_GE(bucket, m);
      // The smallest bucket that fits.
      int32_t want = 0;
      for (int32_t x : b) {
        if (x >= m) {
          want = x;
          break;
        }
      }
      EXPECT_EQ(bucket, want) << "m=" << m << " max_m=" << max_m;
      // Waste stays bounded: doubling up to 32 rows, 1.5x steps above.
      EXPECT_LE(bucket, 2 * m - 1 + (m == 1)) << "m=" << m;
      if (m > 32) {
        EXPECT_LE(bucket, m * 3 / 2 + 1) << "m=" << m;
      }
    }
  }
}

#define OPENELM_SKIP_BF16_WITHOUT_AVX512_BF16(compute)                                \
  if ((compute) == MatmulDType::kBF16 &&                                              \
      static_cast<int>(EffectiveCpuIsa()) < static_cast<int>(CpuIsa::kAvx512Bf16)) {  \
    GTEST_SKIP()                                                                      \
        << "oneDNN 2.6 has bf16 matmuls only with avx512_bf16 or amx; this CPU runs " \
        << CpuIsaName(EffectiveCpuIsa());                                             \
  }

struct MatmulCase {
  MatmulDType compute;
  bool weight_is_bf16;
};

class PackedMatmulTest : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(PackedMatmulTest, MatchesNaiveLoopsForBucketAndNonBucketRowCounts) {
  const MatmulCase c = GetParam();
  OPENELM_SKIP_BF16_WITHOUT_AVX512_BF16(c.compute);
  constexpr int64_t kN = 96, kK = 80;
  constexpr int32_t kMaxM = 100;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(2));

  std::vector<float> w = RandomVector(kN * kK, 1);
  std::vector<uint16_t> w_bf16(w.size());
  for (size_t i = 0; i < w.size(); ++i) w_bf16[i] = F32ToBf16(w[i]);
  const void* w_ptr =
      c.weight_is_bf16 ? static_cast<const void*>(w_bf16.data()) : w.data();
  // What the product is computed from: bf16 weights (given as bf16 or rounded
  // at packing) and, for bf16 compute, bf16-rounded activations.
  const bool bf16 = c.compute == MatmulDType::kBF16;
  const std::vector<float> w_eff = (bf16 || c.weight_is_bf16) ? RoundToBf16(w) : w;

  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<PackedMatmul> mm,
      PackedMatmul::Create(ctx.get(),
                           {.n = kN, .k = kK, .max_m = kMaxM, .compute = c.compute},
                           w_ptr, c.weight_is_bf16));
  EXPECT_GE(mm->packed_weight_bytes(), kN * kK * (bf16 ? 2 : 4));

  for (int32_t m : {1, 2, 3, 5, 7, 13, 16, 17, 33, 64, 65, 99, 100}) {
    const int32_t bucket = MatmulBucketFor(m, kMaxM);
    std::vector<float> src = RandomVector(int64_t{bucket} * kK, 100 + m);
    // Rows past m are padding: poison them, they must not leak into rows < m.
    for (int64_t i = int64_t{m} * kK; i < int64_t{bucket} * kK; ++i) {
      src[i] = std::numeric_limits<float>::quiet_NaN();
    }
    constexpr int kGuard = 7;
    std::vector<float> dst((bucket + kGuard) * kN, 12345.0f);
    ASSERT_OK(mm->Run(src.data(), m, dst.data()));

    std::vector<float> src_m(src.begin(), src.begin() + int64_t{m} * kK);
    if (bf16) src_m = RoundToBf16(src_m);
    const std::vector<double> want = NaiveMatmul(src_m, w_eff, m, kN, kK);
    const double tol = 1e-4;
    for (int64_t i = 0; i < int64_t{m} * kN; ++i) {
      ASSERT_NEAR(dst[i], want[i], tol * (1 + std::abs(want[i])))
          << "m=" << m << " i=" << i;
    }
    // Nothing is written past the bucket.
    for (int64_t i = int64_t{bucket} * kN; i < int64_t{bucket + kGuard} * kN; ++i) {
      ASSERT_EQ(dst[i], 12345.0f) << "m=" << m;
    }
  }
  EXPECT_EQ(mm->num_runs(), 13);
}

// The tied embedding reads its rows out of the LM head's packed weights:
// every row must come back exactly as stored (bf16-rounded for bf16 compute),
// whatever blocked layout oneDNN chose for the shape and row count.
TEST_P(PackedMatmulTest, GatherRowReturnsTheStoredWeights) {
  const MatmulCase c = GetParam();
  OPENELM_SKIP_BF16_WITHOUT_AVX512_BF16(c.compute);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(2));
  struct Shape {
    int64_t n, k;
    int32_t layout_m;
  };
  for (const Shape& s : {Shape{96, 80, 1}, Shape{1001, 67, 64}, Shape{333, 128, 256},
                         Shape{50, 1280, 8}}) {
    std::vector<float> w = RandomVector(s.n * s.k, 7 + s.n);
    std::vector<uint16_t> w_bf16(w.size());
    for (size_t i = 0; i < w.size(); ++i) w_bf16[i] = F32ToBf16(w[i]);
    const bool bf16 = c.compute == MatmulDType::kBF16;
    const std::vector<float> want = (bf16 || c.weight_is_bf16) ? RoundToBf16(w) : w;
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<PackedMatmul> mm,
        PackedMatmul::Create(
            ctx.get(),
            {.n = s.n,
             .k = s.k,
             .max_m = 1,
             .layout_m = s.layout_m,
             .compute = c.compute},
            c.weight_is_bf16 ? static_cast<const void*>(w_bf16.data()) : w.data(),
            c.weight_is_bf16));
    ASSERT_TRUE(mm->PrepareRowGather()) << "n=" << s.n << " k=" << s.k;
    std::vector<float> row(s.k);
    for (int64_t r = 0; r < s.n; ++r) {
      mm->GatherRow(r, row.data());
      for (int64_t i = 0; i < s.k; ++i) {
        ASSERT_EQ(row[i], want[r * s.k + i])
            << "n=" << s.n << " k=" << s.k << " layout_m=" << s.layout_m << " row " << r
            << " column " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, PackedMatmulTest,
                         ::testing::Values(MatmulCase{MatmulDType::kF32, false},
                                           MatmulCase{MatmulDType::kF32, true},
                                           MatmulCase{MatmulDType::kBF16, false},
                                           MatmulCase{MatmulDType::kBF16, true}),
                         [](const ::testing::TestParamInfo<MatmulCase>& info) {
                           return std::string(info.param.compute == MatmulDType::kBF16
                                                  ? "Bf16Compute"
                                                  : "F32Compute") +
                                  (info.param.weight_is_bf16 ? "Bf16Weights"
                                                             : "F32Weights");
                         });

TEST(PackedMatmulTest, RejectsTooManyRowsAndBadSpecs) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(1));
  std::vector<float> w(8 * 4, 1.0f);
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<PackedMatmul> mm,
      PackedMatmul::Create(ctx.get(), {.n = 8, .k = 4, .max_m = 4}, w.data(), false));
  std::vector<float> src(5 * 4, 1.0f), dst(5 * 8);
  EXPECT_THAT(mm->Run(src.data(), 5, dst.data()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(mm->Run(src.data(), 0, dst.data()), ::openelm::testing::IsOk());
  EXPECT_THAT(
      PackedMatmul::Create(ctx.get(), {.n = 0, .k = 4, .max_m = 4}, w.data(), false),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PackedMatmulTest, CreatingPrimitivesIsCountedOncePerBucket) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(1));
  std::vector<float> w(16 * 16, 0.5f);
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<PackedMatmul> mm,
      PackedMatmul::Create(ctx.get(), {.n = 16, .k = 16, .max_m = 64}, w.data(), false));
  const int64_t created = ctx->num_primitives_created();
  EXPECT_EQ(created, static_cast<int64_t>(MatmulBuckets(64).size()));
  std::vector<float> src(64 * 16, 1.0f), dst(64 * 16);
  for (int32_t m = 1; m <= 64; m += 7) ASSERT_OK(mm->Run(src.data(), m, dst.data()));
  EXPECT_EQ(ctx->num_primitives_created(), created);
  EXPECT_FLOAT_EQ(dst[0], 8.0f);
}

}  // namespace
}  // namespace openelm

namespace openelm {
namespace {

TEST(PackedMatmulTest, SetMaxMAddsBucketsOverTheSamePackedWeights) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(2));
  constexpr int64_t kN = 40, kK = 48;
  const std::vector<float> w = RandomVector(kN * kK, 11);
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<PackedMatmul> mm,
      PackedMatmul::Create(ctx.get(), {.n = kN, .k = kK, .max_m = 1, .layout_m = 64},
                           w.data(), false));
  ASSERT_OK(mm->SetMaxM(40));
  EXPECT_EQ(mm->spec().max_m, 40);
  const std::vector<float> src = RandomVector(40 * kK, 12);
  std::vector<float> dst(40 * kN);
  ASSERT_OK(mm->Run(src.data(), 37, dst.data()));
  const std::vector<double> want = NaiveMatmul(src, w, 37, kN, kK);
  for (int64_t i = 0; i < 37 * kN; ++i)
    ASSERT_NEAR(dst[i], want[i], 1e-4 * (1 + std::abs(want[i])));
}

// oneDNN's int8 matmul (MatmulDType::kS8): the plan runs it only where its
// int32 sums are exact, at the avx512_vnni kernel build (AVX512_VNNI, AMX).
#define OPENELM_SKIP_UNLESS_ONEDNN_INT8()                                            \
  if (KernelBuildFor(EffectiveCpuIsa()) != KernelBuild::kAvx512Vnni) {               \
    GTEST_SKIP() << "oneDNN int8 runs only with AVX512_VNNI at the effective level " \
                    "(exact sums); this CPU runs "                                   \
                 << CpuIsaName(EffectiveCpuIsa());                                   \
  }

// Every output equals the exact integer sum of the reference-quantized
// activations and weights times both scales, for bucket and non-bucket row
// counts; the packed weights are the reference quantization (row gather).
TEST(OnednnInt8Test, MatchesIntegerSumsOfTheQuantizedValues) {
  OPENELM_SKIP_UNLESS_ONEDNN_INT8();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(2));
  struct Shape {
    int64_t n, k;
  };
  for (const Shape& s : {Shape{40, 100}, Shape{300, 1280}, Shape{17, 31}}) {
    constexpr int32_t kMaxM = 150;
    std::vector<float> w = RandomVector(s.n * s.k, 5, 0.02f);
    w[0] = 0.0f;
    for (bool bf16_weights : {false, true}) {
      // bf16 input weights are widened, then quantized like f32 ones.
      const std::vector<float> w_in = bf16_weights ? RoundToBf16(w) : w;
      std::vector<uint16_t> w_bf16(w.size());
      for (size_t i = 0; i < w.size(); ++i) w_bf16[i] = F32ToBf16(w[i]);
      ASSERT_OK_AND_ASSIGN(
          std::unique_ptr<PackedMatmul> mm,
          PackedMatmul::Create(
              ctx.get(),
              {.n = s.n, .k = s.k, .max_m = kMaxM, .compute = MatmulDType::kS8},
              bf16_weights ? static_cast<const void*>(w_bf16.data()) : w.data(),
              bf16_weights));
      std::vector<std::vector<int32_t>> wq(s.n);
      std::vector<double> ws(s.n);
      for (int64_t j = 0; j < s.n; ++j)
        QuantizeRowRef(&w_in[j * s.k], s.k, &wq[j], &ws[j]);
      ASSERT_TRUE(mm->PrepareRowGather());
      std::vector<float> row(s.k);
      for (int64_t j = 0; j < s.n; ++j) {
        mm->GatherRow(j, row.data());
        for (int64_t c = 0; c < s.k; ++c) {
          ASSERT_EQ(row[c], static_cast<float>(wq[j][c]) * static_cast<float>(ws[j]))
              << "row " << j << " column " << c;
        }
      }
      for (int32_t m : {1, 2, 3, 5, 17, 64, 65, 150}) {
        const int32_t bucket = MatmulBucketFor(m, kMaxM);
        std::vector<float> src = RandomVector(int64_t{m} * s.k, 50 + m, 3.0f);
        std::vector<float> dst(int64_t{bucket} * s.n);
        ASSERT_OK(mm->Run(src.data(), m, dst.data()));
        for (int32_t i = 0; i < m; ++i) {
          std::vector<int32_t> aq;
          double as = 0;
          QuantizeRowRef(&src[int64_t{i} * s.k], s.k, &aq, &as);
          for (int64_t j = 0; j < s.n; ++j) {
            int64_t dot = 0;
            for (int64_t c = 0; c < s.k; ++c) dot += int64_t{aq[c]} * wq[j][c];
            const double want = static_cast<double>(dot) * as * ws[j];
            ASSERT_NEAR(dst[int64_t{i} * s.n + j], want, 1e-5 * (1 + std::fabs(want)))
                << "n=" << s.n << " k=" << s.k << " m=" << m << " row " << i << " col "
                << j;
          }
        }
      }
    }
  }
}

// +-127 x +-127 in every sign pattern over K = 1280: where oneDNN's int8
// kernel adds pairs of products in 16 bits (AVX2, AVX-512 without VNNI) these
// sums saturate; the plan must only use it where they do not.
TEST(OnednnInt8Test, FullScaleProductsSumExactly) {
  OPENELM_SKIP_UNLESS_ONEDNN_INT8();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(2));
  const testing::FullScaleCase f(64, 1280, 3);
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<PackedMatmul> mm,
      PackedMatmul::Create(
          ctx.get(), {.n = f.n, .k = f.k, .max_m = f.m, .compute = MatmulDType::kS8},
          f.w.data(), false));
  std::vector<float> dst(MatmulBucketFor(f.m, f.m) * f.n);
  ASSERT_OK(mm->Run(f.a.data(), f.m, dst.data()));
  f.ExpectOutput(dst.data());
}

TEST(OnednnInt8Test, NonFiniteWeightIsRefusedNamingTheTensor) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<OnednnContext> ctx, OnednnContext::Create(1));
  std::vector<float> w(16, 0.5f);
  w[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THAT(PackedMatmul::Create(ctx.get(),
                                   {.n = 4,
                                    .k = 4,
                                    .max_m = 1,
                                    .compute = MatmulDType::kS8,
                                    .name = "layers.0.attn.qkv_proj.weight"},
                                   w.data(), false),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("layers.0.attn.qkv_proj.weight"),
                                        HasSubstr("int8"))));
}

}  // namespace
}  // namespace openelm
