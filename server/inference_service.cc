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

int64_t CeilDiv(int64_t a, int64_t b) { return b > 0 ? (a + b - 1) / b : 0; }

}  // namespace

InferenceService::InferenceService(Metrics* metrics, int64_t max_prompt_bytes,
                                   TenantRegistry* tenants, QuotaManager* quotas,
                                   int request_threads)
    : metrics_(metrics),
      max_prompt_bytes_(max_prompt_bytes),
      tenants_(tenants),
      quotas_(quotas),
      work_(std::make_unique<WorkQueue>(request_threads, kMaxQueuedRequests)) {}

InferenceService::~InferenceService() = default;

absl::Status InferenceService::BusyStatus() const {
  return absl::ResourceExhaustedError(
      absl::StrCat("server is busy: ", work_->max_queued(),
                   " requests already wait to be tokenized; retry later"));
}

template <typename Reactor>
void InferenceService::Offload(Reactor* reactor, std::function<void()> work) {
  if (!work_->Schedule(std::move(work))) {
    reactor->Finish(Reject(BusyStatus()));
  }
}

absl::StatusOr<TenantHandle> InferenceService::Authenticate(
    const grpc::CallbackServerContext& context) const {
  if (tenants_ == nullptr) return TenantHandle();
  OPENELM_ASSIGN_OR_RETURN(std::string key,
                           ApiKeyFromHeaders(MetadataValue(context, "authorization"),
                                             MetadataValue(context, "x-api-key")));
  return tenants_->Authenticate(key);
}

template <typename Request>
absl::Status InferenceService::Admit(const ReadyState& ready,
                                     grpc::CallbackServerContext* context,
                                     const TenantHandle& tenant, const Request& request,
                                     GenerateSpec* spec, QuotaTicket* ticket) {
  OPENELM_ASSIGN_OR_RETURN(*spec, MakeSpec(ready, context, request));
  if (tenant == nullptr) return absl::OkStatus();
  spec->tenant = tenant->id;
  spec->cache_salt = tenant->id;
  if (quotas_ == nullptr) return absl::OkStatus();
  AdmissionRequest admission;
  admission.prompt_tokens = static_cast<int64_t>(spec->prompt.size());
  admission.max_tokens = spec->params.max_tokens;
  admission.n = std::max(spec->params.n, 1);
  // KV share: only for tenants limited below the whole pool (a request that
  // can never fit the pool stays the engine's INVALID_ARGUMENT).
  if (tenant->limits.max_kv_share < 1.0) {
    const EngineLoad load = ready.engine->load();
    admission.kv_blocks_used = ready.engine->TenantKvBlocks(tenant->id);
    admission.kv_blocks_needed =
        CeilDiv(admission.prompt_tokens +
                    static_cast<int64_t>(admission.max_tokens) * admission.n,
                load.block_size_tokens);
    admission.kv_blocks_total = load.num_blocks;
  }
  absl::StatusOr<QuotaTicket> admitted = quotas_->Admit(*tenant, admission);
  if (!admitted.ok()) {
    if (std::optional<absl::Duration> retry = RetryAfter(admitted.status());
        retry.has_value()) {
      context->AddTrailingMetadata(std::string(kRetryAfterMetadataKey),
                                   absl::StrCat(absl::ToInt64Milliseconds(*retry)));
    }
    return admitted.status();
  }
  *ticket = *std::move(admitted);
  return absl::OkStatus();
}

void InferenceService::SetReady(LlmEngine* engine, const Tokenizer* tokenizer,
                                const EngineOptions& engine_options) {
  auto ready = std::make_unique<ReadyState>();
  ready->engine = engine;
  ready->tokenizer = tokenizer;
  const ModelInfo& info = engine->model_info();
  ready->limits.model_id = info.name;
  ready->limits.vocab_size = info.vocab_size;
  ready->limits.max_context_length = info.max_context_length;
  ready->limits.max_prompt_bytes = max_prompt_bytes_;
  ready->limits.max_bytes_per_token = tokenizer->max_bytes_per_token();

  const EngineLoad load = engine->load();
  const int32_t block_size = load.block_size_tokens > 0
                                 ? load.block_size_tokens
                                 : engine_options.block_size_tokens;
  v1::ModelInfo& m = ready->model_info;
  m.set_id(info.name);
  m.set_size(info.size_name);
  m.set_num_parameters(info.num_parameters);
  m.set_num_layers(info.num_layers);
  m.set_max_context_length(info.max_context_length);
  m.set_vocab_size(info.vocab_size);
  m.set_weight_dtype(info.weight_dtype);
  m.set_kv_dtype(info.kv_dtype);
  m.set_activation_dtype(info.activation_dtype);
  m.set_cpu_isa(info.cpu_isa);
  m.set_execution_plan(info.plan);
  m.set_kv_block_size_tokens(block_size);
  m.set_kv_num_blocks(load.num_blocks);
  m.set_kv_bytes_per_token(info.kv_bytes_per_token);
  m.set_kv_capacity_tokens(static_cast<int64_t>(load.num_blocks) * block_size);
  m.set_chat(true);

  absl::MutexLock lock(&mu_);
  ready_ = std::move(ready);
}

void InferenceService::StartDrain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool InferenceService::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

absl::StatusOr<const InferenceService::ReadyState*> InferenceService::GetReady() const {
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return absl::UnavailableError("server is draining; retry on another replica");
  }
  if (ready_ == nullptr) {
    return absl::UnavailableError("server is starting: the model is not ready yet");
  }
  return ready_.get();
}

grpc::Status InferenceService::Reject(const absl::Status& status,
                                      absl::string_view tenant) const {
  if (metrics_ != nullptr) {
    // With auth off every caller is the one single-user tenant, whether or
    // not the call got as far as authenticating.
    std::string single_user;
    if (tenant.empty() && tenants_ != nullptr && !tenants_->config()->auth_enabled) {
      if (absl::StatusOr<TenantHandle> t = tenants_->Authenticate("");
          t.ok() && *t != nullptr) {
        single_user = (*t)->id;
        tenant = single_user;
      }
    }
    metrics_->CountRejected(status.code(), tenant);
  }
  return ToGrpcStatus(status);
}

ReactorEnv InferenceService::EnvFor(const ReadyState* ready) {
  ReactorEnv env;
  env.engine = ready == nullptr ? nullptr : ready->engine;
  env.tokenizer = ready == nullptr ? nullptr : ready->tokenizer;
  env.metrics = metrics_;
  env.tracker = &tracker_;
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
  if (!work_->Schedule([this, reactor, state, context, raw] {
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
      EnvFor(ready.ok() ? *ready : nullptr), next_request_id_.fetch_add(1),
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
      EnvFor(ready.ok() ? *ready : nullptr), next_request_id_.fetch_add(1), response,
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
    if (static_cast<int64_t>(text.size()) > max_prompt_bytes_) {
      reactor->Finish(Reject(absl::InvalidArgumentError(absl::StrCat(
                                 "text has ", text.size(), " bytes; at most ",
                                 max_prompt_bytes_, " are allowed")),
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
  LlmEngine* engine = nullptr;
  bool draining = false;
  {
    absl::MutexLock lock(&mu_);
    if (ready_ != nullptr) engine = ready_->engine;
    draining = draining_;
  }
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
