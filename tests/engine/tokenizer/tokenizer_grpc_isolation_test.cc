// The isolation proof for the sentencepiece bridge: this process links
// gRPC and libprotobuf 3.21, and also loads and uses the tokenizer (whose
// libsentencepiece embeds protobuf-lite 3.14). Linking sentencepiece directly
// into such a process aborts at model load; the dlmopen() namespace makes it
// work.

#include <google/protobuf/struct.pb.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/base/types.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm {
namespace {

using ::testing::ElementsAre;

constexpr char kModelPath[] = OPENELM_TEST_TOKENIZER_MODEL;

TEST(TokenizerGrpcIsolationTest, TokenizerWorksNextToGrpcAndProtobuf) {
  GOOGLE_PROTOBUF_VERIFY_VERSION;

  // Exercise libprotobuf (full runtime with reflection) first. ListValue
  // rather than Struct: protobuf's Map is not usable in this machine's
  // ThreadSanitizer builds (its inline code disagrees with the uninstrumented
  // libprotobuf), and this test should run in every build flavour.
  google::protobuf::ListValue request;
  request.add_values()->set_string_value("Hello, world!");
  request.add_values()->set_number_value(16);
  std::string wire;
  ASSERT_TRUE(request.SerializeToString(&wire));

  // And gRPC: a channel object (it connects lazily, so no network is used).
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  ASSERT_NE(channel, nullptr);
  EXPECT_EQ(channel->GetState(/*try_to_connect=*/false), GRPC_CHANNEL_IDLE);

  // Now the tokenizer, in the same process.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::Load(kModelPath));
  google::protobuf::ListValue parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  ASSERT_EQ(parsed.values_size(), 2);
  const std::string prompt = parsed.values(0).string_value();
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> ids, tokenizer->Encode(prompt, true));
  EXPECT_THAT(ids, ElementsAre(1, 15043, 29892, 3186, 29991));
  ASSERT_OK_AND_ASSIGN(std::string text, tokenizer->Decode(ids));
  EXPECT_EQ(text, prompt);
  IncrementalDetokenizer detokenizer(tokenizer.get(), /*leading_text_exists=*/false);
  EXPECT_EQ(detokenizer.Push(ids) + detokenizer.Flush(), prompt);

  // protobuf keeps working after sentencepiece's protobuf-lite was loaded.
  google::protobuf::ListValue reply;
  reply.add_values()->set_string_value(text);
  std::string reply_wire;
  ASSERT_TRUE(reply.SerializeToString(&reply_wire));
  google::protobuf::ListValue reply_parsed;
  ASSERT_TRUE(reply_parsed.ParseFromString(reply_wire));
  ASSERT_EQ(reply_parsed.values_size(), 1);
  EXPECT_EQ(reply_parsed.values(0).string_value(), "Hello, world!");
  EXPECT_EQ(reply_parsed.DebugString(), reply.DebugString());
}

}  // namespace
}  // namespace openelm
