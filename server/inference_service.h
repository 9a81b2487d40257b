#ifndef OPENELM_SERVER_INFERENCE_SERVICE_H_
#define OPENELM_SERVER_INFERENCE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/llm_engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "server/generate_reactor.h"
#include "server/metrics.h"
#include "server/request_parser.h"
#include "server/tenants/quota.h"
#include "server/tenants/tenant_registry.h"
#include "server/work_queue.h"

namespace openelm::server {

// The openelm.v1.InferenceService on the gRPC callback API.
//
// Starts "not ready" (every RPC answers UNAVAILABLE) until SetReady() hands it
// the engine; StartDrain() makes new RPCs UNAVAILABLE again while running
// ones continue. Generation handlers validate and tokenize on the gRPC thread
// (bounded work), then submit to the engine and return a reactor; nothing
// here blocks or waits for the engine.
//
// Tenancy: with a TenantRegistry, every RPC first authenticates its API key
// (`authorization: Bearer <key>` or `x-api-key` metadata; UNAUTHENTICATED
// otherwise, unless auth is off). Generation RPCs then pass the tenant's
// quotas (QuotaManager::Admit) before anything reaches the engine, so a
// refused request never takes a KV block; refusals are RESOURCE_EXHAUSTED
// with a `retry-after-ms` trailer when waiting helps. Admitted requests run
// with spec.tenant = spec.cache_salt = the tenant id.
//
// Ownership: does not own the engine, tokenizer, metrics, registry or
// quotas; they, and this service, must outlive the grpc::Server it is
// registered with.
// Thread-safety: handlers run on gRPC threads concurrently; SetReady and
// StartDrain may be called from any thread.
// The methods whose requests carry strings are registered raw (bytes in,
// bytes out; see proto_io.h) so that unparsable requests get our statuses.
using InferenceServiceBase = v1::InferenceService::WithRawCallbackMethod_StreamGenerate<
    v1::InferenceService::WithRawCallbackMethod_Generate<
        v1::InferenceService::WithRawCallbackMethod_StreamChat<
            v1::InferenceService::WithRawCallbackMethod_Chat<
                v1::InferenceService::WithRawCallbackMethod_Tokenize<
                    v1::InferenceService::WithRawCallbackMethod_GetModel<
                        v1::InferenceService::CallbackService>>>>>>;

class InferenceService final : public InferenceServiceBase {
 public:
  // `metrics` may be null. Without `tenants` there is no auth; without
  // `quotas` no per-tenant limits.
  InferenceService(Metrics* metrics, int64_t max_prompt_bytes,
                   TenantRegistry* tenants = nullptr, QuotaManager* quotas = nullptr,
                   int request_threads = kDefaultRequestThreads);
  ~InferenceService() override;

  // Threads that tokenize and admit requests (see WorkQueue), and how many
  // requests may wait for them before new ones get RESOURCE_EXHAUSTED.
  static constexpr int kDefaultRequestThreads = 2;
  static constexpr int kMaxQueuedRequests = 1024;

  // From now on requests run on `engine`. Call once. `engine_options` are
  // the options the engine was created with (for model info).
  void SetReady(LlmEngine* engine, const Tokenizer* tokenizer,
                const EngineOptions& engine_options);
  void StartDrain();
  bool draining() const;
  // Options of the generation reactors; call before the server starts.
  // `access_log` (null = none) must outlive every reactor.
  void SetStreamOptions(int64_t max_stream_backlog_bytes, AccessLog* access_log) {
    max_stream_backlog_bytes_ = max_stream_backlog_bytes;
    access_log_ = access_log;
  }
  // The largest request message accepted by the raw methods (ServerOptions::
  // max_message_bytes); larger ones get RESOURCE_EXHAUSTED, counted.
  void SetMaxRequestBytes(int64_t max_request_bytes) {
    max_request_bytes_ = max_request_bytes;
  }

  // Live generation RPCs (for Drain()).
  RpcTracker& tracker() { return tracker_; }

  // Raw: requests are GenerateRequest / ChatRequest / TokenizeRequest /
  // GetModelRequest bytes, responses GenerateResponse / TokenizeResponse /
  // ModelInfo bytes.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StreamGenerate(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StreamChat(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Chat(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetServerLoad(grpc::CallbackServerContext* context,
                                          const v1::GetServerLoadRequest* request,
                                          v1::ServerLoad* response) override;

 private:
  // Immutable once published by SetReady().
  struct ReadyState {
    LlmEngine* engine = nullptr;
    const Tokenizer* tokenizer = nullptr;
    RequestLimits limits;
    v1::ModelInfo model_info;
  };

  // The ready state, or UNAVAILABLE (starting or draining).
  absl::StatusOr<const ReadyState*> GetReady() const;
  // Counts `status` as a rejection (per tenant too; "" = not authenticated,
  // which with auth off is the single-user tenant) and converts it.
  grpc::Status Reject(const absl::Status& status, absl::string_view tenant = "") const;
  // The caller's tenant from its metadata; null when there is no registry.
  absl::StatusOr<TenantHandle> Authenticate(
      const grpc::CallbackServerContext& context) const;
  // Builds the spec and admits it against the (authenticated) tenant's
  // quotas; on success `spec` carries the tenant and `ticket` the admission.
  // A quota refusal adds the retry-after-ms trailer to `context`.
  template <typename Request>
  absl::Status Admit(const ReadyState& ready, grpc::CallbackServerContext* context,
                     const TenantHandle& tenant, const Request& request,
                     GenerateSpec* spec, QuotaTicket* ticket);
  // Validation + deadline for a generation request.
  template <typename Request>
  absl::StatusOr<GenerateSpec> MakeSpec(const ReadyState& ready,
                                        grpc::CallbackServerContext* context,
                                        const Request& request) const;
  template <typename Request>
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StartStream(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request);
  template <typename Request>
  grpc::ServerUnaryReactor* StartUnary(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response);
  // The admission sequence shared by both reactor kinds: readiness here,
  // then parsing, auth, validation (tokenizing), quota and Submit on the
  // work queue, off the gRPC thread. Finishes `reactor` on any failure.
  // `raw` is gRPC's and stays valid until the reactor is done.
  template <typename Request, typename Reactor>
  Reactor* AdmitAndSubmit(Reactor* reactor,
                          const absl::StatusOr<const ReadyState*>& ready,
                          grpc::CallbackServerContext* context,
                          const grpc::ByteBuffer* raw);
  template <typename Request, typename Reactor>
  void AdmitAndSubmitNow(Reactor* reactor, const ReadyState& ready,
                         grpc::CallbackServerContext* context,
                         const grpc::ByteBuffer& raw);
  // The preamble of the small unary RPCs: ready, then authenticated. On
  // failure finishes `reactor` with the (counted) refusal and returns false.
  bool StartUnaryCall(grpc::CallbackServerContext* context,
                      grpc::ServerUnaryReactor* reactor, const ReadyState** ready,
                      std::string* tenant);
  // RESOURCE_EXHAUSTED for a request the full work queue cannot take.
  absl::Status BusyStatus() const;
  // Runs `work` on the work queue; when the queue is full, finishes
  // `reactor` with RESOURCE_EXHAUSTED instead (counted as a rejection).
  template <typename Reactor>
  void Offload(Reactor* reactor, std::function<void()> work);
  ReactorEnv EnvFor(const ReadyState* ready);

  Metrics* const metrics_;
  const int64_t max_prompt_bytes_;
  TenantRegistry* const tenants_;
  QuotaManager* const quotas_;
  RpcTracker tracker_;
  int64_t max_stream_backlog_bytes_ = kMaxStreamBacklogBytes;
  int64_t max_request_bytes_ = int64_t{4} << 20;
  AccessLog* access_log_ = nullptr;
  std::atomic<RequestId> next_request_id_{1};

  mutable absl::Mutex mu_;
  std::unique_ptr<const ReadyState> ready_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;

  // Declared last: destroyed (joined) first, while what tasks use still lives.
  std::unique_ptr<WorkQueue> work_;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_INFERENCE_SERVICE_H_
