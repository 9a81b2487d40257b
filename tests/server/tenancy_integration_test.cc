// Multi-tenant serving through the real server (in-process, 127.0.0.1:0,
// tiny model, real tokenizer): API-key auth, per-tenant quotas refused before
// any KV block is taken, config reload under load, and TLS.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "server/server.h"
#include "server/tenants/quota.h"
#include "tests/server/server_test_util.h"
#include "tests/server/tenancy_test_util.h"
#include "tests/testing/status_matchers.h"

// GCC 12 false positive inside std::string with inlined request lambdas.
#pragma GCC diagnostic ignored "-Wrestrict"

namespace openelm::server {
namespace {

using ::openelm::testing::GreedyRequest;
using ::openelm::testing::HttpGet;
using ::openelm::testing::KeyedContext;
using ::openelm::testing::MetricValue;
using ::openelm::testing::TempDir;
using ::openelm::testing::TenantsJson;
using ::openelm::testing::TestTenant;
using ::openelm::testing::TinyCheckpointSuite;
using ::openelm::testing::Trailer;
using ::openelm::testing::WriteTenantsFile;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

constexpr char kAcmeKey[] = "acme-secret-key-1";
constexpr char kBetaKey[] = "beta-secret-key-2";

class TenancyServerTest : public TinyCheckpointSuite {
 protected:
  void TearDown() override {
    if (server_ != nullptr) server_->Drain(absl::Seconds(1));
  }

  // Starts the server with `tenants` in a fresh tenants file.
  // `shared_prefixes_json` is the body of the config's "shared_prefixes";
  // `num_blocks` > 0 sets the KV pool size.
  void StartServer(const std::vector<TestTenant>& tenants, int max_num_seqs = 16,
                   const std::string& shared_prefixes_json = "", int32_t num_blocks = 0) {
    tenants_path_ = absl::StrCat(dir_.path(), "/tenants.json");
    WriteTenantsFile(tenants_path_,
                     TenantsJson(tenants, /*auth_enabled=*/true, shared_prefixes_json));
    ServerOptions options =
        ::openelm::testing::TinyTenancyOptions(TinyModelDir(), OPENELM_TOKENIZER_MODEL);
    options.tenants_config = tenants_path_;
    options.engine.max_num_seqs = max_num_seqs;
    options.engine.num_blocks = num_blocks;
    ASSERT_OK_AND_ASSIGN(server_, Server::Create(options));
    stub_ = v1::InferenceService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  }

  v1::ServerLoad Load() { return ::openelm::testing::GetLoad(*stub_); }

  // Waits (up to 10 s) until nothing runs or waits and the engine published it.
  v1::ServerLoad WaitIdle() {
    return ::openelm::testing::WaitForLoad(*stub_, ::openelm::testing::IsIdle);
  }

  grpc::Status Generate(const std::string& key, const v1::GenerateRequest& req,
                        v1::GenerateResponse* resp = nullptr,
                        std::string* retry_after = nullptr) {
    std::unique_ptr<grpc::ClientContext> ctx = KeyedContext(key);
    v1::GenerateResponse local;
    grpc::Status s = stub_->Generate(ctx.get(), req, resp != nullptr ? resp : &local);
    if (retry_after != nullptr) *retry_after = Trailer(*ctx, "retry-after-ms");
    return s;
  }

  double Metric(const std::string& series) {
    absl::StatusOr<std::string> text = HttpGet(server_->metrics_port(), "/metrics");
    EXPECT_TRUE(text.ok()) << text.status();
    if (!text.ok()) return -1;
    return MetricValue(*text, series).value_or(0);
  }

  TempDir dir_;
  std::string tenants_path_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

// A stream held open by one client: its first message has arrived.
struct OpenStream {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  int64_t num_tokens = 0;

  // Reads to the end; returns the final status.
  grpc::Status Drain() {
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      for (const v1::Choice& c : msg.choices()) num_tokens += c.token_ids_size();
    }
    return reader->Finish();
  }
};

OpenStream StartStream(v1::InferenceService::Stub& stub, const std::string& key,
                       int max_tokens) {
  OpenStream s;
  s.ctx = KeyedContext(key);
  s.reader =
      stub.StreamGenerate(s.ctx.get(), GreedyRequest("Once upon a time", max_tokens));
  v1::GenerateResponse first;
  EXPECT_TRUE(s.reader->Read(&first)) << "the stream ended before any output";
  for (const v1::Choice& c : first.choices()) s.num_tokens += c.token_ids_size();
  return s;
}

TEST_F(TenancyServerTest, MissingOrWrongKeyIsUnauthenticated) {
  StartServer({{"acme", kAcmeKey, 1.0, ""}});
  const double rejected_before =
      Metric(R"(openelm_requests_rejected_total{api="grpc",reason="unauthenticated"})");

  EXPECT_EQ(Generate("", GreedyRequest("Hello", 2)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Generate("not-the-key", GreedyRequest("Hello", 2)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A key that is not a Bearer token.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Basic ") + kAcmeKey);
    v1::GenerateResponse resp;
    EXPECT_EQ(stub_->Generate(&ctx, GreedyRequest("Hello", 2), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  // Tokenize is authenticated too.
  {
    grpc::ClientContext ctx;
    v1::TokenizeRequest req;
    req.set_text("Hello");
    v1::TokenizeResponse resp;
    EXPECT_EQ(stub_->Tokenize(&ctx, req, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  EXPECT_EQ(
      Metric(R"(openelm_requests_rejected_total{api="grpc",reason="unauthenticated"})"),
      rejected_before + 4);
  EXPECT_EQ(
      Metric(
          R"(openelm_tenant_requests_rejected_total{reason="unauthenticated",tenant="unauthenticated"})"),
      4);

  // The right key works, as Bearer token and as x-api-key.
  v1::GenerateResponse resp;
  ASSERT_TRUE(Generate(kAcmeKey, GreedyRequest("Hello", 3), &resp).ok());
  EXPECT_EQ(resp.usage().completion_tokens(), 3);
  grpc::ClientContext ctx;
  ctx.AddMetadata("x-api-key", kAcmeKey);
  v1::GenerateResponse resp2;
  EXPECT_TRUE(stub_->Generate(&ctx, GreedyRequest("Hello", 3), &resp2).ok());
  EXPECT_EQ(resp2.usage().completion_tokens(), 3);
  // Per-tenant series (the engine reports the finish just before the reply).
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (Metric(R"(openelm_tenant_generated_tokens_total{tenant="acme"})") < 6 &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(Metric(R"(openelm_tenant_generated_tokens_total{tenant="acme"})"), 6);
  EXPECT_EQ(
      Metric(
          R"(openelm_tenant_requests_finished_total{finish_reason="length",tenant="acme"})"),
      2);
}

TEST_F(TenancyServerTest, TokenLimitsAreRefusedBeforeAnyKvBlock) {
  StartServer({{"acme", kAcmeKey, 1.0,
                R"("prompt_tokens_per_minute": 25, "output_tokens_per_minute": 1000,
                   "max_max_tokens": 16)"},
               {"beta", kBetaKey, 1.0, R"("output_tokens_per_minute": 20)"}});
  const v1::ServerLoad idle = WaitIdle();
  ASSERT_GT(idle.kv_blocks_free(), 0);

  // max_max_tokens: can never fit, so no retry hint.
  std::string retry;
  grpc::Status s = Generate(kAcmeKey, GreedyRequest("Hello", 17), nullptr, &retry);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("acme"));
  EXPECT_EQ(retry, "");
  EXPECT_EQ(Load().kv_blocks_free(), idle.kv_blocks_free());

  // prompt_tokens_per_minute = 25: a ~18-token prompt fits once, not twice.
  const std::string prompt =
      "The quick brown fox jumps over the lazy dog while the cat sleeps on the mat";
  v1::GenerateResponse first;
  ASSERT_TRUE(Generate(kAcmeKey, GreedyRequest(prompt, 2), &first).ok());
  ASSERT_GT(first.usage().prompt_tokens(), 13);
  ASSERT_LE(first.usage().prompt_tokens(), 22);
  WaitIdle();
  const int32_t free_before = Load().kv_blocks_free();
  s = Generate(kAcmeKey, GreedyRequest(prompt, 2), nullptr, &retry);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  int64_t retry_ms = 0;
  EXPECT_TRUE(absl::SimpleAtoi(retry, &retry_ms)) << "retry-after-ms: '" << retry << "'";
  EXPECT_GT(retry_ms, 0);
  EXPECT_LE(retry_ms, 60000);
  const v1::ServerLoad after = Load();
  EXPECT_EQ(after.kv_blocks_free(), free_before);
  EXPECT_EQ(after.requests_waiting() + after.requests_running(), 0);

  // output_tokens_per_minute = 20 for beta: charged as max_tokens up front.
  ASSERT_TRUE(Generate(kBetaKey, GreedyRequest("Hi", 16)).ok());
  WaitIdle();
  const int32_t free_before_beta = Load().kv_blocks_free();
  s = Generate(kBetaKey, GreedyRequest("Hi", 16), nullptr, &retry);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(absl::SimpleAtoi(retry, &retry_ms)) << "retry-after-ms: '" << retry << "'";
  EXPECT_GT(retry_ms, 0);
  EXPECT_EQ(Load().kv_blocks_free(), free_before_beta);
  // A smaller request still fits in what is left of beta's bucket.
  EXPECT_TRUE(Generate(kBetaKey, GreedyRequest("Hi", 2)).ok());

  // Limits are per tenant: acme's bucket is untouched by beta.
  EXPECT_EQ(Generate(kAcmeKey, GreedyRequest("Hi", 2)).error_code(),
            grpc::StatusCode::OK);
  EXPECT_GE(
      Metric(
          R"(openelm_requests_rejected_total{api="grpc",reason="resource_exhausted"})"),
      3);
}

TEST_F(TenancyServerTest, ConcurrencyAndQueueLimits) {
  // One engine slot, so a second request of any tenant has to queue.
  StartServer({{"acme", kAcmeKey, 1.0, R"("max_concurrent_requests": 1)"},
               {"beta", kBetaKey, 1.0, R"("max_queued_requests": 1)"}},
              /*max_num_seqs=*/1);

  // acme: one stream in flight; a second request is refused at once.
  OpenStream running = StartStream(*stub_, kAcmeKey, 1900);
  std::string retry;
  grpc::Status s = Generate(kAcmeKey, GreedyRequest("Hello", 2), nullptr, &retry);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("acme"));
  EXPECT_EQ(retry, "1000");  // the busy hint: 1 s

  // beta: the first request waits behind acme's stream (admitted, not
  // started); the second would be beta's second queued one.
  std::unique_ptr<grpc::ClientContext> queued_ctx = KeyedContext(kBetaKey);
  v1::GenerateResponse queued_resp;
  grpc::Status queued_status;
  bool queued_done = false;
  absl::Mutex mu;
  const v1::GenerateRequest queued_req = GreedyRequest("Hi", 2);
  stub_->async()->Generate(queued_ctx.get(), &queued_req, &queued_resp,
                           [&](grpc::Status st) {
                             absl::MutexLock lock(&mu);
                             queued_status = st;
                             queued_done = true;
                           });
  // Wait until the engine reports it waiting.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (Load().requests_waiting() < 1 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(Load().requests_waiting(), 1);
  s = Generate(kBetaKey, GreedyRequest("Hi", 2), nullptr, &retry);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(retry, "1000");
  EXPECT_EQ(Load().requests_waiting(), 1);  // the refused one never queued

  // Ending acme's stream lets beta's queued request run; then both tenants
  // are admitted again.
  running.ctx->TryCancel();
  EXPECT_EQ(running.Drain().error_code(), grpc::StatusCode::CANCELLED);
  {
    absl::MutexLock lock(&mu);
    auto done = [&] { return queued_done; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20)));
    EXPECT_TRUE(queued_status.ok()) << queued_status.error_message();
  }
  EXPECT_EQ(queued_resp.usage().completion_tokens(), 2);
  WaitIdle();
  EXPECT_TRUE(Generate(kAcmeKey, GreedyRequest("Hello", 2)).ok());
  EXPECT_TRUE(Generate(kBetaKey, GreedyRequest("Hello", 2)).ok());
}

TEST_F(TenancyServerTest, KvShareLimitCountsTheTenantsBlocks) {
  StartServer(
      {{"acme", kAcmeKey, 1.0, R"("max_kv_share": 0.01)"}, {"beta", kBetaKey, 1.0, ""}});
  const v1::ServerLoad idle = WaitIdle();
  ASSERT_GT(idle.kv_blocks_total() * 0.01, 10);
  ASSERT_LT(idle.kv_blocks_total() * 0.01, 50);
  // A tenant holding no blocks is always admitted, even for a large request:
  // ~800 prompt tokens = 50 blocks, over its 1% share.
  std::string long_prompt;
  for (int i = 0; i < 800; ++i) long_prompt += " word";
  OpenStream big;
  big.ctx = KeyedContext(kAcmeKey);
  big.reader = stub_->StreamGenerate(big.ctx.get(), GreedyRequest(long_prompt, 1200));
  v1::GenerateResponse msg;
  ASSERT_TRUE(big.reader->Read(&msg));
  for (absl::Time until = absl::Now() + absl::Seconds(5);
       server_->engine().TenantKvBlocks("acme") == 0 && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_GT(server_->engine().TenantKvBlocks("acme"), idle.kv_blocks_total() * 0.01);

  // Now any further acme request is over the share; beta is not limited.
  const int32_t free_before = Load().kv_blocks_free();
  std::string retry;
  grpc::Status s = Generate(kAcmeKey, GreedyRequest("Hi", 2), nullptr, &retry);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("max_kv_share"));
  EXPECT_EQ(retry, "1000");
  EXPECT_LE(Load().kv_blocks_free(), free_before);  // only the stream moves it
  EXPECT_TRUE(Generate(kBetaKey, GreedyRequest("Hi", 2)).ok());

  big.ctx->TryCancel();
  big.Drain();
  WaitIdle();
  EXPECT_EQ(server_->engine().TenantKvBlocks("acme"), 0);
  EXPECT_TRUE(Generate(kAcmeKey, GreedyRequest("Hi", 2)).ok());
}

TEST_F(TenancyServerTest, ReloadChangesLimitsWithoutDroppingStreams) {
  StartServer({{"acme", kAcmeKey, 1.0, R"("max_max_tokens": 2000)"}});
  const int64_t generation = server_->tenants().generation();
  OpenStream in_flight = StartStream(*stub_, kAcmeKey, 1500);
  // The engine publishes its load after each step: wait until it shows the
  // stream running.
  for (absl::Time until = absl::Now() + absl::Seconds(5);
       Load().requests_running() < 1 && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(Load().requests_running(), 1);

  // Tighten the limit and add a tenant; reload as SIGHUP does.
  WriteTenantsFile(tenants_path_,
                   TenantsJson({{"acme", kAcmeKey, 1.0, R"("max_max_tokens": 8)"},
                                {"beta", kBetaKey, 1.0, ""}}));
  ASSERT_OK(server_->tenants().Reload());
  EXPECT_GT(server_->tenants().generation(), generation);
  EXPECT_EQ(Generate(kAcmeKey, GreedyRequest("Hello", 16)).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Generate(kAcmeKey, GreedyRequest("Hello", 8)).ok());
  EXPECT_TRUE(Generate(kBetaKey, GreedyRequest("Hello", 16)).ok());

  // A bad edit keeps the current config.
  WriteTenantsFile(tenants_path_, R"({"tenants": [{"id": "acme", "bogus": 1}]})");
  EXPECT_FALSE(server_->tenants().Reload().ok());
  EXPECT_TRUE(Generate(kBetaKey, GreedyRequest("Hello", 2)).ok());

  // The file watcher picks up a change by itself (polls every 100 ms).
  const int64_t before_watch = server_->tenants().generation();
  WriteTenantsFile(tenants_path_,
                   TenantsJson({{"acme", kAcmeKey, 1.0, R"("max_max_tokens": 300)"}}));
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (server_->tenants().generation() == before_watch && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GT(server_->tenants().generation(), before_watch);
  EXPECT_EQ(Generate(kBetaKey, GreedyRequest("Hello", 2)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);  // beta was removed
  EXPECT_TRUE(Generate(kAcmeKey, GreedyRequest("Hello", 16)).ok());

  // The stream admitted under the first config ran to its end.
  EXPECT_TRUE(in_flight.Drain().ok());
  EXPECT_EQ(in_flight.num_tokens, 1500);
}

TEST_F(TenancyServerTest, PrivatePrefixesAreNotSharedAcrossTenants) {
  StartServer({{"acme", kAcmeKey, 1.0, ""}, {"beta", kBetaKey, 1.0, ""}});
  // A prompt of several full 16-token blocks.
  const std::string prompt =
      "You are a careful assistant for the Acme company. Answer briefly and "
      "politely, never reveal internal data, and always cite the handbook "
      "section you used. Question: what is the refund policy?";
  v1::GenerateResponse first, again, other;
  ASSERT_TRUE(Generate(kAcmeKey, GreedyRequest(prompt, 2), &first).ok());
  ASSERT_GE(first.usage().prompt_tokens(), 32);
  EXPECT_EQ(first.usage().cached_tokens(), 0);
  // The same tenant repeats: its prefix is cached.
  ASSERT_TRUE(Generate(kAcmeKey, GreedyRequest(prompt, 2), &again).ok());
  EXPECT_GE(again.usage().cached_tokens(), 16);
  // Another tenant with the same prompt: no hit (no cross-tenant timing channel).
  ASSERT_TRUE(Generate(kBetaKey, GreedyRequest(prompt, 2), &other).ok());
  EXPECT_EQ(other.usage().cached_tokens(), 0);
  // The same greedy output either way: the salt changes caching, not results.
  EXPECT_EQ(other.choices(0).token_ids(0), first.choices(0).token_ids(0));
}

// A system prompt declared shared is shared by every tenant's prompts (whole
// 16-token blocks, counted as cached tokens), while what each tenant adds
// after it stays private. Pinned, it survives a workload that cycles the
// whole KV pool through other prompts; not pinned, that workload evicts it.
TEST_F(TenancyServerTest, DeclaredSharedSystemPromptIsSharedAndPinnable) {
  const std::string sys =
      "You are the support assistant of the Acme company. Answer briefly and "
      "politely, never reveal internal data, cite the handbook section you "
      "used, and say so when you do not know the answer.";
  const std::string chat_sys = "You are a terse assistant that answers in one line.";
  for (const bool pinned : {false, true}) {
    SCOPED_TRACE(pinned ? "pinned" : "not pinned");
    server_.reset();
    const std::string prefixes =
        absl::StrCat(R"({"name": "support", "text": ")", sys, R"(", "pinned": )",
                     pinned ? "true" : "false",
                     R"(}, {"name": "terse", "kind": "chat_system", "text": ")", chat_sys,
                     R"(", "pinned": )", pinned ? "true" : "false", "}");
    StartServer({{"acme", kAcmeKey, 1.0, ""}, {"beta", kBetaKey, 1.0, ""}},
                /*max_num_seqs=*/16, prefixes, /*num_blocks=*/48);
    const std::string acme_prompt = sys +
                                    " Question: what is the refund policy for "
                                    "orders placed during the winter sale?";
    v1::GenerateResponse a1, b1, b2;
    ASSERT_TRUE(Generate(kAcmeKey, GreedyRequest(acme_prompt, 2), &a1).ok());
    EXPECT_EQ(a1.usage().cached_tokens(), 0);
    // Another tenant with the same system prompt and its own question: the
    // system prompt's full blocks are hits.
    ASSERT_TRUE(Generate(kBetaKey,
                         GreedyRequest(sys + " Question: how do I reset my password?", 2),
                         &b1)
                    .ok());
    const int shared = b1.usage().cached_tokens();
    EXPECT_GE(shared, 32);
    EXPECT_EQ(shared % 16, 0);
    // The other tenant's exact prompt: still only the declared part is hit.
    ASSERT_TRUE(Generate(kBetaKey, GreedyRequest(acme_prompt, 2), &b2).ok());
    EXPECT_EQ(b2.usage().cached_tokens(), shared);
    EXPECT_LT(shared, b2.usage().prompt_tokens() - 16);
    EXPECT_EQ(b2.choices(0).token_ids(0), a1.choices(0).token_ids(0));

    // Chat: a declared system message is shared between tenants' chats.
    auto chat = [&](const std::string& key, const std::string& question) {
      v1::ChatRequest req;
      v1::ChatMessage* m = req.add_messages();
      m->set_role(v1::ROLE_SYSTEM);
      m->set_content(chat_sys);
      m = req.add_messages();
      m->set_role(v1::ROLE_USER);
      m->set_content(question);
      req.mutable_options()->set_max_tokens(1);
      std::unique_ptr<grpc::ClientContext> ctx = KeyedContext(key);
      v1::GenerateResponse resp;
      EXPECT_TRUE(stub_->Chat(ctx.get(), req, &resp).ok());
      return resp.usage().cached_tokens();
    };
    EXPECT_EQ(chat(kAcmeKey, "What is 2 + 2?"), 0);
    const int chat_shared = chat(kBetaKey, "Name a colour.");
    EXPECT_GE(chat_shared, 16);

    // Thrash: 12 prompts of about 10 blocks each through a 48-block pool.
    for (int i = 0; i < 12; ++i) {
      std::string filler;
      for (int k = 0; k < 40; ++k) absl::StrAppend(&filler, "item ", 1000 * i + k, ", ");
      ASSERT_TRUE(Generate(kBetaKey, GreedyRequest(filler, 1)).ok());
    }
    v1::GenerateResponse after;
    ASSERT_TRUE(Generate(kAcmeKey,
                         GreedyRequest(sys + " Question: where is my parcel?", 2), &after)
                    .ok());
    EXPECT_EQ(after.usage().cached_tokens(), pinned ? shared : 0);
    EXPECT_EQ(chat(kAcmeKey, "Name a fruit."), pinned ? chat_shared : 0);
    EXPECT_EQ(Metric("openelm_kv_cache_pinned_blocks"),
              pinned ? (shared + chat_shared) / 16 : 0);
  }
}

// Every generation RPC leaves one access log line naming its tenant (or "-"
// when it was refused before authentication succeeded).
TEST_F(TenancyServerTest, AccessLogNamesTheTenant) {
  StartServer({{"acme", kAcmeKey, 1.0, ""}, {"beta", kBetaKey, 1.0, ""}});
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(Generate(kAcmeKey, GreedyRequest("Hello there", 3)).ok());
  EXPECT_EQ(Generate("wrong-key", GreedyRequest("Hello there", 3)).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  server_->Drain(absl::Seconds(2));  // every OnDone (and its line) has run
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, ContainsRegex("access method=Generate id=[0-9]+ tenant=acme "
                                 "peer=ipv4:127.0.0.1:[0-9]+ code=OK finish=length "
                                 "prompt_tokens=[0-9]+ cached_tokens=0 output_tokens=3 "
                                 "preemptions=0 queue_ms=[0-9.]+ ttft_ms=[0-9.]+ "
                                 "total_ms=[0-9.]+"))
      << log;
  EXPECT_THAT(log, ContainsRegex("access method=Generate id=[0-9]+ tenant=- "
                                 "peer=[^ ]+ code=UNAUTHENTICATED total_ms=[0-9.]+"))
      << log;
}

TEST_F(TenancyServerTest, SingleUserModeNeedsNoKey) {
  ServerOptions options =
      ::openelm::testing::TinyTenancyOptions(TinyModelDir(), OPENELM_TOKENIZER_MODEL);
  ASSERT_OK_AND_ASSIGN(server_, Server::Create(options));
  stub_ = v1::InferenceService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials()));
  v1::GenerateResponse resp;
  ASSERT_TRUE(Generate("", GreedyRequest("Hello", 3), &resp).ok());
  EXPECT_EQ(resp.usage().completion_tokens(), 3);
  EXPECT_TRUE(Generate("anything", GreedyRequest("Hello", 1)).ok());
}

TEST_F(TenancyServerTest, TlsRefusesPlaintextAndServesTlsClients) {
  TempDir certs;
  ASSERT_OK_AND_ASSIGN(int rc, ::openelm::testing::RunCommand(
                                   {"/bin/bash", OPENELM_GEN_TEST_CERTS, certs.path()},
                                   absl::Seconds(60)));
  ASSERT_EQ(rc, 0);
  tenants_path_ = absl::StrCat(dir_.path(), "/tenants.json");
  WriteTenantsFile(tenants_path_, TenantsJson({{"acme", kAcmeKey, 1.0, ""}}));
  ServerOptions options =
      ::openelm::testing::TinyTenancyOptions(TinyModelDir(), OPENELM_TOKENIZER_MODEL);
  options.tenants_config = tenants_path_;
  options.tls.cert_path = certs.path() + "/server.pem";
  options.tls.key_path = certs.path() + "/server.key";
  ASSERT_OK_AND_ASSIGN(server_, Server::Create(options));
  const std::string target = absl::StrCat("127.0.0.1:", server_->port());

  // Plaintext: the handshake fails, nothing is served.
  auto plain = v1::InferenceService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  {
    std::unique_ptr<grpc::ClientContext> ctx = KeyedContext(kAcmeKey, absl::Seconds(3));
    v1::GenerateResponse resp;
    const grpc::Status s = plain->Generate(ctx.get(), GreedyRequest("Hello", 2), &resp);
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
        << s.error_code() << " " << s.error_message();
  }

  // TLS with the test CA: works with the key, UNAUTHENTICATED without.
  std::string ca_pem;
  {
    std::ifstream in(certs.path() + "/ca.pem");
    ca_pem.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_FALSE(ca_pem.empty());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  auto tls = v1::InferenceService::NewStub(
      grpc::CreateChannel(target, grpc::SslCredentials(ssl)));
  {
    std::unique_ptr<grpc::ClientContext> ctx = KeyedContext(kAcmeKey);
    v1::GenerateResponse resp;
    const grpc::Status s = tls->Generate(ctx.get(), GreedyRequest("Hello", 3), &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.usage().completion_tokens(), 3);
  }
  {
    std::unique_ptr<grpc::ClientContext> ctx = KeyedContext("");
    v1::GenerateResponse resp;
    EXPECT_EQ(tls->Generate(ctx.get(), GreedyRequest("Hello", 3), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
}

}  // namespace
}  // namespace openelm::server
