#ifndef OPENELM_TESTS_E2E_CLIENT_E2E_UTIL_H_
#define OPENELM_TESTS_E2E_CLIENT_E2E_UTIL_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// Subprocess, HTTP and Prometheus helpers for the client end-to-end tests.
// Everything binds to and talks over 127.0.0.1 only.
namespace openelm::testing::e2e {

// A fresh directory under $TMPDIR (or /tmp), removed recursively by the
// destructor.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  std::string out;     // stdout
  std::string err;     // stderr
};

// How a child is started, beyond its arguments. The defaults inherit the
// test's working directory and environment.
struct SpawnOptions {
  std::string working_dir;                     // "" = the test's
  std::map<std::string, std::string> set_env;  // added or replaced
  std::vector<std::string> unset_env;          // removed
};

// Runs argv[0] (a path) with the rest as arguments, feeding `stdin_text`,
// and waits up to `timeout` (then SIGKILL, exit_code -1).
absl::StatusOr<CommandResult> RunAndCapture(const std::vector<std::string>& argv,
                                            absl::Duration timeout,
                                            absl::string_view stdin_text = "",
                                            const SpawnOptions& spawn = {});

// An openelm_server child started with --port=0 --metrics_port=0. Its
// stdout is read until both "listening on H:P" and "metrics on H:P" lines
// appear; its stderr goes to `log_path`. The destructor sends SIGTERM and
// reaps it (SIGKILL after 15 s).
class ServerChild {
 public:
  ServerChild() = default;
  ~ServerChild();
  ServerChild(const ServerChild&) = delete;
  ServerChild& operator=(const ServerChild&) = delete;

  absl::Status Start(const std::string& binary, const std::vector<std::string>& args,
                     const std::string& log_path, absl::Duration timeout,
                     const SpawnOptions& spawn = {});
  void Stop();
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string target() const;  // "127.0.0.1:<port>"
  std::string Log() const;     // what it wrote to stderr so far

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int port_ = 0;
  int metrics_port_ = -1;
  std::string log_path_;
};

// Plain HTTP/1.0 GET of http://127.0.0.1:<port><path>; the body of a 200.
absl::StatusOr<std::string> HttpGet(int port, absl::string_view path);

// Prometheus text format -> {"name{labels}" or "name": value}.
std::map<std::string, double> ParsePrometheusText(absl::string_view text);

// Sum of every sample whose series is `name` or starts with `name{`.
double SumSeries(const std::map<std::string, double>& samples, absl::string_view name);

}  // namespace openelm::testing::e2e

#endif  // OPENELM_TESTS_E2E_CLIENT_E2E_UTIL_H_
