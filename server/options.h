#ifndef OPENELM_SERVER_OPTIONS_H_
#define OPENELM_SERVER_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/llm_engine.h"
#include "engine/model/checkpoint.h"
#include "server/tls.h"

namespace openelm::server {

// Everything the server needs to start. Filled from flags by
// ServerOptionsFromFlags() in production and directly by tests.
struct ServerOptions {
  // Hugging Face checkpoint directory. Must be set when Server::Create runs;
  // main() fills it with the cached random-weight default when the flag is
  // empty.
  std::string model_dir;
  // SentencePiece tokenizer.model. Must be set when Server::Create runs;
  // main() fills it from FindDefaultTokenizer() when the flag is empty.
  std::string tokenizer_path;
  std::string host = "127.0.0.1";
  int port = 50051;         // 0 = pick a free port (see Server::port())
  int metrics_port = 9464;  // 0 = pick a free port; -1 = no metrics endpoint
  // OpenAI-compatible HTTP API (server/http/http_server.h) on `host`:
  // 0 = pick a free port; -1 = none.
  int http_port = 8000;
  int http_threads = 2;
  absl::Duration http_request_timeout = absl::ZeroDuration();  // 0 = none
  int http_send_buffer_bytes = 0;  // HttpServerOptions::socket_send_buffer_bytes
  int32_t num_threads = 0;         // oneDNN / OpenMP threads; 0 = all cores
  DType weight_dtype = DType::kBF16;
  DType kv_dtype = DType::kBF16;
  // Matmul input precision; unset = the execution plan's choice for this CPU.
  std::optional<bool> bf16_activations;
  // ISA cap ("avx2", ...; empty = none), applied by Server::Create before any
  // kernel is chosen. Tests leave it empty.
  std::string max_cpu_isa;
  absl::Duration drain_timeout = absl::Seconds(30);
  EngineOptions engine;  // KV budget, batch limits, queue bound

  // gRPC transport limits.
  int max_message_bytes = 4 << 20;   // receive and send
  int max_concurrent_streams = 256;  // per HTTP/2 connection
  absl::Duration keepalive_time = absl::Seconds(60);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  // Largest text prompt / Tokenize input accepted.
  int64_t max_prompt_bytes = 1 << 20;
  // Output allowed to queue for a stream whose client does not read; past
  // it the request is cancelled and the stream ends RESOURCE_EXHAUSTED.
  int64_t max_stream_backlog_bytes = 1 << 20;
  // One INFO line per generation RPC when it ends (method, id, tenant, peer,
  // status, finish reason, token counts, queue/TTFT/total times).
  bool access_log = true;

  // TLS for the gRPC listener; plaintext when tls.cert_path is empty.
  TlsServerOptions tls;
  // Tenants file (API keys, weights, limits). Empty: single-user mode, auth
  // off. Reloaded when it changes (polled every tenants_poll_interval) and
  // on SIGHUP (main.cc).
  std::string tenants_config;
  absl::Duration tenants_poll_interval = absl::Seconds(1);

  // Test hook: called by Server::Create after the gRPC server is listening
  // (health NOT_SERVING) and before the model is loaded and warmed up.
  std::function<void(int port)> before_ready_for_testing;
};

// Reads the command-line flags (the only place that does) and the
// environment (OPENELM_MAX_CPU_ISA). Invalid values are kInvalidArgument
// naming the flag. `model_dir` and `tokenizer_path` stay empty when their
// flags are; see DefaultModelDir() and FindDefaultTokenizer()
// (server/default_paths.h), which main() uses to fill them.
absl::StatusOr<ServerOptions> ServerOptionsFromFlags();

// The --default_model_size flag ("270M" unless given).
std::string DefaultModelSizeFromFlags();

// Where the random-weight default checkpoint of `size` lives:
// $OPENELM_CACHE_DIR, else $XDG_CACHE_HOME/openelm-serve, else
// ~/.cache/openelm-serve, followed by /OpenELM-<size>-random.
// kFailedPrecondition when none of the variables is set.
absl::StatusOr<std::string> DefaultModelDir(const std::string& size);

// "bf16" | "f32" (| "f16") <-> DType; kInvalidArgument naming `flag`.

}  // namespace openelm::server

#endif  // OPENELM_SERVER_OPTIONS_H_
