#ifndef OPENELM_CLIENT_OPENELM_CLIENT_H_
#define OPENELM_CLIENT_OPENELM_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "grpcpp/support/sync_stream.h"
#include "openelm/v1/inference.grpc.pb.h"

namespace openelm {

// How to reach one openelm_server deployment.
struct ClientOptions {
  // "host:port", a comma list "10.0.0.1:50051,10.0.0.2:50051" (spread over
  // all of them with round_robin), or any gRPC target URI such as
  // "dns:///openelm.default.svc:50051" or "unix:/run/openelm.sock".
  std::string target = "127.0.0.1:50051";
  // TLS is used when any of these is set. PEM file paths. The CA verifies the
  // server; cert + key are the client's identity for mutual TLS.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // Sent as "authorization: Bearer <key>" on every call when non-empty.
  std::string api_key;
  // Per-call deadline; absl::InfiniteDuration() for none.
  absl::Duration timeout = absl::Seconds(60);
};

// Turns the user's --target into a gRPC target URI:
//   "h:p"                -> "h:p" (unchanged)
//   "1.2.3.4:1,5.6.7.8:2" -> "ipv4:1.2.3.4:1,5.6.7.8:2"
//   "[::1]:1,[::1]:2"     -> "ipv6:[::1]:1,[::1]:2"
//   "dns:///x:1", "ipv4:...", "unix:..." -> unchanged
// A comma list must be IP literals with ports (gRPC's ipv4:/ipv6: schemes
// resolve nothing); anything else is kInvalidArgument with a hint.
absl::StatusOr<std::string> BuildTargetUri(absl::string_view target);

// The service config every channel gets: round_robin over all resolved
// addresses (so a comma list or a DNS name with several A records spreads
// requests over the replicas).
absl::string_view RoundRobinServiceConfig();

// A one-line, human explanation of a failed call, e.g.
//   "server unavailable (is it running at 127.0.0.1:50051?): failed to connect"
// The server's own message is appended after ": " when it adds anything.
// Returns an absl::Status with the same canonical code.
absl::Status ExplainGrpcStatus(const grpc::Status& status, absl::string_view target);

// Short lower-case name of a gRPC code ("unavailable", "deadline_exceeded"),
// used as a key in reports.
std::string GrpcCodeName(grpc::StatusCode code);

// Reads a whole file (TLS material, message files). kNotFound names the path.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// A small synchronous client over one channel, plus access to the async stub
// for callers that drive many concurrent streams (the load generator).
//
// Thread-safe: every method may be called concurrently from any thread (gRPC
// channels and stubs are thread-safe and each call has its own context).
// The client owns its channel; stubs live as long as the client.
class OpenElmClient {
 public:
  // Called once per streamed message, on the calling thread, in order.
  // Returning false cancels the stream (the call then ends with CANCELLED,
  // which StreamGenerate reports as OK since the caller asked for it).
  using ChunkCallback = std::function<bool(const v1::GenerateResponse&)>;

  // Validates the target and loads TLS files. Connection happens lazily on
  // the first call.
  static absl::StatusOr<std::unique_ptr<OpenElmClient>> Create(ClientOptions options);

  OpenElmClient(const OpenElmClient&) = delete;
  OpenElmClient& operator=(const OpenElmClient&) = delete;

  // Unary and streaming completion. The streaming form calls `on_chunk` for
  // every message and returns the last one (which carries usage, timings and
  // finish reasons).
  absl::StatusOr<v1::GenerateResponse> Generate(const v1::GenerateRequest& request);
  absl::StatusOr<v1::GenerateResponse> StreamGenerate(const v1::GenerateRequest& request,
                                                      const ChunkCallback& on_chunk);
  absl::StatusOr<v1::GenerateResponse> Chat(const v1::ChatRequest& request);
  absl::StatusOr<v1::GenerateResponse> StreamChat(const v1::ChatRequest& request,
                                                  const ChunkCallback& on_chunk);

  absl::StatusOr<v1::TokenizeResponse> Tokenize(absl::string_view text, bool add_bos);
  absl::StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids);
  absl::StatusOr<v1::ListModelsResponse> ListModels();
  absl::StatusOr<v1::ServerLoad> GetServerLoad();
  // grpc.health.v1.Health/Check for `service` ("" = whole server).
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
      absl::string_view service);

  // Waits until the channel is connected and, for an ipv4:/ipv6: address
  // list, until health checks have reached every listed replica (round_robin
  // only uses connected backends, so without this the first requests of a
  // benchmark land on whichever replica connected first). Returns the number
  // of distinct replicas reached; kUnavailable when none within `timeout`.
  absl::StatusOr<int> ConnectReplicas(absl::Duration timeout);

  // Prepares a context with the deadline and API key of this client. For
  // callers that use the async/callback stub directly.
  void ConfigureContext(grpc::ClientContext* context) const;
  // Same, with another API key (multi-tenant load tests over one channel).
  void ConfigureContext(grpc::ClientContext* context, absl::string_view api_key) const;

  v1::InferenceService::Stub* stub() { return stub_.get(); }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }

 private:
  OpenElmClient(ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  template <typename Request>
  absl::StatusOr<v1::GenerateResponse> ReadStream(
      std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> (
          v1::InferenceService::Stub::*method)(grpc::ClientContext*, const Request&),
      const Request& request, const ChunkCallback& on_chunk);

  absl::Status Explain(const grpc::Status& status) const;

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_stub_;
};

}  // namespace openelm

#endif  // OPENELM_CLIENT_OPENELM_CLIENT_H_
