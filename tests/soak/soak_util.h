#ifndef OPENELM_TESTS_SOAK_SOAK_UTIL_H_
#define OPENELM_TESTS_SOAK_SOAK_UTIL_H_

// Pieces of openelm_soak that do not depend on the request mix: a timer
// thread, the result tally, the RSS sampler and the SIGTERM phase.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <queue>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "openelm/v1/inference.pb.h"

namespace openelm::soak {

// "OK", "CANCELLED", ... for a gRPC status code.
std::string CodeName(grpc::StatusCode code);

// True for 127.0.0.0/8, localhost and [::1] targets (optionally "ipv4:" /
// "ipv6:" / "dns:///" prefixed) with a port.
bool IsLoopbackTarget(absl::string_view target);

// Runs callbacks at given times on one thread of its own. Callbacks must be
// short (they start gRPC operations or kill a process).
//
// Thread-safe.
class Timer {
 public:
  Timer();
  ~Timer();  // Drain() + join.
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void After(absl::Duration delay, std::function<void()> fn);
  // Blocks until every scheduled callback has run.
  void Drain();

 private:
  struct Task {
    absl::Time when;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Task& o) const {
      return when != o.when ? when > o.when : seq > o.seq;
    }
  };
  void Loop();

  absl::Mutex mu_;
  std::priority_queue<Task, std::vector<Task>, std::greater<Task>> tasks_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int32_t running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

struct RssReport {
  bool valid = false;
  int64_t baseline_kb = 0;  // median of the samples just after the warm-up
  int64_t final_kb = 0;     // median of the last samples under load
  int64_t max_kb = 0;
  double growth = 0;  // final / baseline - 1
  int32_t samples = 0;
};

// Samples VmRSS of a process every 250 ms on a thread of its own.
//
// Thread-safe.
class RssSampler {
 public:
  explicit RssSampler(pid_t pid) : pid_(pid) {}
  ~RssSampler() { Stop(); }
  // Starts sampling; samples before `warmup_end` do not count.
  void Start(absl::Time warmup_end);
  void Stop();
  RssReport Report() const;

 private:
  const pid_t pid_;
  absl::Time warmup_end_;
  mutable absl::Mutex mu_;
  std::vector<std::pair<absl::Time, int64_t>> samples_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// VmRSS of `pid` in kB, or -1.
int64_t ReadRssKb(pid_t pid);

// The tally of one soak run.
//
// Thread-safe.
class Results {
 public:
  void CountPlan(bool unary, bool invalid, bool cancel, bool short_deadline,
                 bool slow_reader);
  void CountStatus(grpc::StatusCode code, bool stream);
  void CountFinishReason(v1::FinishReason reason);
  void CountDisconnect();
  void AddTokens(int64_t n);
  // Each server request id must be seen by one call only.
  void SeeRequestId(const std::string& id);
  void Violation(std::string what);
  void set_shutting_down() {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  bool shutting_down() const {
    absl::MutexLock lock(&mu_);
    return shutting_down_;
  }
  int64_t num_violations() const {
    absl::MutexLock lock(&mu_);
    return num_violations_;
  }
  std::string Report(absl::string_view target, int32_t sent, absl::Duration load_time,
                     absl::string_view server_load, const RssReport& rss,
                     absl::string_view health, absl::string_view sigterm) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> plan_counts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> status_counts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> finish_counts_ ABSL_GUARDED_BY(mu_);
  int64_t finals_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t disconnects_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t tokens_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);  // the first few
  int64_t num_violations_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

// Starts `num_streams` calls with `start_one`, sends SIGTERM to `pid`, and
// checks that every call ends (via `wait_all`, which returns the calls still
// open after its timeout) and the process exits within `timeout`. Returns a
// one-line summary; problems go to `results`.
std::string SigtermUnderLoad(pid_t pid, absl::Duration timeout, Results& results,
                             const std::function<void()>& start_one,
                             const std::function<int32_t(absl::Duration)>& wait_all,
                             int32_t num_streams = 16);

}  // namespace openelm::soak

#endif  // OPENELM_TESTS_SOAK_SOAK_UTIL_H_
