// Continuous-batching benchmark: output tokens/s of LlmEngine over a real
// OpenElmModel with exactly C requests in flight (closed loop), for several
// concurrency levels C, beside the same workload on an engine limited to one
// running sequence (max_num_seqs=1, the unbatched baseline). Prints markdown.
//
//   OMP_WAIT_POLICY=passive openelm_bench_batching --size=270M
//       --concurrency=1,4,16,32,64 --repeats=3 --window_s=10
//
// One measurement (one level, one engine, one repeat):
//   1. Warm-up: C requests are submitted at once. Their output lengths are
//      staggered (request i of the first wave asks for
//      ceil(output_tokens * (i + 1) / C) tokens) so completions, and hence
//      the prefills of their replacements, spread over the steps the way they
//      do in a long-running server instead of arriving in lockstep waves.
//   2. Window: opens once min(C, max_num_seqs) requests of the first wave
//      have their first token (the initial prefill backlog is over) and
//      lasts --window_s.
//      Every finished request is replaced at once by a new one asking for
//      exactly --output_tokens tokens (ignore_eos), so C stay in flight.
//      Output tokens, steps, rows per step and inter-token times are
//      counted only inside the window; TTFT only for requests submitted in it.
//   3. Drain: the requests still in flight are cancelled and awaited.
// Prompts are --prompt_tokens random ids (fixed seed, distinct per request)
// and prefix caching is off, so no prompt is served from the cache.
//
// Threads: the engine thread runs the model; the sinks (engine thread) only
// bump atomics and hand finished requests to the driver (this thread)
// through a mutex-guarded list, which the driver waits on. The driver makes
// the replacement Submit() calls.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/base/status_macros.h"
#include "engine/llm_engine.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"
#include "engine/model/openelm_model.h"

ABSL_FLAG(std::string, model_dir, "", "HF checkpoint directory (or use --size)");
ABSL_FLAG(std::string, size, "270M",
          "generate (once, cached) a random bf16 checkpoint of this size when "
          "--model_dir is empty");
ABSL_FLAG(std::string, cache_dir, "/tmp/openelm_bench_cache",
          "where --size checkpoints are generated");
ABSL_FLAG(std::string, concurrency, "1,4,16,32,64",
          "comma-separated numbers of requests in flight");
ABSL_FLAG(int32_t, prompt_tokens, 128,
          "prompt length of every request (BOS + random ids)");
ABSL_FLAG(int32_t, output_tokens, 64, "output tokens per request (ignore_eos, so exact)");
ABSL_FLAG(double, window_s, 10.0,
          "length of the steady-state window of one measurement, seconds");
ABSL_FLAG(int32_t, repeats, 3,
          "measurements per level and engine (>= 3); min and median reported");
ABSL_FLAG(bool, baseline, true, "also run every level on an engine with max_num_seqs=1");
ABSL_FLAG(int32_t, threads, 0, "OpenMP threads of the model; 0 = all cores");
ABSL_FLAG(int32_t, max_num_batched_tokens, 512, "engine token budget per step");
ABSL_FLAG(int32_t, block_size_tokens, 16, "KV block size");
ABSL_FLAG(uint64_t, seed, 1, "seed of the prompt ids and of sampling");

namespace openelm {
namespace {

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}

int64_t NowNanos() { return absl::GetCurrentTimeNanos(); }

// Counters shared by the sinks and the observer (engine thread) and the
// driver. Written with relaxed atomics; the driver reads the per-window sums
// after the drain, which it learns of through `mu` (acquire/release).
struct SharedCounters {
  std::atomic<bool> window_open{false};
  std::atomic<int64_t> output_tokens{0};       // all output tokens, window or not
  std::atomic<int32_t> first_wave_started{0};  // first-wave requests with a first token
  std::atomic<int64_t> ttft_sum_ns{0};         // first tokens inside the window
  std::atomic<int64_t> ttft_count{0};
  std::atomic<int64_t> itl_sum_ns{0};  // inter-token gaps inside the window
  std::atomic<int64_t> itl_count{0};   // tokens those gaps cover
  std::atomic<int64_t> steps{0};       // non-empty steps inside the window
  std::atomic<int64_t> rows{0};        // sequences over those steps
  std::atomic<int64_t> decode_tokens{0};
  std::atomic<int64_t> prefill_tokens{0};

  absl::Mutex mu;
  std::vector<int32_t> finished ABSL_GUARDED_BY(mu);  // slot indices
  int32_t num_failed ABSL_GUARDED_BY(mu) = 0;
  std::string first_error ABSL_GUARDED_BY(mu);

  void ResetWindow() {
    for (auto* c : {&ttft_sum_ns, &ttft_count, &itl_sum_ns, &itl_count, &steps, &rows,
                    &decode_tokens, &prefill_tokens}) {
      c->store(0, std::memory_order_relaxed);
    }
  }
};

// One request's sink. Owned by the driver (kept alive until the measurement
// ends); called only on the engine thread; never blocks beyond a short
// uncontended mutex to hand its slot back to the driver.
class BenchSink : public TokenSink {
 public:
  BenchSink(SharedCounters* counters, int32_t slot, bool first_wave)
      : counters_(counters),
        slot_(slot),
        first_wave_(first_wave),
        submitted_in_window_(counters->window_open.load(std::memory_order_relaxed)),
        submit_ns_(NowNanos()) {}

  void OnOutput(const OutputDelta& delta) override {
    const int64_t n = static_cast<int64_t>(delta.tokens.size());
    if (n == 0) return;
    const int64_t now = NowNanos();
    counters_->output_tokens.fetch_add(n, std::memory_order_relaxed);
    if (first_wave_ && last_ns_ == 0) {
      counters_->first_wave_started.fetch_add(1, std::memory_order_relaxed);
    }
    if (counters_->window_open.load(std::memory_order_relaxed)) {
      if (last_ns_ == 0) {
        if (submitted_in_window_) {
          counters_->ttft_sum_ns.fetch_add(now - submit_ns_, std::memory_order_relaxed);
          counters_->ttft_count.fetch_add(1, std::memory_order_relaxed);
        }
      } else {
        counters_->itl_sum_ns.fetch_add(now - last_ns_, std::memory_order_relaxed);
        counters_->itl_count.fetch_add(n, std::memory_order_relaxed);
      }
    }
    last_ns_ = now;
  }

  void OnFinish(const FinishInfo& info) override {
    SharedCounters* counters = counters_;
    const int32_t slot = slot_;
    absl::MutexLock lock(&counters->mu);
    // Cancellation is how a measurement ends; anything else not OK is a failure.
    if (!info.status.ok() && !absl::IsCancelled(info.status)) {
      if (counters->num_failed++ == 0) counters->first_error = info.status.ToString();
    }
    counters->finished.push_back(slot);
  }

 private:
  SharedCounters* const counters_;
  const int32_t slot_;
  const bool first_wave_;
  const bool submitted_in_window_;  // TTFT is counted only for these
  const int64_t submit_ns_;
  int64_t last_ns_ = 0;  // time of the previous output; 0 before the first
};

// Counts batch sizes per step inside the window. Engine thread only.
class StepCounter : public EngineObserver {
 public:
  explicit StepCounter(SharedCounters* counters) : counters_(counters) {}
  void OnStep(const StepStats& stats) override {
    if (stats.num_rows == 0 || !counters_->window_open.load(std::memory_order_relaxed))
      return;
    counters_->steps.fetch_add(1, std::memory_order_relaxed);
    counters_->rows.fetch_add(stats.num_rows, std::memory_order_relaxed);
    counters_->decode_tokens.fetch_add(stats.num_decode_tokens,
                                       std::memory_order_relaxed);
    counters_->prefill_tokens.fetch_add(stats.num_prefill_tokens,
                                        std::memory_order_relaxed);
  }
  void OnRequestFinished(const GenerateSpec&, const FinishInfo&) override {}

 private:
  SharedCounters* const counters_;
};

// One engine (batched or baseline) with its own model, counters and observer.
struct BenchEngine {
  std::string name;
  int32_t max_num_seqs = 1;
  SharedCounters counters;
  std::unique_ptr<StepCounter> observer;
  std::unique_ptr<LlmEngine> engine;
};

struct Measurement {
  double tokens_per_s = 0;      // by wall time
  double cpu_tokens_per_s = 0;  // by process CPU time / threads
  double ttft_ms = 0;
  double tpot_ms = 0;
  double rows_per_step = 0;
  double steps_per_s = 0;
  int64_t window_tokens = 0;
};

struct Workload {
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;
  absl::Duration window;
  uint64_t seed = 0;
  int32_t threads = 1;
};

GenerateSpec MakeSpec(const Workload& w, uint64_t request_id, int32_t max_tokens) {
  GenerateSpec spec;
  std::mt19937_64 rng(w.seed * 0x9E3779B97F4A7C15ULL + request_id);
  spec.prompt.reserve(w.prompt_tokens);
  spec.prompt.push_back(kBosTokenId);
  std::uniform_int_distribution<int32_t> id(3, 31999);
  while (static_cast<int32_t>(spec.prompt.size()) < w.prompt_tokens)
    spec.prompt.push_back(id(rng));
  spec.params.temperature = 1.0f;
  spec.params.seed = w.seed + request_id;
  spec.params.max_tokens = max_tokens;
  spec.params.ignore_eos = true;
  return spec;
}

// Runs one measurement with `concurrency` requests in flight on `be`.
// `next_id` supplies request ids unique over the engine's life.
absl::StatusOr<Measurement> Measure(BenchEngine& be, const Workload& w,
                                    int32_t concurrency, uint64_t* next_id) {
  SharedCounters& c = be.counters;
  c.ResetWindow();
  c.window_open.store(false, std::memory_order_relaxed);
  c.first_wave_started.store(0, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&c.mu);
    c.finished.clear();
    c.num_failed = 0;
    c.first_error.clear();
  }
  std::vector<std::unique_ptr<BenchSink>> sinks;  // alive until the drain is over
  std::vector<uint64_t> slot_request(concurrency, 0);
  auto submit = [&](int32_t slot, int32_t max_tokens, bool first_wave) -> absl::Status {
    const uint64_t id = (*next_id)++;
    sinks.push_back(std::make_unique<BenchSink>(&c, slot, first_wave));
    slot_request[slot] = id;
    return be.engine->Submit(id, MakeSpec(w, id, max_tokens), sinks.back().get());
  };
  for (int32_t i = 0; i < concurrency; ++i) {
    const int32_t staggered =
        std::max(1, (w.output_tokens * (i + 1) + concurrency - 1) / concurrency);
    OPENELM_RETURN_IF_ERROR(submit(i, staggered, true));
  }

  const int32_t ramp_done = std::min(concurrency, be.max_num_seqs);
  absl::Time window_start = absl::InfinitePast();
  int64_t tokens_at_start = 0;
  double cpu_at_start = 0;
  Measurement m;
  std::vector<int32_t> finished;
  while (true) {
    finished.clear();
    {
      absl::MutexLock lock(&c.mu);
      c.mu.AwaitWithTimeout(
          absl::Condition(
              +[](std::vector<int32_t>* f) { return !f->empty(); }, &c.finished),
          absl::Milliseconds(20));
      finished.swap(c.finished);
      if (c.num_failed > 0) return absl::InternalError(c.first_error);
    }
    const absl::Time now = absl::Now();
    if (window_start == absl::InfinitePast() &&
        c.first_wave_started.load(std::memory_order_relaxed) >= ramp_done) {
      window_start = now;
      tokens_at_start = c.output_tokens.load(std::memory_order_relaxed);
      cpu_at_start = ProcessCpuSeconds();
      c.window_open.store(true, std::memory_order_relaxed);
    }
    if (window_start != absl::InfinitePast() && now - window_start >= w.window) {
      c.window_open.store(false, std::memory_order_relaxed);
      const double wall_s = absl::ToDoubleSeconds(now - window_start);
      const double cpu_s = (ProcessCpuSeconds() - cpu_at_start) / w.threads;
      m.window_tokens = c.output_tokens.load(std::memory_order_relaxed) - tokens_at_start;
      m.tokens_per_s = m.window_tokens / wall_s;
      m.cpu_tokens_per_s = cpu_s > 0 ? m.window_tokens / cpu_s : 0;
      m.steps_per_s = c.steps.load(std::memory_order_relaxed) / wall_s;
      break;
    }
    for (int32_t slot : finished) {
      OPENELM_RETURN_IF_ERROR(submit(slot, w.output_tokens, false));
    }
  }

  // Drain: cancel what is in flight and wait for every OnFinish.
  int32_t in_flight = 0;
  for (uint64_t id : slot_request) {
    if (id == 0) continue;
    ++in_flight;
    be.engine->Cancel(id);
  }
  in_flight -= static_cast<int32_t>(finished.size());  // finished, not resubmitted
  for (int32_t slot : finished) slot_request[slot] = 0;
  while (in_flight > 0) {
    absl::MutexLock lock(&c.mu);
    c.mu.Await(absl::Condition(
        +[](std::vector<int32_t>* f) { return !f->empty(); }, &c.finished));
    in_flight -= static_cast<int32_t>(c.finished.size());
    c.finished.clear();
    if (c.num_failed > 0) return absl::InternalError(c.first_error);
  }
  const int64_t ttft_n = c.ttft_count.load(std::memory_order_relaxed);
  const int64_t itl_n = c.itl_count.load(std::memory_order_relaxed);
  const int64_t steps = c.steps.load(std::memory_order_relaxed);
  m.ttft_ms =
      ttft_n > 0 ? c.ttft_sum_ns.load(std::memory_order_relaxed) / 1e6 / ttft_n : 0;
  m.tpot_ms = itl_n > 0 ? c.itl_sum_ns.load(std::memory_order_relaxed) / 1e6 / itl_n : 0;
  m.rows_per_step =
      steps > 0 ? static_cast<double>(c.rows.load(std::memory_order_relaxed)) / steps : 0;
  return m;
}

absl::StatusOr<std::string> CheckpointDir() {
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (!dir.empty()) return dir;
  const std::string size = absl::GetFlag(FLAGS_size);
  // Same cache layout as openelm_bench_engine, so the two share a checkpoint.
  dir = absl::StrCat(absl::GetFlag(FLAGS_cache_dir), "/", size, "-seed1-bf16");
  if (std::filesystem::exists(dir + "/config.json")) return dir;
  OPENELM_ASSIGN_OR_RETURN(OpenElmConfig config, MakeOpenElmConfig(size));
  std::fprintf(stderr, "generating %s ...\n", dir.c_str());
  OPENELM_RETURN_IF_ERROR(WriteRandomCheckpoint(config, 1, DType::kBF16, 1, dir));
  return dir;
}

absl::StatusOr<std::unique_ptr<BenchEngine>> MakeEngine(const std::string& dir,
                                                        const std::string& name,
                                                        int32_t max_num_seqs,
                                                        int32_t num_blocks,
                                                        int32_t threads) {
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(dir));
  OpenElmModelOptions model_options;  // defaults: bf16 weights, activations and KV
  model_options.num_threads = threads;
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<OpenElmModel> model,
                           OpenElmModel::Create(*checkpoint, model_options));
  auto be = std::make_unique<BenchEngine>();
  be->name = name;
  be->max_num_seqs = max_num_seqs;
  be->observer = std::make_unique<StepCounter>(&be->counters);
  EngineOptions options;
  options.block_size_tokens = absl::GetFlag(FLAGS_block_size_tokens);
  options.num_blocks = num_blocks;
  options.max_num_seqs = max_num_seqs;
  options.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  options.enable_prefix_caching = false;
  OPENELM_ASSIGN_OR_RETURN(be->engine, LlmEngine::Create(options, std::move(model),
                                                         nullptr, be->observer.get()));
  return be;
}

struct Summary {
  double min = 0;
  double median = 0;
};
Summary Summarize(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2]};
}
double Median(std::vector<double> v) { return Summarize(std::move(v)).median; }

absl::Status Run() {
  std::vector<int32_t> levels;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_concurrency), ',')) {
    int32_t c = 0;
    if (!absl::SimpleAtoi(part, &c) || c <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad --concurrency entry '", part, "'"));
    }
    levels.push_back(c);
  }
  if (levels.empty()) return absl::InvalidArgumentError("--concurrency is empty");
  Workload w;
  w.prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  w.output_tokens = absl::GetFlag(FLAGS_output_tokens);
  w.window = absl::Seconds(absl::GetFlag(FLAGS_window_s));
  w.seed = absl::GetFlag(FLAGS_seed);
  w.threads =
      absl::GetFlag(FLAGS_threads) > 0
          ? absl::GetFlag(FLAGS_threads)
          : static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  if (w.prompt_tokens < 1 || w.output_tokens < 1 || w.window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "prompt_tokens, output_tokens and window_s must be positive");
  }
  const int32_t repeats = std::max(3, absl::GetFlag(FLAGS_repeats));
  const int32_t max_c = *std::max_element(levels.begin(), levels.end());
  const int32_t block = absl::GetFlag(FLAGS_block_size_tokens);
  // Room for max_c sequences of full length, plus a margin.
  const int32_t num_blocks =
      max_c * ((w.prompt_tokens + w.output_tokens + block - 1) / block) + 16;

  OPENELM_ASSIGN_OR_RETURN(const std::string dir, CheckpointDir());
  const absl::Time load_start = absl::Now();
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<BenchEngine> batched,
                           MakeEngine(dir, "batched", max_c, num_blocks, w.threads));
  std::unique_ptr<BenchEngine> baseline;
  if (absl::GetFlag(FLAGS_baseline)) {
    OPENELM_ASSIGN_OR_RETURN(baseline,
                             MakeEngine(dir, "baseline", 1, num_blocks, w.threads));
  }
  const double load_s = absl::ToDoubleSeconds(absl::Now() - load_start);
  const ModelInfo& info = batched->engine->model_info();

  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("## openelm_bench_batching: %s (%s)\n\n", info.name.c_str(),
              info.size_name.c_str());
  std::printf(
      "- weights %s, KV %s, threads %d; prompt %d tokens, output %d tokens (ignore_eos), "
      "window %.1f s, repeats %d per level and engine (interleaved), prefix caching "
      "off\n",
      info.weight_dtype.c_str(), info.kv_dtype.c_str(), w.threads, w.prompt_tokens,
      w.output_tokens, absl::ToDoubleSeconds(w.window), repeats);
  std::printf(
      "- batched engine: max_num_seqs %d, max_num_batched_tokens %d, %d KV blocks of %d "
      "tokens; baseline: the same with max_num_seqs 1%s\n",
      max_c, absl::GetFlag(FLAGS_max_num_batched_tokens), num_blocks, block,
      baseline ? "" : " (not run)");
  std::printf(
      "- model load (both engines): %.1f s; load average at start: %.1f %.1f %.1f\n\n",
      load_s, load[0], load[1], load[2]);
  std::fflush(stdout);

  struct Row {
    int32_t c;
    std::vector<Measurement> batched, baseline;
  };
  std::vector<Row> rows;
  uint64_t next_id[2] = {1, 1};
  for (int32_t c : levels) {
    Row row{c, {}, {}};
    for (int32_t r = 0; r < repeats; ++r) {
      OPENELM_ASSIGN_OR_RETURN(Measurement b, Measure(*batched, w, c, &next_id[0]));
      std::fprintf(stderr, "C=%d repeat %d batched: %.1f tok/s (%.2f rows/step)\n", c, r,
                   b.tokens_per_s, b.rows_per_step);
      row.batched.push_back(b);
      if (baseline) {
        OPENELM_ASSIGN_OR_RETURN(Measurement u, Measure(*baseline, w, c, &next_id[1]));
        std::fprintf(stderr, "C=%d repeat %d baseline: %.1f tok/s\n", c, r,
                     u.tokens_per_s);
        row.baseline.push_back(u);
      }
    }
    rows.push_back(std::move(row));
  }
  batched->engine->Shutdown();
  if (baseline) baseline->engine->Shutdown();

  auto field = [](const std::vector<Measurement>& ms, double Measurement::*f) {
    std::vector<double> v;
    for (const Measurement& m : ms) v.push_back(m.*f);
    return v;
  };
  std::printf(
      "Output tokens/s over the steady window: min, median of %d. Speed-up = median "
      "batched / median baseline. CPU-time tok/s = window tokens / (process CPU seconds "
      "/ "
      "threads), an estimate for an unshared machine. TTFT: Submit() to first token, for "
      "requests submitted inside the window; TPOT is the mean gap between a request's "
      "outputs.\n\n",
      repeats);
  std::printf(
      "| concurrency | batched tok/s (min, median) | baseline tok/s (min, median) | "
      "speed-up | mean batch size per step | batched CPU-time tok/s | baseline CPU-time "
      "tok/s | batched TTFT / TPOT ms | baseline TTFT / TPOT ms |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& row : rows) {
    const Summary b = Summarize(field(row.batched, &Measurement::tokens_per_s));
    const Summary u = Summarize(field(row.baseline, &Measurement::tokens_per_s));
    // A median TTFT of 0 means no request submitted in the window got its
    // first token before the window closed (the queue wait exceeds it).
    auto ttft_tpot = [&](const std::vector<Measurement>& ms) {
      const double ttft = Median(field(ms, &Measurement::ttft_ms));
      const double tpot = Median(field(ms, &Measurement::tpot_ms));
      return ttft > 0 ? absl::StrFormat("%.0f / %.0f", ttft, tpot)
                      : absl::StrFormat("> window / %.0f", tpot);
    };
    std::printf(
        "| %d | %.1f, %.1f | %s | %s | %.1f | %.1f | %s | %s | %s |\n", row.c, b.min,
        b.median, baseline ? absl::StrFormat("%.1f, %.1f", u.min, u.median).c_str() : "-",
        baseline && u.median > 0 ? absl::StrFormat("%.2fx", b.median / u.median).c_str()
                                 : "-",
        Median(field(row.batched, &Measurement::rows_per_step)),
        Median(field(row.batched, &Measurement::cpu_tokens_per_s)),
        baseline ? absl::StrFormat("%.1f", Median(field(row.baseline,
                                                        &Measurement::cpu_tokens_per_s)))
                       .c_str()
                 : "-",
        ttft_tpot(row.batched).c_str(), baseline ? ttft_tpot(row.baseline).c_str() : "-");
  }
  getloadavg(load, 3);
  std::printf("\n- load average at end: %.1f %.1f %.1f\n", load[0], load[1], load[2]);
  return absl::OkStatus();
}

}  // namespace
}  // namespace openelm

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = openelm::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
