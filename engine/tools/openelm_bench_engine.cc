// Engine micro-benchmark: memory read bandwidth and the GEMM peak of each
// matmul type the plan uses on this machine, then decode steps and a prefill
// of OpenElmModel, each reported as tokens/s and as a fraction of the limit
// that bounds it. Prints markdown, naming the CPU and the execution plan.
//
//   openelm_bench_engine --size=270M --repeats=5
//   OPENELM_MAX_CPU_ISA=avx2 openelm_bench_engine ...   # the AVX2 plan on a bigger CPU
//
// Decode contexts are synthetic: rows are placed at position `context` on
// their own blocks without prefilling them (the time of a step does not
// depend on the cached values).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/base/status_macros.h"
#include "engine/kernels/bf16_matmul.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "engine/kernels/int8_matmul.h"
#include "engine/kernels/onednn_context.h"
#include "engine/kernels/onednn_matmul.h"
#include "engine/kernels/paged_attention.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_model.h"

ABSL_FLAG(std::string, model_dir, "", "HF checkpoint directory (or use --size)");
ABSL_FLAG(std::string, size, "270M",
          "generate a random checkpoint of this size when --model_dir is empty");
ABSL_FLAG(std::string, cache_dir, "/tmp/openelm_bench_cache",
          "where --size checkpoints are generated");
ABSL_FLAG(std::string, weight_dtype, "auto", "auto | bf16 | f32 | int8");
ABSL_FLAG(std::string, kv_dtype, "auto", "auto | bf16 | f32");
ABSL_FLAG(std::string, activations, "auto",
          "auto (the plan's choice for this CPU) | bf16 | f32");
ABSL_FLAG(int32_t, threads, 0, "OpenMP threads; 0 = all cores");
ABSL_FLAG(int32_t, repeats, 5,
          "timed repeats per figure (>= 3); min and median are reported");
ABSL_FLAG(int64_t, bandwidth_mib, 1024, "buffer size of the read-bandwidth test");
ABSL_FLAG(std::string, figures, "",
          "comma-separated figures to run (decode_b1_c128, ..., prefill_512); "
          "empty: all");
ABSL_FLAG(bool, own_int8_kernels, false,
          "--weight_dtype=int8: the own int8 kernels even where the plan picks oneDNN's");
ABSL_FLAG(bool, skip_machine, false, "skip the bandwidth and GEMM-peak measurements");

namespace openelm {
namespace {

using Clock = std::chrono::steady_clock;

// Wall time, and the process CPU time divided by the thread count: on a
// machine shared with other work the second estimates the wall time the step
// would take with its cores to itself (run with OMP_WAIT_POLICY=passive so
// threads waiting at barriers sleep instead of burning CPU time).
struct Timing {
  double min_s = 0;
  double median_s = 0;
  double cpu_min_s = 0;  // CPU seconds / threads, best repeat
};

int32_t g_threads = 1;

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

template <typename F>
absl::StatusOr<Timing> TimeIt(int32_t repeats, F&& f) {
  OPENELM_RETURN_IF_ERROR(f());  // warm-up
  std::vector<double> t;
  double cpu_best = 1e30;
  for (int32_t i = 0; i < repeats; ++i) {
    const double cpu0 = ProcessCpuSeconds();
    const auto start = Clock::now();
    OPENELM_RETURN_IF_ERROR(f());
    t.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    cpu_best = std::min(cpu_best, (ProcessCpuSeconds() - cpu0) / g_threads);
  }
  std::sort(t.begin(), t.end());
  return Timing{t.front(), t[t.size() / 2], cpu_best};
}

// Sums n words (n % 32 == 0) with 256-bit loads and four independent
// accumulators, so the loop is bound by memory, not by the core.
__attribute__((target("avx2"))) uint64_t SumWordsAvx2(const uint64_t* p, int64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < n; i += 16) {
    a0 =
        _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(
        a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(
        a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(
        a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  return static_cast<uint64_t>(_mm256_extract_epi64(a0, 0) + _mm256_extract_epi64(a0, 3));
}

uint64_t SumWordsPortable(const uint64_t* p, int64_t n) {
  uint64_t a[4] = {0, 0, 0, 0};
  for (int64_t i = 0; i < n; i += 4) {
    a[0] += p[i];
    a[1] += p[i + 1];
    a[2] += p[i + 2];
    a[3] += p[i + 3];
  }
  return a[0] + a[1] + a[2] + a[3];
}

// Best-of-N streaming read of a buffer much larger than the caches, each
// thread summing its own contiguous half with vector loads (AVX2 where the
// CPU has it); returns bytes/s by wall time and by CPU time / threads.
std::pair<double, double> MeasureReadBandwidth(int64_t bytes, int32_t threads,
                                               int32_t repeats) {
  const int64_t chunk = bytes / 8 / threads / 32 * 32;  // words per thread
  const int64_t n = chunk * threads;
  std::vector<uint64_t> buf(n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) buf[i] = static_cast<uint64_t>(i);
  const bool avx2 = DetectedCpuIsa() != CpuIsa::kPortable;
  double best = 1e30, cpu_best = 1e30;
  uint64_t sink = 0;
  for (int32_t r = 0; r < repeats + 1; ++r) {
    const double cpu0 = ProcessCpuSeconds();
    const auto start = Clock::now();
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (int32_t t = 0; t < threads; ++t) {
      const uint64_t* p = buf.data() + t * chunk;
      total += avx2 ? SumWordsAvx2(p, chunk) : SumWordsPortable(p, chunk);
    }
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    const double cpu = (ProcessCpuSeconds() - cpu0) / threads;
    sink += total;
    if (r > 0) best = std::min(best, s);
    if (r > 0) cpu_best = std::min(cpu_best, cpu);
  }
  if (sink == 42) std::printf(" ");  // keep the loop
  return {static_cast<double>(n) * 8 / best, static_cast<double>(n) * 8 / cpu_best};
}

constexpr int32_t kPeakM = 512, kPeakN = 4096, kPeakK = 4096;

// FLOP/s of a 512 x 4096 x 4096 matmul: oneDNN in `dtype`, or (own = true)
// our own kernel of the plan (bf16-weight, or int8 when `int8`) for the
// active ISA. By wall and by CPU time.
absl::StatusOr<std::pair<double, double>> MeasureGemmPeak(OnednnContext* ctx,
                                                          MatmulDType dtype, bool own,
                                                          bool int8, int32_t repeats) {
  std::vector<float> w(int64_t{kPeakN} * kPeakK, 0.01f),
      src(int64_t{kPeakM} * kPeakK, 0.5f), dst(int64_t{kPeakM} * kPeakN);
  std::unique_ptr<Matmul> mm;
  if (own && int8) {
    OPENELM_ASSIGN_OR_RETURN(
        mm, Int8Matmul::Create(ActiveKernels(), kPeakN, kPeakK, kPeakM, w.data(),
                               std::make_shared<Int8ActivationScratch>(),
                               ctx->num_threads()));
  } else if (own) {
    std::vector<uint16_t> wb(w.size(), 0x3c24);  // ~0.01 in bf16
    OPENELM_ASSIGN_OR_RETURN(
        mm, Bf16Matmul::Create(ActiveKernels(), kPeakN, kPeakK, kPeakM, wb.data(),
                               ctx->num_threads()));
  } else {
    OPENELM_ASSIGN_OR_RETURN(
        mm, PackedMatmul::Create(
                ctx, {.n = kPeakN, .k = kPeakK, .max_m = kPeakM, .compute = dtype},
                w.data(), false));
  }
  OPENELM_ASSIGN_OR_RETURN(
      Timing t, TimeIt(repeats, [&] { return mm->Run(src.data(), kPeakM, dst.data()); }));
  const double flops = 2.0 * kPeakM * kPeakN * kPeakK;
  return std::make_pair(flops / t.min_s, flops / t.cpu_min_s);
}

struct Figure {
  std::string name;
  int32_t batch = 0;
  int32_t context = 0;
  int32_t tokens_per_row = 1;  // 1 = decode
};

// The name --figures selects a figure by: decode_b<batch>_c<context> or
// prefill_<tokens>.
std::string FigureId(const Figure& f) {
  return f.tokens_per_row == 1 ? absl::StrCat(f.name, "_b", f.batch, "_c", f.context)
                               : absl::StrCat(f.name, "_", f.tokens_per_row);
}

int Main() {
  const int32_t repeats = std::max(3, absl::GetFlag(FLAGS_repeats));
  const int32_t threads = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads)
                                                           : omp_get_num_procs();
  g_threads = threads;

  std::string dir = absl::GetFlag(FLAGS_model_dir);
  auto weight_choice =
      ParseDTypeChoice(absl::GetFlag(FLAGS_weight_dtype), "weight_dtype");
  auto kv_choice = ParseDTypeChoice(absl::GetFlag(FLAGS_kv_dtype), "kv_dtype");
  auto act_choice = ParseDTypeChoice(absl::GetFlag(FLAGS_activations), "activations");
  for (const absl::Status& s :
       {weight_choice.status(), kv_choice.status(), act_choice.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 2;
    }
  }
  OpenElmModelOptions options;
  options.weight_dtype = weight_choice->value_or(DType::kBF16);
  options.kv_dtype = kv_choice->value_or(DType::kBF16);
  if (act_choice->has_value()) options.bf16_activations = **act_choice == DType::kBF16;
  options.num_threads = threads;
  options.own_int8_kernels = absl::GetFlag(FLAGS_own_int8_kernels);
  PlanRequest request{.weight_dtype = options.weight_dtype,
                      .activation_dtype = *act_choice,
                      .kv_dtype = options.kv_dtype,
                      .own_int8_kernels = options.own_int8_kernels};
  auto plan = ResolvePlan(EffectiveCpuIsa(), request);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", plan.status().ToString().c_str());
    return 2;
  }
  const DType weight_dtype = plan->weight_dtype;
  if (dir.empty()) {
    dir = absl::StrCat(absl::GetFlag(FLAGS_cache_dir), "/", absl::GetFlag(FLAGS_size),
                       "-seed1-bf16");
    if (!std::filesystem::exists(dir + "/config.json")) {
      auto config = MakeOpenElmConfig(absl::GetFlag(FLAGS_size));
      if (!config.ok()) {
        std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
        return 1;
      }
      std::fprintf(stderr, "generating %s ...\n", dir.c_str());
      const absl::Status s = WriteRandomCheckpoint(*config, 1, DType::kBF16, 1, dir);
      if (!s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
    }
  }

  // Machine limits.
  auto ctx = OnednnContext::Create(threads);
  if (!ctx.ok()) return 1;
  // [0]: by wall time, [1]: by CPU time / threads.
  // oneDNN bf16 exists only where the CPU multiplies bf16 natively; the
  // own-kernel peak only matters for the plans that use it.
  const bool bf16_native =
      static_cast<int>(EffectiveCpuIsa()) >= static_cast<int>(CpuIsa::kAvx512Bf16);
  const bool onednn_int8_plan = plan->matmul == MatmulBackend::kOnednnInt8;
  const bool own_plan = plan->matmul != MatmulBackend::kOnednn && !onednn_int8_plan;
  const bool int8_plan = plan->matmul == MatmulBackend::kOwnInt8 || onednn_int8_plan;
  double bandwidth[2] = {0, 0}, peak_bf16[2] = {0, 0}, peak_f32[2] = {0, 0},
         peak_own[2] = {0, 0};
  if (!absl::GetFlag(FLAGS_skip_machine)) {
    std::tie(bandwidth[0], bandwidth[1]) =
        MeasureReadBandwidth(absl::GetFlag(FLAGS_bandwidth_mib) << 20, threads, repeats);
    auto f = MeasureGemmPeak(ctx->get(), MatmulDType::kF32, false, false, repeats);
    if (!f.ok()) {
      std::fprintf(stderr, "f32 GEMM peak failed: %s\n", f.status().ToString().c_str());
      return 1;
    }
    std::tie(peak_f32[0], peak_f32[1]) = *f;
    if (bf16_native) {
      auto b = MeasureGemmPeak(ctx->get(), MatmulDType::kBF16, false, false, repeats);
      if (!b.ok()) {
        std::fprintf(stderr, "bf16 GEMM peak failed: %s\n",
                     b.status().ToString().c_str());
        return 1;
      }
      std::tie(peak_bf16[0], peak_bf16[1]) = *b;
    }
    if (own_plan || onednn_int8_plan) {
      auto o = MeasureGemmPeak(ctx->get(),
                               onednn_int8_plan ? MatmulDType::kS8 : MatmulDType::kF32,
                               own_plan, int8_plan, repeats);
      if (!o.ok()) {
        std::fprintf(stderr, "own GEMM failed: %s\n", o.status().ToString().c_str());
        return 1;
      }
      std::tie(peak_own[0], peak_own[1]) = *o;
    }
  }

  const auto load_start = Clock::now();
  auto ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) {
    std::fprintf(stderr, "%s\n", ckpt.status().ToString().c_str());
    return 1;
  }
  const OpenElmConfig config = (*ckpt)->config();
  auto model_or = OpenElmModel::Create(**ckpt, options);
  if (!model_or.ok()) {
    std::fprintf(stderr, "%s\n", model_or.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<OpenElmModel> model = std::move(*model_or);
  ckpt->reset();
  const double load_s = std::chrono::duration<double>(Clock::now() - load_start).count();

  const std::vector<Figure> all_figures = {
      {"decode", 1, 128},   {"decode", 4, 128},     {"decode", 16, 128},
      {"decode", 32, 128},  {"decode", 64, 128},    {"decode", 16, 1024},
      {"decode", 32, 1024}, {"prefill", 1, 0, 512},
  };
  std::vector<Figure> figures;
  const std::vector<std::string> wanted =
      absl::StrSplit(absl::GetFlag(FLAGS_figures), ',', absl::SkipEmpty());
  for (const Figure& f : all_figures) {
    if (wanted.empty() || absl::c_linear_search(wanted, FigureId(f)))
      figures.push_back(f);
  }
  if (figures.empty()) {
    std::fprintf(stderr, "--figures matches none of:");
    for (const Figure& f : all_figures) std::fprintf(stderr, " %s", FigureId(f).c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  constexpr int32_t kBlock = 16;
  int32_t blocks_needed = 0;
  for (const Figure& f : figures) {
    blocks_needed = std::max(
        blocks_needed, f.batch * ((f.context + f.tokens_per_row + kBlock - 1) / kBlock));
  }
  const absl::Status prepared = model->Prepare(blocks_needed, kBlock, 512, 64,
                                               /*max_logits_rows=*/64);
  if (!prepared.ok()) {
    std::fprintf(stderr, "%s\n", prepared.ToString().c_str());
    return 1;
  }
  const ModelInfo& info = model->info();
  const int64_t d = config.model_dim;
  // The embedding gather reads the LM head's packed weights, except with f32
  // weights packed as bf16 for oneDNN: then the f32 table is a second copy,
  // held but not streamed (openelm_model.cc).
  const bool separate_embedding =
      !own_plan && weight_dtype == DType::kF32 && plan->activation_dtype == DType::kBF16;
  const int64_t embed_bytes = separate_embedding ? int64_t{config.vocab_size} * d * 4 : 0;
  const int64_t streamed_weight_bytes = info.weight_bytes - embed_bytes;
  // The FLOP limit: the GEMM peak of the matmul type the plan computes in
  // (the own bf16-weight kernel computes in f32 FMAs: its limit is the f32 peak).
  // The int8 kernel's limit is its own int8 GEMM peak (GOP/s).
  const double* peak = int8_plan                                ? peak_own
                       : plan->activation_dtype == DType::kBF16 ? peak_bf16
                                                                : peak_f32;
  // Matmul parameters (the embedding only as the LM head).
  int64_t matmul_params = int64_t{config.vocab_size} * d;
  for (const LayerShape& s : config.layers) {
    matmul_params +=
        (s.num_query_heads + 2 * int64_t{s.num_kv_heads}) * config.head_dim * d +
        d * s.num_query_heads * config.head_dim + 3 * d * s.ffn_dim;
  }

  std::printf("## openelm_bench_engine: %s (%s)\n\n", info.name.c_str(),
              info.size_name.c_str());
  std::printf("- %s\n", DescribeCpu().c_str());
  std::printf("- plan: %s; threads %d, repeats %d (+1 warm-up), attention kernel: %s\n",
              info.plan.c_str(), threads, repeats,
              PagedAttentionVariant(config.head_dim));
  std::printf(
      "- load (mmap + convert + pack + primitives): %.2f s; packed weights %.1f MiB "
      "(%.1f MiB streamed per step)\n",
      load_s, info.weight_bytes / 1048576.0, streamed_weight_bytes / 1048576.0);
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) > 0)
    std::printf("- load average at start: %.1f (on %d cores)\n", load[0],
                omp_get_num_procs());
  if (bandwidth[0] > 0) {
    std::printf(
        "- memory read bandwidth (1 GiB): %.1f GB/s wall, %.1f GB/s by CPU time\n",
        bandwidth[0] / 1e9, bandwidth[1] / 1e9);
    std::printf("- GEMM 512x4096x4096 (wall / CPU time): oneDNN f32 %.0f / %.0f GFLOP/s",
                peak_f32[0] / 1e9, peak_f32[1] / 1e9);
    if (bf16_native)
      std::printf(", oneDNN bf16 %.0f / %.0f", peak_bf16[0] / 1e9, peak_bf16[1] / 1e9);
    if (own_plan || onednn_int8_plan) {
      std::printf(", %s %s %.0f / %.0f (%.2fx the f32 peak)",
                  onednn_int8_plan ? "oneDNN" : "own",
                  int8_plan ? "int8 (GOP/s)" : "bf16-weight", peak_own[0] / 1e9,
                  peak_own[1] / 1e9, peak_own[0] / peak_f32[0]);
    }
    std::printf("\n");
  }
  std::printf(
      "\nLimits: bytes = (weights streamed + KV read) / bandwidth; flops = FLOPs / GEMM "
      "peak; "
      "the larger is the bound. Fractions = limit / measured step time, once by wall "
      "time and "
      "once by CPU time (both measured the same way as their limit).\n\n");
  std::printf(
      "| step | batch | context | tokens/s best (median) | step ms min / median | "
      "CPU-time ms "
      "| bytes-limit ms | flops-limit ms | bound | of limit (wall) | of limit (CPU) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");

  ForwardBatch batch;
  std::vector<std::vector<BlockId>> tables;
  for (const Figure& f : figures) {
    batch.Clear();
    tables.assign(f.batch, {});
    BlockId next = 0;
    for (int32_t r = 0; r < f.batch; ++r) {
      const int32_t nb = (f.context + f.tokens_per_row + kBlock - 1) / kBlock;
      for (int32_t b = 0; b < nb; ++b) tables[r].push_back(next++);
      for (int32_t t = 0; t < f.tokens_per_row; ++t)
        batch.tokens.push_back((r * 131 + t * 7 + 5) % 32000);
      batch.rows.push_back({.request_id = static_cast<RequestId>(r + 1),
                            .token_offset = r * f.tokens_per_row,
                            .num_tokens = f.tokens_per_row,
                            .start_position = f.context,
                            .block_table = tables[r].data(),
                            .num_blocks = nb,
                            .logits = BatchRow::Logits::kLast});
    }
    auto timing =
        TimeIt(repeats, [&]() -> absl::Status { return model->Forward(batch).status(); });
    if (!timing.ok()) {
      std::fprintf(stderr, "%s\n", timing.status().ToString().c_str());
      return 1;
    }
    const int64_t tokens = int64_t{f.batch} * f.tokens_per_row;
    // Attention: QK^T and PV over the causal context.
    double attn_flops = 0;
    int64_t kv_read = 0;
    for (const LayerShape& s : config.layers) {
      for (int32_t t = 0; t < f.tokens_per_row; ++t) {
        attn_flops +=
            4.0 * f.batch * (f.context + t + 1) * s.num_query_heads * config.head_dim;
      }
      kv_read += int64_t{f.batch} * (f.context + f.tokens_per_row) * 2 * s.num_kv_heads *
                 config.head_dim * (options.kv_dtype == DType::kBF16 ? 2 : 4);
    }
    // The LM head runs only for the rows whose logits are wanted (one per row).
    const int64_t head_params = int64_t{config.vocab_size} * d;
    const double flops = 2.0 * tokens * (matmul_params - head_params) +
                         2.0 * f.batch * head_params + attn_flops;
    double limit_ms[2] = {0, 0}, bytes_ms[2] = {0, 0}, flops_ms[2] = {0, 0};
    for (int i = 0; i < 2; ++i) {
      bytes_ms[i] =
          bandwidth[i] > 0 ? (streamed_weight_bytes + kv_read) / bandwidth[i] * 1e3 : 0;
      flops_ms[i] = peak[i] > 0 ? flops / peak[i] * 1e3 : 0;
      limit_ms[i] = std::max(bytes_ms[i], flops_ms[i]);
    }
    const bool bytes_bound = bytes_ms[0] >= flops_ms[0];
    const double tps_best = tokens / timing->min_s;
    const double tps_med = tokens / timing->median_s;
    std::printf(
        "| %s | %d | %d | %.1f (%.1f) | %.1f / %.1f | %.1f | %.1f | %.1f | %s | %.0f%% | "
        "%.0f%% |\n",
        f.name.c_str(), f.batch, f.tokens_per_row > 1 ? f.tokens_per_row : f.context,
        tps_best, tps_med, timing->min_s * 1e3, timing->median_s * 1e3,
        timing->cpu_min_s * 1e3, bytes_ms[0], flops_ms[0],
        bytes_bound ? "bytes" : "FLOPs", 100.0 * limit_ms[0] / (timing->min_s * 1e3),
        100.0 * limit_ms[1] / (timing->cpu_min_s * 1e3));
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace openelm

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return openelm::Main();
}
