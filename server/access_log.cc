#include "server/access_log.h"

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace openelm::server {

AccessLog::AccessLog(Options options)
    : options_(std::move(options)), writer_([this] { WriterLoop(); }) {}

AccessLog::~AccessLog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  writer_.join();
}

void AccessLog::Write(absl::string_view line) {
  bool drop = false;
  {
    absl::MutexLock lock(&mu_);
    if (pending_.size() + in_flight_bytes_ + line.size() + 1 > options_.max_buffered_bytes) {
      ++dropped_;
      drop = true;
    } else {
      pending_.append(line.data(), line.size());
      pending_.push_back('\n');
      ++queued_;
    }
  }
  if (drop && options_.on_drop) options_.on_drop();
}

bool AccessLog::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int64_t target = queued_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return written_ >= target;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

int64_t AccessLog::lines_written() const {
  absl::MutexLock lock(&mu_);
  return written_;
}

int64_t AccessLog::lines_dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

void AccessLog::WriterLoop() {
  std::string batch;
  while (true) {
    int64_t lines = 0;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !pending_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (pending_.empty()) return;  // stopping, nothing left
      batch.swap(pending_);
      pending_.clear();
      in_flight_bytes_ = batch.size();
      lines = queued_ - written_;
    }
    // One write per batch where the descriptor takes it; a failed write
    // (closed pipe, full disk) loses the batch, never the server.
    size_t off = 0;
    while (off < batch.size()) {
      const ssize_t n = ::write(options_.fd, batch.data() + off, batch.size() - off);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        break;
      }
    }
    batch.clear();
    absl::MutexLock lock(&mu_);
    in_flight_bytes_ = 0;
    written_ += lines;
  }
}

}  // namespace openelm::server
