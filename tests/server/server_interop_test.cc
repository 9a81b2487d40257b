// Drives interop_client.py (Debian's python3-grpcio) against a real
// openelm_server process with the tiny model.
#include <csignal>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

TEST(ServerInteropTest, PythonGrpcioClientStreamsAndReflects) {
  TempDir dir;
  ASSERT_OK(WriteTinyCheckpoint(dir.path()));
  ServerProcess server;
  ASSERT_OK(
      server.Start(OPENELM_SERVER_BINARY,
                   {absl::StrCat("--model_dir=", dir.path()),
                    absl::StrCat("--tokenizer=", OPENELM_TOKENIZER_MODEL), "--port=0",
                    "--metrics_port=-1", "--http_port=-1", "--threads=1",
                    "--kv_cache_bytes=33554432", "--drain_timeout=1s"},
                   /*expect_metrics=*/false, absl::Seconds(60)));
  ASSERT_OK_AND_ASSIGN(
      int code, RunCommand({OPENELM_PYTHON3, OPENELM_INTEROP_CLIENT,
                            absl::StrCat("--port=", server.port()),
                            absl::StrCat("--proto_root=", OPENELM_PROTO_ROOT),
                            absl::StrCat("--test_proto_root=", OPENELM_TEST_PROTO_ROOT)},
                           absl::Seconds(90)));
  EXPECT_EQ(code, 0) << "interop_client.py failed (see its output above)";
  server.Signal(SIGTERM);
  ASSERT_OK_AND_ASSIGN(int exit_code, server.Wait(absl::Seconds(30)));
  EXPECT_EQ(exit_code, 0);
}

}  // namespace
}  // namespace openelm::testing
