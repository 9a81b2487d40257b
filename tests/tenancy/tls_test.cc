#include "server/tls.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm::server {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::string text;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  std::fclose(f);
  return text;
}

// Certificates are generated once per test binary by the real script.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(
        absl::StrCat(::testing::TempDir(), "openelm_tls_test_", getpid()));
    other_ = new std::string(absl::StrCat(*dir_, "/other"));
    for (const std::string* d : {dir_, other_}) {
      const std::string cmd =
          absl::StrCat("bash '", OPENELM_GEN_TEST_CERTS, "' '", *d, "' > /dev/null");
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
  }
  static void TearDownTestSuite() {
    std::system(absl::StrCat("rm -rf '", *dir_, "'").c_str());
    delete dir_;
    delete other_;
  }
  static std::string Path(absl::string_view name) {
    return absl::StrCat(*dir_, "/", name);
  }
  static std::string Other(absl::string_view name) {
    return absl::StrCat(*other_, "/", name);
  }

  // Starts a server with the default health service on 127.0.0.1:0.
  void StartServer(const TlsServerOptions& options) {
    ASSERT_OK_AND_ASSIGN(std::shared_ptr<grpc::ServerCredentials> creds,
                         BuildServerCredentials(options));
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", creds, &port_);
    // The default health service needs the server to be callback-based (or
    // to have a polled completion queue); the real server has its callback
    // InferenceService, here an UNIMPLEMENTED generic service stands in.
    builder.RegisterCallbackGenericService(&generic_service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // One grpc.health.v1.Health/Check call (service "") over `creds`.
  grpc::Status Check(std::shared_ptr<grpc::ChannelCredentials> creds,
                     std::string* response_bytes = nullptr) {
    auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), creds);
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::ByteBuffer request;  // empty HealthCheckRequest
    grpc::Slice empty;
    request = grpc::ByteBuffer(&empty, 1);
    grpc::ByteBuffer response;
    grpc::Status result;
    absl::Notification done;
    stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request,
                   &response, [&](grpc::Status s) {
                     result = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    if (result.ok() && response_bytes != nullptr) {
      std::vector<grpc::Slice> slices;
      (void)response.Dump(&slices);
      response_bytes->clear();
      for (const grpc::Slice& s : slices) {
        response_bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    return result;
  }

  static std::shared_ptr<grpc::ChannelCredentials> TlsClient(
      const std::string& ca, const std::string& key = "", const std::string& cert = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadFile(ca);
    if (!key.empty()) o.pem_private_key = ReadFile(key);
    if (!cert.empty()) o.pem_cert_chain = ReadFile(cert);
    return grpc::SslCredentials(o);
  }

  static std::string* dir_;
  static std::string* other_;
  int port_ = 0;
  grpc::CallbackGenericService generic_service_;
  std::unique_ptr<grpc::Server> server_;
};

std::string* TlsTest::dir_ = nullptr;
std::string* TlsTest::other_ = nullptr;

TEST_F(TlsTest, TlsClientWorksAndPlaintextIsRefused) {
  StartServer({.cert_path = Path("server.pem"),
               .key_path = Path("server.key"),
               .client_ca_path = ""});
  std::string response;
  grpc::Status ok = Check(TlsClient(Path("ca.pem")), &response);
  ASSERT_TRUE(ok.ok()) << ok.error_code() << " " << ok.error_message();
  EXPECT_EQ(response, std::string("\x08\x01", 2));  // status: SERVING

  grpc::Status plain = Check(grpc::InsecureChannelCredentials());
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
}

TEST_F(TlsTest, ClientTrustingAnotherCaFails) {
  StartServer({.cert_path = Path("server.pem"),
               .key_path = Path("server.key"),
               .client_ca_path = ""});
  grpc::Status s = Check(TlsClient(Other("ca.pem")));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  StartServer({.cert_path = Path("server.pem"),
               .key_path = Path("server.key"),
               .client_ca_path = Path("ca.pem")});
  grpc::Status with_cert =
      Check(TlsClient(Path("ca.pem"), Path("client.key"), Path("client.pem")));
  EXPECT_TRUE(with_cert.ok()) << with_cert.error_message();

  grpc::Status without = Check(TlsClient(Path("ca.pem")));
  EXPECT_EQ(without.error_code(), grpc::StatusCode::UNAVAILABLE);

  grpc::Status foreign =
      Check(TlsClient(Path("ca.pem"), Other("client.key"), Other("client.pem")));
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, FileErrorsNameThePath) {
  EXPECT_THAT(BuildServerCredentials({.cert_path = Path("nope.pem"),
                                      .key_path = Path("server.key"),
                                      .client_ca_path = ""}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("nope.pem"))));
  EXPECT_THAT(BuildServerCredentials({.cert_path = Path("server.pem"),
                                      .key_path = Path("missing.key"),
                                      .client_ca_path = ""}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("missing.key"))));
  EXPECT_THAT(BuildServerCredentials({.cert_path = Path("server.pem"),
                                      .key_path = Path("server.key"),
                                      .client_ca_path = Path("no-ca.pem")}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("no-ca.pem"))));
  // A key where the certificate should be.
  EXPECT_THAT(BuildServerCredentials({.cert_path = Path("server.key"),
                                      .key_path = Path("server.key"),
                                      .client_ca_path = ""}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(Path("server.key") + " holds no PEM certificate")));
  // A certificate where the key should be.
  EXPECT_THAT(BuildServerCredentials({.cert_path = Path("server.pem"),
                                      .key_path = Path("server.pem"),
                                      .client_ca_path = ""}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds no unencrypted PEM private key")));
  // The client's key with the server's certificate.
  EXPECT_THAT(
      BuildServerCredentials({.cert_path = Path("server.pem"),
                              .key_path = Path("client.key"),
                              .client_ca_path = ""}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("does not match the certificate " + Path("server.pem"))));
  EXPECT_THAT(
      BuildServerCredentials({.cert_path = "", .key_path = "", .client_ca_path = ""}),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace openelm::server
