#include "tests/e2e/client_e2e_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace openelm::testing::e2e {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Waits for `pid` up to `timeout`; SIGKILLs it after that. Returns the exit
// code, or -1 when it was killed or died of a signal.
int WaitOrKill(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return -1;
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            posix_spawn_file_actions_t* actions,
                            const SpawnOptions& spawn) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The environment: ours, less unset_env and the names set_env replaces.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const absl::string_view entry(*e);
    const absl::string_view name = entry.substr(0, entry.find('='));
    bool drop = spawn.set_env.count(std::string(name)) > 0;
    for (const std::string& u : spawn.unset_env) drop = drop || name == u;
    if (!drop) env_strings.emplace_back(entry);
  }
  for (const auto& [name, value] : spawn.set_env) {
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  std::vector<char*> env;
  for (std::string& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);
  if (!spawn.working_dir.empty()) {
    posix_spawn_file_actions_addchdir_np(actions, spawn.working_dir.c_str());
  }
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], actions, nullptr, args.data(), env.data());
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("posix_spawn ", argv[0], ": ", std::strerror(rc)));
  }
  return pid;
}

}  // namespace

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/openelm_client_e2e_XXXXXX");
  char* made = mkdtemp(tmpl.data());
  path_ = made != nullptr ? made : "";
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

absl::StatusOr<CommandResult> RunAndCapture(const std::vector<std::string>& argv,
                                            absl::Duration timeout,
                                            absl::string_view stdin_text,
                                            const SpawnOptions& spawn) {
  ScratchDir dir;
  const std::string in_path = dir.path() + "/stdin";
  const std::string out_path = dir.path() + "/stdout";
  const std::string err_path = dir.path() + "/stderr";
  {
    std::ofstream in(in_path, std::ios::binary);
    in << stdin_text;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  absl::StatusOr<pid_t> pid = Spawn(argv, &actions, spawn);
  posix_spawn_file_actions_destroy(&actions);
  if (!pid.ok()) return pid.status();
  CommandResult result;
  result.exit_code = WaitOrKill(*pid, timeout);
  result.out = ReadAll(out_path);
  result.err = ReadAll(err_path);
  return result;
}

ServerChild::~ServerChild() { Stop(); }

void ServerChild::Stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    WaitOrKill(pid_, absl::Seconds(15));
    pid_ = -1;
  }
  if (stdout_fd_ >= 0) {
    close(stdout_fd_);
    stdout_fd_ = -1;
  }
}

std::string ServerChild::target() const { return absl::StrCat("127.0.0.1:", port_); }

std::string ServerChild::Log() const { return ReadAll(log_path_); }

absl::Status ServerChild::Start(const std::string& binary,
                                const std::vector<std::string>& args,
                                const std::string& log_path, absl::Duration timeout,
                                const SpawnOptions& spawn) {
  log_path_ = log_path;
  int fds[2];
  if (pipe(fds) != 0) return absl::InternalError("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<pid_t> pid = Spawn(argv, &actions, spawn);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (!pid.ok()) {
    close(fds[0]);
    return pid.status();
  }
  pid_ = *pid;
  stdout_fd_ = fds[0];

  // Read stdout lines until both ports are known.
  const absl::Time deadline = absl::Now() + timeout;
  std::string buffer;
  auto port_of = [](absl::string_view line, absl::string_view prefix, int* port) {
    if (!absl::ConsumePrefix(&line, prefix)) return false;
    line = absl::StripAsciiWhitespace(line);
    size_t colon = line.rfind(':');
    return colon != absl::string_view::npos &&
           absl::SimpleAtoi(line.substr(colon + 1), port);
  };
  while (port_ == 0 || metrics_port_ < 0) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(
          absl::StrCat("server did not print its ports in time; log:\n", Log()));
    }
    pollfd p = {stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) continue;
    char chunk[512];
    ssize_t n = read(stdout_fd_, chunk, sizeof(chunk));
    if (n <= 0) {
      return absl::InternalError(
          absl::StrCat("server exited during start-up; log:\n", Log()));
    }
    buffer.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      const std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      port_of(line, "listening on ", &port_);
      port_of(line, "metrics on ", &metrics_port_);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HttpGet(int port, absl::string_view path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to metrics port ", port));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::InternalError("write failed");
  }
  std::string response;
  char chunk[4096];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof(chunk))) > 0) response.append(chunk, n);
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  if (!absl::StartsWith(response, "HTTP/1.") || body == std::string::npos ||
      response.substr(9, 3) != "200") {
    return absl::InternalError(
        absl::StrCat("bad HTTP response: ", response.substr(0, 64)));
  }
  return response.substr(body + 4);
}

std::map<std::string, double> ParsePrometheusText(absl::string_view text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    if (absl::StartsWith(line, "#")) continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    double value = 0;
    if (!absl::SimpleAtod(line.substr(space + 1), &value)) continue;
    samples[std::string(absl::StripAsciiWhitespace(line.substr(0, space)))] = value;
  }
  return samples;
}

double SumSeries(const std::map<std::string, double>& samples, absl::string_view name) {
  double sum = 0;
  for (const auto& [series, value] : samples) {
    if (series == name || absl::StartsWith(series, absl::StrCat(name, "{"))) sum += value;
  }
  return sum;
}

}  // namespace openelm::testing::e2e
