// The real server in-process on 127.0.0.1:0 with the generated tiny model,
// the real Llama-2 tokenizer and the real generated gRPC stubs.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/chat/chat_template.h"
#include "engine/kernels/cpu_isa.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "server/server.h"
#include "tests/server/server_test_util.h"
#include "tests/server/tiny_server.h"
#include "tests/testing/status_matchers.h"

// GCC 12 at -O3 reports a false -Wrestrict inside std::string::assign when
// the request-mutating lambdas below are inlined (GCC bug 105329).
#pragma GCC diagnostic ignored "-Wrestrict"

namespace openelm::server {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::openelm::testing::HttpGet;
using ::openelm::testing::MetricValue;
using ::openelm::testing::TempDir;
using ::openelm::testing::TinyCheckpointSuite;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kServiceName[] = "openelm.v1.InferenceService";

ServerOptions TinyOptions(const std::string& model_dir) {
  return ::openelm::testing::TinyServerOptions(model_dir, OPENELM_TOKENIZER_MODEL);
}

std::shared_ptr<grpc::Channel> Connect(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                             grpc::InsecureChannelCredentials());
}

HealthCheckResponse::ServingStatus CheckHealth(Health::Stub& health,
                                               const std::string& service) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckRequest req;
  req.set_service(service);
  HealthCheckResponse resp;
  const grpc::Status s = health.Check(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp.status();
}

v1::GenerateRequest TextRequest(const std::string& text, int max_tokens) {
  v1::GenerateRequest req;
  req.set_text(text);
  req.mutable_options()->set_max_tokens(max_tokens);
  req.mutable_options()->set_temperature(0.0f);
  req.mutable_options()->set_ignore_eos(true);
  return req;
}

// The concatenated result of a stream and its final status.
struct StreamResult {
  grpc::Status status;
  std::string text;
  std::vector<int32_t> token_ids;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
  int num_messages = 0;
  std::string request_id;
};

StreamResult ReadStream(grpc::ClientReaderInterface<v1::GenerateResponse>& reader) {
  StreamResult r;
  v1::GenerateResponse msg;
  while (reader.Read(&msg)) {
    ++r.num_messages;
    r.request_id = msg.request_id();
    for (const v1::Choice& c : msg.choices()) {
      EXPECT_EQ(c.index(), 0);
      r.text += c.text();
      r.token_ids.insert(r.token_ids.end(), c.token_ids().begin(), c.token_ids().end());
      if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED)
        r.finish_reason = c.finish_reason();
    }
    if (msg.has_usage()) r.usage = msg.usage();
  }
  r.status = reader.Finish();
  return r;
}

class ServerTest : public TinyCheckpointSuite {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, Server::Create(TinyOptions(TinyModelDir())));
    channel_ = Connect(server_->port());
    stub_ = v1::InferenceService::NewStub(channel_);
    health_ = Health::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Drain(absl::Seconds(1));
  }

  v1::ServerLoad Load() { return ::openelm::testing::GetLoad(*stub_); }

  // Polls (up to 10 s) for the engine to publish a load that satisfies `done`.
  template <typename Predicate>
  v1::ServerLoad WaitForLoad(Predicate done) {
    return ::openelm::testing::WaitForLoad(*stub_, done);
  }

  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
  std::unique_ptr<Health::Stub> health_;
};

TEST_F(ServerTest, TokenizeHelloWorld) {
  grpc::ClientContext ctx;
  v1::TokenizeRequest req;
  req.set_text("Hello world");
  v1::TokenizeResponse resp;
  ASSERT_TRUE(stub_->Tokenize(&ctx, req, &resp).ok());
  EXPECT_THAT(resp.token_ids(), ElementsAre(1, 15043, 3186));
  EXPECT_THAT(resp.pieces(),
              ElementsAre("<s>", "\xe2\x96\x81Hello", "\xe2\x96\x81world"));

  grpc::ClientContext ctx2;
  v1::DetokenizeRequest dreq;
  dreq.add_token_ids(1);
  dreq.add_token_ids(15043);
  dreq.add_token_ids(3186);
  v1::DetokenizeResponse dresp;
  ASSERT_TRUE(stub_->Detokenize(&ctx2, dreq, &dresp).ok());
  EXPECT_EQ(dresp.text(), "Hello world");
}

TEST_F(ServerTest, ModelInfoDescribesTheTinyModel) {
  grpc::ClientContext ctx;
  v1::ListModelsResponse resp;
  ASSERT_TRUE(stub_->ListModels(&ctx, v1::ListModelsRequest(), &resp).ok());
  ASSERT_EQ(resp.models_size(), 1);
  const v1::ModelInfo& m = resp.models(0);
  EXPECT_EQ(m.num_layers(), 3);
  EXPECT_EQ(m.vocab_size(), 32000);
  EXPECT_EQ(m.max_context_length(), 2048);
  EXPECT_EQ(m.kv_block_size_tokens(), 16);
  EXPECT_GT(m.kv_num_blocks(), 0);
  EXPECT_EQ(m.kv_capacity_tokens(), int64_t{m.kv_num_blocks()} * 16);
  EXPECT_TRUE(m.chat());
  // The CPU plan this process runs, as decided at start-up.
  const std::string isa = CpuIsaName(EffectiveCpuIsa());
  EXPECT_EQ(m.cpu_isa(), isa);
  EXPECT_EQ(m.weight_dtype(), "bf16");
  EXPECT_EQ(m.activation_dtype(),
            static_cast<int>(EffectiveCpuIsa()) >= static_cast<int>(CpuIsa::kAvx512Bf16)
                ? "bf16"
                : "f32");
  EXPECT_THAT(m.execution_plan(), HasSubstr("isa=" + isa));
  const std::string metrics = server_->metrics().Serialize();
  EXPECT_THAT(metrics, HasSubstr("openelm_build_info{"));
  EXPECT_THAT(metrics, HasSubstr("cpu_isa=\"" + isa + "\""));
  // The tiny model's bf16 weights: 2 bytes per parameter (the tied LM head
  // once; the norm vectors are kept in f32, a few KiB more).
  EXPECT_GE(m.weight_bytes(), 2 * m.num_parameters());
  EXPECT_LT(m.weight_bytes(), 2 * m.num_parameters() * 1001 / 1000);
  EXPECT_EQ(MetricValue(metrics, "openelm_model_weight_bytes"),
            static_cast<double>(m.weight_bytes()));

  grpc::ClientContext ctx2;
  v1::GetModelRequest get;
  get.set_model(m.id());
  v1::ModelInfo same;
  ASSERT_TRUE(stub_->GetModel(&ctx2, get, &same).ok());
  EXPECT_EQ(same.id(), m.id());
}

TEST_F(ServerTest, StreamingAndUnaryGiveTheSameGreedyOutput) {
  const v1::GenerateRequest req = TextRequest("Once upon a time there was", 24);
  grpc::ClientContext sctx;
  auto reader = stub_->StreamGenerate(&sctx, req);
  const StreamResult streamed = ReadStream(*reader);
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();

  grpc::ClientContext uctx;
  v1::GenerateResponse unary;
  const grpc::Status s = stub_->Generate(&uctx, req, &unary);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(unary.choices_size(), 1);

  EXPECT_EQ(streamed.token_ids.size(), 24u);
  EXPECT_THAT(unary.choices(0).token_ids(),
              ::testing::ElementsAreArray(streamed.token_ids));
  EXPECT_EQ(unary.choices(0).text(), streamed.text);
  EXPECT_EQ(streamed.finish_reason, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(unary.choices(0).finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(streamed.usage.prompt_tokens(), 7);
  EXPECT_EQ(streamed.usage.completion_tokens(), 24);
  EXPECT_EQ(unary.usage().completion_tokens(), 24);
  EXPECT_GT(unary.timings().total_time().seconds() * 1000000000LL +
                unary.timings().total_time().nanos(),
            0);
  EXPECT_NE(streamed.request_id, unary.request_id());
  EXPECT_FALSE(streamed.request_id.empty());
  // The text is the tokenizer's decoding of the ids.
  grpc::ClientContext dctx;
  v1::DetokenizeRequest dreq;
  dreq.add_token_ids(15043);  // "▁Hello" gives the leading word a context
  for (int32_t id : streamed.token_ids) dreq.add_token_ids(id);
  v1::DetokenizeResponse dresp;
  ASSERT_TRUE(stub_->Detokenize(&dctx, dreq, &dresp).ok());
  EXPECT_EQ(absl::StrCat("Hello", streamed.text), dresp.text());
}

TEST_F(ServerTest, LogprobsCarryPieceText) {
  v1::GenerateRequest req = TextRequest("Hello world", 3);
  req.mutable_options()->set_logprobs(2);
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  ASSERT_TRUE(stub_->Generate(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.choices_size(), 1);
  const v1::Choice& c = resp.choices(0);
  ASSERT_EQ(c.logprobs_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.logprobs(i).chosen().token_id(), c.token_ids(i));
    EXPECT_FALSE(c.logprobs(i).chosen().text().empty());
    EXPECT_LE(c.logprobs(i).chosen().logprob(), 0.0f);
    EXPECT_EQ(c.logprobs(i).top_size(), 2);
  }
}

TEST_F(ServerTest, ChatRendersTheZephyrTemplateAsIds) {
  // Hand-checked ids: <s>, then each text piece encoded on its own (so each
  // starts with SentencePiece's "▁"), with </s> (2) between pieces.
  //   "<|system|>\n" -> ▁< | system | > <0x0A>
  //   "\n<|user|>\nHi" -> ▁ <0x0A> < | user | > <0x0A> Hi
  //   "\n<|assistant|>\n" -> ▁ <0x0A> < | ass istant | > <0x0A>
  const std::vector<TokenId> want = {1,     529,   29989, 5205,  29989, 29958, 13,
                                     2,     29871, 13,    29966, 29989, 1792,  29989,
                                     29958, 13,    18567, 2,     29871, 13,    29966,
                                     29989, 465,   22137, 29989, 29958, 13};
  const std::vector<ChatMessage> messages = {{ChatRole::kUser, "Hi"}};
  ASSERT_OK_AND_ASSIGN(std::vector<TokenId> got,
                       RenderChat(server_->tokenizer(), messages));
  std::string pieces;
  for (TokenId id : got)
    absl::StrAppend(&pieces, server_->tokenizer().IdToPiece(id), " ");
  EXPECT_EQ(got, want) << "pieces: " << pieces;

  // The server renders the same prompt (visible through prompt logprobs).
  v1::ChatRequest req;
  v1::ChatMessage* m = req.add_messages();
  m->set_role(v1::ROLE_USER);
  m->set_content("Hi");
  req.mutable_options()->set_max_tokens(2);
  req.mutable_options()->set_prompt_logprobs(0);
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  const grpc::Status s = stub_->Chat(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(resp.prompt_token_ids(), ::testing::ElementsAreArray(want));
  EXPECT_EQ(resp.usage().prompt_tokens(), static_cast<int32_t>(want.size()));
}

TEST_F(ServerTest, CancelMidStreamFreesTheRequestsBlocks) {
  const v1::ServerLoad idle = WaitForLoad([](const v1::ServerLoad& l) {
    return l.kv_blocks_free() == l.kv_blocks_total() && l.requests_running() == 0;
  });
  ASSERT_GT(idle.kv_blocks_total(), 0);
  ASSERT_EQ(idle.kv_blocks_free(), idle.kv_blocks_total());

  grpc::ClientContext ctx;
  auto reader = stub_->StreamGenerate(&ctx, TextRequest("Once upon a time", 1800));
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));  // generation is under way
  const v1::ServerLoad busy =
      WaitForLoad([](const v1::ServerLoad& l) { return l.requests_running() == 1; });
  EXPECT_EQ(busy.requests_running(), 1);
  EXPECT_LT(busy.kv_blocks_free(), busy.kv_blocks_total());

  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // The engine frees the blocks within a step of the cancel.
  const v1::ServerLoad after = WaitForLoad([](const v1::ServerLoad& l) {
    return l.kv_blocks_free() == l.kv_blocks_total() && l.requests_running() == 0;
  });
  EXPECT_EQ(after.kv_blocks_free(), after.kv_blocks_total());
  EXPECT_EQ(after.requests_running(), 0);
  const std::string metrics = server_->metrics().Serialize();
  EXPECT_EQ(
      MetricValue(
          metrics,
          "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"cancelled\"}"),
      1);
}

// A cancel storm: 24 streams and 8 unary calls, each cancelled by its
// client after 5 to 65 ms (some before any output, some mid-decode, some
// maybe after the end). Every call ends once with CANCELLED or (when it won
// the race) OK, the server logs each call once, every call that reached the
// engine is one of its finished requests, and every KV block is back.
TEST_F(ServerTest, CancelStormEndsEveryCallOnceAndFreesThePool) {
  constexpr int kStreams = 24;
  constexpr int kUnary = 8;
  std::vector<grpc::StatusCode> codes(kStreams + kUnary, grpc::StatusCode::UNKNOWN);
  // Calls certainly seen by the server: output arrived, or it ended OK.
  std::vector<char> reached(kStreams + kUnary, 0);
  ::testing::internal::CaptureStderr();
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams + kUnary; ++i) {
    clients.emplace_back([this, i, &codes, &reached] {
      grpc::ClientContext ctx;
      const v1::GenerateRequest req = TextRequest("Once upon a time", 400 + 37 * i);
      std::thread canceller([&ctx, i] {
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + (i * 7) % 60));
        ctx.TryCancel();
      });
      if (i < kStreams) {
        auto reader = stub_->StreamGenerate(&ctx, req);
        v1::GenerateResponse msg;
        while (reader->Read(&msg)) reached[i] = 1;
        codes[i] = reader->Finish().error_code();
      } else {
        v1::GenerateResponse resp;
        codes[i] = stub_->Generate(&ctx, req, &resp).error_code();
      }
      if (codes[i] == grpc::StatusCode::OK) reached[i] = 1;
      canceller.join();
    });
  }
  for (std::thread& t : clients) t.join();
  int cancelled = 0;
  for (grpc::StatusCode code : codes) {
    EXPECT_TRUE(code == grpc::StatusCode::CANCELLED || code == grpc::StatusCode::OK)
        << "status " << code;
    cancelled += code == grpc::StatusCode::CANCELLED ? 1 : 0;
  }
  EXPECT_GT(cancelled, kStreams / 2);
  const v1::ServerLoad after = WaitForLoad([](const v1::ServerLoad& l) {
    return l.kv_blocks_free() == l.kv_blocks_total() && l.requests_running() == 0 &&
           l.requests_waiting() == 0;
  });
  EXPECT_EQ(after.kv_blocks_free(), after.kv_blocks_total());
  EXPECT_EQ(after.requests_running(), 0);
  EXPECT_EQ(after.requests_waiting(), 0);
  // Exactly once, seen from the server: one access log line per call (gRPC's
  // OnDone), and the calls that reached the engine (their line has a
  // finish reason) are exactly the engine's finished requests, less the
  // warm-up.
  server_->Drain(absl::Seconds(2));  // every OnDone has run
  const std::string log = ::testing::internal::GetCapturedStderr();
  int lines = 0, ran = 0;
  std::set<std::string> ids;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    const size_t at = line.find("access method=");
    if (at == absl::string_view::npos) continue;
    ++lines;
    if (absl::StrContains(line, " finish=")) ++ran;
    const size_t id = line.find(" id=", at);
    ASSERT_NE(id, absl::string_view::npos) << line;
    EXPECT_TRUE(
        ids.insert(std::string(line.substr(id, line.find(' ', id + 1) - id))).second)
        << "two lines for one call: " << line;
  }
  // A call cancelled before the server saw it has no line.
  EXPECT_LE(lines, kStreams + kUnary);
  EXPECT_GE(lines, std::count(reached.begin(), reached.end(), 1));
  EXPECT_GT(lines, 0);
  const std::string metrics = server_->metrics().Serialize();
  double finished = 0;
  for (const char* reason : {"cancelled", "length", "eos", "deadline", "error"}) {
    finished +=
        MetricValue(
            metrics,
            absl::StrCat("openelm_requests_finished_total{api=\"grpc\",finish_reason=\"",
                         reason, "\"}"))
            .value_or(0);
  }
  EXPECT_EQ(finished, ran + 1);
  EXPECT_EQ(MetricValue(
                metrics,
                "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"error\"}"),
            0);
}

TEST_F(ServerTest, DeadlineEndsTheStreamOkWithPartialOutput) {
  // 8 completions x 2000 tokens cannot finish in 1.5 s on any CPU this runs
  // on (each step computes 8 rows of 32000 logits).
  v1::GenerateRequest req = TextRequest("Once upon a time", 2000);
  req.mutable_options()->set_n(8);
  req.mutable_options()->set_temperature(1.0f);
  req.mutable_options()->set_seed(1);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(1500));
  auto reader = stub_->StreamGenerate(&ctx, req);
  std::vector<int> tokens(8, 0);
  std::vector<std::string> texts(8);
  std::vector<v1::FinishReason> reasons(8, v1::FINISH_REASON_UNSPECIFIED);
  v1::Usage usage;
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    for (const v1::Choice& c : msg.choices()) {
      ASSERT_GE(c.index(), 0);
      ASSERT_LT(c.index(), 8);
      tokens[c.index()] += c.token_ids_size();
      texts[c.index()] += c.text();
      if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED)
        reasons[c.index()] = c.finish_reason();
    }
    if (msg.has_usage()) usage = msg.usage();
  }
  const grpc::Status status = reader->Finish();
  // Documented in inference.proto: the server ends generation just before the
  // gRPC deadline, with status OK, FINISH_REASON_DEADLINE and the partial text.
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  int total = 0;
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(reasons[i], v1::FINISH_REASON_DEADLINE) << "completion " << i;
    EXPECT_GT(tokens[i], 0) << "completion " << i;
    EXPECT_LT(tokens[i], 2000) << "completion " << i;
    EXPECT_FALSE(texts[i].empty()) << "completion " << i;
    total += tokens[i];
  }
  EXPECT_EQ(usage.completion_tokens(), total);
  const std::string metrics = server_->metrics().Serialize();
  EXPECT_EQ(
      MetricValue(
          metrics,
          "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"deadline\"}"),
      1);
}

struct BadRequestCase {
  const char* name;
  void (*mutate)(v1::GenerateRequest*);
  const char* field;
};

void PrintTo(const BadRequestCase& c, std::ostream* os) { *os << c.name; }

class ServerValidationTest : public ServerTest,
                             public ::testing::WithParamInterface<BadRequestCase> {};

TEST_P(ServerValidationTest, StreamAndUnaryRejectWithTheFieldName) {
  v1::GenerateRequest req = TextRequest("Hello", 4);
  GetParam().mutate(&req);
  grpc::ClientContext uctx;
  v1::GenerateResponse resp;
  const grpc::Status u = stub_->Generate(&uctx, req, &resp);
  EXPECT_EQ(u.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(u.error_message(), HasSubstr(GetParam().field));

  grpc::ClientContext sctx;
  auto reader = stub_->StreamGenerate(&sctx, req);
  const StreamResult r = ReadStream(*reader);
  EXPECT_EQ(r.num_messages, 0);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr(GetParam().field));

  const std::string metrics = server_->metrics().Serialize();
  EXPECT_EQ(
      MetricValue(
          metrics,
          "openelm_requests_rejected_total{api=\"grpc\",reason=\"invalid_argument\"}"),
      2);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ServerValidationTest,
    ::testing::Values(
        BadRequestCase{"empty_text", [](v1::GenerateRequest* r) { r->set_text(""); },
                       "text"},
        BadRequestCase{"no_prompt", [](v1::GenerateRequest* r) { r->clear_prompt(); },
                       "prompt"},
        BadRequestCase{"empty_ids",
                       [](v1::GenerateRequest* r) { r->mutable_token_ids(); },
                       "token_ids.ids"},
        BadRequestCase{"id_out_of_vocab",
                       [](v1::GenerateRequest* r) {
                         r->mutable_token_ids()->add_ids(1);
                         r->mutable_token_ids()->add_ids(32000);
                       },
                       "token_ids.ids[1] = 32000 is out of range [0, 32000)"},
        BadRequestCase{"too_long",
                       [](v1::GenerateRequest* r) {
                         for (int i = 0; i < 2000; ++i)
                           r->mutable_token_ids()->add_ids(100);
                         r->mutable_options()->set_max_tokens(49);
                       },
                       "exceeds the model's context length 2048"},
        BadRequestCase{"unknown_model",
                       [](v1::GenerateRequest* r) { r->set_model("nope"); },
                       "model: unknown model"},
        BadRequestCase{"top_p",
                       [](v1::GenerateRequest* r) { r->mutable_options()->set_top_p(2); },
                       "options.top_p"},
        BadRequestCase{"too_many_stops",
                       [](v1::GenerateRequest* r) {
                         for (int i = 0; i < 17; ++i) r->mutable_options()->add_stop("a");
                       },
                       "options.stop"},
        BadRequestCase{"n",
                       [](v1::GenerateRequest* r) { r->mutable_options()->set_n(9); },
                       "options.n"},
        BadRequestCase{
            "logprobs",
            [](v1::GenerateRequest* r) { r->mutable_options()->set_logprobs(21); },
            "options.logprobs"}),
    [](const ::testing::TestParamInfo<BadRequestCase>& info) { return info.param.name; });

TEST_F(ServerTest, ChatRolesAreValidated) {
  v1::ChatRequest req;
  v1::ChatMessage* m = req.add_messages();
  m->set_role(v1::ROLE_ASSISTANT);
  m->set_content("I start");
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  const grpc::Status s = stub_->Chat(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("messages[0].role"));

  req.mutable_messages(0)->set_role(v1::ROLE_UNSPECIFIED);
  grpc::ClientContext ctx2;
  const grpc::Status s2 = stub_->Chat(&ctx2, req, &resp);
  EXPECT_EQ(s2.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s2.error_message(), HasSubstr("messages[0].role must be"));
}

TEST_F(ServerTest, MetricsEndpointMovesByTheExactWorkload) {
  ASSERT_GT(server_->metrics_port(), 0);
  ASSERT_OK_AND_ASSIGN(const std::string before,
                       HttpGet(server_->metrics_port(), "/metrics"));
  const double tokens0 =
      MetricValue(before, "openelm_generated_tokens_total").value_or(-1);
  const double length0 =
      MetricValue(
          before,
          "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"length\"}")
          .value_or(-1);
  const double ttft0 =
      MetricValue(before, "openelm_time_to_first_token_seconds_count{api=\"grpc\"}")
          .value_or(-1);
  const double prompt0 = MetricValue(before, "openelm_prompt_tokens_total").value_or(-1);
  ASSERT_GE(tokens0, 0);
  ASSERT_GE(length0, 0);
  ASSERT_GE(ttft0, 0);

  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    v1::GenerateResponse resp;
    // "Hello world" is 3 prompt tokens with BOS.
    ASSERT_TRUE(stub_->Generate(&ctx, TextRequest("Hello world", 5), &resp).ok());
  }
  // Counters move before each response is sent (the engine reports to the
  // observer before the sink); the load gauges are published at the end of
  // the engine step, so wait for them to settle.
  std::string after;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  do {
    ASSERT_OK_AND_ASSIGN(after, HttpGet(server_->metrics_port(), "/metrics"));
  } while (MetricValue(after, "openelm_requests_running").value_or(-1) != 0 &&
           absl::Now() < deadline);
  EXPECT_EQ(MetricValue(after, "openelm_generated_tokens_total").value_or(-1),
            tokens0 + 15);
  EXPECT_EQ(
      MetricValue(
          after, "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"length\"}")
          .value_or(-1),
      length0 + 3);
  EXPECT_EQ(MetricValue(after, "openelm_time_to_first_token_seconds_count{api=\"grpc\"}")
                .value_or(-1),
            ttft0 + 3);
  EXPECT_EQ(MetricValue(after, "openelm_prompt_tokens_total").value_or(-1), prompt0 + 9);
  EXPECT_EQ(MetricValue(after, "openelm_requests_running").value_or(-1), 0);
  EXPECT_GT(MetricValue(after, "openelm_kv_cache_blocks_total").value_or(-1), 0);
  EXPECT_EQ(MetricValue(after, "openelm_kv_cache_usage_ratio").value_or(-1), 0);
  // Every contract metric is exposed.
  for (const char* name :
       {"openelm_requests_waiting", "openelm_kv_cache_free_blocks",
        "openelm_inter_token_latency_seconds_count",
        "openelm_time_per_output_token_seconds_count",
        "openelm_e2e_request_latency_seconds_count{api=\"grpc\"}",
        "openelm_queue_time_seconds_count", "openelm_request_prompt_tokens_count",
        "openelm_request_generation_tokens_count", "openelm_step_duration_seconds_count",
        "openelm_step_batch_size_count", "openelm_step_forward_seconds_count",
        "openelm_step_sample_seconds_count", "openelm_access_log_dropped_total",
        "openelm_cached_prompt_tokens_total", "openelm_preemptions_total",
        "openelm_prefix_cache_queries_total", "openelm_prefix_cache_hits_total",
        "openelm_requests_rejected_total{api=\"grpc\",reason=\"unauthenticated\"}",
        "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"shutdown\"}"}) {
    EXPECT_TRUE(MetricValue(after, name).has_value()) << name;
  }
}

TEST_F(ServerTest, DrainTurnsHealthNotServingAndRefusesNewWork) {
  EXPECT_EQ(CheckHealth(*health_, ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckHealth(*health_, kServiceName), HealthCheckResponse::SERVING);

  // A Watch stream sees SERVING now and NOT_SERVING once the drain starts.
  grpc::ClientContext watch_ctx;
  HealthCheckRequest watch_req;
  watch_req.set_service(kServiceName);
  auto watch = health_->Watch(&watch_ctx, watch_req);
  HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);

  // A long request keeps the drain waiting.
  grpc::ClientContext long_ctx;
  auto long_stream =
      stub_->StreamGenerate(&long_ctx, TextRequest("Once upon a time", 1500));
  v1::GenerateResponse msg;
  ASSERT_TRUE(long_stream->Read(&msg));

  std::thread drainer([this] { server_->Drain(absl::Milliseconds(1500)); });
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckHealth(*health_, ""), HealthCheckResponse::NOT_SERVING);

  grpc::ClientContext new_ctx;
  v1::GenerateResponse resp;
  const grpc::Status refused = stub_->Generate(&new_ctx, TextRequest("Hello", 2), &resp);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.error_message(), HasSubstr("draining"));
  grpc::ClientContext load_ctx;
  v1::ServerLoad load;
  ASSERT_TRUE(stub_->GetServerLoad(&load_ctx, v1::GetServerLoadRequest(), &load).ok());
  EXPECT_TRUE(load.draining());

  // The long request ends with a final status: finished, or cut at the drain
  // timeout with UNAVAILABLE.
  const StreamResult r = ReadStream(*long_stream);
  EXPECT_TRUE(r.status.ok() || r.status.error_code() == grpc::StatusCode::UNAVAILABLE)
      << r.status.error_code() << " " << r.status.error_message();
  if (r.status.ok()) {
    EXPECT_EQ(r.finish_reason, v1::FINISH_REASON_LENGTH);
  }
  drainer.join();
  watch_ctx.TryCancel();
  while (watch->Read(&update)) {
  }
  watch->Finish();
  const std::string metrics = server_->metrics().Serialize();
  EXPECT_GE(
      MetricValue(metrics,
                  "openelm_requests_rejected_total{api=\"grpc\",reason=\"unavailable\"}"),
      1);
}

TEST(ServerStartupTest, HealthIsNotServingUntilWarm) {
  TempDir dir;
  ASSERT_OK(::openelm::testing::WriteTinyCheckpoint(dir.path()));
  ServerOptions options = TinyOptions(dir.path());
  options.metrics_port = -1;
  bool checked = false;
  options.before_ready_for_testing = [&checked](int port) {
    auto channel = Connect(port);
    auto health = Health::NewStub(channel);
    EXPECT_EQ(CheckHealth(*health, ""), HealthCheckResponse::NOT_SERVING);
    EXPECT_EQ(CheckHealth(*health, kServiceName), HealthCheckResponse::NOT_SERVING);
    auto stub = v1::InferenceService::NewStub(channel);
    grpc::ClientContext ctx;
    v1::GenerateResponse resp;
    const grpc::Status s = stub->Generate(&ctx, TextRequest("Hello", 2), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(s.error_message(), HasSubstr("starting"));
    checked = true;
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Server> server, Server::Create(options));
  EXPECT_TRUE(checked);
  EXPECT_EQ(server->metrics_port(), -1);
  auto health = Health::NewStub(Connect(server->port()));
  EXPECT_EQ(CheckHealth(*health, ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckHealth(*health, kServiceName), HealthCheckResponse::SERVING);
}

TEST(ServerStartupTest, QueueFullIsResourceExhausted) {
  TempDir dir;
  ASSERT_OK(::openelm::testing::WriteTinyCheckpoint(dir.path()));
  ServerOptions options = TinyOptions(dir.path());
  options.metrics_port = -1;
  options.engine.max_queued_requests = 1;
  options.engine.max_num_seqs = 1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Server> server, Server::Create(options));
  auto stub = v1::InferenceService::NewStub(Connect(server->port()));

  // One request runs (it has produced output), one waits in the queue ...
  grpc::ClientContext running_ctx;
  auto running =
      stub->StreamGenerate(&running_ctx, TextRequest("Once upon a time", 1500));
  v1::GenerateResponse msg;
  ASSERT_TRUE(running->Read(&msg));
  grpc::ClientContext queued_ctx;
  auto queued = stub->StreamGenerate(&queued_ctx, TextRequest("Once upon a time", 1500));
  // Wait until the server has accepted it (the load snapshot shows both).
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  EngineLoad load = server->engine().load();
  while (load.num_waiting + load.num_running < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
    load = server->engine().load();
  }
  ASSERT_EQ(load.num_running, 1);
  ASSERT_EQ(load.num_waiting, 1);

  // ... so the next one is refused at once.
  grpc::ClientContext ctx;
  v1::GenerateResponse resp;
  const grpc::Status s = stub->Generate(&ctx, TextRequest("Hello", 2), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  running_ctx.TryCancel();
  queued_ctx.TryCancel();
  while (running->Read(&msg)) {
  }
  while (queued->Read(&msg)) {
  }
  EXPECT_EQ(running->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(queued->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// A client that stops reading is cut off after a bounded backlog: the
// request is cancelled (its KV blocks return at once), the stream ends with
// RESOURCE_EXHAUSTED naming the bound, and the server stays healthy. The
// client's HTTP/2 window is kept small (no BDP growth) so that the backlog
// forms on the server rather than in the client's transport buffers.
TEST(ServerSlowReaderTest, ClientThatStopsReadingIsCutOffAndItsBlocksFreed) {
  TempDir dir;
  ASSERT_OK(::openelm::testing::WriteTinyCheckpoint(dir.path()));
  ServerOptions options = TinyOptions(dir.path());
  options.max_stream_backlog_bytes = 16 << 10;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Server> server, Server::Create(options));
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 10);
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server->port()),
                                grpc::InsecureChannelCredentials(), args));

  grpc::ClientContext ctx;
  v1::GenerateRequest req = TextRequest("Once upon a time", 1800);
  req.mutable_options()->set_logprobs(10);  // ~1 KiB of output per token
  auto reader = stub->StreamGenerate(&ctx, req);
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  // Stop reading: the server must give up on its own, long before the 1800
  // tokens are done (the whole output would be about 2 MB).
  const absl::Time until = absl::Now() + absl::Seconds(30);
  EngineLoad load = server->engine().load();
  do {
    absl::SleepFor(absl::Milliseconds(20));
    load = server->engine().load();
  } while ((load.num_running > 0 || load.num_free_blocks < load.num_blocks) &&
           absl::Now() < until);
  EXPECT_EQ(load.num_running, 0);
  EXPECT_EQ(load.num_free_blocks, load.num_blocks);
  const std::string metrics = server->metrics().Serialize();
  EXPECT_EQ(
      MetricValue(
          metrics,
          "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"cancelled\"}"),
      1)
      << metrics.substr(0, 3000);

  // What was already in flight can still be read, then the final status.
  int tokens = msg.choices(0).token_ids_size();
  while (reader->Read(&msg)) {
    for (const v1::Choice& c : msg.choices()) tokens += c.token_ids_size();
  }
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("stream backlog exceeded 16384 bytes"));
  EXPECT_LT(tokens, 1800);
  std::printf("[slow reader] %d tokens reached the client\n", tokens);

  // The server still serves.
  grpc::ClientContext ok_ctx;
  v1::GenerateResponse resp;
  EXPECT_TRUE(stub->Generate(&ok_ctx, TextRequest("Hello", 3), &resp).ok());
  EXPECT_EQ(resp.usage().completion_tokens(), 3);
}

}  // namespace
}  // namespace openelm::server
