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
#include "server/service_core.h"
#include "server/tenants/quota.h"
#include "server/tenants/tenant_registry.h"
#include "server/work_queue.h"

namespace openelm::server {

// The openelm.v1.InferenceService on the gRPC callback API.
//
// Readiness, drain, auth, quotas, the work queue and request ids are the
// ServiceCore's, shared with the HTTP front: every RPC answers UNAVAILABLE
// until ServiceCore::SetReady() and again after StartDrain(), while running
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
// Thread-safety: handlers run on gRPC threads concurrently.
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
  // `core` (readiness, auth, quotas, work queue, ids, tracker; shared with
  // the HTTP front) must outlive the service.
  explicit InferenceService(ServiceCore* core);
  ~InferenceService() override;

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
  using ReadyState = ServingState;

  absl::StatusOr<const ReadyState*> GetReady() const { return core_->GetReady(); }
  // Counts `status` as a rejection (per tenant too; "" = not authenticated,
  // which with auth off is the single-user tenant) and converts it.
  grpc::Status Reject(const absl::Status& status, absl::string_view tenant = "") const;
  // The caller's tenant from its metadata; null when there is no registry.
  absl::StatusOr<TenantHandle> Authenticate(
      const grpc::CallbackServerContext& context) const;
  absl::Status BusyStatus() const { return core_->BusyStatus(); }
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
  // Runs `work` on the work queue; when the queue is full, finishes
  // `reactor` with RESOURCE_EXHAUSTED instead (counted as a rejection).
  template <typename Reactor>
  void Offload(Reactor* reactor, std::function<void()> work);
  ReactorEnv EnvFor(const ReadyState* ready);

  ServiceCore* const core_;
  int64_t max_stream_backlog_bytes_ = kMaxStreamBacklogBytes;
  int64_t max_request_bytes_ = int64_t{4} << 20;
  AccessLog* access_log_ = nullptr;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_INFERENCE_SERVICE_H_
