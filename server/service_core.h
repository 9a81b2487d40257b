#ifndef OPENELM_SERVER_SERVICE_CORE_H_
#define OPENELM_SERVER_SERVICE_CORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/llm_engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "openelm/v1/inference.pb.h"
#include "server/metrics.h"
#include "server/request_parser.h"
#include "server/tenants/quota.h"
#include "server/tenants/tenant_registry.h"
#include "server/work_queue.h"

namespace openelm::server {

// Counts live generation calls (gRPC and HTTP) so a drain can wait for them.
// Thread-safe.
class RpcTracker {
 public:
  void Begin();
  void End();
  int active() const;
  // Waits until no call is active or `deadline` passes; true when none is.
  // Blocks: call only from a thread that may block (never a gRPC reaction).
  bool WaitForIdle(absl::Time deadline);

 private:
  mutable absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
};

// What a request is served against once the model is loaded. Immutable once
// published by ServiceCore::SetReady().
struct ServingState {
  LlmEngine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  RequestLimits limits;
  v1::ModelInfo model_info;
};

// The part of the service that both front ends (gRPC InferenceService and
// the OpenAI-compatible HTTP front) share, so that one set of rules holds
// for both: readiness and drain, API-key authentication, per-tenant quota
// admission, rejection counting, the request work queue (tokenizing off
// the transports' threads), request ids (unique across both fronts) and
// the live-call tracker that Drain waits on.
//
// Ownership: does not own the metrics, registry or quotas; they must outlive
// it. Thread-safety: every method may be called from any thread.
class ServiceCore {
 public:
  // `metrics` may be null. Without `tenants` there is no auth; without
  // `quotas` no per-tenant limits.
  ServiceCore(Metrics* metrics, int64_t max_prompt_bytes, TenantRegistry* tenants,
              QuotaManager* quotas, int request_threads = kDefaultRequestThreads);
  ~ServiceCore();

  // Threads that tokenize and admit requests (see WorkQueue), and how many
  // requests may wait for them before new ones get RESOURCE_EXHAUSTED.
  static constexpr int kDefaultRequestThreads = 2;
  static constexpr int kMaxQueuedRequests = 1024;

  // From now on requests run on `engine`. Call once.
  void SetReady(LlmEngine* engine, const Tokenizer* tokenizer,
                const EngineOptions& engine_options);
  void StartDrain();
  bool draining() const;
  // The serving state, or UNAVAILABLE (starting or draining).
  absl::StatusOr<const ServingState*> GetReady() const;
  // The engine once loaded, draining or not (load reports); null before.
  LlmEngine* loaded_engine() const;

  // The caller's tenant from its `authorization: Bearer <key>` / `x-api-key`
  // values; null when there is no registry.
  absl::StatusOr<TenantHandle> Authenticate(
      std::optional<absl::string_view> authorization,
      std::optional<absl::string_view> x_api_key) const;
  // Tags `spec` with the tenant (fair-scheduling account and cache salt) and
  // passes the tenant's quotas; on success `ticket` carries the admission.
  // A refusal where waiting helps sets `retry_after`.
  absl::Status AdmitQuota(const ServingState& ready, const TenantHandle& tenant,
                          GenerateSpec* spec, QuotaTicket* ticket,
                          std::optional<absl::Duration>* retry_after);
  // Counts `status` as a refused request of `api` (per tenant too; "" = not
  // authenticated, which with auth off is the single-user tenant).
  void CountRejection(const absl::Status& status, absl::string_view tenant,
                      ApiLabel api) const;

  // Runs `task` on the request work queue; false when it is full.
  bool Schedule(std::function<void()> task) { return work_->Schedule(std::move(task)); }
  // RESOURCE_EXHAUSTED for a request the full work queue cannot take.
  absl::Status BusyStatus() const;

  RequestId NextRequestId() { return next_request_id_.fetch_add(1); }
  RpcTracker& tracker() { return tracker_; }
  Metrics* metrics() const { return metrics_; }
  int64_t max_prompt_bytes() const { return max_prompt_bytes_; }

 private:
  Metrics* const metrics_;
  const int64_t max_prompt_bytes_;
  TenantRegistry* const tenants_;
  QuotaManager* const quotas_;
  RpcTracker tracker_;
  std::atomic<RequestId> next_request_id_{1};

  mutable absl::Mutex mu_;
  std::unique_ptr<const ServingState> ready_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;

  // Declared last: destroyed (joined) first, while what tasks use still lives.
  std::unique_ptr<WorkQueue> work_;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_SERVICE_CORE_H_
