#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "engine/base/logging.h"
#include "engine/base/status_macros.h"
#include "engine/chat/chat_template.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/model/checkpoint.h"
#include "engine/model/execution_plan.h"
#include "engine/model/openelm_model.h"
#include "server/proto_io.h"
#include "server/tls.h"

namespace openelm::server {
namespace {

// The declared shared prefixes as token ids, encoded the way prompts are:
// "text" like a completion prompt (with BOS), "chat_system" as the chat
// template rendered with that system message and an empty user turn (a
// chat prompt with the same system message starts with its tokens up to
// the user's text; the longest common prefix is what counts). A prefix that cannot be
// encoded is skipped with a warning (the config itself stays valid).
std::vector<SharedPrefixSpec> EncodeSharedPrefixes(const TenantsConfig& config,
                                                   const Tokenizer& tokenizer) {
  std::vector<SharedPrefixSpec> out;
  for (const SharedPrefix& prefix : config.shared_prefixes) {
    absl::StatusOr<std::vector<TokenId>> tokens =
        prefix.chat_system
            ? RenderChat(tokenizer, {ChatMessage{ChatRole::kSystem, prefix.text},
                                     ChatMessage{ChatRole::kUser, ""}})
            : tokenizer.Encode(prefix.text, /*add_bos=*/true);
    if (!tokens.ok()) {
      OPENELM_LOG(WARNING) << "shared prefix \"" << prefix.name
                           << "\" skipped: " << tokens.status();
      continue;
    }
    out.push_back(SharedPrefixSpec{prefix.name, *std::move(tokens), prefix.pinned});
  }
  return out;
}

constexpr char kServiceName[] = "openelm.v1.InferenceService";
// How long grpc::Server::Shutdown waits for RPCs after the engine stopped
// (they only need to flush their last messages) before cancelling them.
constexpr absl::Duration kGrpcShutdownGrace = absl::Seconds(2);
constexpr absl::Duration kAccessLogFlushTimeout = absl::Seconds(2);
constexpr absl::Duration kWarmUpTimeout = absl::Minutes(5);

std::string HostPort(const std::string& host, int port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

// Waits for the warm-up request on the calling (start-up) thread.
class WarmUpSink : public TokenSink {
 public:
  void OnOutput(const OutputDelta& delta) override {
    num_tokens_ += static_cast<int>(delta.tokens.size());
  }
  void OnFinish(const FinishInfo& info) override {
    status_ = info.status;
    done_.Notify();
  }
  bool Wait(absl::Duration timeout) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }
  const absl::Status& status() const { return status_; }
  int num_tokens() const { return num_tokens_; }

 private:
  int num_tokens_ = 0;  // written on the engine thread before Notify()
  absl::Status status_;
  absl::Notification done_;
};

}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options) {
  if (options.model_dir.empty()) {
    return absl::InvalidArgumentError("ServerOptions.model_dir is empty");
  }
  // The ISA cap must be set before the first kernel or oneDNN primitive is
  // chosen: the plan is decided once per process.
  if (!options.max_cpu_isa.empty())
    OPENELM_RETURN_IF_ERROR(SetCpuIsaCap(options.max_cpu_isa));
  // Unparsable requests are answered with our statuses (proto_io.h); the
  // library's own line about each goes through our log, rate-limited.
  RouteProtobufLogs();
  std::unique_ptr<Server> server(new Server(options));
  OPENELM_RETURN_IF_ERROR(server->Start());
  return server;
}

std::string Server::address() const { return HostPort(options_.host, port_); }

int Server::http_port() const { return http_ != nullptr ? http_->port() : -1; }

absl::Status Server::Start() {
  metrics_ = std::make_unique<Metrics>();
  OPENELM_RETURN_IF_ERROR(StartTenants());
  OPENELM_ASSIGN_OR_RETURN(tokenizer_, Tokenizer::Load(options_.tokenizer_path));
  core_ = std::make_unique<ServiceCore>(metrics_.get(), options_.max_prompt_bytes,
                                        tenants_.get(), quotas_.get());
  service_ = std::make_unique<InferenceService>(core_.get());
  if (options_.access_log) {
    Metrics* metrics = metrics_.get();
    AccessLog::Options log_options;
    log_options.on_drop = [metrics] { metrics->CountAccessLogDropped(); };
    access_log_ = std::make_unique<AccessLog>(std::move(log_options));
  }
  service_->SetStreamOptions(options_.max_stream_backlog_bytes, access_log_.get());
  service_->SetMaxRequestBytes(options_.max_message_bytes);
  OPENELM_RETURN_IF_ERROR(StartGrpc());
  OPENELM_LOG(INFO) << "gRPC listening on " << address()
                    << " (health NOT_SERVING until the model is warm)";
  if (options_.http_port >= 0) {
    HttpServerOptions http;
    http.host = options_.host;
    http.port = options_.http_port;
    http.num_threads = options_.http_threads;
    http.tls = options_.tls;
    http.max_body_bytes = options_.max_message_bytes;
    http.max_stream_backlog_bytes = options_.max_stream_backlog_bytes;
    http.default_request_timeout = options_.http_request_timeout;
    http.socket_send_buffer_bytes = options_.http_send_buffer_bytes;
    OPENELM_ASSIGN_OR_RETURN(http_,
                             HttpServer::Create(http, core_.get(), access_log_.get()));
    OPENELM_LOG(INFO) << "HTTP (OpenAI-compatible) on "
                      << (options_.tls.cert_path.empty() ? "http://" : "https://")
                      << HostPort(options_.host, http_->port()) << "/v1";
  }
  if (options_.before_ready_for_testing) options_.before_ready_for_testing(port_);

  OPENELM_RETURN_IF_ERROR(LoadEngine());
  {
    // Fair-scheduling weights now and after every reload (the listener runs
    // on the reloading thread; SetTenantWeights only posts to the inbox).
    // The same for the declared shared prefixes.
    LlmEngine* engine = engine_.get();
    const Tokenizer* tokenizer = tokenizer_.get();
    engine->SetTenantWeights(TenantRegistry::Weights(*tenants_->config()));
    engine->SetSharedPrefixes(EncodeSharedPrefixes(*tenants_->config(), *tokenizer));
    tenants_->AddReloadListener(
        [engine, tokenizer](const std::shared_ptr<const TenantsConfig>& config) {
          engine->SetTenantWeights(TenantRegistry::Weights(*config));
          engine->SetSharedPrefixes(EncodeSharedPrefixes(*config, *tokenizer));
        });
  }
  if (!options_.tenants_config.empty()) {
    tenants_watcher_ = std::make_unique<ConfigFileWatcher>(
        tenants_.get(), options_.tenants_poll_interval);
  }
  if (options_.metrics_port >= 0) {
    LlmEngine* engine = engine_.get();
    metrics_->SetLoadSource([engine] { return engine->load(); });
    OPENELM_RETURN_IF_ERROR(metrics_->StartExposer(options_.host, options_.metrics_port));
    metrics_port_ = metrics_->port();
    OPENELM_LOG(INFO) << "metrics on http://" << HostPort(options_.host, metrics_port_)
                      << "/metrics";
  }
  OPENELM_RETURN_IF_ERROR(WarmUp());
  core_->SetReady(engine_.get(), tokenizer_.get(), options_.engine);
  SetHealth(true);
  OPENELM_LOG(INFO) << "ready: health SERVING";
  return absl::OkStatus();
}

absl::Status Server::StartTenants() {
  quotas_ = std::make_unique<QuotaManager>();
  if (options_.tenants_config.empty()) {
    tenants_ = TenantRegistry::CreateSingleUser();
    OPENELM_LOG(INFO) << "tenants: single user (no --tenants_config), auth off";
    return absl::OkStatus();
  }
  OPENELM_ASSIGN_OR_RETURN(tenants_,
                           TenantRegistry::CreateFromFile(options_.tenants_config));
  const std::shared_ptr<const TenantsConfig> config = tenants_->config();
  OPENELM_LOG(INFO) << "tenants: " << config->tenants.size() << " from "
                    << options_.tenants_config << ", auth "
                    << (config->auth_enabled ? "on" : "off");
  return absl::OkStatus();
}

absl::Status Server::StartGrpc() {
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::InsecureServerCredentials();
  if (!options_.tls.cert_path.empty()) {
    OPENELM_ASSIGN_OR_RETURN(credentials, BuildServerCredentials(options_.tls));
    OPENELM_LOG(INFO) << "TLS on (certificate " << options_.tls.cert_path
                      << (options_.tls.client_ca_path.empty()
                              ? std::string()
                              : absl::StrCat(", client certificates from ",
                                             options_.tls.client_ca_path))
                      << ")";
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(HostPort(options_.host, options_.port), credentials, &port_);
  builder.RegisterService(service_.get());
  // Requests between max_message_bytes and the ceiling reach our handlers,
  // which refuse them with a counted RESOURCE_EXHAUSTED (proto_io.h).
  builder.SetMaxReceiveMessageSize(GrpcReceiveCeiling(options_.max_message_bytes));
  builder.SetMaxSendMessageSize(options_.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             options_.max_concurrent_streams);
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_timeout)));
  // Let clients keep idle connections alive with pings every 10 s or more.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC sets SO_REUSEPORT by default, which would let a second server bind
  // the same port and silently take half of the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ",
                                               HostPort(options_.host, options_.port),
                                               " (address in use or not local?)"));
  }
  SetHealth(false);
  return absl::OkStatus();
}

absl::Status Server::LoadEngine() {
  const absl::Time start = absl::Now();
  OPENELM_LOG(INFO) << DescribeCpu();
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint,
                           Checkpoint::Open(options_.model_dir));
  OpenElmModelOptions model_options;
  model_options.weight_dtype = options_.weight_dtype;
  model_options.kv_dtype = options_.kv_dtype;
  model_options.bf16_activations = options_.bf16_activations;  // unset: the plan's choice
  model_options.num_threads = options_.num_threads;
  OPENELM_ASSIGN_OR_RETURN(std::unique_ptr<OpenElmModel> model,
                           OpenElmModel::Create(*checkpoint, model_options));
  checkpoint.reset();  // the model holds its own copy of the weights
  const ModelInfo info = model->info();
  const ExecutionPlan& plan = model->plan();
  OPENELM_LOG(INFO) << "execution plan: " << info.plan;
  metrics_->SetBuildInfo({{"cpu", DetectedCpuFeatures().brand},
                          {"cpu_isa", CpuIsaName(plan.isa)},
                          {"onednn_isa", OnednnEffectiveIsa()},
                          {"weight_dtype", info.weight_dtype},
                          {"activation_dtype", info.activation_dtype},
                          {"kv_dtype", info.kv_dtype},
                          {"matmul", plan.matmul == MatmulBackend::kOnednn ||
                                             plan.matmul == MatmulBackend::kOnednnInt8
                                         ? "onednn"
                                         : "own"}});
  metrics_->SetModelWeightBytes(info.weight_bytes);
  OPENELM_ASSIGN_OR_RETURN(engine_, LlmEngine::Create(options_.engine, std::move(model),
                                                      tokenizer_.get(), metrics_.get()));
  const EngineLoad load = engine_->load();
  OPENELM_LOG(INFO) << "model " << info.name << " (" << info.size_name << ", "
                    << info.num_layers << " layers, " << info.num_parameters
                    << " parameters, weights " << info.weight_dtype << " "
                    << info.weight_bytes << " bytes, KV " << info.kv_dtype << " "
                    << info.kv_bytes_per_token << " bytes/token) from "
                    << options_.model_dir << " loaded in "
                    << absl::FormatDuration(absl::Now() - start);
  OPENELM_LOG(INFO) << "engine: " << load.num_blocks << " KV blocks of "
                    << load.block_size_tokens << " tokens, max_num_seqs "
                    << options_.engine.max_num_seqs << ", max_num_batched_tokens "
                    << options_.engine.max_num_batched_tokens << ", threads "
                    << (options_.num_threads == 0 ? std::string("all cores")
                                                  : absl::StrCat(options_.num_threads));
  return absl::OkStatus();
}

absl::Status Server::WarmUp() {
  // One short greedy generation through the whole path (scheduler, forward,
  // sampler), so the first client request pays no first-touch costs.
  GenerateSpec spec;
  spec.prompt = {kBosTokenId, 15043, 3186};  // "<s> Hello world"
  spec.params.temperature = 0.0f;
  spec.params.max_tokens = 2;
  spec.params.ignore_eos = true;
  WarmUpSink sink;
  const absl::Time start = absl::Now();
  OPENELM_RETURN_IF_ERROR(engine_->Submit(/*id=*/0, std::move(spec), &sink));
  if (!sink.Wait(kWarmUpTimeout)) {
    // The sink must outlive the engine's use of it: stop the engine first.
    engine_->Shutdown();
    sink.Wait(absl::InfiniteDuration());
    return absl::DeadlineExceededError("warm-up generation did not finish");
  }
  if (!sink.status().ok()) {
    return absl::Status(sink.status().code(),
                        absl::StrCat("warm-up failed: ", sink.status().message()));
  }
  OPENELM_LOG(INFO) << "warm-up: " << sink.num_tokens() << " tokens in "
                    << absl::FormatDuration(absl::Now() - start);
  return absl::OkStatus();
}

void Server::SetHealth(bool serving) {
  if (grpc_server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus("", serving);
  health->SetServingStatus(kServiceName, serving);
}

void Server::Drain(absl::Duration timeout) {
  {
    absl::MutexLock lock(&drain_mu_);
    if (drained_) return;
    drained_ = true;
  }
  const absl::Time start = absl::Now();
  tenants_watcher_.reset();  // no reloads while shutting down
  if (core_ != nullptr) core_->StartDrain();
  SetHealth(false);
  const int active = core_ != nullptr ? core_->tracker().active() : 0;
  OPENELM_LOG(INFO) << "draining: health NOT_SERVING, " << active
                    << " generation RPCs running, waiting up to "
                    << absl::FormatDuration(timeout);
  if (core_ != nullptr && !core_->tracker().WaitForIdle(start + timeout)) {
    OPENELM_LOG(WARNING) << "drain timeout: " << core_->tracker().active()
                         << " generation RPCs still running end with UNAVAILABLE";
  }
  if (engine_ != nullptr) engine_->Shutdown();
  // Every HTTP call has its final event now; let them be written.
  if (http_ != nullptr) http_->Shutdown(kGrpcShutdownGrace);
  if (grpc_server_ != nullptr) {
    // Health watchers get NOT_SERVING and no further updates.
    if (auto* health = grpc_server_->GetHealthCheckService(); health != nullptr) {
      health->Shutdown();
    }
    grpc_server_->Shutdown(absl::ToChronoTime(absl::Now() + kGrpcShutdownGrace));
    grpc_server_->Wait();
  }
  if (metrics_ != nullptr) metrics_->StopExposer();
  // Every reactor is gone: their access lines are queued; write them out.
  if (access_log_ != nullptr && !access_log_->Flush(kAccessLogFlushTimeout)) {
    OPENELM_LOG(WARNING) << "access log: lines still unwritten after "
                         << absl::FormatDuration(kAccessLogFlushTimeout);
  }
  OPENELM_LOG(INFO) << "drained in " << absl::FormatDuration(absl::Now() - start);
}

Server::~Server() { Drain(absl::ZeroDuration()); }

}  // namespace openelm::server
