#ifndef OPENELM_SERVER_METRICS_H_
#define OPENELM_SERVER_METRICS_H_

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/llm_engine.h"

namespace prometheus {
class Counter;
class Exposer;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace openelm::server {

// The server's Prometheus metrics (every name, type and label is listed in
// docs/metrics.md) and the HTTP endpoint that serves them.
//
// Counters and histograms are fed by the engine through EngineObserver (on
// the engine thread) and by the gRPC service (rejections, inter-token gaps).
// The load gauges (queue, running, KV blocks) are read from `load_source` at
// scrape time, so they are current even when the engine is idle.
//
// Thread-safety: every method may be called from any thread; prometheus-cpp
// metric objects are atomic. Owned by the Server; it must outlive the engine
// that reports to it.
// The `api` label of the request metrics: which front end took the request.
enum class ApiLabel { kGrpc = 0, kHttp = 1 };
inline constexpr size_t kNumApiLabels = 2;
// "grpc" / "http"; GenerateSpec::api values map back with ApiFromName.
const char* ApiName(ApiLabel api);
ApiLabel ApiFromName(absl::string_view name);

class Metrics : public EngineObserver {
 public:
  Metrics();
  ~Metrics() override;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Sets where the load gauges come from. Call once, before StartExposer().
  void SetLoadSource(std::function<EngineLoad()> load_source);

  // Serves http://<host>:<port>/metrics; port 0 picks a free port (see
  // port()). kUnavailable when the address cannot be bound.
  absl::Status StartExposer(const std::string& host, int port);
  // The bound port, or -1 when no exposer runs.
  int port() const;
  // Stops the HTTP endpoint (takes about 2 s inside prometheus-cpp).
  // Idempotent.
  void StopExposer();

  // openelm_build_info{cpu, cpu_isa, onednn_isa, weight_dtype,
  // activation_dtype, kv_dtype, matmul} 1: what this process runs on. Call
  // once the model is loaded.
  void SetBuildInfo(const std::map<std::string, std::string>& labels);
  // openelm_model_weight_bytes: the loaded weights as held in memory (in the
  // plan's weight dtype; int8 with its scales). Call once the model is loaded.
  void SetModelWeightBytes(int64_t bytes);

  // The text exposition format of every metric, as /metrics would serve it.
  std::string Serialize() const;

  // EngineObserver (engine thread).
  void OnStep(const StepStats& stats) override;
  void OnRequestFinished(const GenerateSpec& spec, const FinishInfo& info) override;

  // A request refused before it reached the engine (or by Submit), by gRPC
  // code: invalid_argument, resource_exhausted, unavailable, unauthenticated.
  // Other codes are not counted.
  void CountRejected(absl::StatusCode code, ApiLabel api = ApiLabel::kGrpc);
  // The same, also counted per tenant in openelm_tenant_requests_rejected_total
  // (`tenant` "" = not authenticated: label "unauthenticated").
  void CountRejected(absl::StatusCode code, absl::string_view tenant,
                     ApiLabel api = ApiLabel::kGrpc);
  // An access log line dropped because the log's buffer was full.
  void CountAccessLogDropped();
  // The gap between two consecutive output messages of one completion that
  // carried `num_tokens` new tokens: observed once per token, gap / num_tokens.
  void ObserveInterTokenLatency(absl::Duration gap, int num_tokens);

 private:
  class LoadCollectable;
  // Per-tenant series of one tenant label value.
  struct TenantSeries {
    std::array<prometheus::Counter*, 10> finished{};
    prometheus::Counter* rejected_invalid_argument = nullptr;
    prometheus::Counter* rejected_resource_exhausted = nullptr;
    prometheus::Counter* rejected_unavailable = nullptr;
    prometheus::Counter* rejected_unauthenticated = nullptr;
    prometheus::Counter* prompt_tokens = nullptr;
    prometheus::Counter* generated_tokens = nullptr;
    prometheus::Counter* cached_prompt_tokens = nullptr;
    prometheus::Histogram* queue_time = nullptr;
    prometheus::Histogram* ttft = nullptr;
  };
  // The series of `tenant`, created on first use. At most kMaxTenantLabels
  // label values exist; later tenants share the label "other".
  TenantSeries& SeriesFor(absl::string_view tenant);

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<LoadCollectable> load_;

  // Indexed by ApiLabel.
  std::array<prometheus::Histogram*, kNumApiLabels> ttft_{};
  prometheus::Histogram* itl_;
  prometheus::Histogram* tpot_;
  std::array<prometheus::Histogram*, kNumApiLabels> e2e_{};
  prometheus::Histogram* queue_time_;
  prometheus::Histogram* prompt_tokens_hist_;
  prometheus::Histogram* generation_tokens_hist_;
  prometheus::Histogram* step_duration_;
  prometheus::Histogram* step_batch_size_;
  prometheus::Histogram* step_forward_;
  prometheus::Histogram* step_sample_;
  prometheus::Counter* prompt_tokens_total_;
  prometheus::Counter* generated_tokens_total_;
  prometheus::Counter* cached_prompt_tokens_total_;
  prometheus::Counter* preemptions_total_;
  prometheus::Counter* prefix_cache_queries_total_;
  prometheus::Counter* prefix_cache_hits_total_;
  // Indexed by ApiLabel, then FinishReason (kUnspecified maps to kError).
  std::array<std::array<prometheus::Counter*, 10>, kNumApiLabels> finished_{};
  struct RejectedSeries {
    prometheus::Counter* invalid_argument = nullptr;
    prometheus::Counter* resource_exhausted = nullptr;
    prometheus::Counter* unavailable = nullptr;
    prometheus::Counter* unauthenticated = nullptr;
  };
  std::array<RejectedSeries, kNumApiLabels> rejected_{};
  prometheus::Counter* access_log_dropped_;

  prometheus::Family<prometheus::Counter>* tenant_finished_family_;
  prometheus::Family<prometheus::Counter>* tenant_rejected_family_;
  prometheus::Family<prometheus::Counter>* tenant_prompt_tokens_family_;
  prometheus::Family<prometheus::Counter>* tenant_generated_tokens_family_;
  prometheus::Family<prometheus::Counter>* tenant_cached_tokens_family_;
  prometheus::Family<prometheus::Histogram>* tenant_queue_time_family_;
  prometheus::Family<prometheus::Histogram>* tenant_ttft_family_;
  absl::Mutex tenants_mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<TenantSeries>> tenants_
      ABSL_GUARDED_BY(tenants_mu_);

  mutable absl::Mutex exposer_mu_;
  std::unique_ptr<prometheus::Exposer> exposer_ ABSL_GUARDED_BY(exposer_mu_);
  int port_ ABSL_GUARDED_BY(exposer_mu_) = -1;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_METRICS_H_
