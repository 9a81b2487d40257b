// Every ISA build of the elementwise kernels (cpu_kernels.h) against plain
// double loops, and the CPU detection / cap / plan rules.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/kernels/bf16.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/model/execution_plan.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/isa_levels.h"
#include "tests/testing/random_vectors.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::RandomVector;

using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;

class IsaKernelsTest : public ::testing::TestWithParam<KernelBuild> {};

// Lengths cover whole vectors, tails, and less than one vector.
constexpr int32_t kLengths[] = {1, 5, 8, 16, 31, 64, 100, 1280};

TEST_P(IsaKernelsTest, RmsNormRowMatchesDoubleLoop) {
  const CpuKernels& k = OPENELM_KERNELS_OR_SKIP(GetParam());
  for (int32_t n : kLengths) {
    const std::vector<float> x = RandomVector(n, n, 3.0f), w = RandomVector(n, n + 1);
    std::vector<float> out(n);
    k.rms_norm_row(x.data(), w.data(), n, 1e-6f, out.data());
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
    for (int32_t i = 0; i < n; ++i) {
      ASSERT_NEAR(out[i], x[i] * inv * w[i], 2e-6 * (1 + std::abs(x[i] * inv * w[i])))
          << n;
    }
  }
}

TEST_P(IsaKernelsTest, RopeRotateHeadMatchesDoubleLoop) {
  const CpuKernels& k = OPENELM_KERNELS_OR_SKIP(GetParam());
  for (int32_t half : {1, 4, 8, 32, 64, 13}) {
    std::vector<float> v = RandomVector(2 * half, half);
    const std::vector<float> c = RandomVector(half, 2 * half),
                             s = RandomVector(half, 3 * half);
    const std::vector<float> in = v;
    k.rope_rotate_head(v.data(), c.data(), s.data(), half);
    for (int32_t j = 0; j < half; ++j) {
      ASSERT_NEAR(v[j], double(in[j]) * c[j] - double(in[j + half]) * s[j], 1e-5);
      ASSERT_NEAR(v[j + half], double(in[j + half]) * c[j] + double(in[j]) * s[j], 1e-5);
    }
  }
}

TEST_P(IsaKernelsTest, SwiGluAndAddMatchDoubleLoops) {
  const CpuKernels& k = OPENELM_KERNELS_OR_SKIP(GetParam());
  for (int32_t n : kLengths) {
    const std::vector<float> g = RandomVector(n, n, 4.0f), u = RandomVector(n, n + 7);
    std::vector<float> out(n);
    k.swiglu_row(g.data(), u.data(), n, out.data());
    for (int32_t i = 0; i < n; ++i) {
      const double want = g[i] / (1.0 + std::exp(-double(g[i]))) * u[i];
      ASSERT_NEAR(out[i], want, 1e-5 * (1 + std::abs(want))) << "n=" << n << " i=" << i;
    }
    std::vector<float> y = u;
    k.add(g.data(), n, y.data());
    for (int32_t i = 0; i < n; ++i) ASSERT_EQ(y[i], u[i] + g[i]);
  }
}

TEST_P(IsaKernelsTest, Bf16ConversionsRoundToNearestEvenAndKeepNan) {
  const CpuKernels& k = OPENELM_KERNELS_OR_SKIP(GetParam());
  std::vector<float> v = RandomVector(1001, 3);
  v[3] = 1.0f + 1.0f / 256;  // a tie: rounds to even (1.0)
  v[4] = std::nanf("");
  v[5] = -0.0f;
  v[6] = 3.0e38f;
  std::vector<uint16_t> b(v.size());
  std::vector<float> back(v.size());
  k.f32_to_bf16(v.data(), static_cast<int64_t>(v.size()), b.data());
  k.bf16_to_f32(b.data(), static_cast<int64_t>(b.size()), back.data());
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_EQ(b[i], F32ToBf16(v[i])) << i;
    if (std::isnan(v[i])) {
      ASSERT_TRUE(std::isnan(back[i]));
    } else {
      ASSERT_EQ(back[i], Bf16ToF32(b[i]));
    }
  }
  EXPECT_EQ(b[3], 0x3f80);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, IsaKernelsTest,
                         ::testing::ValuesIn(testing::KernelIsaLevels()),
                         [](const ::testing::TestParamInfo<KernelBuild>& info) {
                           return testing::IsaTestName(info.param);
                         });

TEST(CpuIsaTest, EffectiveLevelNeverExceedsTheCpuAndNamesRoundTrip) {
  EXPECT_LE(static_cast<int>(EffectiveCpuIsa()), static_cast<int>(DetectedCpuIsa()));
  // The active table is the effective level's build; avx512_bf16 and amx
  // share the AVX-512 + VNNI one.
  EXPECT_EQ(&ActiveKernels(), KernelsFor(EffectiveCpuIsa()));
  EXPECT_EQ(&ActiveKernels(), KernelsForBuild(KernelBuildFor(EffectiveCpuIsa())));
  EXPECT_TRUE(KernelsFor(CpuIsa::kAmx) == nullptr ||
              KernelsFor(CpuIsa::kAmx) == KernelsFor(CpuIsa::kAvx512Bf16));
  EXPECT_EQ(KernelBuildFor(CpuIsa::kAmx), KernelBuild::kAvx512Vnni);
  EXPECT_EQ(KernelBuildFor(CpuIsa::kPortable), KernelBuild::kPortable);
  for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512,
                     CpuIsa::kAvx512Bf16, CpuIsa::kAmx}) {
    ASSERT_OK_AND_ASSIGN(CpuIsa parsed, ParseCpuIsa(CpuIsaName(isa)));
    EXPECT_EQ(parsed, isa);
  }
  EXPECT_THAT(ParseCpuIsa("avx3"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("avx2")));
  EXPECT_THAT(DescribeCpu(),
              HasSubstr(std::string("effective ") + CpuIsaName(EffectiveCpuIsa())));
  // The cap is fixed now: asking for another level is refused, the same one is fine.
  EXPECT_OK(SetCpuIsaCap(CpuIsaName(EffectiveCpuIsa())));
  if (EffectiveCpuIsa() != CpuIsa::kPortable) {
    EXPECT_THAT(SetCpuIsaCap("portable"),
                StatusIs(absl::StatusCode::kFailedPrecondition));
  }
  EXPECT_THAT(SetCpuIsaCap("sse9"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ExecutionPlanTest, AutoPicksPerIsa) {
  for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    ASSERT_OK_AND_ASSIGN(ExecutionPlan p, ResolvePlan(isa, {}));
    EXPECT_EQ(p.weight_dtype, DType::kBF16);
    EXPECT_EQ(p.activation_dtype, DType::kF32);
    EXPECT_EQ(p.kv_dtype, DType::kBF16);
    EXPECT_EQ(p.matmul, MatmulBackend::kOwnBf16) << CpuIsaName(isa);
  }
  for (CpuIsa isa : {CpuIsa::kAvx512Bf16, CpuIsa::kAmx}) {
    ASSERT_OK_AND_ASSIGN(ExecutionPlan p, ResolvePlan(isa, {}));
    EXPECT_EQ(p.activation_dtype, DType::kBF16);
    EXPECT_EQ(p.matmul, MatmulBackend::kOnednn);
  }
  ASSERT_OK_AND_ASSIGN(ExecutionPlan f32,
                       ResolvePlan(CpuIsa::kAvx2, {.weight_dtype = DType::kF32}));
  EXPECT_EQ(f32.matmul, MatmulBackend::kOnednn);
  EXPECT_EQ(f32.activation_dtype, DType::kF32);
  ASSERT_OK_AND_ASSIGN(ExecutionPlan own, ResolvePlan(CpuIsa::kAvx512Bf16,
                                                      {.activation_dtype = DType::kF32}));
  EXPECT_EQ(own.matmul, MatmulBackend::kOwnBf16);
  EXPECT_EQ(
      own.Describe(),
      "isa=avx512_bf16 weights=bf16 activations=f32 kv=bf16 matmul=own-avx512_bf16");
  // int8 runs on oneDNN where the level's build is avx512_vnni (from
  // avx512_bf16 on; at avx512 where this CPU has AVX512_VNNI at its own
  // level, see the next test), else on the own kernel, which the plan names.
  // own_int8_kernels forces the own kernel everywhere.
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16, CpuIsa::kAmx}) {
    ASSERT_OK_AND_ASSIGN(ExecutionPlan int8,
                         ResolvePlan(isa, {.weight_dtype = DType::kI8}));
    ASSERT_OK_AND_ASSIGN(
        ExecutionPlan own_int8,
        ResolvePlan(isa, {.weight_dtype = DType::kI8, .own_int8_kernels = true}));
    const KernelBuild build = KernelBuildFor(isa);
    const char* want = build == KernelBuild::kAvx512Vnni ? "avx512_vnni"
                       : build == KernelBuild::kAvx2Vnni ? "avx_vnni"
                                                         : CpuIsaName(isa);
    EXPECT_THAT(own_int8.Describe(), HasSubstr(std::string("matmul=own-int8-") + want));
    EXPECT_EQ(own_int8.matmul, MatmulBackend::kOwnInt8);
    if (build == KernelBuild::kAvx512Vnni) {
      EXPECT_EQ(int8.matmul, MatmulBackend::kOnednnInt8) << CpuIsaName(isa);
      EXPECT_THAT(int8.Describe(), HasSubstr("matmul=onednn-int8"));
    } else {
      EXPECT_EQ(int8.Describe(), own_int8.Describe()) << CpuIsaName(isa);
    }
  }
}

// Which build each level runs on this CPU: VNNI from avx512_bf16 up; at
// avx2 and avx512 only when that is the CPU's own level and it has the VNNI
// extension (a cap gives the base instructions), and never a build the CPU
// cannot run.
TEST(KernelBuildTest, VnniBuildsOnlyWhereTheCpuHasThemAtItsOwnLevel) {
  const CpuFeatures& f = DetectedCpuFeatures();
  const CpuIsa own = DetectedCpuIsa();
  EXPECT_EQ(KernelBuildFor(CpuIsa::kAvx2), own == CpuIsa::kAvx2 && f.avx_vnni
                                               ? KernelBuild::kAvx2Vnni
                                               : KernelBuild::kAvx2);
  EXPECT_EQ(KernelBuildFor(CpuIsa::kAvx512), own == CpuIsa::kAvx512 && f.avx512_vnni
                                                 ? KernelBuild::kAvx512Vnni
                                                 : KernelBuild::kAvx512);
  EXPECT_EQ(KernelBuildFor(CpuIsa::kAvx512Bf16), KernelBuild::kAvx512Vnni);
  for (CpuIsa isa : {CpuIsa::kPortable, CpuIsa::kAvx2, CpuIsa::kAvx512,
                     CpuIsa::kAvx512Bf16, CpuIsa::kAmx}) {
    if (static_cast<int>(isa) > static_cast<int>(own)) {
      EXPECT_EQ(KernelsFor(isa), nullptr) << CpuIsaName(isa);
    } else {
      EXPECT_NE(KernelsForBuild(KernelBuildFor(isa)), nullptr) << CpuIsaName(isa);
      EXPECT_STREQ(Int8KernelName(isa), KernelsFor(isa)->int8_kernel);
    }
  }
  EXPECT_EQ(KernelsForBuild(KernelBuild::kAvx2Vnni) != nullptr,
            static_cast<int>(own) >= static_cast<int>(CpuIsa::kAvx2) && f.avx_vnni);
  EXPECT_EQ(KernelsForBuild(KernelBuild::kAvx512Vnni) != nullptr,
            static_cast<int>(own) >= static_cast<int>(CpuIsa::kAvx512) && f.avx512_vnni);
  EXPECT_STREQ(KernelBuildName(KernelBuild::kAvx2Vnni), "avx2_vnni");
  EXPECT_THAT(KernelBuildNeeds(KernelBuild::kAvx2Vnni), HasSubstr("AVX-VNNI"));
}

TEST(ExecutionPlanTest, ImpossibleChoiceNamesFlagIsaAndWhatWorks) {
  const auto plan = ResolvePlan(CpuIsa::kAvx2, {.activation_dtype = DType::kBF16});
  EXPECT_THAT(plan, StatusIs(absl::StatusCode::kInvalidArgument,
                             ::testing::AllOf(HasSubstr("--activation_dtype=bf16"),
                                              HasSubstr("avx2"), HasSubstr("f32"))));
  EXPECT_THAT(ParseDTypeChoice("fp8", "kv_dtype"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--kv_dtype=fp8")));
  ASSERT_OK_AND_ASSIGN(std::optional<DType> a, ParseDTypeChoice("auto", "weight_dtype"));
  EXPECT_FALSE(a.has_value());
}

}  // namespace
}  // namespace openelm
