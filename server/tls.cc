#include "server/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/base/status_macros.h"
#include "grpcpp/security/server_credentials.h"

namespace openelm::server {
namespace {

constexpr size_t kMaxPemBytes = 1 << 20;

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("cannot open TLS ", what, " ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::FailedPreconditionError(msg);
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0 && text.size() <= kMaxPemBytes) {
    text.append(buf, n);
  }
  std::fclose(f);
  if (text.size() > kMaxPemBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS ", what, " ", path, " is larger than 1 MiB"));
  }
  return text;
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioDeleter> MemBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioDeleter>(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Parses the first certificate of `pem` (gRPC would only fail at Start()).
absl::StatusOr<std::unique_ptr<X509, X509Deleter>> ParseCertificate(
    const std::string& pem, const std::string& path, absl::string_view what) {
  auto bio = MemBio(pem);
  std::unique_ptr<X509, X509Deleter> cert(
      PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS ", what, " ", path, " holds no PEM certificate"));
  }
  return cert;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> BuildServerCredentials(
    const TlsServerOptions& options) {
  if (options.cert_path.empty() || options.key_path.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate (--tls_cert) and a key (--tls_key)");
  }
  OPENELM_ASSIGN_OR_RETURN(std::string cert_pem,
                           ReadPemFile(options.cert_path, "certificate"));
  OPENELM_ASSIGN_OR_RETURN(std::string key_pem,
                           ReadPemFile(options.key_path, "private key"));

  OPENELM_ASSIGN_OR_RETURN(auto cert,
                           ParseCertificate(cert_pem, options.cert_path, "certificate"));
  auto key_bio = MemBio(key_pem);
  std::unique_ptr<EVP_PKEY, PkeyDeleter> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS private key ", options.key_path, " holds no unencrypted PEM private key"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("TLS private key ", options.key_path,
                                                   " does not match the certificate ",
                                                   options.cert_path));
  }

  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({std::move(key_pem), std::move(cert_pem)});
  if (options.client_ca_path.empty()) {
    ssl.client_certificate_request = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  } else {
    OPENELM_ASSIGN_OR_RETURN(std::string ca_pem,
                             ReadPemFile(options.client_ca_path, "client CA bundle"));
    OPENELM_RETURN_IF_ERROR(
        ParseCertificate(ca_pem, options.client_ca_path, "client CA bundle").status());
    ssl.pem_root_certs = std::move(ca_pem);
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::SslServerCredentials(ssl);
  if (creds == nullptr) {
    return absl::InternalError("grpc::SslServerCredentials returned null");
  }
  return creds;
}

}  // namespace openelm::server
