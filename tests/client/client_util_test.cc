#include <string>
#include <vector>

#include "client/cli_util.h"
#include "client/openelm_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(BuildTargetUriTest, SingleAddressesAndUrisPassThrough) {
  EXPECT_EQ(*BuildTargetUri("127.0.0.1:50051"), "127.0.0.1:50051");
  EXPECT_EQ(*BuildTargetUri("localhost:50051"), "localhost:50051");
  EXPECT_EQ(*BuildTargetUri("dns:///openelm.svc:50051"), "dns:///openelm.svc:50051");
  EXPECT_EQ(*BuildTargetUri("unix:/run/x.sock"), "unix:/run/x.sock");
  EXPECT_EQ(*BuildTargetUri("ipv4:1.2.3.4:5,1.2.3.4:6"), "ipv4:1.2.3.4:5,1.2.3.4:6");
}

TEST(BuildTargetUriTest, CommaListsBecomeIpSchemes) {
  EXPECT_EQ(*BuildTargetUri("127.0.0.1:1, 10.0.0.2:2"), "ipv4:127.0.0.1:1,10.0.0.2:2");
  EXPECT_EQ(*BuildTargetUri("[::1]:1,[::1]:2"), "ipv6:[::1]:1,[::1]:2");
  EXPECT_THAT(BuildTargetUri("a.example:1,b.example:2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dns:///")));
  EXPECT_THAT(BuildTargetUri("127.0.0.1:1,[::1]:2"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(BuildTargetUri("127.0.0.1,127.0.0.2:3"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(BuildTargetUri(" "), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ExplainGrpcStatusTest, KeepsTheCodeAndExplains) {
  absl::Status s =
      ExplainGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "failed to connect"),
                        "127.0.0.1:50051");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "server unavailable (is it running at 127.0.0.1:50051? it may also be "
            "starting up or draining): failed to connect");
  EXPECT_THAT(ExplainGrpcStatus(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, ""), "x"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("--api_key")));
  EXPECT_THAT(ExplainGrpcStatus(
                  grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "top_p: 2"), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(": top_p: 2")));
  EXPECT_THAT(
      ExplainGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue"), "x"),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("overloaded")));
  EXPECT_TRUE(ExplainGrpcStatus(grpc::Status::OK, "x").ok());
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::DEADLINE_EXCEEDED), "deadline_exceeded");
}

TEST(ClientCreateTest, ValidatesTargetAndTlsFiles) {
  ClientOptions o;
  o.target = "a.example:1,b.example:2";
  EXPECT_THAT(OpenElmClient::Create(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.target = "127.0.0.1:1";
  o.tls_ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(OpenElmClient::Create(o),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/ca.pem")));
  o.tls_ca_file.clear();
  o.tls_cert_file = "/x/cert.pem";  // without a key
  EXPECT_THAT(OpenElmClient::Create(o), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ClientCreateTest, UnreachableServerGivesAnExplainedError) {
  ClientOptions o;
  o.target = "127.0.0.1:1";  // nothing listens on port 1
  o.timeout = absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(auto client, OpenElmClient::Create(o));
  EXPECT_THAT(client->Tokenize("hi", true),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1:1")));
  EXPECT_THAT(client->CheckHealth(""), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client->ConnectReplicas(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot connect")));
}

TEST(CliUtilTest, ParsesIdListsAndLogitBias) {
  EXPECT_THAT(*cli::ParseIdList("1, 15043 3186"), ElementsAre(1, 15043, 3186));
  EXPECT_TRUE(cli::ParseIdList("")->empty());
  EXPECT_THAT(cli::ParseIdList("1,x"), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(auto bias, cli::ParseLogitBias("13:-100, 29889:2.5"));
  EXPECT_EQ(bias.at(13), -100.0f);
  EXPECT_EQ(bias.at(29889), 2.5f);
  EXPECT_THAT(cli::ParseLogitBias("13"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CliUtilTest, FillsOnlyTheFlagsThatWereSet) {
  cli::GenerationFlags f;
  f.max_tokens = 8;
  f.temperature = 0;
  f.stop = {"\n\n", "END"};
  f.stop_token_ids = "2,13";
  f.logit_bias = "5:1";
  f.ignore_eos = true;
  f.seed = 42;
  v1::GenerationOptions o;
  ASSERT_OK(cli::FillGenerationOptions(f, &o));
  EXPECT_TRUE(o.has_max_tokens());
  EXPECT_EQ(o.max_tokens(), 8);
  EXPECT_TRUE(o.has_temperature());
  EXPECT_EQ(o.temperature(), 0);
  EXPECT_FALSE(o.has_top_p());
  EXPECT_FALSE(o.has_top_k());
  EXPECT_FALSE(o.has_n());
  EXPECT_FALSE(o.has_logprobs());
  EXPECT_THAT(o.stop(), ElementsAre("\n\n", "END"));
  EXPECT_THAT(o.stop_token_ids(), ElementsAre(2, 13));
  EXPECT_EQ(o.logit_bias().at(5), 1.0f);
  EXPECT_TRUE(o.ignore_eos());
  EXPECT_EQ(o.seed(), 42u);
  f.stop_token_ids = "two";
  EXPECT_THAT(
      cli::FillGenerationOptions(f, &o),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--stop_token_ids")));
}

TEST(CliUtilTest, ParsesChatMessagesJson) {
  ASSERT_OK_AND_ASSIGN(
      auto m,
      cli::ParseMessagesJson(
          R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},)"
          R"({"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"}])"));
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].role(), v1::ROLE_SYSTEM);
  EXPECT_EQ(m[2].role(), v1::ROLE_ASSISTANT);
  EXPECT_EQ(m[3].content(), "Bye");
  ASSERT_OK_AND_ASSIGN(
      auto wrapped,
      cli::ParseMessagesJson(R"({"messages":[{"role":"user","content":"x"}]})"));
  EXPECT_EQ(wrapped.size(), 1u);
  EXPECT_THAT(cli::ParseMessagesJson("[{\"role\":\"bot\",\"content\":\"x\"}]"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("messages[0]")));
  EXPECT_THAT(cli::ParseMessagesJson("[{\"role\":\"user\"}]"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cli::ParseMessagesJson("{"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CliUtilTest, JsonUsesProtoFieldNames) {
  v1::TokenizeResponse r;
  r.add_token_ids(1);
  r.add_token_ids(15043);
  EXPECT_EQ(cli::ToJson(r), "{\"token_ids\":[1,15043]}");
  EXPECT_EQ(cli::FinishReasonName(v1::FINISH_REASON_STOP_SEQUENCE), "stop_sequence");
}

// Issue 16.8: `openelm models` said "bf16" when the matmuls ran in f32.
TEST(CliUtilTest, DescribeExecutionNamesWeightsBesideMatmulPrecisionAndKernels) {
  v1::ModelInfo m;
  m.set_weight_dtype("bf16");
  m.set_kv_dtype("bf16");
  m.set_activation_dtype("f32");
  m.set_cpu_isa("avx2");
  m.set_execution_plan("isa=avx2 weights=bf16 activations=f32 kv=bf16 matmul=own-avx2");
  EXPECT_EQ(cli::DescribeExecution(m),
            "weights bf16, matmuls f32 (own avx2 kernels), kv bf16, cpu avx2");

  m.set_weight_dtype("int8");
  m.set_execution_plan(
      "isa=avx512 weights=int8 activations=f32 kv=bf16 matmul=own-int8-avx512");
  m.set_cpu_isa("avx512");
  EXPECT_EQ(cli::DescribeExecution(m),
            "weights int8, matmuls f32 (own int8 avx512 kernels), kv bf16, cpu avx512");

  m.set_weight_dtype("bf16");
  m.set_activation_dtype("bf16");
  m.set_cpu_isa("amx");
  m.set_execution_plan("isa=amx weights=bf16 activations=bf16 kv=bf16 matmul=onednn");
  EXPECT_EQ(cli::DescribeExecution(m),
            "weights bf16, matmuls bf16 (oneDNN), kv bf16, cpu amx");

  // An older server without the plan fields: only what it said.
  v1::ModelInfo old;
  old.set_weight_dtype("bf16");
  old.set_kv_dtype("f32");
  EXPECT_EQ(cli::DescribeExecution(old), "weights bf16, kv f32");
}

// Issue 16.8: `openelm generate` left the shell prompt on the text's last line.
TEST(CliUtilTest, FinalNewlineOnlyWhenTheTextDidNotEndWithOne) {
  EXPECT_TRUE(cli::NeedsFinalNewline("Once upon a time"));
  EXPECT_TRUE(cli::NeedsFinalNewline(""));
  EXPECT_TRUE(cli::NeedsFinalNewline("a\nb"));
  EXPECT_FALSE(cli::NeedsFinalNewline("line\n"));
  EXPECT_FALSE(cli::NeedsFinalNewline("\n"));
}

}  // namespace
}  // namespace openelm
