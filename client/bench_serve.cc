// openelm_bench_serve: online-serving load generator for openelm_server,
// following the methodology of `vllm bench serve`.
//
//   openelm_bench_serve --target=127.0.0.1:50051 --num_requests=200
//       --request_rate=inf --max_concurrency=16 --input_len=128 --output_len=64
//       --goodput=ttft:500,tpot:50 --result_file=run.json
//
// Requests are prepared before the clock starts, sent at their arrival
// offsets (Poisson / Gamma, or all at once for --request_rate=inf) through
// the gRPC callback API, gated by --max_concurrency, and timed per chunk.

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "client/bench/http_runner.h"
#include "client/bench/runner.h"
#include "client/bench/stats.h"
#include "client/bench/workload.h"
#include "client/openelm_client.h"
#include "openelm/version.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "Server address: host:port, comma list of IP:port (round-robin), or gRPC URI");
ABSL_FLAG(std::string, api, "grpc",
          "grpc: StreamGenerate on --target; http: streaming POST /v1/completions "
          "of the OpenAI-compatible API on --http_target (plain HTTP)");
ABSL_FLAG(std::string, http_target, "127.0.0.1:8000", "HOST:PORT of the HTTP API");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA file (enables TLS)");
ABSL_FLAG(std::string, tls_cert, "", "PEM client certificate (mutual TLS)");
ABSL_FLAG(std::string, tls_key, "", "PEM client key (mutual TLS)");
ABSL_FLAG(std::string, api_key, "", "API key (default: $OPENELM_API_KEY)");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10), "Deadline of each request");
ABSL_FLAG(std::string, model, "", "Model id (empty: the served model)");

ABSL_FLAG(int32_t, num_requests, 100, "Measured requests");
ABSL_FLAG(int32_t, num_warmups, 0,
          "Warm-up requests sent (and awaited) before measuring");
ABSL_FLAG(std::string, request_rate, "inf",
          "Mean arrival rate in requests/s, or inf to send all at once");
ABSL_FLAG(double, burstiness, 1.0,
          "Gamma shape of inter-arrival gaps: 1 = Poisson, <1 burstier, >1 steadier");
ABSL_FLAG(int32_t, max_concurrency, 0, "Most requests in flight; 0 = unlimited");
ABSL_FLAG(std::string, dataset, "random", "random | random_words | shared_prefix");
ABSL_FLAG(int32_t, input_len, 128,
          "Prompt tokens incl. BOS (shared_prefix: suffix tokens after the prefix)");
ABSL_FLAG(int32_t, output_len, 64, "max_tokens of every request");
ABSL_FLAG(double, range_ratio, 0.0,
          "Lengths uniform in [len*(1-r), len*(1+r)]; 0 = fixed lengths");
ABSL_FLAG(int32_t, num_prefixes, 4, "shared_prefix: distinct prefixes");
ABSL_FLAG(int32_t, prefix_len, 256, "shared_prefix: tokens per prefix (incl. BOS)");
ABSL_FLAG(bool, ignore_eos, true, "Generate exactly output_len tokens");
ABSL_FLAG(double, temperature, 0.0, "Sampling temperature (0 = greedy)");
ABSL_FLAG(uint64_t, seed, 0, "Seed of prompts and arrivals");
ABSL_FLAG(std::string, goodput, "",
          "SLOs in ms for goodput, e.g. ttft:500,tpot:50,e2e:5000");
ABSL_FLAG(std::string, tenants, "",
          "Multi-tenant mix name:api_key:rate,...; each tenant has its own arrival rate");
ABSL_FLAG(std::string, result_file, "", "Write the results as JSON here");
ABSL_FLAG(std::string, label, "", "Free-form label stored in the result file");
ABSL_FLAG(bool, progress, true, "Progress bar on stderr");

namespace openelm::bench {
namespace {

int Fail(absl::string_view message) {
  std::fprintf(stderr, "openelm_bench_serve: %s\n", std::string(message).c_str());
  return 1;
}

std::string ConfigJson(const WorkloadOptions& w, double rate, int32_t warmups) {
  JsonObjectWriter c;
  c.AddString("target", absl::GetFlag(FLAGS_target));
  c.AddString("label", absl::GetFlag(FLAGS_label));
  c.AddString("dataset", absl::GetFlag(FLAGS_dataset));
  c.AddInt("num_requests", w.num_requests);
  c.AddInt("num_warmups", warmups);
  if (std::isfinite(rate)) {
    c.AddNumber("request_rate", rate);
  } else {
    c.AddString("request_rate", "inf");
  }
  c.AddNumber("burstiness", absl::GetFlag(FLAGS_burstiness));
  c.AddInt("max_concurrency", absl::GetFlag(FLAGS_max_concurrency));
  c.AddInt("input_len", w.input_len);
  c.AddInt("output_len", w.output_len);
  c.AddNumber("range_ratio", w.range_ratio);
  if (w.dataset == Dataset::kSharedPrefix) {
    c.AddInt("num_prefixes", w.num_prefixes);
    c.AddInt("prefix_len", w.prefix_len);
  }
  c.AddBool("ignore_eos", w.ignore_eos);
  c.AddNumber("temperature", w.temperature);
  c.AddInt("seed", static_cast<int64_t>(w.seed));
  c.AddString("goodput", absl::GetFlag(FLAGS_goodput));
  return c.Finish();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "openelm_bench_serve --target=HOST:PORT [--num_requests=N] [--request_rate=R|inf] "
      "[--max_concurrency=C] ...");
  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return VersionLine("openelm_bench_serve"); };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);

  ClientOptions client_options;
  client_options.target = absl::GetFlag(FLAGS_target);
  client_options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  client_options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  client_options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  client_options.api_key = absl::GetFlag(FLAGS_api_key);
  if (client_options.api_key.empty()) {
    if (const char* env = std::getenv("OPENELM_API_KEY")) client_options.api_key = env;
  }
  client_options.timeout = absl::GetFlag(FLAGS_timeout);
  absl::StatusOr<std::unique_ptr<OpenElmClient>> client =
      OpenElmClient::Create(client_options);
  if (!client.ok()) return Fail(client.status().message());

  absl::StatusOr<double> rate = ParseRate(absl::GetFlag(FLAGS_request_rate));
  if (!rate.ok()) return Fail(rate.status().message());
  absl::StatusOr<std::vector<TenantSpec>> tenants =
      ParseTenants(absl::GetFlag(FLAGS_tenants));
  if (!tenants.ok()) return Fail(tenants.status().message());
  absl::StatusOr<GoodputSlo> slo = ParseGoodputSlo(absl::GetFlag(FLAGS_goodput));
  if (!slo.ok()) return Fail(slo.status().message());
  absl::StatusOr<Dataset> dataset = ParseDataset(absl::GetFlag(FLAGS_dataset));
  if (!dataset.ok()) return Fail(dataset.status().message());

  WorkloadOptions w;
  w.dataset = *dataset;
  w.num_requests = absl::GetFlag(FLAGS_num_requests);
  w.input_len = absl::GetFlag(FLAGS_input_len);
  w.output_len = absl::GetFlag(FLAGS_output_len);
  w.range_ratio = absl::GetFlag(FLAGS_range_ratio);
  w.num_prefixes = absl::GetFlag(FLAGS_num_prefixes);
  w.prefix_len = absl::GetFlag(FLAGS_prefix_len);
  w.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  w.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  w.seed = absl::GetFlag(FLAGS_seed);
  w.model = absl::GetFlag(FLAGS_model);
  absl::StatusOr<std::vector<PlannedRequest>> planned =
      BuildWorkload(w, *rate, absl::GetFlag(FLAGS_burstiness), *tenants);
  if (!planned.ok()) return Fail(planned.status().message());

  RunnerOptions run_options;
  run_options.max_concurrency = absl::GetFlag(FLAGS_max_concurrency);
  run_options.show_progress = absl::GetFlag(FLAGS_progress);
  for (const TenantSpec& t : *tenants) run_options.tenant_api_keys.push_back(t.api_key);

  // Connect to every replica before the clock starts, so that channel
  // set-up (TCP + HTTP/2 per backend) stays out of the first requests' TTFT
  // and round_robin has all backends from the first request on.
  absl::StatusOr<int> replicas = (*client)->ConnectReplicas(absl::Seconds(30));
  if (!replicas.ok()) return Fail(replicas.status().message());

  // Warm-up: different prompts (another seed), all at once under the same
  // concurrency limit; failures here abort the run with the reason.
  const int32_t warmups = absl::GetFlag(FLAGS_num_warmups);
  if (warmups > 0) {
    WorkloadOptions ww = w;
    ww.num_requests = warmups;
    ww.seed = w.seed + 0x5eed;
    absl::StatusOr<std::vector<PlannedRequest>> warm =
        BuildWorkload(ww, std::numeric_limits<double>::infinity(), 1.0, {});
    if (!warm.ok()) return Fail(warm.status().message());
    RunnerOptions warm_options = run_options;
    warm_options.tenant_api_keys.clear();
    warm_options.progress_label = "warm-up";
    // Over gRPC whatever --api says: it warms the same engine.
    RunResult warm_result = RunBenchmark(**client, *warm, warm_options);
    for (const RequestRecord& r : warm_result.records) {
      if (!r.success) return Fail(absl::StrCat("warm-up request failed: ", r.error));
    }
  }

  const std::string api = absl::GetFlag(FLAGS_api);
  if (api != "grpc" && api != "http") return Fail("--api must be grpc or http");
  std::string http_host;
  int http_port = 0;
  if (api == "http") {
    const std::string target = absl::GetFlag(FLAGS_http_target);
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos ||
        !absl::SimpleAtoi(target.substr(colon + 1), &http_port)) {
      return Fail("--http_target must be HOST:PORT");
    }
    http_host = target.substr(0, colon);
  }
  auto run = [&](absl::Span<const PlannedRequest> requests, const RunnerOptions& o) {
    if (api == "http") {
      return RunHttpBenchmark(http_host, http_port, client_options.api_key, requests, o);
    }
    return RunBenchmark(**client, requests, o);
  };
  RunResult result = run(*planned, run_options);
  BenchmarkMetrics metrics = ComputeMetrics(result.records, result.duration, *slo);
  std::printf("%s", FormatMetrics(metrics, " Serving Benchmark Result ").c_str());
  // The first distinct error, to make failures actionable.
  for (const RequestRecord& r : result.records) {
    if (!r.success) {
      std::printf("First error: %s\n", r.error.c_str());
      break;
    }
  }

  JsonObjectWriter out;
  out.AddString("date",
                absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone()));
  out.AddRaw("config", ConfigJson(w, *rate, warmups));
  AppendMetricsJson(metrics, &out);
  if (!tenants->empty()) {
    JsonObjectWriter per_tenant;
    for (int32_t i = 0; i < static_cast<int32_t>(tenants->size()); ++i) {
      BenchmarkMetrics tm = ComputeMetrics(result.records, result.duration, *slo, i);
      std::printf(
          "%s",
          FormatMetrics(tm, absl::StrCat(" Tenant ", (*tenants)[i].name, " ")).c_str());
      JsonObjectWriter t;
      if (std::isfinite((*tenants)[i].rate_per_s)) {
        t.AddNumber("request_rate", (*tenants)[i].rate_per_s);
      } else {
        t.AddString("request_rate", "inf");
      }
      AppendMetricsJson(tm, &t);
      per_tenant.AddRaw((*tenants)[i].name, t.Finish());
    }
    out.AddRaw("tenants", per_tenant.Finish());
  }
  const std::string path = absl::GetFlag(FLAGS_result_file);
  if (!path.empty()) {
    std::ofstream file(path);
    file << out.Finish() << "\n";
    if (!file) return Fail(absl::StrCat("cannot write ", path));
  }
  return metrics.failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace openelm::bench

int main(int argc, char** argv) { return openelm::bench::Main(argc, argv); }
