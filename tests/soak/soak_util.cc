#include "tests/soak/soak_util.h"

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace openelm::soak {

std::string CodeName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  const int c = static_cast<int>(code);
  if (c >= 0 && c < static_cast<int>(std::size(kNames))) return kNames[c];
  return absl::StrCat("CODE_", c);
}

bool IsLoopbackTarget(absl::string_view target) {
  absl::ConsumePrefix(&target, "dns:///");
  absl::ConsumePrefix(&target, "ipv4:");
  absl::ConsumePrefix(&target, "ipv6:");
  absl::string_view host;
  absl::string_view port;
  if (absl::StartsWith(target, "[")) {
    const size_t close = target.find(']');
    if (close == absl::string_view::npos || close + 1 >= target.size() ||
        target[close + 1] != ':') {
      return false;
    }
    host = target.substr(1, close - 1);
    port = target.substr(close + 2);
  } else {
    const size_t colon = target.rfind(':');
    if (colon == absl::string_view::npos) return false;
    host = target.substr(0, colon);
    port = target.substr(colon + 1);
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number <= 0 || port_number > 65535) {
    return false;
  }
  if (host == "localhost" || host == "::1") return true;
  // 127.x.y.z with four decimal parts.
  if (!absl::StartsWith(host, "127.")) return false;
  int parts = 0;
  for (absl::string_view rest = host; !rest.empty();) {
    const size_t dot = rest.find('.');
    const absl::string_view part = rest.substr(0, dot);
    int value = 0;
    if (part.empty() || part.size() > 3 || !absl::SimpleAtoi(part, &value) ||
        value > 255) {
      return false;
    }
    ++parts;
    if (dot == absl::string_view::npos) break;
    rest.remove_prefix(dot + 1);
    if (rest.empty()) return false;
  }
  return parts == 4;
}

// ---- Timer ----

Timer::Timer() : thread_([this] { Loop(); }) {}

Timer::~Timer() {
  Drain();
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void Timer::After(absl::Duration delay, std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  tasks_.push(Task{absl::Now() + delay, next_seq_++, std::move(fn)});
}

void Timer::Drain() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return tasks_.empty() && running_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

void Timer::Loop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    if (stop_ && tasks_.empty()) return;
    if (tasks_.empty()) {
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !tasks_.empty();
      };
      mu_.Await(absl::Condition(&wake));
      continue;
    }
    const absl::Time when = tasks_.top().when;
    if (absl::Now() < when) {
      // Wake at `when`, or earlier when an earlier task arrives.
      const uint64_t seen = next_seq_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return next_seq_ != seen || stop_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&changed), when);
      continue;
    }
    std::function<void()> fn = tasks_.top().fn;
    tasks_.pop();
    ++running_;
    mu_.Unlock();
    fn();
    fn = nullptr;  // release captured calls outside the lock
    mu_.Lock();
    --running_;
  }
}

// ---- RSS ----

int64_t ReadRssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      rest = absl::StripAsciiWhitespace(rest);
      absl::ConsumeSuffix(&rest, "kB");
      int64_t kb = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kb)) return kb;
    }
  }
  return -1;
}

void RssSampler::Start(absl::Time warmup_end) {
  if (pid_ <= 0) return;
  warmup_end_ = warmup_end;
  thread_ = std::thread([this] {
    while (true) {
      const int64_t kb = ReadRssKb(pid_);
      absl::MutexLock lock(&mu_);
      if (kb > 0) samples_.emplace_back(absl::Now(), kb);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Milliseconds(250)))
        return;
    }
  });
}

void RssSampler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

namespace {
int64_t Median(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

RssReport RssSampler::Report() const {
  absl::MutexLock lock(&mu_);
  RssReport r;
  std::vector<int64_t> after;  // samples after the warm-up, in time order
  for (const auto& [t, kb] : samples_) {
    r.max_kb = std::max(r.max_kb, kb);
    if (t >= warmup_end_) after.push_back(kb);
  }
  r.samples = static_cast<int32_t>(after.size());
  if (after.size() < 6) return r;
  const size_t window = std::min<size_t>(20, after.size() / 3);
  r.baseline_kb = Median(std::vector<int64_t>(after.begin(), after.begin() + window));
  r.final_kb = Median(std::vector<int64_t>(after.end() - window, after.end()));
  r.growth = static_cast<double>(r.final_kb) / static_cast<double>(r.baseline_kb) - 1.0;
  r.valid = true;
  return r;
}

// ---- Results ----

void Results::CountPlan(bool unary, bool invalid, bool cancel, bool short_deadline,
                        bool slow_reader) {
  absl::MutexLock lock(&mu_);
  ++plan_counts_[unary ? "unary" : "stream"];
  if (invalid) ++plan_counts_["invalid"];
  if (cancel) ++plan_counts_["cancel"];
  if (short_deadline) ++plan_counts_["short_deadline"];
  if (slow_reader) ++plan_counts_["slow_reader"];
}

void Results::CountStatus(grpc::StatusCode code, bool stream) {
  absl::MutexLock lock(&mu_);
  ++finals_;
  ++status_counts_[absl::StrCat(stream ? "stream " : "unary  ", CodeName(code))];
}

void Results::CountFinishReason(v1::FinishReason reason) {
  absl::MutexLock lock(&mu_);
  ++finish_counts_[v1::FinishReason_Name(reason)];
}

void Results::CountDisconnect() {
  absl::MutexLock lock(&mu_);
  ++disconnects_;
}

void Results::AddTokens(int64_t n) {
  absl::MutexLock lock(&mu_);
  tokens_ += n;
}

void Results::SeeRequestId(const std::string& id) {
  if (id.empty()) return;
  bool duplicate = false;
  {
    absl::MutexLock lock(&mu_);
    duplicate = !request_ids_.insert(id).second;
  }
  if (duplicate) Violation(absl::StrCat("request id '", id, "' seen by two calls"));
}

void Results::Violation(std::string what) {
  absl::MutexLock lock(&mu_);
  ++num_violations_;
  if (violations_.size() < 30) violations_.push_back(std::move(what));
}

std::string Results::Report(absl::string_view target, int32_t sent,
                            absl::Duration load_time, absl::string_view server_load,
                            const RssReport& rss, absl::string_view health,
                            absl::string_view sigterm) const {
  absl::MutexLock lock(&mu_);
  std::string out = "==== openelm_soak report ====\n";
  absl::StrAppendFormat(&out, "target            %s\n", target);
  absl::StrAppendFormat(
      &out, "requests sent     %d in %s (%.1f/s)\n", sent,
      absl::FormatDuration(absl::Trunc(load_time, absl::Milliseconds(1))),
      sent / std::max(1e-3, absl::ToDoubleSeconds(load_time)));
  absl::StrAppendFormat(
      &out, "final statuses    %d (calls, excluding %d killed-client disconnects)\n",
      finals_, disconnects_);
  absl::StrAppendFormat(&out, "tokens received   %d\n", tokens_);
  out += "request mix:\n";
  for (const auto& [k, v] : plan_counts_)
    absl::StrAppendFormat(&out, "  %-16s %d\n", k, v);
  absl::StrAppendFormat(&out, "  %-16s %d\n", "disconnect", disconnects_);
  out += "final status by code:\n";
  for (const auto& [k, v] : status_counts_)
    absl::StrAppendFormat(&out, "  %-26s %d\n", k, v);
  out += "finish reasons (per choice):\n";
  for (const auto& [k, v] : finish_counts_)
    absl::StrAppendFormat(&out, "  %-28s %d\n", k, v);
  absl::StrAppendFormat(&out, "server load after %s\n", server_load);
  if (rss.valid) {
    absl::StrAppendFormat(
        &out,
        "server RSS        baseline %d kB, final %d kB, max %d kB, growth "
        "%+.2f%% (%d samples after warm-up)\n",
        rss.baseline_kb, rss.final_kb, rss.max_kb, 100 * rss.growth, rss.samples);
  } else {
    absl::StrAppendFormat(&out, "server RSS        not measured (%d samples)\n",
                          rss.samples);
  }
  absl::StrAppendFormat(&out, "health            %s\n", health);
  absl::StrAppendFormat(&out, "SIGTERM phase     %s\n", sigterm);
  absl::StrAppendFormat(&out, "violations        %d\n", num_violations_);
  for (const std::string& v : violations_) absl::StrAppendFormat(&out, "  - %s\n", v);
  out += num_violations_ == 0 ? "RESULT: PASS\n" : "RESULT: FAIL\n";
  return out;
}

// ---- SIGTERM ----

namespace {
// True once `pid` is gone or a zombie (exited, not yet reaped by its parent).
bool ProcessExited(pid_t pid) {
  if (kill(pid, 0) != 0) return true;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  std::getline(in, stat);
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}
}  // namespace

std::string SigtermUnderLoad(pid_t pid, absl::Duration timeout, Results& results,
                             const std::function<void()>& start_one,
                             const std::function<int32_t(absl::Duration)>& wait_all,
                             int32_t num_streams) {
  for (int32_t i = 0; i < num_streams; ++i) start_one();
  absl::SleepFor(absl::Milliseconds(300));  // let them start decoding
  results.set_shutting_down();
  const absl::Time sent = absl::Now();
  if (kill(pid, SIGTERM) != 0) {
    results.Violation("SIGTERM: kill() failed");
    return "kill() failed";
  }
  const int32_t open = wait_all(timeout);
  if (open > 0) {
    results.Violation(absl::StrCat("SIGTERM: ", open, " calls never got a final status"));
  }
  const absl::Duration calls_done = absl::Now() - sent;
  while (!ProcessExited(pid) && absl::Now() - sent < timeout) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  const bool exited = ProcessExited(pid);
  if (!exited) results.Violation("SIGTERM: server still running after the timeout");
  return absl::StrFormat(
      "%d streams in flight; all ended %s after SIGTERM; process %s after %s",
      num_streams, absl::FormatDuration(absl::Trunc(calls_done, absl::Milliseconds(1))),
      exited ? "exited" : "DID NOT EXIT",
      absl::FormatDuration(absl::Trunc(absl::Now() - sent, absl::Milliseconds(1))));
}

}  // namespace openelm::soak
