#include "server/access_log.h"

#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/logging.h"

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
    if (pending_.size() + in_flight_bytes_ + line.size() + 1 >
        options_.max_buffered_bytes) {
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
  auto done = [this, target]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return written_ >= target; };
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

// ---- Access lines of generation RPCs ----

void AccessRecord::Start(const char* rpc_method, RequestId request_id,
                         std::string client_peer) {
  method = rpc_method;
  id = request_id;
  peer = std::move(client_peer);
  start = absl::Now();
}

void AccessRecord::RecordFinish(const FinishInfo& info) {
  ran = true;
  reason =
      info.completions.empty() ? FinishReason::kError : info.completions.front().reason;
  prompt_tokens = info.num_prompt_tokens;
  cached_tokens = info.num_cached_tokens;
  output_tokens = info.num_output_tokens;
  preemptions = info.num_preemptions;
  timings = info.timings;
}

namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "UNKNOWN";
  }
}

// Milliseconds with 0.1 ms resolution, or "-" when either end is unknown.
std::string Millis(absl::Time from, absl::Time to) {
  if (from == absl::Time() || to == absl::Time() || to < from) return "-";
  return absl::StrFormat("%.1f", absl::ToDoubleMilliseconds(to - from));
}

}  // namespace

std::string FormatAccessLine(const AccessRecord& r, absl::Time end) {
  std::string line =
      absl::StrCat("access method=", r.method, " id=", r.id,
                   " tenant=", r.tenant.empty() ? "-" : r.tenant,
                   " peer=", r.peer.empty() ? "-" : r.peer, " code=", CodeName(r.code));
  if (r.ran) {
    const RequestTimings& t = r.timings;
    absl::StrAppend(&line, " finish=", FinishReasonName(r.reason),
                    " prompt_tokens=", r.prompt_tokens,
                    " cached_tokens=", r.cached_tokens,
                    " output_tokens=", r.output_tokens, " preemptions=", r.preemptions,
                    " queue_ms=", Millis(t.arrival, t.first_scheduled),
                    " ttft_ms=", Millis(r.start, t.first_token));
  }
  absl::StrAppend(&line, " total_ms=", Millis(r.start, end));
  return line;
}

void WriteAccessLine(AccessLog* log, const AccessRecord& record) {
  if (log == nullptr) return;
  // Formatted here, written by the access log's own thread.
  log->Write(absl::StrCat(LogLinePrefix(LogSeverity::kInfo, __FILE__, __LINE__),
                          FormatAccessLine(record, absl::Now())));
}

}  // namespace openelm::server
