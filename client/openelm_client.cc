#include "client/openelm_client.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace openelm {
namespace {

constexpr absl::string_view kRoundRobinConfig =
    R"({"loadBalancingConfig":[{"round_robin":{}}]})";

// True for a "host:port" whose host is a dotted IPv4 literal.
bool IsIpv4HostPort(absl::string_view s) {
  std::pair<absl::string_view, absl::string_view> hp =
      absl::StrSplit(s, absl::MaxSplits(':', 1));
  int port = 0;
  if (!absl::SimpleAtoi(hp.second, &port) || port <= 0 || port > 65535) return false;
  std::vector<absl::string_view> octets = absl::StrSplit(hp.first, '.');
  if (octets.size() != 4) return false;
  for (absl::string_view o : octets) {
    int v = 0;
    if (o.empty() || !absl::SimpleAtoi(o, &v) || v < 0 || v > 255) return false;
  }
  return true;
}

// True for "[v6-literal]:port".
bool IsIpv6HostPort(absl::string_view s) {
  if (!absl::StartsWith(s, "[")) return false;
  size_t close = s.find("]:");
  if (close == absl::string_view::npos) return false;
  int port = 0;
  return absl::SimpleAtoi(s.substr(close + 2), &port) && port > 0 && port <= 65535;
}

}  // namespace

absl::string_view RoundRobinServiceConfig() { return kRoundRobinConfig; }

absl::StatusOr<std::string> BuildTargetUri(absl::string_view target) {
  absl::string_view t = absl::StripAsciiWhitespace(target);
  if (t.empty()) return absl::InvalidArgumentError("--target is empty");
  // Already a URI with a scheme gRPC understands: pass it through.
  for (absl::string_view scheme :
       {"dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:", "xds:"}) {
    if (absl::StartsWith(t, scheme)) return std::string(t);
  }
  if (!absl::StrContains(t, ',')) return std::string(t);
  std::vector<std::string> parts;
  bool all_v4 = true, all_v6 = true;
  for (absl::string_view p : absl::StrSplit(t, ',')) {
    p = absl::StripAsciiWhitespace(p);
    if (p.empty()) continue;
    all_v4 = all_v4 && IsIpv4HostPort(p);
    all_v6 = all_v6 && IsIpv6HostPort(p);
    parts.emplace_back(p);
  }
  if (parts.empty()) return absl::InvalidArgumentError("--target has no addresses");
  if (all_v4) return absl::StrCat("ipv4:", absl::StrJoin(parts, ","));
  if (all_v6) return absl::StrCat("ipv6:", absl::StrJoin(parts, ","));
  return absl::InvalidArgumentError(
      absl::StrCat("--target=", t,
                   ": a comma-separated list must hold IP:port literals of one family "
                   "(e.g. 10.0.0.1:50051,10.0.0.2:50051); for a host name with several "
                   "addresses use dns:///name:port"));
}

std::string GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "ok";
    case grpc::StatusCode::CANCELLED:
      return "cancelled";
    case grpc::StatusCode::UNKNOWN:
      return "unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid_argument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline_exceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "not_found";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "already_exists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission_denied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "resource_exhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "failed_precondition";
    case grpc::StatusCode::ABORTED:
      return "aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "out_of_range";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "data_loss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "unauthenticated";
    default:
      return absl::StrCat("code_", static_cast<int>(code));
  }
}

absl::Status ExplainGrpcStatus(const grpc::Status& status, absl::string_view target) {
  if (status.ok()) return absl::OkStatus();
  std::string what;
  switch (status.error_code()) {
    case grpc::StatusCode::CANCELLED:
      what = "request cancelled";
      break;
    case grpc::StatusCode::INVALID_ARGUMENT:
      what = "the server rejected the request as invalid";
      break;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      what = "no complete answer before the deadline (raise --timeout?)";
      break;
    case grpc::StatusCode::NOT_FOUND:
      what = "not found on the server";
      break;
    case grpc::StatusCode::PERMISSION_DENIED:
      what = "permission denied for this API key";
      break;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      what = "server overloaded (request queue full); retry later with backoff";
      break;
    case grpc::StatusCode::FAILED_PRECONDITION:
      what = "server is misconfigured for this request";
      break;
    case grpc::StatusCode::UNIMPLEMENTED:
      what = absl::StrCat("method not implemented (is ", target,
                          " an openelm_server of a matching version?)");
      break;
    case grpc::StatusCode::INTERNAL:
      what = "internal server error";
      break;
    case grpc::StatusCode::UNAVAILABLE:
      what = absl::StrCat("server unavailable (is it running at ", target,
                          "? it may also be starting up or draining)");
      break;
    case grpc::StatusCode::UNAUTHENTICATED:
      what =
          "not authenticated (missing or wrong API key: pass --api_key or "
          "set OPENELM_API_KEY)";
      break;
    default:
      what = absl::StrCat("call failed with ", GrpcCodeName(status.error_code()));
      break;
  }
  if (!status.error_message().empty())
    absl::StrAppend(&what, ": ", status.error_message());
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), what);
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return buffer.str();
}

absl::StatusOr<std::unique_ptr<OpenElmClient>> OpenElmClient::Create(
    ClientOptions options) {
  absl::StatusOr<std::string> uri = BuildTargetUri(options.target);
  if (!uri.ok()) return uri.status();

  std::shared_ptr<grpc::ChannelCredentials> credentials;
  const bool tls = !options.tls_ca_file.empty() || !options.tls_cert_file.empty() ||
                   !options.tls_key_file.empty();
  if (tls) {
    if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_cert and --tls_key must be given together (mutual TLS)");
    }
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadFileToString(options.tls_ca_file);
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *std::move(ca);
    }
    if (!options.tls_cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadFileToString(options.tls_cert_file);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFileToString(options.tls_key_file);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }

  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(std::string(kRoundRobinConfig));
  args.SetMaxReceiveMessageSize(64 << 20);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(*uri, credentials, args);
  return std::unique_ptr<OpenElmClient>(
      new OpenElmClient(std::move(options), std::move(channel)));
}

OpenElmClient::OpenElmClient(ClientOptions options,
                             std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::InferenceService::NewStub(channel_)),
      health_stub_(grpc::health::v1::Health::NewStub(channel_)) {}

void OpenElmClient::ConfigureContext(grpc::ClientContext* context) const {
  ConfigureContext(context, options_.api_key);
}

void OpenElmClient::ConfigureContext(grpc::ClientContext* context,
                                     absl::string_view api_key) const {
  if (options_.timeout != absl::InfiniteDuration() &&
      options_.timeout > absl::ZeroDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
  if (!api_key.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", api_key));
  }
}

absl::Status OpenElmClient::Explain(const grpc::Status& status) const {
  return ExplainGrpcStatus(status, options_.target);
}

absl::StatusOr<v1::GenerateResponse> OpenElmClient::Generate(
    const v1::GenerateRequest& request) {
  grpc::ClientContext context;
  ConfigureContext(&context);
  v1::GenerateResponse response;
  grpc::Status status = stub_->Generate(&context, request, &response);
  if (!status.ok()) return Explain(status);
  return response;
}

absl::StatusOr<v1::GenerateResponse> OpenElmClient::Chat(const v1::ChatRequest& request) {
  grpc::ClientContext context;
  ConfigureContext(&context);
  v1::GenerateResponse response;
  grpc::Status status = stub_->Chat(&context, request, &response);
  if (!status.ok()) return Explain(status);
  return response;
}

template <typename Request>
absl::StatusOr<v1::GenerateResponse> OpenElmClient::ReadStream(
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> (
        v1::InferenceService::Stub::*method)(grpc::ClientContext*, const Request&),
    const Request& request, const ChunkCallback& on_chunk) {
  grpc::ClientContext context;
  ConfigureContext(&context);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      (stub_.get()->*method)(&context, request);
  v1::GenerateResponse chunk, last;
  bool stopped_by_caller = false;
  while (reader->Read(&chunk)) {
    last = chunk;
    if (on_chunk && !on_chunk(chunk)) {
      stopped_by_caller = true;
      context.TryCancel();
      break;
    }
  }
  if (stopped_by_caller) {
    // Drain what is already buffered so Finish() does not wait on the server.
    while (reader->Read(&chunk)) {
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok() &&
      !(stopped_by_caller && status.error_code() == grpc::StatusCode::CANCELLED)) {
    return Explain(status);
  }
  return last;
}

absl::StatusOr<v1::GenerateResponse> OpenElmClient::StreamGenerate(
    const v1::GenerateRequest& request, const ChunkCallback& on_chunk) {
  return ReadStream(&v1::InferenceService::Stub::StreamGenerate, request, on_chunk);
}

absl::StatusOr<v1::GenerateResponse> OpenElmClient::StreamChat(
    const v1::ChatRequest& request, const ChunkCallback& on_chunk) {
  return ReadStream(&v1::InferenceService::Stub::StreamChat, request, on_chunk);
}

absl::StatusOr<v1::TokenizeResponse> OpenElmClient::Tokenize(absl::string_view text,
                                                             bool add_bos) {
  grpc::ClientContext context;
  ConfigureContext(&context);
  v1::TokenizeRequest request;
  request.set_text(std::string(text));
  request.set_add_bos(add_bos);
  v1::TokenizeResponse response;
  grpc::Status status = stub_->Tokenize(&context, request, &response);
  if (!status.ok()) return Explain(status);
  return response;
}

absl::StatusOr<std::string> OpenElmClient::Detokenize(const std::vector<int32_t>& ids) {
  grpc::ClientContext context;
  ConfigureContext(&context);
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Add(ids.begin(), ids.end());
  v1::DetokenizeResponse response;
  grpc::Status status = stub_->Detokenize(&context, request, &response);
  if (!status.ok()) return Explain(status);
  return response.text();
}

absl::StatusOr<v1::ListModelsResponse> OpenElmClient::ListModels() {
  grpc::ClientContext context;
  ConfigureContext(&context);
  v1::ListModelsResponse response;
  grpc::Status status = stub_->ListModels(&context, v1::ListModelsRequest(), &response);
  if (!status.ok()) return Explain(status);
  return response;
}

absl::StatusOr<v1::ServerLoad> OpenElmClient::GetServerLoad() {
  grpc::ClientContext context;
  ConfigureContext(&context);
  v1::ServerLoad response;
  grpc::Status status =
      stub_->GetServerLoad(&context, v1::GetServerLoadRequest(), &response);
  if (!status.ok()) return Explain(status);
  return response;
}

absl::StatusOr<int> OpenElmClient::ConnectReplicas(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (!channel_->WaitForConnected(absl::ToChronoTime(deadline))) {
    return absl::UnavailableError(absl::StrCat("cannot connect to ", options_.target,
                                               " within ", absl::FormatDuration(timeout),
                                               " (is the server running?)"));
  }
  absl::StatusOr<std::string> uri = BuildTargetUri(options_.target);
  size_t expected = 1;
  if (uri.ok() && (absl::StartsWith(*uri, "ipv4:") || absl::StartsWith(*uri, "ipv6:"))) {
    expected = static_cast<size_t>(std::count(uri->begin(), uri->end(), ',')) + 1;
  }
  std::set<std::string> peers;
  while (peers.size() < expected && absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(std::min(deadline, absl::Now() + absl::Seconds(2))));
    if (!options_.api_key.empty()) {
      context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.api_key));
    }
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status =
        health_stub_->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    if (status.ok()) {
      peers.insert(context.peer());
    } else {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  if (peers.empty()) {
    return absl::UnavailableError(
        absl::StrCat("no replica of ", options_.target, " answered a health check"));
  }
  return static_cast<int>(peers.size());
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus>
OpenElmClient::CheckHealth(absl::string_view service) {
  grpc::ClientContext context;
  ConfigureContext(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(std::string(service));
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health_stub_->Check(&context, request, &response);
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      return absl::NotFoundError(
          absl::StrCat("the server does not know health service \"", service, "\""));
    }
    return Explain(status);
  }
  return response.status();
}

}  // namespace openelm
