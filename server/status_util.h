#ifndef OPENELM_SERVER_STATUS_UTIL_H_
#define OPENELM_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include <cstddef>

#include "absl/status/status.h"

namespace openelm::server {

// Longest error message sent to a client; longer ones are cut at a UTF-8
// character boundary and end with "...".
inline constexpr size_t kMaxErrorMessageBytes = 1024;

// The only absl::Status -> grpc::Status conversion in the project. Both use
// the canonical code numbering 0..16, so codes map one to one; the message
// is capped at kMaxErrorMessageBytes.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The reverse, for tests and clients (same code mapping, message unchanged).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace openelm::server

#endif  // OPENELM_SERVER_STATUS_UTIL_H_
