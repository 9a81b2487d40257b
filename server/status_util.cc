#include "server/status_util.h"

#include <string>

namespace openelm::server {
namespace {

// Cuts `message` to at most kMaxErrorMessageBytes, never inside a multi-byte
// UTF-8 character (gRPC percent-encodes the message, but a torn character
// would still reach the client as garbage).
std::string CapMessage(absl::string_view message) {
  if (message.size() <= kMaxErrorMessageBytes) return std::string(message);
  constexpr absl::string_view kEllipsis = "...";
  size_t cut = kMaxErrorMessageBytes - kEllipsis.size();
  // Step back over continuation bytes (10xxxxxx) to a character start.
  while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  std::string out(message.substr(0, cut));
  out.append(kEllipsis.data(), kEllipsis.size());
  return out;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  // absl can carry codes outside 0..16 in principle; report those as UNKNOWN.
  const grpc::StatusCode grpc_code = (code > 0 && code <= 16)
                                         ? static_cast<grpc::StatusCode>(code)
                                         : grpc::StatusCode::UNKNOWN;
  return grpc::Status(grpc_code, CapMessage(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  const absl::StatusCode absl_code = (code > 0 && code <= 16)
                                         ? static_cast<absl::StatusCode>(code)
                                         : absl::StatusCode::kUnknown;
  return absl::Status(absl_code, status.error_message());
}

}  // namespace openelm::server
