#include "server/inference_service.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/base/status_macros.h"
#include "server/proto_io.h"
#include "server/status_util.h"

namespace openelm::server {
namespace {

// gRPC's "no deadline" is a time_point far in the future; treat anything over
// a year away as none.
absl::Time RequestDeadline(const grpc::CallbackServerContext& context, absl::Time now) {
  const absl::Time deadline = absl::FromChrono(context.deadline());
  if (deadline > now + absl::Hours(24 * 365)) return absl::InfiniteFuture();
  return deadline;
}

absl::StatusOr<GenerateSpec> Parse(const v1::GenerateRequest& request,
                                   const Tokenizer& tokenizer,
                                   const RequestLimits& limits) {
  return ParseGenerateRequest(request, tokenizer, limits);
}

absl::StatusOr<GenerateSpec> Parse(const v1::ChatRequest& request,
                                   const Tokenizer& tokenizer,
                                   const RequestLimits& limits) {
  return ParseChatRequest(request, tokenizer, limits);
}

std::optional<absl::string_view> MetadataValue(const grpc::CallbackServerContext& context,
                                               absl::string_view key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

}  // namespace

InferenceService::InferenceService(ServiceCore* core) : core_(core) {}

InferenceService::~InferenceService() = default;

template <typename Reactor>
void InferenceService::Offload(Reactor* reactor, std::function<void()> work) {
  if (!core_->Schedule(std::move(work))) {
    reactor->Finish(Reject(BusyStatus()));
  }
}

absl::StatusOr<TenantHandle> InferenceService::Authenticate(
    const grpc::CallbackServerContext& context) const {
  return core_->Authenticate(MetadataValue(context, "authorization"),
                             MetadataValue(context, "x-api-key"));
}

template <typename Request>
absl::Status InferenceService::Admit(const ReadyState& ready,
                                     grpc::CallbackServerContext* context,
                                     const TenantHandle& tenant, const Request& request,
                                     GenerateSpec* spec, QuotaTicket* ticket) {
  OPENELM_ASSIGN_OR_RETURN(*spec, MakeSpec(ready, context, request));
  spec->api = ApiName(ApiLabel::kGrpc);
  std::optional<absl::Duration> retry;
  absl::Status admitted = core_->AdmitQuota(ready, tenant, spec, ticket, &retry);
  if (!admitted.ok() && retry.has_value()) {
    context->AddTrailingMetadata(std::string(kRetryAfterMetadataKey),
                                 absl::StrCat(absl::ToInt64Milliseconds(*retry)));
  }
  return admitted;
}

grpc::Status InferenceService::Reject(const absl::Status& status,
                                      absl::string_view tenant) const {
  core_->CountRejection(status, tenant, ApiLabel::kGrpc);
  return ToGrpcStatus(status);
}

ReactorEnv InferenceService::EnvFor(const ReadyState* ready) {
  ReactorEnv env;
  env.engine = ready == nullptr ? nullptr : ready->engine;
  env.tokenizer = ready == nullptr ? nullptr : ready->tokenizer;
  env.metrics = core_->metrics();
  env.tracker = &core_->tracker();
  env.max_stream_backlog_bytes = max_stream_backlog_bytes_;
  env.access_log = access_log_;
  return env;
}

template <typename Request>
absl::StatusOr<GenerateSpec> InferenceService::MakeSpec(
    const ReadyState& ready, grpc::CallbackServerContext* context,
    const Request& request) const {
  OPENELM_ASSIGN_OR_RETURN(GenerateSpec spec,
                           Parse(request, *ready.tokenizer, ready.limits));
  const absl::Time now = absl::Now();
  spec.deadline = EngineDeadline(RequestDeadline(*context, now), now);
  return spec;
}

template <typename Request, typename Reactor>
Reactor* InferenceService::AdmitAndSubmit(Reactor* reactor,
                                          const absl::StatusOr<const ReadyState*>& ready,
                                          grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* raw) {
  if (!ready.ok()) {
    reactor->FinishNow(Reject(ready.status()));
    return reactor;
  }
  const ReadyState* state = *ready;
  if (!core_->Schedule([this, reactor, state, context, raw] {
        AdmitAndSubmitNow<Request>(reactor, *state, context, *raw);
      })) {
    reactor->FinishNow(Reject(BusyStatus()));
  }
  return reactor;
}

template <typename Request, typename Reactor>
void InferenceService::AdmitAndSubmitNow(Reactor* reactor, const ReadyState& ready,
                                         grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer& raw) {
  if (context->IsCancelled()) {
    reactor->FinishNow(
        ToGrpcStatus(absl::CancelledError("cancelled before it was admitted")));
    return;
  }
  absl::StatusOr<TenantHandle> authenticated = Authenticate(*context);
  if (!authenticated.ok()) {
    reactor->FinishNow(Reject(authenticated.status()));
    return;
  }
  const std::string tenant = *authenticated != nullptr ? (*authenticated)->id : "";
  reactor->NoteTenant(tenant);
  Request request;
  if (absl::Status parsed = ParseRequest(raw, max_request_bytes_, &request);
      !parsed.ok()) {
    reactor->FinishNow(Reject(parsed, tenant));
    return;
  }
  GenerateSpec spec;
  QuotaTicket ticket;
  absl::Status admitted = Admit(ready, context, *authenticated, request, &spec, &ticket);
  if (!admitted.ok()) {
    reactor->FinishNow(Reject(admitted, tenant));
    return;
  }
  if (absl::Status s = reactor->Submit(std::move(spec), std::move(ticket)); !s.ok()) {
    reactor->FinishNow(Reject(s, tenant));
  }
}

template <typename Request>
grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::StartStream(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  absl::StatusOr<const ReadyState*> ready = GetReady();
  auto* reactor = new GenerateStreamReactor(
      EnvFor(ready.ok() ? *ready : nullptr), core_->NextRequestId(),
      std::is_same_v<Request, v1::ChatRequest> ? "StreamChat" : "StreamGenerate",
      access_log_ != nullptr ? context->peer() : std::string(), context);
  return AdmitAndSubmit<Request>(reactor, ready, context, request);
}

template <typename Request>
grpc::ServerUnaryReactor* InferenceService::StartUnary(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  absl::StatusOr<const ReadyState*> ready = GetReady();
  auto* reactor = new GenerateUnaryReactor(
      EnvFor(ready.ok() ? *ready : nullptr), core_->NextRequestId(), response,
      std::is_same_v<Request, v1::ChatRequest> ? "Chat" : "Generate",
      access_log_ != nullptr ? context->peer() : std::string());
  return AdmitAndSubmit<Request>(reactor, ready, context, request);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::StreamGenerate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return StartStream<v1::GenerateRequest>(context, request);
}

grpc::ServerUnaryReactor* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return StartUnary<v1::GenerateRequest>(context, request, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* InferenceService::StreamChat(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return StartStream<v1::ChatRequest>(context, request);
}

grpc::ServerUnaryReactor* InferenceService::Chat(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* response) {
  return StartUnary<v1::ChatRequest>(context, request, response);
}

bool InferenceService::StartUnaryCall(grpc::CallbackServerContext* context,
                                      grpc::ServerUnaryReactor* reactor,
                                      const ReadyState** ready, std::string* tenant) {
  absl::StatusOr<const ReadyState*> state = GetReady();
  if (!state.ok()) {
    reactor->Finish(Reject(state.status()));
    return false;
  }
  absl::StatusOr<TenantHandle> authenticated = Authenticate(*context);
  if (!authenticated.ok()) {
    reactor->Finish(Reject(authenticated.status()));
    return false;
  }
  *ready = *state;
  *tenant = *authenticated != nullptr ? (*authenticated)->id : "";
  return true;
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* raw_request,
                                                     grpc::ByteBuffer* raw_response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const ReadyState* ready = nullptr;
  std::string tenant;
  if (!StartUnaryCall(context, reactor, &ready, &tenant)) return reactor;
  const Tokenizer* tokenizer = ready->tokenizer;
  Offload(reactor, [this, reactor, tokenizer, raw_request, raw_response,
                    tenant = std::move(tenant)] {
    v1::TokenizeRequest request;
    if (absl::Status parsed = ParseRequest(*raw_request, max_request_bytes_, &request);
        !parsed.ok()) {
      reactor->Finish(Reject(parsed, tenant));
      return;
    }
    const std::string& text = request.text();
    if (static_cast<int64_t>(text.size()) > core_->max_prompt_bytes()) {
      reactor->Finish(Reject(absl::InvalidArgumentError(absl::StrCat(
                                 "text has ", text.size(), " bytes; at most ",
                                 core_->max_prompt_bytes(), " are allowed")),
                             tenant));
      return;
    }
    const bool add_bos = request.has_add_bos() ? request.add_bos() : true;
    absl::StatusOr<std::vector<TokenId>> ids = tokenizer->Encode(text, add_bos);
    if (!ids.ok()) {
      reactor->Finish(Reject(ids.status(), tenant));
      return;
    }
    v1::TokenizeResponse response;
    for (TokenId id : *ids) {
      response.add_token_ids(id);
      response.add_pieces(tokenizer->IdToPiece(id));
    }
    SerializeResponse(response, raw_response);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(
    grpc::CallbackServerContext* context, const v1::DetokenizeRequest* request,
    v1::DetokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const ReadyState* ready = nullptr;
  std::string tenant;
  if (!StartUnaryCall(context, reactor, &ready, &tenant)) return reactor;
  const int32_t vocab = ready->limits.vocab_size;
  for (int i = 0; i < request->token_ids_size(); ++i) {
    const int32_t id = request->token_ids(i);
    if (id < 0 || id >= vocab) {
      reactor->Finish(
          Reject(absl::InvalidArgumentError(absl::StrCat(
                     "token_ids[", i, "] = ", id, " is out of range [0, ", vocab, ")")),
                 tenant));
      return reactor;
    }
  }
  absl::StatusOr<std::string> text = ready->tokenizer->Decode(
      absl::MakeConstSpan(request->token_ids().data(), request->token_ids_size()));
  if (!text.ok()) {
    reactor->Finish(Reject(text.status(), tenant));
    return reactor;
  }
  response->set_text(*std::move(text));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::ListModels(
    grpc::CallbackServerContext* context, const v1::ListModelsRequest* /*request*/,
    v1::ListModelsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const ReadyState* ready = nullptr;
  std::string tenant;
  if (!StartUnaryCall(context, reactor, &ready, &tenant)) return reactor;
  *response->add_models() = ready->model_info;
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetModel(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* raw_request,
                                                     grpc::ByteBuffer* raw_response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const ReadyState* ready = nullptr;
  std::string tenant;
  if (!StartUnaryCall(context, reactor, &ready, &tenant)) return reactor;
  v1::GetModelRequest request;
  if (absl::Status parsed = ParseRequest(*raw_request, max_request_bytes_, &request);
      !parsed.ok()) {
    reactor->Finish(Reject(parsed, tenant));
    return reactor;
  }
  if (absl::Status s = CheckModel(request.model(), ready->limits); !s.ok()) {
    reactor->Finish(Reject(s, tenant));
    return reactor;
  }
  SerializeResponse(ready->model_info, raw_response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* InferenceService::GetServerLoad(
    grpc::CallbackServerContext* context, const v1::GetServerLoadRequest* /*request*/,
    v1::ServerLoad* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Answered while draining too (that is when load matters to a balancer).
  LlmEngine* engine = core_->loaded_engine();
  const bool draining = core_->draining();
  if (engine == nullptr) {
    reactor->Finish(
        Reject(absl::UnavailableError("server is starting: the model is not ready yet")));
    return reactor;
  }
  const EngineLoad load = engine->load();
  response->set_requests_waiting(load.num_waiting);
  response->set_requests_running(load.num_running);
  response->set_kv_blocks_free(load.num_free_blocks);
  response->set_kv_blocks_total(load.num_blocks);
  response->set_kv_usage_ratio(load.num_blocks > 0
                                   ? 1.0 - static_cast<double>(load.num_free_blocks) /
                                               load.num_blocks
                                   : 0.0);
  response->set_draining(draining);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace openelm::server
