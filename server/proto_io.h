#ifndef OPENELM_SERVER_PROTO_IO_H_
#define OPENELM_SERVER_PROTO_IO_H_

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace openelm::server {

// Requests arrive as raw bytes (the methods are registered raw) so that a
// request gRPC could not parse gets a status of ours: the stock handlers
// answer UNIMPLEMENTED with no message when, say, a string field holds
// invalid UTF-8.

// Parses `raw` into `message`. kInvalidArgument naming the field for invalid
// UTF-8 in a string field ("text: is not valid UTF-8 ..."), or saying the
// bytes are not a `message` at all; kResourceExhausted when `raw` is larger
// than `max_bytes` (gRPC's own limit is set higher, see
// GrpcReceiveCeiling, so that these refusals are ours and counted) or
// missing.
absl::Status ParseRequest(const grpc::ByteBuffer& raw, int64_t max_bytes,
                          google::protobuf::Message* message);

// The receive limit given to gRPC for a server whose requests may have
// `max_bytes`: four times that, at least 16 MiB. Between the two, requests are
// refused by ParseRequest (counted, with our message); above, by gRPC alone.
int GrpcReceiveCeiling(int max_bytes);

// Serializes `message` into `raw` (replacing its contents).
void SerializeResponse(const google::protobuf::Message& message, grpc::ByteBuffer* raw);

// Sends protobuf's own log lines through the server's log, at most one a
// second (the rest are counted and the count reported with the next line),
// and captures the ones raised inside ParseRequest for its status instead.
// Call once at start-up, before serving.
void RouteProtobufLogs();

// The field named in a protobuf UTF-8 parse error line ("String field
// 'openelm.v1.GenerationOptions.stop' contains invalid UTF-8 ..."), as a
// path from `request` ("options.stop", "messages[].content", "text"); the
// full name when it is deeper; "" when the line names none.
std::string FieldOfUtf8Error(absl::string_view log_line,
                             const google::protobuf::Descriptor& request);

}  // namespace openelm::server

#endif  // OPENELM_SERVER_PROTO_IO_H_
