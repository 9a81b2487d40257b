#ifndef OPENELM_SERVER_TLS_H_
#define OPENELM_SERVER_TLS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace openelm::server {

struct TlsServerOptions {
  std::string cert_path;  // PEM certificate chain of the server (--tls_cert)
  std::string key_path;   // PEM private key of that certificate (--tls_key)
  // PEM CA bundle (--tls_client_ca). When set, clients must present a
  // certificate signed by it (mutual TLS); when empty, no client certificate
  // is requested.
  std::string client_ca_path;
};

// Reads and checks the PEM files and builds gRPC server credentials. Fails
// before any listener exists, with the offending path in the message:
// kNotFound / kPermissionDenied for unreadable files, kInvalidArgument for a
// file that is not a PEM certificate / key, or a key that does not match the
// certificate.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> BuildServerCredentials(
    const TlsServerOptions& options);

}  // namespace openelm::server

#endif  // OPENELM_SERVER_TLS_H_
