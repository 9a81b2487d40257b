#include "tests/server/server_test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "engine/model/checkpoint.h"
#include "engine/model/openelm_config.h"

namespace openelm::testing {
namespace {

// Parses the port out of "<prefix><host>:<port>".
std::optional<int> PortAfter(absl::string_view line, absl::string_view prefix) {
  if (!absl::StartsWith(line, prefix)) return std::nullopt;
  const size_t colon = line.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(line.substr(colon + 1), &port)) {
    return std::nullopt;
  }
  return port;
}

absl::StatusOr<int> WaitPid(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return absl::InternalError(
          absl::StrCat("child ended by signal ", WTERMSIG(status)));
    }
    if (r < 0) return absl::InternalError(absl::StrCat("waitpid: ", strerror(errno)));
    if (absl::Now() > deadline) return absl::DeadlineExceededError("child still running");
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl =
      absl::StrCat(base != nullptr ? base : "/tmp", "/openelm_server_test.XXXXXX");
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

absl::Status WriteTinyCheckpoint(const std::string& dir) {
  absl::StatusOr<OpenElmConfig> config = MakeOpenElmConfig("tiny");
  if (!config.ok()) return config.status();
  return WriteRandomCheckpoint(*config, /*seed=*/7, DType::kBF16,
                               /*num_shards=*/1, dir);
}

TempDir* TinyCheckpointSuite::model_dir_ = nullptr;

void TinyCheckpointSuite::SetUpTestSuite() {
  model_dir_ = new TempDir();
  const absl::Status written = WriteTinyCheckpoint(model_dir_->path());
  ASSERT_TRUE(written.ok()) << written;
}

void TinyCheckpointSuite::TearDownTestSuite() {
  delete model_dir_;
  model_dir_ = nullptr;
}

const std::string& TinyCheckpointSuite::TinyModelDir() { return model_dir_->path(); }

absl::StatusOr<std::string> HttpGet(int port, absl::string_view path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect to port ", port, " failed"));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::InternalError("write failed");
  }
  std::string response;
  char buf[4096];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.") || body == std::string::npos) {
    return absl::InternalError(
        absl::StrCat("bad HTTP response: ", response.substr(0, 200)));
  }
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (!absl::StrContains(status_line, " 200")) {
    return absl::InternalError(absl::StrCat("HTTP status: ", status_line));
  }
  return response.substr(body + 4);
}

std::optional<double> MetricValue(absl::string_view text, absl::string_view series) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.size() > series.size() && absl::StartsWith(line, series) &&
        line[series.size()] == ' ') {
      double value = 0;
      if (absl::SimpleAtod(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return std::nullopt;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

absl::Status ServerProcess::Start(const std::string& binary,
                                  const std::vector<std::string>& args,
                                  bool expect_metrics, absl::Duration timeout) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return absl::InternalError("pipe failed");
  std::vector<std::string> argv_strings = {binary};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  stdout_fd_ = pipe_fds[0];

  const absl::Time deadline = absl::Now() + timeout;
  std::string buffer;
  while (port_ == 0 || (expect_metrics && metrics_port_ < 0)) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("server did not print its ports; stdout: ", buffer));
    }
    pollfd pfd{stdout_fd_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left))) <= 0) continue;
    char buf[512];
    const ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n <= 0) {
      absl::StatusOr<int> code = WaitPid(pid_, absl::Seconds(5));
      pid_ = -1;
      return absl::InternalError(absl::StrCat(
          "server exited before listening (",
          code.ok() ? absl::StrCat("exit ", *code) : code.status().ToString(), ")"));
    }
    buffer.append(buf, static_cast<size_t>(n));
    size_t newline;
    while ((newline = buffer.find('\n')) != std::string::npos) {
      const std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (auto p = PortAfter(line, "listening on "); p.has_value()) port_ = *p;
      if (auto p = PortAfter(line, "metrics on "); p.has_value()) metrics_port_ = *p;
    }
  }
  return absl::OkStatus();
}

void ServerProcess::Signal(int signal_number) {
  if (pid_ > 0) kill(pid_, signal_number);
}

absl::StatusOr<int> ServerProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return absl::FailedPreconditionError("no child");
  absl::StatusOr<int> code = WaitPid(pid_, timeout);
  if (code.ok() || code.status().code() == absl::StatusCode::kInternal) pid_ = -1;
  return code;
}

absl::StatusOr<int> RunCommand(const std::vector<std::string>& args,
                               absl::Duration timeout) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& s : copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  absl::StatusOr<int> code = WaitPid(pid, timeout);
  if (!code.ok() && code.status().code() == absl::StatusCode::kDeadlineExceeded) {
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
  }
  return code;
}

}  // namespace openelm::testing
