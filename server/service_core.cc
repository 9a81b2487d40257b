#include "server/service_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"

namespace openelm::server {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return b > 0 ? (a + b - 1) / b : 0; }

}  // namespace

// ---- RpcTracker ----

void RpcTracker::Begin() {
  absl::MutexLock lock(&mu_);
  ++active_;
}

void RpcTracker::End() {
  absl::MutexLock lock(&mu_);
  --active_;
}

int RpcTracker::active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

bool RpcTracker::WaitForIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

// ---- ServiceCore ----

ServiceCore::ServiceCore(Metrics* metrics, int64_t max_prompt_bytes,
                         TenantRegistry* tenants, QuotaManager* quotas,
                         int request_threads)
    : metrics_(metrics),
      max_prompt_bytes_(max_prompt_bytes),
      tenants_(tenants),
      quotas_(quotas),
      work_(std::make_unique<WorkQueue>(request_threads, kMaxQueuedRequests)) {}

ServiceCore::~ServiceCore() = default;

absl::Status ServiceCore::BusyStatus() const {
  return absl::ResourceExhaustedError(
      absl::StrCat("server is busy: ", work_->max_queued(),
                   " requests already wait to be tokenized; retry later"));
}

void ServiceCore::SetReady(LlmEngine* engine, const Tokenizer* tokenizer,
                           const EngineOptions& engine_options) {
  auto ready = std::make_unique<ServingState>();
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
  m.set_weight_bytes(info.weight_bytes);
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

void ServiceCore::StartDrain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool ServiceCore::draining() const {
  absl::MutexLock lock(&mu_);
  return draining_;
}

absl::StatusOr<const ServingState*> ServiceCore::GetReady() const {
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return absl::UnavailableError("server is draining; retry on another replica");
  }
  if (ready_ == nullptr) {
    return absl::UnavailableError("server is starting: the model is not ready yet");
  }
  return ready_.get();
}

LlmEngine* ServiceCore::loaded_engine() const {
  absl::MutexLock lock(&mu_);
  return ready_ != nullptr ? ready_->engine : nullptr;
}

absl::StatusOr<TenantHandle> ServiceCore::Authenticate(
    std::optional<absl::string_view> authorization,
    std::optional<absl::string_view> x_api_key) const {
  if (tenants_ == nullptr) return TenantHandle();
  OPENELM_ASSIGN_OR_RETURN(std::string key, ApiKeyFromHeaders(authorization, x_api_key));
  return tenants_->Authenticate(key);
}

absl::Status ServiceCore::AdmitQuota(const ServingState& ready,
                                     const TenantHandle& tenant, GenerateSpec* spec,
                                     QuotaTicket* ticket,
                                     std::optional<absl::Duration>* retry_after) {
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
    *retry_after = RetryAfter(admitted.status());
    return admitted.status();
  }
  *ticket = *std::move(admitted);
  return absl::OkStatus();
}

void ServiceCore::CountRejection(const absl::Status& status, absl::string_view tenant,
                                 ApiLabel api) const {
  if (metrics_ == nullptr) return;
  // With auth off every caller is the one single-user tenant, whether or not
  // the call got as far as authenticating.
  std::string single_user;
  if (tenant.empty() && tenants_ != nullptr && !tenants_->config()->auth_enabled) {
    if (absl::StatusOr<TenantHandle> t = tenants_->Authenticate("");
        t.ok() && *t != nullptr) {
      single_user = (*t)->id;
      tenant = single_user;
    }
  }
  metrics_->CountRejected(status.code(), tenant, api);
}

}  // namespace openelm::server
