#ifndef OPENELM_SERVER_HTTP_HTTP_SERVER_H_
#define OPENELM_SERVER_HTTP_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/access_log.h"
#include "server/service_core.h"
#include "server/tls.h"

namespace openelm::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // shared with gRPC (--host)
  int port = 8000;                 // 0 = pick a free port (see HttpServer::port())
  // I/O threads (Asio): they parse, route and write; they never tokenize
  // (that runs on the ServiceCore's work queue) and never wait.
  int num_threads = 2;
  TlsServerOptions tls;  // the gRPC listener's certificate flags
  // Request bodies (ServerOptions::max_message_bytes, the gRPC message
  // bound); larger ones get 413.
  int64_t max_body_bytes = 4 << 20;
  // Output allowed to queue for a client that does not read its response;
  // past it the request is cancelled (--max_stream_backlog_bytes).
  int64_t max_stream_backlog_bytes = 1 << 20;
  // Request deadline when the client sends no `x-request-timeout` header
  // (seconds); zero = none.
  absl::Duration default_request_timeout = absl::ZeroDuration();
  // A keep-alive connection with no request for this long is closed, and so
  // is one whose request head or body does not arrive within it.
  absl::Duration idle_timeout = absl::Seconds(60);
  int max_connections = 1024;  // more are closed at accept
  // SO_SNDBUF of each connection; 0 = the kernel's (autotuned) default. A
  // small buffer makes a client that stops reading hit the backlog bound
  // sooner (tests use it; production rarely needs it).
  int socket_send_buffer_bytes = 0;
};

// The OpenAI-compatible HTTP/1.1 front (docs/http-api.md): /v1/completions,
// /v1/chat/completions (JSON or server-sent events), /v1/models, /health.
// A second door into the same service as InferenceService: requests are
// authenticated, validated (server/request_parser.cc, the same rules and
// messages as gRPC under the HTTP names), admitted against tenant quotas,
// counted and logged by the shared ServiceCore, and run on the same engine.
//
// Transport: Boost.Beast over Asio, one strand per connection on a fixed
// pool of I/O threads; request work (auth, parsing, tokenizing, Submit) runs
// on the core's work queue; engine output is formatted on the engine thread
// into the call's pending bytes and written by the connection's strand, one
// write at a time. A client that disconnects is seen by a wait on its
// socket (behind unread bytes, by a POLLRDHUP poll every 20 ms) and its
// requests are cancelled at once; one that stops reading is
// cut when the pending bytes pass max_stream_backlog_bytes (requests
// cancelled, blocks freed) and its connection closed if the write stays
// stuck kStalledWriteGrace later.
//
// Thread-safety: Create and Shutdown from one thread; port() from any.
class HttpServer {
 public:
  // Binds and starts serving (requests get 503 until the core is ready).
  // kUnavailable naming the address when it cannot be bound; TLS file
  // errors as BuildServerCredentials reports them.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(
      const HttpServerOptions& options, ServiceCore* core, AccessLog* access_log);
  ~HttpServer();  // Shutdown()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const;
  // Stops accepting, lets responses in progress finish writing for up to
  // `grace`, then closes every connection and joins the I/O threads. Call
  // after the engine shut down (so every call has its final event).
  // Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(2));

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_HTTP_HTTP_SERVER_H_
