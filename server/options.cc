#include "server/options.h"

#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/model/execution_plan.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face OpenELM checkpoint directory (config.json + "
          "*.safetensors). Empty: use a random-weight checkpoint of "
          "--default_model_size, generated into the cache directory on first "
          "run (its text is meaningless).");
ABSL_FLAG(std::string, tokenizer, "",
          "Path of the Llama-2 SentencePiece tokenizer.model. Empty: "
          "$OPENELM_TOKENIZER if set (used alone), else the first file found of "
          "<bindir>/../share/openelm/tokenizer.model (install prefix), "
          "<bindir>/../../../shared/tokenizer/llama2-tokenizer.model (build "
          "tree <repo>/build/bin beside <repo>/../shared) and "
          "../shared/tokenizer/llama2-tokenizer.model "
          "relative to the working directory; <bindir> is this binary's "
          "directory. Start-up fails with NOT_FOUND listing them when none "
          "exists.");
ABSL_FLAG(std::string, host, "127.0.0.1",
          "Address to bind the gRPC, HTTP and metrics endpoints to (0.0.0.0 for "
          "all interfaces).");
ABSL_FLAG(int32_t, port, 50051,
          "gRPC port. 0 picks a free port and prints \"listening on "
          "<host>:<port>\" on stdout.");
ABSL_FLAG(int32_t, metrics_port, 9464,
          "Prometheus /metrics port. 0 picks a free port (printed as "
          "\"metrics on <host>:<port>\"); -1 disables the endpoint.");
ABSL_FLAG(int32_t, http_port, 8000,
          "Port of the OpenAI-compatible HTTP API (/v1/completions, "
          "/v1/chat/completions, /v1/models, /health) on --host, with the "
          "--tls_* certificate when set. 0 picks a free port (printed as "
          "\"http on <host>:<port>\"); -1 disables it.");
ABSL_FLAG(int32_t, http_threads, 2,
          "I/O threads of the HTTP API (they never tokenize or wait).");
ABSL_FLAG(absl::Duration, http_request_timeout, absl::ZeroDuration(),
          "Deadline of HTTP requests that send no x-request-timeout header; 0 = "
          "none.");
ABSL_FLAG(int32_t, threads, 0, "oneDNN/OpenMP threads for the model; 0 = all cores.");
ABSL_FLAG(int64_t, kv_cache_bytes, int64_t{1} << 30,
          "Memory for the paged KV cache, in bytes.");
ABSL_FLAG(int32_t, block_size, 16, "KV cache block size, in tokens.");
ABSL_FLAG(int32_t, max_num_seqs, 64,
          "Most sequences (requests x completions) in one engine step.");
ABSL_FLAG(int32_t, max_num_batched_tokens, 512,
          "Most tokens (prefill + decode) in one engine step.");
ABSL_FLAG(int32_t, max_logits_rows, 0,
          "Most rows of logits one engine step computes (one per sampled sequence, "
          "one per prompt token of prompt_logprobs requests, whose prefill is cut to "
          "fit); 0 = max(max_num_seqs, 64), else at least min(max_num_seqs, "
          "max_num_batched_tokens). Each row is vocab_size floats.");
ABSL_FLAG(int32_t, max_queued_requests, 1024,
          "Most requests waiting for admission; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, weight_dtype, "auto",
          "Weight precision in memory: auto (= bf16, as published), bf16, f32, or int8 "
          "(quantized at load per output channel; about 2x faster decode, see README "
          "for the measured accuracy).");
ABSL_FLAG(std::string, kv_dtype, "auto",
          "KV cache precision: auto (= bf16), bf16 or f32.");
ABSL_FLAG(
    std::string, max_cpu_isa, "",
    "Run the kernels (and oneDNN) at most at this ISA level: portable, avx2, avx512, "
    "avx512_bf16 or amx. Empty: $OPENELM_MAX_CPU_ISA, else the best this CPU has. "
    "For testing a lower plan on a bigger CPU.");
ABSL_FLAG(std::string, activation_dtype, "auto",
          "Matmul input precision: auto (bf16 where the CPU has bf16 instructions, "
          "avx512_bf16 or amx; f32 elsewhere), bf16 (about 2x faster there, logits "
          "within ~1e-2 of fp32) or f32 (bf16 weights stay bf16 and are widened in "
          "registers). Accumulation is fp32 either way.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM/SIGINT: how long running requests may continue before "
          "they are ended with UNAVAILABLE (e.g. 30s, 500ms).");
ABSL_FLAG(int64_t, max_stream_backlog_bytes, int64_t{1} << 20,
          "Output queued for a stream whose client stops reading before the "
          "request is cancelled (RESOURCE_EXHAUSTED).");
ABSL_FLAG(bool, access_log, true,
          "Log one line per generation RPC when it ends (tenant, status, "
          "tokens, latency).");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for the gRPC listener. With --tls_key, the "
          "listener speaks TLS only; empty: plaintext.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key matching --tls_cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set, clients must present a certificate signed "
          "by it (mutual TLS). Needs --tls_cert.");
ABSL_FLAG(std::string, tenants_config, "",
          "Tenants file (JSON: API-key hashes, weights, limits). Reloaded on "
          "SIGHUP and when the file changes. Empty: single user, no auth.");
ABSL_FLAG(std::string, default_model_size, "270M",
          "Shape of the random-weight model used when --model_dir is empty: "
          "tiny, 270M, 450M, 1_1B or 3B.");

namespace openelm::server {
namespace {

std::string GetEnv(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

absl::Status CheckRange(const char* flag, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", value, " is out of range [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerOptions> ServerOptionsFromFlags() {
  ServerOptions o;
  o.model_dir = absl::GetFlag(FLAGS_model_dir);
  o.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  o.host = absl::GetFlag(FLAGS_host);
  if (o.host.empty()) return absl::InvalidArgumentError("--host is empty");
  o.port = absl::GetFlag(FLAGS_port);
  if (absl::Status s = CheckRange("port", o.port, 0, 65535); !s.ok()) return s;
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (absl::Status s = CheckRange("metrics_port", o.metrics_port, -1, 65535); !s.ok()) {
    return s;
  }
  o.http_port = absl::GetFlag(FLAGS_http_port);
  if (absl::Status s = CheckRange("http_port", o.http_port, -1, 65535); !s.ok()) {
    return s;
  }
  o.http_threads = absl::GetFlag(FLAGS_http_threads);
  if (absl::Status s = CheckRange("http_threads", o.http_threads, 1, 256); !s.ok()) {
    return s;
  }
  o.http_request_timeout = absl::GetFlag(FLAGS_http_request_timeout);
  if (o.http_request_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--http_request_timeout must not be negative");
  }
  o.num_threads = absl::GetFlag(FLAGS_threads);
  if (absl::Status s = CheckRange("threads", o.num_threads, 0, 4096); !s.ok()) {
    return s;
  }
  auto weight_dtype = ParseDTypeChoice(absl::GetFlag(FLAGS_weight_dtype), "weight_dtype");
  if (!weight_dtype.ok()) return weight_dtype.status();
  o.weight_dtype = weight_dtype->value_or(DType::kBF16);
  auto kv_dtype = ParseDTypeChoice(absl::GetFlag(FLAGS_kv_dtype), "kv_dtype");
  if (!kv_dtype.ok()) return kv_dtype.status();
  o.kv_dtype = kv_dtype->value_or(DType::kBF16);
  auto activation_dtype =
      ParseDTypeChoice(absl::GetFlag(FLAGS_activation_dtype), "activation_dtype");
  if (!activation_dtype.ok()) return activation_dtype.status();
  if (activation_dtype->has_value())
    o.bf16_activations = **activation_dtype == DType::kBF16;
  o.max_cpu_isa = absl::GetFlag(FLAGS_max_cpu_isa);
  if (o.max_cpu_isa.empty()) o.max_cpu_isa = GetEnv("OPENELM_MAX_CPU_ISA");
  if (!o.max_cpu_isa.empty() && o.max_cpu_isa != "native" &&
      !ParseCpuIsa(o.max_cpu_isa).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_cpu_isa (or OPENELM_MAX_CPU_ISA) = \"", o.max_cpu_isa,
                     "\": expected portable, avx2, avx512, avx512_bf16, amx or native"));
  }
  o.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  if (o.drain_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--drain_timeout must not be negative");
  }
  o.max_stream_backlog_bytes = absl::GetFlag(FLAGS_max_stream_backlog_bytes);
  if (absl::Status s = CheckRange("max_stream_backlog_bytes", o.max_stream_backlog_bytes,
                                  1024, int64_t{1} << 30);
      !s.ok()) {
    return s;
  }
  o.access_log = absl::GetFlag(FLAGS_access_log);

  o.engine.kv_memory_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  if (absl::Status s =
          CheckRange("kv_cache_bytes", o.engine.kv_memory_bytes, 1, int64_t{1} << 42);
      !s.ok()) {
    return s;
  }
  o.engine.block_size_tokens = absl::GetFlag(FLAGS_block_size);
  if (absl::Status s = CheckRange("block_size", o.engine.block_size_tokens, 1, 2048);
      !s.ok()) {
    return s;
  }
  o.engine.max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs);
  if (absl::Status s = CheckRange("max_num_seqs", o.engine.max_num_seqs, 1, 4096);
      !s.ok()) {
    return s;
  }
  o.engine.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  if (absl::Status s = CheckRange("max_num_batched_tokens",
                                  o.engine.max_num_batched_tokens, 1, 1 << 20);
      !s.ok()) {
    return s;
  }
  o.engine.max_logits_rows = absl::GetFlag(FLAGS_max_logits_rows);
  if (absl::Status s =
          CheckRange("max_logits_rows", o.engine.max_logits_rows, 0, 1 << 20);
      !s.ok()) {
    return s;
  }
  o.engine.max_queued_requests = absl::GetFlag(FLAGS_max_queued_requests);
  if (absl::Status s =
          CheckRange("max_queued_requests", o.engine.max_queued_requests, 1, 1 << 20);
      !s.ok()) {
    return s;
  }
  o.tls.cert_path = absl::GetFlag(FLAGS_tls_cert);
  o.tls.key_path = absl::GetFlag(FLAGS_tls_key);
  o.tls.client_ca_path = absl::GetFlag(FLAGS_tls_client_ca);
  if (o.tls.cert_path.empty() != o.tls.key_path.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!o.tls.client_ca_path.empty() && o.tls.cert_path.empty()) {
    return absl::InvalidArgumentError("--tls_client_ca needs --tls_cert and --tls_key");
  }
  o.tenants_config = absl::GetFlag(FLAGS_tenants_config);
  return o;
}

std::string DefaultModelSizeFromFlags() {
  return absl::GetFlag(FLAGS_default_model_size);
}

absl::StatusOr<std::string> DefaultModelDir(const std::string& size) {
  std::string base = GetEnv("OPENELM_CACHE_DIR");
  if (base.empty()) {
    const std::string xdg = GetEnv("XDG_CACHE_HOME");
    if (!xdg.empty()) base = absl::StrCat(xdg, "/openelm-serve");
  }
  if (base.empty()) {
    const std::string home = GetEnv("HOME");
    if (!home.empty()) base = absl::StrCat(home, "/.cache/openelm-serve");
  }
  if (base.empty()) {
    return absl::FailedPreconditionError(
        "no cache directory for the default model: set --model_dir, "
        "OPENELM_CACHE_DIR, XDG_CACHE_HOME or HOME");
  }
  return absl::StrCat(base, "/OpenELM-", size, "-random");
}

}  // namespace openelm::server
