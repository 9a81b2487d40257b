#ifndef OPENELM_SERVER_ACCESS_LOG_H_
#define OPENELM_SERVER_ACCESS_LOG_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

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

}  // namespace openelm::server

#endif  // OPENELM_SERVER_ACCESS_LOG_H_
