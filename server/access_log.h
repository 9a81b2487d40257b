#ifndef OPENELM_SERVER_ACCESS_LOG_H_
#define OPENELM_SERVER_ACCESS_LOG_H_

#include <grpcpp/support/status_code_enum.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/base/types.h"
#include "engine/request/request_types.h"

namespace openelm::server {

// The access log's writer: gRPC threads hand it finished lines and return at
// once; a thread of its own writes them to a file descriptor (stderr by
// default). A log pipe that stops draining therefore never holds up a gRPC
// thread. What it can hold is bounded: when `max_buffered_bytes` are already
// waiting, a new line is dropped and counted (on_drop) instead.
//
// Thread-safe. The destructor writes what is buffered (it may block on the
// descriptor) and joins the writer.
class AccessLog {
 public:
  struct Options {
    int fd = 2;                           // not owned
    size_t max_buffered_bytes = 1 << 20;  // lines waiting to be written
    std::function<void()> on_drop;        // a line dropped (any thread)
  };
  explicit AccessLog(Options options);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Queues `line` plus a newline. Never waits for I/O.
  void Write(absl::string_view line);
  // Waits until every line queued before the call is written, at most
  // `timeout`; false on timeout.
  bool Flush(absl::Duration timeout);

  int64_t lines_written() const;
  int64_t lines_dropped() const;

 private:
  void WriterLoop();

  const Options options_;
  mutable absl::Mutex mu_;
  std::string pending_ ABSL_GUARDED_BY(mu_);  // queued, not yet taken by the writer
  int64_t queued_ ABSL_GUARDED_BY(mu_) = 0;   // lines ever queued
  int64_t written_ ABSL_GUARDED_BY(mu_) = 0;  // lines ever written (or failed to)
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  size_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // taken, being written
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
};

// The facts of one generation RPC that its access log line reports.
struct AccessRecord {
  const char* method = "";
  RequestId id = 0;
  std::string tenant;  // "" before authentication (or single-user mode)
  std::string peer;
  absl::Time start;
  grpc::StatusCode code = grpc::StatusCode::OK;
  bool ran = false;  // reached the engine's OnFinish
  FinishReason reason = FinishReason::kUnspecified;
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t output_tokens = 0;
  int32_t preemptions = 0;
  RequestTimings timings;

  // The reactor was created: the call's facts and its start time.
  void Start(const char* rpc_method, RequestId request_id, std::string client_peer);
  void RecordFinish(const FinishInfo& info);
};

// One logfmt line: `access method=Generate id=7 tenant=acme peer=... code=OK
// finish=length prompt_tokens=9 cached_tokens=0 output_tokens=16
// preemptions=0 queue_ms=0.2 ttft_ms=3.1 total_ms=41.0` (the engine fields
// only when the request ran).
std::string FormatAccessLine(const AccessRecord& record, absl::Time end);
// Queues the record's line on `log` (nothing when it is null).
void WriteAccessLine(AccessLog* log, const AccessRecord& record);

}  // namespace openelm::server

#endif  // OPENELM_SERVER_ACCESS_LOG_H_
