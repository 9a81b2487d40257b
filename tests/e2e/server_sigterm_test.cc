// SIGTERM drain of a real openelm_server process (tiny model, port 0): every
// open stream ends with a final status, health turns NOT_SERVING, and the
// process exits 0.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

struct StreamOutcome {
  grpc::Status status;
  int num_tokens = 0;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
};

TEST(ServerSigtermTest, DrainsStreamsAndExitsZero) {
  TempDir dir;
  ASSERT_OK(WriteTinyCheckpoint(dir.path()));
  ServerProcess server;
  ASSERT_OK(server.Start(OPENELM_SERVER_BINARY,
                         {absl::StrCat("--model_dir=", dir.path()),
                          absl::StrCat("--tokenizer=", OPENELM_TOKENIZER_MODEL),
                          "--port=0", "--metrics_port=0", "--http_port=0", "--threads=1",
                          "--kv_cache_bytes=33554432", "--drain_timeout=700ms"},
                         /*expect_metrics=*/true, absl::Seconds(60)));
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server.port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::InferenceService::NewStub(channel);
  auto health = Health::NewStub(channel);

  // Watch health from the start.
  grpc::ClientContext watch_ctx;
  HealthCheckRequest watch_req;
  watch_req.set_service("openelm.v1.InferenceService");
  auto watch = health->Watch(&watch_ctx, watch_req);
  HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);

  // Several long streams, each on its own thread, all under way.
  constexpr int kStreams = 4;
  std::vector<StreamOutcome> outcomes(kStreams);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::thread> threads;
  absl::Mutex mu;
  int started = 0;
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->set_deadline(std::chrono::system_clock::now() +
                                  std::chrono::seconds(60));
    threads.emplace_back([&, i] {
      v1::GenerateRequest req;
      req.set_text("Once upon a time there was");
      req.mutable_options()->set_max_tokens(2000);
      req.mutable_options()->set_temperature(0.0f);
      req.mutable_options()->set_ignore_eos(true);
      auto reader = stub->StreamGenerate(contexts[i].get(), req);
      v1::GenerateResponse msg;
      bool first = true;
      while (reader->Read(&msg)) {
        if (first) {
          absl::MutexLock lock(&mu);
          ++started;
          first = false;
        }
        for (const v1::Choice& c : msg.choices()) {
          outcomes[i].num_tokens += c.token_ids_size();
          if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
            outcomes[i].finish_reason = c.finish_reason();
          }
        }
      }
      outcomes[i].status = reader->Finish();
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto all_started = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return started == kStreams;
    };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_started), absl::Seconds(30)));
  }

  server.Signal(SIGTERM);
  // Health turns NOT_SERVING as the drain starts.
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);

  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    const StreamOutcome& o = outcomes[i];
    SCOPED_TRACE(absl::StrCat("stream ", i, ": ", o.status.error_code(), " ",
                              o.status.error_message()));
    // Either finished normally (with a finish reason) or cut by the drain
    // timeout with UNAVAILABLE; never a torn stream.
    if (o.status.ok()) {
      EXPECT_NE(o.finish_reason, v1::FINISH_REASON_UNSPECIFIED);
    } else {
      EXPECT_EQ(o.status.error_code(), grpc::StatusCode::UNAVAILABLE);
    }
    EXPECT_GT(o.num_tokens, 0);
  }
  ASSERT_OK_AND_ASSIGN(int exit_code, server.Wait(absl::Seconds(30)));
  EXPECT_EQ(exit_code, 0);
  while (watch->Read(&update)) {
  }
  watch->Finish();
}

}  // namespace
}  // namespace openelm::testing
