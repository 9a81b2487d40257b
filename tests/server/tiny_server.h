#ifndef OPENELM_TESTS_SERVER_TINY_SERVER_H_
#define OPENELM_TESTS_SERVER_TINY_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "server/options.h"

// What the in-process server tests share: options for a server on the tiny
// generated model, and waiting for the engine's published load.
namespace openelm::testing {

// 127.0.0.1, free ports (gRPC and metrics), one engine thread, a 32 MiB KV
// pool of 16-token blocks, 16 seats, 256-token steps, 64 queued requests,
// 2 s drain.
inline ::openelm::server::ServerOptions TinyServerOptions(const std::string& model_dir,
                                                          const std::string& tokenizer) {
  ::openelm::server::ServerOptions o;
  o.model_dir = model_dir;
  o.tokenizer_path = tokenizer;
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = 0;
  o.http_port = 0;
  o.num_threads = 1;
  o.engine.kv_memory_bytes = 32 << 20;
  o.engine.block_size_tokens = 16;
  o.engine.max_num_seqs = 16;
  o.engine.max_num_batched_tokens = 256;
  o.engine.max_queued_requests = 64;
  o.drain_timeout = absl::Seconds(2);
  return o;
}

inline v1::ServerLoad GetLoad(v1::InferenceService::Stub& stub) {
  grpc::ClientContext ctx;
  v1::ServerLoad load;
  EXPECT_TRUE(stub.GetServerLoad(&ctx, v1::GetServerLoadRequest(), &load).ok());
  return load;
}

// The engine publishes its load once per step, so tests poll: returns the
// first load for which `done` holds, or the last one read after `timeout`.
template <typename Predicate>
v1::ServerLoad WaitForLoad(v1::InferenceService::Stub& stub, Predicate done,
                           absl::Duration timeout = absl::Seconds(10)) {
  v1::ServerLoad load = GetLoad(stub);
  const absl::Time until = absl::Now() + timeout;
  while (!done(load) && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
    load = GetLoad(stub);
  }
  return load;
}

// Nothing running or waiting.
inline bool IsIdle(const v1::ServerLoad& load) {
  return load.requests_running() == 0 && load.requests_waiting() == 0;
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_SERVER_TINY_SERVER_H_
