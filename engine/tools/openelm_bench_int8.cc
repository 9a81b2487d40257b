// openelm_bench_int8: what bounds the int8 matmul on this CPU. Three
// measurements, each against a limit taken in the same run (BENCHMARKS.md 0b):
//  1. dot-step: the in-register rate of the AVX2 int8 dot product step (32
//     products per step, six independent accumulators, no memory): the
//     kernel's exact form (sign, maddubs, madd, add) and the form without
//     the sign step (what a u8 x s8 kernel runs; exact only when no pair of
//     products overflows 16 bits), per core;
//  2. gemm: every own int8 kernel build this CPU runs (activation
//     quantization included) against oneDNN 2.6's u8s8 matmul (f32 output
//     scales) at OpenELM-270M shapes, M = 1, 16, 64 and 512;
//  3. exact: whether oneDNN's u8s8 matmul returns the exact integer sums here,
//     with 8-bit (|w| <= 127) and 7-bit (|w| <= 63) weights.
// Usage: openelm_bench_int8 [--threads=2] [--repeats=20]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "dnnl.hpp"
#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/int8_matmul.h"

ABSL_FLAG(int32_t, threads, 2, "threads for the matmuls");
ABSL_FLAG(int32_t, repeats, 20, "timed runs per figure (the best is kept)");

namespace {

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Six accumulators over three weight and two activation registers, all kept
// live across iterations (the asm barrier), so nothing is hoisted.
template <bool kSign>
__attribute__((noinline, target("avx2"))) int32_t DotSteps(int64_t iters, int8_t seed) {
  __m256i acc[6];
  for (__m256i& x : acc) x = _mm256_setzero_si256();
  const __m256i base = _mm256_set1_epi8(seed);
  __m256i w[3] = {base, _mm256_add_epi8(base, base),
                  _mm256_sub_epi8(base, _mm256_set1_epi8(3))};
  __m256i a[2] = {_mm256_abs_epi8(base), _mm256_set1_epi8(5)};
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 6
    for (int j = 0; j < 6; ++j) {
      __m256i ww = w[j % 3];
      if (kSign) ww = _mm256_sign_epi8(ww, a[j / 3]);
      const __m256i p = _mm256_maddubs_epi16(a[j / 3], ww);
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(p, ones));
    }
    __asm__ volatile("" : "+x"(w[0]), "+x"(w[1]), "+x"(w[2]), "+x"(a[0]), "+x"(a[1]));
  }
  __m256i s = acc[0];
  for (int i = 1; i < 6; ++i) s = _mm256_add_epi32(s, acc[i]);
  return _mm256_extract_epi32(s, 0);
}

template <bool kSign>
double DotStepGmacs(int32_t repeats) {
  constexpr int64_t kIters = 20'000'000;
  double best = 1e30;
  for (int32_t r = 0; r < std::max(3, repeats / 5); ++r) {
    const double t = Now();
    volatile int32_t sink = DotSteps<kSign>(kIters, static_cast<int8_t>(7 + r));
    (void)sink;
    best = std::min(best, Now() - t);
  }
  return kIters * 6 * 32 / best / 1e9;
}

struct Shape {
  int64_t m, n, k;
};

// oneDNN u8s8 -> f32 matmul with per-column output scales and source zero
// point 128 (the signed activations shifted to unsigned), as a int8 plan on
// oneDNN would run it. Weights within +-wmax.
struct OnednnInt8 {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::matmul::primitive_desc pd;
  dnnl::memory src, wts, dst;

  OnednnInt8(const Shape& s, int wmax, bool s32_out, uint32_t seed) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::desc smd({s.m, s.k}, dt::u8, tag::ab);
    const dnnl::memory::desc dmd({s.m, s.n}, s32_out ? dt::s32 : dt::f32, tag::ab);
    dnnl::primitive_attr attr;
    if (!s32_out) attr.set_output_scales(2, std::vector<float>(s.n, 0.01f));
    attr.set_zero_points(DNNL_ARG_SRC, 0, {128});
    pd = dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(smd, dnnl::memory::desc({s.k, s.n}, dt::s8, tag::any), dmd),
        attr, eng);
    src = dnnl::memory(smd, eng);
    wts = dnnl::memory(pd.weights_desc(), eng);
    dst = dnnl::memory(dmd, eng);
    std::mt19937 rng(seed);
    w_plain.resize(s.k * s.n);
    for (int8_t& x : w_plain) x = static_cast<int8_t>(int(rng() % (2 * wmax + 1)) - wmax);
    dnnl::memory wp(dnnl::memory::desc({s.k, s.n}, dt::s8, tag::ba), eng, w_plain.data());
    dnnl::reorder(wp, wts).execute(strm, wp, wts);
    auto* sp = static_cast<uint8_t*>(src.get_data_handle());
    for (int64_t i = 0; i < s.m * s.k; ++i) sp[i] = static_cast<uint8_t>(1 + rng() % 255);
    strm.wait();
  }
  void Run() {
    dnnl::matmul(pd).execute(
        strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wts}, {DNNL_ARG_DST, dst}});
    strm.wait();
  }
  std::vector<int8_t> w_plain;  // [n, k]
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int32_t threads = absl::GetFlag(FLAGS_threads);
  const int32_t repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  using openelm::CpuIsa;
  std::printf("cpu: %s\n", openelm::DescribeCpu().c_str());
  std::printf("own int8 kernel: %s\n", openelm::ActiveKernels().int8_kernel);
  if (static_cast<int>(openelm::EffectiveCpuIsa()) < static_cast<int>(CpuIsa::kAvx2)) {
    std::printf("no AVX2 here: nothing to measure\n");
    return 0;
  }

  const double with_sign = DotStepGmacs<true>(repeats);
  const double without_sign = DotStepGmacs<false>(repeats);
  std::printf(
      "dot-step (1 core, in registers): exact sign+maddubs+madd+add %.1f GMAC/s; "
      "without the sign step %.1f GMAC/s (%.2fx)\n",
      with_sign, without_sign, without_sign / with_sign);

  // Every int8 kernel build this CPU can run (the plan picks one of them per
  // level), against oneDNN's u8s8 matmul at the same shape.
  struct OwnBuild {
    const char* name;
    const openelm::CpuKernels* kernels;
  };
  std::vector<OwnBuild> builds;
  for (openelm::KernelBuild b :
       {openelm::KernelBuild::kAvx2, openelm::KernelBuild::kAvx2Vnni,
        openelm::KernelBuild::kAvx512, openelm::KernelBuild::kAvx512Vnni}) {
    if (const openelm::CpuKernels* k = openelm::KernelsForBuild(b); k != nullptr) {
      builds.push_back({openelm::KernelBuildName(b), k});
    }
  }
  const Shape shapes[] = {{1, 1152, 1280},  {1, 5120, 1280},   {16, 1152, 1280},
                          {16, 5120, 1280}, {64, 1152, 1280},  {64, 5120, 1280},
                          {64, 1280, 2560}, {512, 1152, 1280}, {512, 5120, 1280},
                          {512, 1280, 2560}};
  for (const Shape& s : shapes) {
    OnednnInt8 onednn(s, 63, /*s32_out=*/false, 1);
    double best = 1e30;
    for (int32_t r = 0; r < repeats; ++r) {
      const double t = Now();
      onednn.Run();
      best = std::min(best, Now() - t);
    }
    const double onednn_gops = 2.0 * s.m * s.n * s.k / best / 1e9;
    std::mt19937 rng(2);
    std::vector<float> w(s.n * s.k), a(s.m * s.k), d(s.m * s.n);
    for (float& x : w) x = static_cast<float>(int(rng() % 255) - 127) * 0.01f;
    for (float& x : a) x = static_cast<float>(rng() % 2001) / 1000.0f - 1.0f;
    std::printf("gemm m=%lld n=%lld k=%lld: oneDNN u8s8 (%s) %.0f GOP/s",
                static_cast<long long>(s.m), static_cast<long long>(s.n),
                static_cast<long long>(s.k), onednn.pd.impl_info_str(), onednn_gops);
    for (const OwnBuild& b : builds) {
      auto scratch = std::make_shared<openelm::Int8ActivationScratch>();
      auto own = openelm::Int8Matmul::Create(
          *b.kernels, s.n, s.k, static_cast<int32_t>(s.m), w.data(), scratch, threads);
      if (!own.ok()) {
        std::printf("\nown int8 matmul: %s\n", own.status().ToString().c_str());
        return 1;
      }
      best = 1e30;
      for (int32_t r = 0; r < repeats; ++r) {
        const double t = Now();
        if (!(*own)->Run(a.data(), static_cast<int32_t>(s.m), d.data()).ok()) return 1;
        best = std::min(best, Now() - t);
      }
      const double own_gops = 2.0 * s.m * s.n * s.k / best / 1e9;
      std::printf("; own %s %.0f (oneDNN/own %.2f)", b.name, own_gops,
                  onednn_gops / own_gops);
    }
    std::printf("\n");
  }

  for (int wmax : {127, 63}) {
    const Shape s{64, 256, 1280};
    OnednnInt8 onednn(s, wmax, /*s32_out=*/true, 3);
    onednn.Run();
    const auto* sp = static_cast<const uint8_t*>(onednn.src.get_data_handle());
    const auto* dp = static_cast<const int32_t*>(onednn.dst.get_data_handle());
    int64_t inexact = 0;
    for (int64_t m = 0; m < s.m; ++m) {
      for (int64_t n = 0; n < s.n; ++n) {
        int64_t sum = 0;
        for (int64_t k = 0; k < s.k; ++k) {
          sum += (int64_t{sp[m * s.k + k]} - 128) * onednn.w_plain[n * s.k + k];
        }
        inexact += sum != dp[m * s.n + n];
      }
    }
    std::printf("exact: oneDNN u8s8, weights within +-%d: %lld of %lld sums wrong\n",
                wmax, static_cast<long long>(inexact), static_cast<long long>(s.m * s.n));
  }
  return 0;
}
