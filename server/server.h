#ifndef OPENELM_SERVER_SERVER_H_
#define OPENELM_SERVER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/llm_engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/http/http_server.h"
#include "server/inference_service.h"
#include "server/metrics.h"
#include "server/options.h"
#include "server/service_core.h"
#include "server/tenants/quota.h"
#include "server/tenants/tenant_registry.h"

namespace openelm::server {

// The whole serving process minus flag parsing and signals: the gRPC server
// (InferenceService, grpc.health.v1, reflection), the engine with its model,
// the tokenizer and the Prometheus metrics.
//
// Start-up (Create): gRPC and the HTTP API listen first with health
// NOT_SERVING (every InferenceService RPC answers UNAVAILABLE, every HTTP
// request 503), then the checkpoint is loaded,
// the engine created, the metrics endpoint started and one short warm-up
// generation run; only then are health SERVING and the service ready.
//
// Drain(timeout): health NOT_SERVING and new RPCs UNAVAILABLE at once; running
// requests may finish until `timeout`; then the engine shuts down (requests
// still running end with UNAVAILABLE), gRPC shuts down, and the metrics
// endpoint stops.
//
// Tenancy: every generation RPC authenticates (when the tenants file enables
// auth) and passes per-tenant quotas before it reaches the engine; requests
// carry their tenant as fair-scheduling account and prefix-cache salt.
//
// Ownership: owns everything above. Thread-safety: Drain() and the accessors
// may be called from any thread; Drain() blocks (never call it from a gRPC
// reaction).
class Server {
 public:
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options);
  ~Server();  // Drain(0) unless drained already.
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound gRPC port (useful with options.port == 0).
  int port() const { return port_; }
  // The bound metrics port, or -1 when disabled.
  int metrics_port() const { return metrics_port_; }
  // The bound HTTP API port, or -1 when disabled.
  int http_port() const;
  std::string address() const;

  // See the class comment. Idempotent; a second call returns at once.
  void Drain(absl::Duration timeout);

  LlmEngine& engine() { return *engine_; }
  Metrics& metrics() { return *metrics_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  bool draining() const { return core_->draining(); }
  // Tenants and API keys (single-user when options.tenants_config is empty).
  // Reload() on it is the SIGHUP entry point; reloads push new fair-queue
  // weights to the engine.
  TenantRegistry& tenants() { return *tenants_; }
  QuotaManager& quotas() { return *quotas_; }

 private:
  explicit Server(ServerOptions options);
  absl::Status Start();
  absl::Status StartTenants();
  absl::Status StartGrpc();
  absl::Status LoadEngine();
  absl::Status WarmUp();
  void SetHealth(bool serving);

  const ServerOptions options_;
  int port_ = 0;
  int metrics_port_ = -1;

  // Destroyed bottom-up: gRPC before the service, the engine before the
  // model-independent pieces it reports to.
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<AccessLog> access_log_;  // null with --access_log=false
  std::unique_ptr<TenantRegistry> tenants_;
  std::unique_ptr<QuotaManager> quotas_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<LlmEngine> engine_;
  std::unique_ptr<ServiceCore> core_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  // Before the core: its calls report to the core's tracker.
  std::unique_ptr<HttpServer> http_;
  // Destroyed first: its thread calls reload listeners that use the engine.
  std::unique_ptr<ConfigFileWatcher> tenants_watcher_;

  absl::Mutex drain_mu_;
  bool drained_ ABSL_GUARDED_BY(drain_mu_) = false;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_SERVER_H_
