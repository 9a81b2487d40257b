#ifndef OPENELM_TESTS_SERVER_SERVER_TEST_UTIL_H_
#define OPENELM_TESTS_SERVER_SERVER_TEST_UTIL_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

// Helpers for the server tests: temp dirs, the tiny checkpoint, a child
// openelm_server process, and a plain-socket HTTP client for /metrics.
namespace openelm::testing {

// A fresh directory under $TEST_TMPDIR or /tmp; removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes the random-weight tiny OpenELM checkpoint (bf16, seed 7) into `dir`.
absl::Status WriteTinyCheckpoint(const std::string& dir);

// Base of the suites that start servers on the tiny checkpoint: written once
// per suite (SetUpTestSuite) into a TempDir removed after the suite.
class TinyCheckpointSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  // The checkpoint's directory, while the suite runs.
  static const std::string& TinyModelDir();

 private:
  static TempDir* model_dir_;
};

// One HTTP/1.0 GET to 127.0.0.1:`port``path`; returns the body of a 200.
absl::StatusOr<std::string> HttpGet(int port, absl::string_view path);

// The value of the sample `series` (a metric name with its label set exactly
// as exposed, e.g. `openelm_requests_finished_total{finish_reason="length"}`)
// in Prometheus text format, or nullopt when absent.
std::optional<double> MetricValue(absl::string_view text, absl::string_view series);

// A child process running a server binary, with its stdout piped to us.
class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess();  // SIGKILLs and reaps the child if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts `binary` with `args` and reads stdout until "listening on H:P"
  // (and "metrics on H:P" when `expect_metrics`) or `timeout`.
  absl::Status Start(const std::string& binary, const std::vector<std::string>& args,
                     bool expect_metrics, absl::Duration timeout);
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  void Signal(int signal_number);
  // Waits for exit; returns the exit code, or kDeadlineExceeded, or
  // kInternal when killed by a signal.
  absl::StatusOr<int> Wait(absl::Duration timeout);

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int port_ = 0;
  int metrics_port_ = -1;
};

// Runs a command to completion; returns its exit code (kInternal when it did
// not exit normally, kDeadlineExceeded after `timeout`, killing it).
absl::StatusOr<int> RunCommand(const std::vector<std::string>& argv,
                               absl::Duration timeout);

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_SERVER_SERVER_TEST_UTIL_H_
