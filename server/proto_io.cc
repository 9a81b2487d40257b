#include "server/proto_io.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <grpcpp/support/proto_buffer_writer.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/base/logging.h"

namespace openelm::server {
namespace {

// Set while ParseRequest runs on this thread: protobuf's lines go here.
thread_local std::string* g_capture = nullptr;

class RateLimitedLog {
 public:
  void Write(const std::string& line) {
    uint64_t suppressed = 0;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = absl::Now();
      if (now - last_ < absl::Seconds(1)) {
        ++suppressed_;
        return;
      }
      last_ = now;
      suppressed = suppressed_;
      suppressed_ = 0;
    }
    OPENELM_LOG(WARNING) << "protobuf: " << line
                         << (suppressed > 0
                                 ? absl::StrCat(" (", suppressed,
                                                " more protobuf lines suppressed)")
                                 : std::string());
  }

 private:
  absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

void HandleProtobufLog(google::protobuf::LogLevel level, const char* /*filename*/,
                       int /*line*/, const std::string& message) {
  if (g_capture != nullptr) {
    if (!g_capture->empty()) g_capture->append("; ");
    g_capture->append(message);
    return;
  }
  if (level == google::protobuf::LOGLEVEL_FATAL) {
    OPENELM_LOG(ERROR) << "protobuf: " << message;
    return;
  }
  static RateLimitedLog* const log = new RateLimitedLog();
  log->Write(message);
}

}  // namespace

std::string FieldOfUtf8Error(absl::string_view log_line,
                             const google::protobuf::Descriptor& request) {
  if (!absl::StrContains(log_line, "invalid UTF-8")) return "";
  const size_t open = log_line.find('\'');
  if (open == absl::string_view::npos) return "";
  const size_t close = log_line.find('\'', open + 1);
  if (close == absl::string_view::npos) return "";
  // "package.Message.field"
  const absl::string_view full = log_line.substr(open + 1, close - open - 1);
  const size_t dot = full.rfind('.');
  if (dot == absl::string_view::npos) return std::string(full);
  const absl::string_view owner = full.substr(0, dot);
  const absl::string_view field = full.substr(dot + 1);
  if (owner == request.full_name()) return std::string(field);
  // A field of a message the request holds: name it by its path from the
  // request ("options.stop", "messages[].content").
  for (int i = 0; i < request.field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = request.field(i);
    if (f->message_type() != nullptr && f->message_type()->full_name() == owner) {
      return absl::StrCat(f->name(), f->is_repeated() ? "[]" : "", ".", field);
    }
  }
  return std::string(full);
}

int GrpcReceiveCeiling(int max_bytes) {
  const int64_t ceiling = std::max<int64_t>(int64_t{4} * max_bytes, int64_t{16} << 20);
  return static_cast<int>(std::min<int64_t>(ceiling, std::numeric_limits<int>::max()));
}

absl::Status ParseRequest(const grpc::ByteBuffer& raw, int64_t max_bytes,
                          google::protobuf::Message* message) {
  const std::string& name = message->GetDescriptor()->full_name();
  if (!raw.Valid()) {
    return absl::ResourceExhaustedError(absl::StrCat("no ", name, " arrived"));
  }
  if (static_cast<int64_t>(raw.Length()) > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("the ", name, " message has ",
                                                     raw.Length(), " bytes; at most ",
                                                     max_bytes, " are allowed"));
  }
  grpc::ByteBuffer copy(raw);  // shares the slices; the reader consumes its own
  grpc::ProtoBufferReader reader(&copy);
  std::string captured;
  g_capture = &captured;
  const bool ok = reader.status().ok() && message->ParseFromZeroCopyStream(&reader);
  g_capture = nullptr;
  if (ok) return absl::OkStatus();
  if (std::string field = FieldOfUtf8Error(captured, *message->GetDescriptor());
      !field.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field,
                     ": is not valid UTF-8 (string fields must hold UTF-8 text; send raw "
                     "tokens as token_ids)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("the request is not a valid ", name, " message"));
}

void SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* raw) {
  raw->Clear();
  grpc::ProtoBufferWriter writer(raw, grpc::kProtoBufferWriterMaxBufferLength,
                                 static_cast<int>(message.ByteSizeLong()));
  message.SerializeToZeroCopyStream(&writer);
}

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&HandleProtobufLog); }

}  // namespace openelm::server
