#include "server/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace openelm::server {
namespace {

// Latencies from 5 ms to 60 s; 2 s is a bucket edge so a "TTFT < 2 s" SLO can
// be read off exactly.
const std::vector<double>& LatencyBuckets() {
  static const auto* buckets = new std::vector<double>{
      0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.5, 0.75,
      1.0,   1.5,  2.0,   3.0,  5.0,   7.5, 10.0, 20.0, 30.0, 60.0};
  return *buckets;
}

// Per-token and per-step durations: 1 ms .. 5 s (2 s included).
const std::vector<double>& ShortLatencyBuckets() {
  static const auto* buckets =
      new std::vector<double>{0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1,
                              0.15,  0.2,    0.3,   0.5,  0.75, 1.0,  2.0,  5.0};
  return *buckets;
}

// Token counts up to the 2048-token context.
const std::vector<double>& TokenBuckets() {
  static const auto* buckets =
      new std::vector<double>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1536, 2048};
  return *buckets;
}

const std::vector<double>& BatchSizeBuckets() {
  static const auto* buckets =
      new std::vector<double>{1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256};
  return *buckets;
}

prometheus::Histogram* AddHistogram(prometheus::Registry& registry,
                                    const std::string& name, const std::string& help,
                                    const std::vector<double>& buckets) {
  return &prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add(
      {}, buckets);
}

prometheus::Counter* AddCounter(prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// Bound on distinct tenant label values (tenant ids come from the tenants
// file; this only guards against a huge file).
constexpr size_t kMaxTenantLabels = 256;

// Label values of openelm_requests_finished_total, indexed by FinishReason.
constexpr const char* kFinishLabels[] = {
    "error",  // kUnspecified (should not happen; counted as error)
    "eos",       "length",   "stop_sequence", "stop_token", "context_length",
    "cancelled", "deadline", "error",         "shutdown"};

}  // namespace

const char* ApiName(ApiLabel api) { return api == ApiLabel::kHttp ? "http" : "grpc"; }

ApiLabel ApiFromName(absl::string_view name) {
  return name == "http" ? ApiLabel::kHttp : ApiLabel::kGrpc;
}

// Serves the load gauges from a snapshot taken at scrape time.
class Metrics::LoadCollectable : public prometheus::Collectable {
 public:
  void SetSource(std::function<EngineLoad()> source) {
    absl::MutexLock lock(&mu_);
    source_ = std::move(source);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    EngineLoad load;
    {
      absl::MutexLock lock(&mu_);
      if (source_) load = source_();
    }
    const double ratio =
        load.num_blocks > 0
            ? 1.0 - static_cast<double>(load.num_free_blocks) / load.num_blocks
            : 0.0;
    return {
        Gauge("openelm_requests_waiting",
              "Requests queued and not yet admitted to a step.", load.num_waiting),
        Gauge("openelm_requests_running", "Requests admitted and holding KV blocks.",
              load.num_running),
        Gauge("openelm_kv_cache_usage_ratio",
              "Fraction of KV cache blocks in use (0..1).", ratio),
        Gauge("openelm_kv_cache_free_blocks", "KV cache blocks free.",
              load.num_free_blocks),
        Gauge("openelm_kv_cache_blocks_total", "KV cache blocks in the pool.",
              load.num_blocks),
        Gauge("openelm_kv_cache_pinned_blocks",
              "KV cache blocks held by pinned shared prefixes (never free).",
              load.num_pinned_blocks),
    };
  }

 private:
  static prometheus::MetricFamily Gauge(const char* name, const char* help,
                                        double value) {
    prometheus::MetricFamily family;
    family.name = name;
    family.help = help;
    family.type = prometheus::MetricType::Gauge;
    prometheus::ClientMetric metric;
    metric.gauge.value = value;
    family.metric.push_back(std::move(metric));
    return family;
  }

  mutable absl::Mutex mu_;
  std::function<EngineLoad()> source_ ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      load_(std::make_shared<LoadCollectable>()) {
  prometheus::Registry& r = *registry_;
  auto& ttft = prometheus::BuildHistogram()
                   .Name("openelm_time_to_first_token_seconds")
                   .Help("Arrival to first generated token, per request, by API.")
                   .Register(r);
  itl_ = AddHistogram(r, "openelm_inter_token_latency_seconds",
                      "Gap between consecutive streamed tokens of a completion.",
                      ShortLatencyBuckets());
  tpot_ = AddHistogram(r, "openelm_time_per_output_token_seconds",
                       "Per request: (finish - first token) / (output tokens - 1).",
                       ShortLatencyBuckets());
  auto& e2e = prometheus::BuildHistogram()
                  .Name("openelm_e2e_request_latency_seconds")
                  .Help("Arrival to finish, per request, by API.")
                  .Register(r);
  for (size_t api = 0; api < kNumApiLabels; ++api) {
    const char* name = ApiName(static_cast<ApiLabel>(api));
    ttft_[api] = &ttft.Add({{"api", name}}, LatencyBuckets());
    e2e_[api] = &e2e.Add({{"api", name}}, LatencyBuckets());
  }
  queue_time_ =
      AddHistogram(r, "openelm_queue_time_seconds",
                   "Arrival to first scheduled step, per request.", LatencyBuckets());
  prompt_tokens_hist_ =
      AddHistogram(r, "openelm_request_prompt_tokens",
                   "Prompt length per finished request.", TokenBuckets());
  generation_tokens_hist_ = AddHistogram(
      r, "openelm_request_generation_tokens",
      "Generated tokens per finished request (all completions).", TokenBuckets());
  step_duration_ =
      AddHistogram(r, "openelm_step_duration_seconds",
                   "Duration of one engine step (schedule + forward + sample).",
                   ShortLatencyBuckets());
  step_forward_ =
      AddHistogram(r, "openelm_step_forward_seconds",
                   "Model forward pass of one engine step.", ShortLatencyBuckets());
  step_sample_ = AddHistogram(r, "openelm_step_sample_seconds",
                              "Sampling and output bookkeeping of one engine step.",
                              ShortLatencyBuckets());
  step_batch_size_ =
      AddHistogram(r, "openelm_step_batch_size", "Sequences (rows) in one engine step.",
                   BatchSizeBuckets());
  prompt_tokens_total_ =
      AddCounter(r, "openelm_prompt_tokens_total", "Prompt tokens of finished requests.");
  generated_tokens_total_ = AddCounter(r, "openelm_generated_tokens_total",
                                       "Tokens generated (all completions).");
  cached_prompt_tokens_total_ = AddCounter(r, "openelm_cached_prompt_tokens_total",
                                           "Prompt tokens served from the prefix cache.");
  preemptions_total_ =
      AddCounter(r, "openelm_preemptions_total",
                 "Requests preempted for lack of KV blocks (recomputed later).");
  prefix_cache_queries_total_ =
      AddCounter(r, "openelm_prefix_cache_queries_total",
                 "Prompt tokens looked up in the prefix cache.");
  prefix_cache_hits_total_ = AddCounter(r, "openelm_prefix_cache_hits_total",
                                        "Prompt tokens found in the prefix cache.");

  auto& finished = prometheus::BuildCounter()
                       .Name("openelm_requests_finished_total")
                       .Help("Requests finished, by API and finish reason.")
                       .Register(r);
  for (size_t api = 0; api < kNumApiLabels; ++api) {
    const char* name = ApiName(static_cast<ApiLabel>(api));
    for (size_t i = 0; i < finished_[api].size(); ++i) {
      finished_[api][i] =
          &finished.Add({{"api", name}, {"finish_reason", kFinishLabels[i]}});
    }
  }
  auto& rejected = prometheus::BuildCounter()
                       .Name("openelm_requests_rejected_total")
                       .Help("Requests refused before generation, by API and reason.")
                       .Register(r);
  for (size_t api = 0; api < kNumApiLabels; ++api) {
    const std::string name = ApiName(static_cast<ApiLabel>(api));
    RejectedSeries& series = rejected_[api];
    series.invalid_argument =
        &rejected.Add({{"api", name}, {"reason", "invalid_argument"}});
    series.resource_exhausted =
        &rejected.Add({{"api", name}, {"reason", "resource_exhausted"}});
    series.unavailable = &rejected.Add({{"api", name}, {"reason", "unavailable"}});
    series.unauthenticated =
        &rejected.Add({{"api", name}, {"reason", "unauthenticated"}});
  }
  access_log_dropped_ =
      &prometheus::BuildCounter()
           .Name("openelm_access_log_dropped_total")
           .Help("Access log lines dropped because the log's buffer was full.")
           .Register(r)
           .Add({});

  // Per-tenant families (label "tenant"); series appear on a tenant's first
  // request.
  tenant_finished_family_ = &prometheus::BuildCounter()
                                 .Name("openelm_tenant_requests_finished_total")
                                 .Help("Requests finished, by tenant and finish reason.")
                                 .Register(r);
  tenant_rejected_family_ = &prometheus::BuildCounter()
                                 .Name("openelm_tenant_requests_rejected_total")
                                 .Help(
                                     "Requests refused before generation, by tenant "
                                     "and reason.")
                                 .Register(r);
  tenant_prompt_tokens_family_ =
      &prometheus::BuildCounter()
           .Name("openelm_tenant_prompt_tokens_total")
           .Help("Prompt tokens of finished requests, by tenant.")
           .Register(r);
  tenant_generated_tokens_family_ = &prometheus::BuildCounter()
                                         .Name("openelm_tenant_generated_tokens_total")
                                         .Help("Tokens generated, by tenant.")
                                         .Register(r);
  tenant_cached_tokens_family_ =
      &prometheus::BuildCounter()
           .Name("openelm_tenant_cached_prompt_tokens_total")
           .Help("Prompt tokens served from the prefix cache, by tenant.")
           .Register(r);
  tenant_queue_time_family_ = &prometheus::BuildHistogram()
                                   .Name("openelm_tenant_queue_time_seconds")
                                   .Help("Arrival to first scheduled, by tenant.")
                                   .Register(r);
  tenant_ttft_family_ = &prometheus::BuildHistogram()
                             .Name("openelm_tenant_time_to_first_token_seconds")
                             .Help("Arrival to first token, by tenant.")
                             .Register(r);
}

Metrics::TenantSeries& Metrics::SeriesFor(absl::string_view tenant) {
  std::string label = tenant.empty() ? std::string("default") : std::string(tenant);
  absl::MutexLock lock(&tenants_mu_);
  if (!tenants_.contains(label) && tenants_.size() >= kMaxTenantLabels) label = "other";
  std::unique_ptr<TenantSeries>& series = tenants_[label];
  if (series == nullptr) {
    series = std::make_unique<TenantSeries>();
    for (size_t i = 0; i < series->finished.size(); ++i) {
      series->finished[i] = &tenant_finished_family_->Add(
          {{"tenant", label}, {"finish_reason", kFinishLabels[i]}});
    }
    series->rejected_invalid_argument = &tenant_rejected_family_->Add(
        {{"tenant", label}, {"reason", "invalid_argument"}});
    series->rejected_resource_exhausted = &tenant_rejected_family_->Add(
        {{"tenant", label}, {"reason", "resource_exhausted"}});
    series->rejected_unavailable =
        &tenant_rejected_family_->Add({{"tenant", label}, {"reason", "unavailable"}});
    series->rejected_unauthenticated =
        &tenant_rejected_family_->Add({{"tenant", label}, {"reason", "unauthenticated"}});
    series->prompt_tokens = &tenant_prompt_tokens_family_->Add({{"tenant", label}});
    series->generated_tokens = &tenant_generated_tokens_family_->Add({{"tenant", label}});
    series->cached_prompt_tokens =
        &tenant_cached_tokens_family_->Add({{"tenant", label}});
    series->queue_time =
        &tenant_queue_time_family_->Add({{"tenant", label}}, LatencyBuckets());
    series->ttft = &tenant_ttft_family_->Add({{"tenant", label}}, LatencyBuckets());
  }
  return *series;
}

Metrics::~Metrics() { StopExposer(); }

void Metrics::SetLoadSource(std::function<EngineLoad()> load_source) {
  load_->SetSource(std::move(load_source));
}

absl::Status Metrics::StartExposer(const std::string& host, int port) {
  absl::MutexLock lock(&exposer_mu_);
  if (exposer_ != nullptr) {
    return absl::FailedPreconditionError("metrics exposer already running");
  }
  // IPv6 literals need brackets in civetweb's listening_ports syntax.
  const std::string address = host.find(':') != std::string::npos
                                  ? absl::StrCat("[", host, "]:", port)
                                  : absl::StrCat(host, ":", port);
  // NOTE: prometheus-cpp (civetweb) reports bind failures by throwing; this is
  // the only place the server catches a third-party exception.
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(load_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? port : ports.front();
  return absl::OkStatus();
}

int Metrics::port() const {
  absl::MutexLock lock(&exposer_mu_);
  return port_;
}

void Metrics::StopExposer() {
  std::unique_ptr<prometheus::Exposer> exposer;
  {
    absl::MutexLock lock(&exposer_mu_);
    exposer = std::move(exposer_);
    port_ = -1;
  }
  exposer.reset();  // slow (civetweb joins its threads); done outside the lock
}

std::string Metrics::Serialize() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> gauges = load_->Collect();
  families.insert(families.end(), gauges.begin(), gauges.end());
  return prometheus::TextSerializer().Serialize(families);
}

void Metrics::OnStep(const StepStats& stats) {
  step_duration_->Observe(Seconds(stats.duration));
  step_batch_size_->Observe(stats.num_rows);
  if (stats.num_rows > 0) {  // steps that ran the model
    step_forward_->Observe(Seconds(stats.forward_duration));
    step_sample_->Observe(Seconds(stats.sample_duration));
  }
  if (stats.num_preemptions > 0) preemptions_total_->Increment(stats.num_preemptions);
  if (stats.prefix_cache_queries > 0) {
    prefix_cache_queries_total_->Increment(stats.prefix_cache_queries);
  }
  if (stats.prefix_cache_hits > 0) {
    prefix_cache_hits_total_->Increment(stats.prefix_cache_hits);
  }
}

void Metrics::OnRequestFinished(const GenerateSpec& spec, const FinishInfo& info) {
  TenantSeries& tenant = SeriesFor(spec.tenant);
  const RequestTimings& t = info.timings;
  // A request that finished with several completions counts under the reason
  // of its first completion; one with none (failed before any) as error.
  FinishReason reason = FinishReason::kError;
  if (!info.completions.empty()) reason = info.completions.front().reason;
  const size_t index = static_cast<size_t>(reason);
  const size_t api = static_cast<size_t>(ApiFromName(spec.api));
  finished_[api][index < finished_[api].size() ? index : 0]->Increment();
  tenant.finished[index < tenant.finished.size() ? index : 0]->Increment();
  tenant.prompt_tokens->Increment(info.num_prompt_tokens);
  tenant.generated_tokens->Increment(info.num_output_tokens);
  tenant.cached_prompt_tokens->Increment(info.num_cached_tokens);

  prompt_tokens_total_->Increment(info.num_prompt_tokens);
  generated_tokens_total_->Increment(info.num_output_tokens);
  cached_prompt_tokens_total_->Increment(info.num_cached_tokens);
  prompt_tokens_hist_->Observe(info.num_prompt_tokens);
  generation_tokens_hist_->Observe(info.num_output_tokens);

  const bool arrived = t.arrival != absl::InfinitePast() && t.arrival != absl::Time();
  if (arrived && t.finished > t.arrival) {
    e2e_[api]->Observe(Seconds(t.finished - t.arrival));
  }
  if (arrived && t.first_scheduled >= t.arrival) {
    queue_time_->Observe(Seconds(t.first_scheduled - t.arrival));
    tenant.queue_time->Observe(Seconds(t.first_scheduled - t.arrival));
  }
  if (arrived && info.num_output_tokens > 0 && t.first_token >= t.arrival) {
    ttft_[api]->Observe(Seconds(t.first_token - t.arrival));
    tenant.ttft->Observe(Seconds(t.first_token - t.arrival));
  }
  if (info.num_output_tokens > 1 && t.finished >= t.first_token) {
    tpot_->Observe(Seconds(t.finished - t.first_token) / (info.num_output_tokens - 1));
  }
}

void Metrics::CountAccessLogDropped() { access_log_dropped_->Increment(); }

void Metrics::CountRejected(absl::StatusCode code, ApiLabel api) {
  const RejectedSeries& series = rejected_[static_cast<size_t>(api)];
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      series.invalid_argument->Increment();
      break;
    case absl::StatusCode::kResourceExhausted:
      series.resource_exhausted->Increment();
      break;
    case absl::StatusCode::kUnavailable:
      series.unavailable->Increment();
      break;
    case absl::StatusCode::kUnauthenticated:
      series.unauthenticated->Increment();
      break;
    default:
      break;
  }
}

void Metrics::CountRejected(absl::StatusCode code, absl::string_view tenant,
                            ApiLabel api) {
  CountRejected(code, api);
  TenantSeries& series = SeriesFor(tenant.empty() ? "unauthenticated" : tenant);
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
      series.rejected_invalid_argument->Increment();
      break;
    case absl::StatusCode::kResourceExhausted:
      series.rejected_resource_exhausted->Increment();
      break;
    case absl::StatusCode::kUnavailable:
      series.rejected_unavailable->Increment();
      break;
    case absl::StatusCode::kUnauthenticated:
      series.rejected_unauthenticated->Increment();
      break;
    default:
      break;
  }
}

void Metrics::ObserveInterTokenLatency(absl::Duration gap, int num_tokens) {
  if (num_tokens <= 0) return;
  const double per_token = Seconds(gap) / num_tokens;
  for (int i = 0; i < num_tokens; ++i) itl_->Observe(per_token);
}

void Metrics::SetBuildInfo(const std::map<std::string, std::string>& labels) {
  prometheus::BuildGauge()
      .Name("openelm_build_info")
      .Help(
          "Always 1; the labels say what this process runs: CPU, ISA level of the "
          "kernels, "
          "oneDNN's ISA, dtypes and matmul backend of the execution plan.")
      .Register(*registry_)
      .Add(labels)
      .Set(1);
}

void Metrics::SetModelWeightBytes(int64_t bytes) {
  prometheus::BuildGauge()
      .Name("openelm_model_weight_bytes")
      .Help(
          "Bytes of model weights held in memory, in the execution plan's weight "
          "dtype (int8: with the scales).")
      .Register(*registry_)
      .Add({})
      .Set(static_cast<double>(bytes));
}

}  // namespace openelm::server
