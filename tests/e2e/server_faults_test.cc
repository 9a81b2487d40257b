// Fault handling of a real openelm_server process on the generated tiny
// model: each start-up fault ends the process with exit code 1 and a message
// that names the problem, and each request-time fault ends the RPC with the
// exact status the API documents (proto/openelm/v1/inference.proto).
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/kernels/cpu_isa.h"
#include "engine/kernels/cpu_kernels.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "tests/e2e/client_e2e_util.h"
#include "tests/server/server_test_util.h"
#include "tests/testing/status_matchers.h"

namespace openelm::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kStartTimeout = absl::Seconds(60);
// Bytes of one 16-token KV block of the tiny model in bf16:
// sum over layers of 2 (K,V) * kv_heads(l) * head_dim * 2 bytes, times 16,
// with kv_heads = {1, 2, 3} and head_dim 32.
constexpr int64_t kTinyBlockBytes = int64_t{2} * (1 + 2 + 3) * 32 * 2 * 16;

std::string TokenizerFlag() {
  return absl::StrCat("--tokenizer=", OPENELM_TOKENIZER_MODEL);
}

class ServerFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_dir_ = dir_.path() + "/model";
    ASSERT_OK(WriteTinyCheckpoint(model_dir_));
  }

  // Runs the server binary (`binary`, default the built one) with `args` and
  // expects it to exit by itself.
  e2e::CommandResult RunServer(const std::vector<std::string>& args,
                               absl::Duration timeout = absl::Seconds(30),
                               const e2e::SpawnOptions& spawn = {},
                               const std::string& binary = OPENELM_SERVER_BINARY) {
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<e2e::CommandResult> result =
        e2e::RunAndCapture(argv, timeout, /*stdin_text=*/"", spawn);
    EXPECT_OK(result.status());
    return result.ok() ? *result : e2e::CommandResult{};
  }

  // Starts a server that keeps running; `extra` is appended to the usual flags.
  void StartServer(e2e::ServerChild& server, const std::vector<std::string>& extra) {
    std::vector<std::string> args = {absl::StrCat("--model_dir=", model_dir_),
                                     TokenizerFlag(),
                                     "--port=0",
                                     "--metrics_port=0",
                                     "--http_port=0",
                                     "--threads=1"};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_OK(
        server.Start(OPENELM_SERVER_BINARY, args,
                     dir_.path() + "/server" + std::to_string(num_servers_++) + ".log",
                     kStartTimeout));
  }

  TempDir dir_;
  std::string model_dir_;
  int num_servers_ = 0;
};

v1::ServerLoad GetLoad(v1::InferenceService::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ServerLoad load;
  grpc::Status status = stub.GetServerLoad(&ctx, v1::GetServerLoadRequest(), &load);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return load;
}

double CancelledCount(int metrics_port) {
  absl::StatusOr<std::string> text = e2e::HttpGet(metrics_port, "/metrics");
  EXPECT_OK(text.status());
  if (!text.ok()) return -1;
  const std::map<std::string, double> samples = e2e::ParsePrometheusText(*text);
  auto it = samples.find(
      "openelm_requests_finished_total{api=\"grpc\",finish_reason=\"cancelled\"}");
  return it == samples.end() ? 0 : it->second;
}

v1::GenerateRequest LongRequest() {
  v1::GenerateRequest req;
  req.set_text("Once upon a time there was");
  req.mutable_options()->set_max_tokens(2000);
  req.mutable_options()->set_temperature(0.0f);
  req.mutable_options()->set_ignore_eos(true);
  return req;
}

TEST_F(ServerFaultsTest, MissingModelDirIsNotFoundNamingConfigJson) {
  const std::string missing = dir_.path() + "/no_such_model";
  e2e::CommandResult r =
      RunServer({absl::StrCat("--model_dir=", missing), TokenizerFlag(), "--port=0",
                 "--metrics_port=-1", "--http_port=-1"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(r.err, HasSubstr(missing));
  EXPECT_THAT(r.err, HasSubstr("config.json"));
}

TEST_F(ServerFaultsTest, TruncatedSafetensorsIsRejectedNamingTheFile) {
  const std::string file = model_dir_ + "/model.safetensors";
  const auto size = std::filesystem::file_size(file);
  // Keep the header, drop part of the tensor data.
  std::filesystem::resize_file(file, size - 4096);
  e2e::CommandResult r =
      RunServer({absl::StrCat("--model_dir=", model_dir_), TokenizerFlag(), "--port=0",
                 "--metrics_port=-1", "--http_port=-1"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(r.err, HasSubstr(file));
  EXPECT_THAT(r.err, HasSubstr("truncated"));
}

TEST_F(ServerFaultsTest, MissingTokenizerIsNotFoundNamingThePath) {
  const std::string missing = dir_.path() + "/no_such_tokenizer.model";
  e2e::CommandResult r = RunServer({absl::StrCat("--model_dir=", model_dir_),
                                    absl::StrCat("--tokenizer=", missing), "--port=0",
                                    "--metrics_port=-1", "--http_port=-1"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(r.err, HasSubstr(missing));
}

// Issue 16.5: without --tokenizer and $OPENELM_TOKENIZER the server looks
// for the tokenizer relative to its own binary, not the working directory.
// Every child here runs from another directory with OPENELM_TOKENIZER
// removed from its environment (or set on purpose).
e2e::SpawnOptions ElsewhereWithoutTokenizerEnv(const std::string& working_dir) {
  e2e::SpawnOptions spawn;
  spawn.working_dir = working_dir;
  spawn.unset_env = {"OPENELM_TOKENIZER"};
  return spawn;
}

// Copies the server binary to <prefix>/bin/openelm_server (an install-prefix
// layout; /proc/self/exe then names the copy) and returns the copy's path.
std::string CopyServerInto(const std::string& prefix) {
  std::filesystem::create_directories(prefix + "/bin");
  const std::string copy = prefix + "/bin/openelm_server";
  std::filesystem::copy_file(OPENELM_SERVER_BINARY, copy);
  return copy;
}

TEST_F(ServerFaultsTest, DefaultTokenizerIsFoundFromAnotherWorkingDirectory) {
  // The build tree's layout: <repo>/build/bin beside <repo>/../shared.
  const std::filesystem::path bin_dir =
      std::filesystem::canonical(OPENELM_SERVER_BINARY).parent_path();
  const std::string expected =
      (bin_dir / "../../../shared/tokenizer/llama2-tokenizer.model")
          .lexically_normal()
          .string();
  if (!std::filesystem::is_regular_file(expected)) {
    GTEST_SKIP() << "build directory is not <repo>/<build>/bin beside ../shared: no "
                 << expected;
  }
  e2e::ServerChild server;
  ASSERT_OK(server.Start(OPENELM_SERVER_BINARY,
                         {absl::StrCat("--model_dir=", model_dir_), "--port=0",
                          "--metrics_port=0", "--http_port=0", "--threads=1"},
                         dir_.path() + "/server_cwd_root.log", kStartTimeout,
                         ElsewhereWithoutTokenizerEnv("/")));
  EXPECT_THAT(server.Log(), HasSubstr(absl::StrCat("tokenizer ", expected)));
}

TEST_F(ServerFaultsTest, InstalledLayoutFindsShareOpenelmTokenizer) {
  const std::string prefix =
      std::filesystem::canonical(dir_.path()).string() + "/opt/openelm";
  const std::string binary = CopyServerInto(prefix);
  const std::string installed = prefix + "/share/openelm/tokenizer.model";
  std::filesystem::create_directories(prefix + "/share/openelm");
  // A link, so the real tokenizer is never copied.
  std::filesystem::create_symlink(std::filesystem::canonical(OPENELM_TOKENIZER_MODEL),
                                  installed);
  e2e::ServerChild server;
  ASSERT_OK(server.Start(binary,
                         {absl::StrCat("--model_dir=", model_dir_), "--port=0",
                          "--metrics_port=0", "--http_port=0", "--threads=1"},
                         dir_.path() + "/server_installed.log", kStartTimeout,
                         ElsewhereWithoutTokenizerEnv("/")));
  EXPECT_THAT(server.Log(), HasSubstr(absl::StrCat("tokenizer ", installed)));
}

TEST_F(ServerFaultsTest, NoDefaultTokenizerIsNotFoundListingEveryPlaceLooked) {
  // A copy of the binary where no candidate exists: <root>/opt/openelm/bin,
  // run from that directory.
  const std::string root = std::filesystem::canonical(dir_.path()).string();
  const std::string binary = CopyServerInto(root + "/opt/openelm");
  const std::vector<std::string> candidates = {
      root + "/opt/openelm/share/openelm/tokenizer.model",            // install prefix
      root + "/shared/tokenizer/llama2-tokenizer.model",              // build tree
      root + "/opt/openelm/shared/tokenizer/llama2-tokenizer.model",  // cwd-relative
  };
  e2e::CommandResult r = RunServer(
      {absl::StrCat("--model_dir=", model_dir_), "--port=0", "--metrics_port=-1",
       "--http_port=-1"},
      absl::Seconds(30), ElsewhereWithoutTokenizerEnv(root + "/opt/openelm/bin"), binary);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  size_t last = 0;
  for (const std::string& candidate : candidates) {
    const size_t at = r.err.find(candidate, last);
    ASSERT_NE(at, std::string::npos) << candidate << " not (in order) in:\n" << r.err;
    last = at + candidate.size();
  }
  EXPECT_THAT(r.err, HasSubstr("--tokenizer"));
  EXPECT_THAT(r.err, HasSubstr("OPENELM_TOKENIZER"));
}

TEST_F(ServerFaultsTest, TokenizerEnvNamingAMissingFileIsNotFoundNamingIt) {
  const std::string missing = dir_.path() + "/no_such_tokenizer.model";
  e2e::SpawnOptions spawn;
  spawn.working_dir = "/";
  spawn.set_env = {{"OPENELM_TOKENIZER", missing}};
  e2e::CommandResult r = RunServer({absl::StrCat("--model_dir=", model_dir_), "--port=0",
                                    "--metrics_port=-1", "--http_port=-1"},
                                   absl::Seconds(30), spawn);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("OPENELM_TOKENIZER=", missing)));
}

TEST_F(ServerFaultsTest, PortHeldByPlainListenerFails) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  e2e::CommandResult r = RunServer(
      {absl::StrCat("--model_dir=", model_dir_), TokenizerFlag(), "--host=127.0.0.1",
       absl::StrCat("--port=", port), "--metrics_port=-1", "--http_port=-1"});
  close(fd);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot listen on 127.0.0.1:", port)));
}

TEST_F(ServerFaultsTest, PortHeldByAnotherServerFails) {
  e2e::ServerChild first;
  ASSERT_NO_FATAL_FAILURE(StartServer(first, {}));
  // A server that wrongly shares the port keeps running; the timeout bounds it.
  e2e::CommandResult r =
      RunServer({absl::StrCat("--model_dir=", model_dir_), TokenizerFlag(),
                 "--host=127.0.0.1", absl::StrCat("--port=", first.port()),
                 "--metrics_port=-1", "--http_port=-1", "--threads=1"},
                absl::Seconds(10));
  EXPECT_EQ(r.exit_code, 1) << "second server on port " << first.port()
                            << " did not fail; its stderr:\n"
                            << r.err;
  EXPECT_THAT(r.err,
              HasSubstr(absl::StrCat("cannot listen on 127.0.0.1:", first.port())));
}

TEST_F(ServerFaultsTest, KvBudgetBelowOneBlockFailsPrecondition) {
  e2e::CommandResult r =
      RunServer({absl::StrCat("--model_dir=", model_dir_), TokenizerFlag(), "--port=0",
                 "--metrics_port=-1", "--http_port=-1", "--block_size=16",
                 absl::StrCat("--kv_cache_bytes=", kTinyBlockBytes - 1)});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(r.err, HasSubstr("KV budget"));
}

// The AVX2 plan has no bf16 matmul: asking for bf16 activations there stops
// the server at start-up with a message naming the flag, the ISA and what
// works (never a raw oneDNN error). Capped at avx2, so it holds on any host
// that has AVX2.
TEST_F(ServerFaultsTest, ActivationDtypeThisCpuCannotRunNamesFlagIsaAndChoices) {
  if (DetectedCpuIsa() == CpuIsa::kPortable) GTEST_SKIP() << "this CPU has no avx2";
  e2e::CommandResult r =
      RunServer({absl::StrCat("--model_dir=", model_dir_), TokenizerFlag(), "--port=0",
                 "--metrics_port=-1", "--http_port=-1", "--max_cpu_isa=avx2",
                 "--activation_dtype=bf16"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--activation_dtype=bf16"));
  EXPECT_THAT(r.err, HasSubstr("ISA is avx2"));
  EXPECT_THAT(r.err, HasSubstr("--activation_dtype=auto or f32"));
  EXPECT_THAT(r.err, Not(HasSubstr("primitive descriptor")));

  e2e::CommandResult bad_cap =
      RunServer({absl::StrCat("--model_dir=", model_dir_), TokenizerFlag(), "--port=0",
                 "--metrics_port=-1", "--http_port=-1", "--max_cpu_isa=avx9"});
  EXPECT_EQ(bad_cap.exit_code, 2) << bad_cap.err;
  EXPECT_THAT(bad_cap.err, HasSubstr("--max_cpu_isa"));
}

// --weight_dtype=int8: the server quantizes at load, says so in ModelInfo,
// and generates.
TEST_F(ServerFaultsTest, Int8WeightsServeAndReportTheirPlan) {
  e2e::ServerChild server;
  ASSERT_NO_FATAL_FAILURE(StartServer(server, {"--weight_dtype=int8"}));
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext list_ctx;
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub->ListModels(&list_ctx, v1::ListModelsRequest(), &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).weight_dtype(), "int8");
  // oneDNN's int8 where the level's kernel build is avx512_vnni, else the own
  // int8 kernels (execution_plan.h).
  EXPECT_THAT(models.models(0).execution_plan(),
              HasSubstr(KernelBuildFor(EffectiveCpuIsa()) == KernelBuild::kAvx512Vnni
                            ? "matmul=onednn-int8"
                            : "matmul=own-int8"));
  // One byte per weight plus the scales and padding: about half of bf16.
  // oneDNN's int8 layout pads rows and columns to blocks of 64, which the
  // tiny model's small matrices feel (1.12x here; 1.009x on 270M).
  const int64_t bytes = models.models(0).weight_bytes();
  EXPECT_GT(bytes, models.models(0).num_parameters());
  EXPECT_LT(bytes, models.models(0).num_parameters() * 115 / 100);
  absl::StatusOr<std::string> text = e2e::HttpGet(server.metrics_port(), "/metrics");
  ASSERT_OK(text.status());
  EXPECT_EQ(e2e::ParsePrometheusText(*text)["openelm_model_weight_bytes"],
            static_cast<double>(bytes));

  v1::GenerateRequest req;
  req.mutable_token_ids()->add_ids(1);
  req.mutable_token_ids()->add_ids(15043);
  req.mutable_options()->set_max_tokens(5);
  req.mutable_options()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::GenerateResponse resp;
  const grpc::Status status = stub->Generate(&ctx, req, &resp);
  ASSERT_TRUE(status.ok()) << status.error_message();
  int32_t tokens = 0;
  for (const auto& c : resp.choices()) tokens += c.token_ids_size();
  EXPECT_EQ(tokens, 5);
}

TEST_F(ServerFaultsTest, RequestLargerThanKvPoolIsInvalidArgument) {
  e2e::ServerChild server;
  ASSERT_NO_FATAL_FAILURE(StartServer(
      server,
      {"--block_size=16", absl::StrCat("--kv_cache_bytes=", 2 * kTinyBlockBytes)}));
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  const v1::ServerLoad load = GetLoad(*stub);
  ASSERT_EQ(load.kv_blocks_total(), 2);

  // 4 prompt tokens (BOS + 3) + 100 new ones need ceil(104 / 16) = 7 blocks.
  v1::GenerateRequest req;
  req.mutable_token_ids()->add_ids(1);
  req.mutable_token_ids()->add_ids(15043);
  req.mutable_token_ids()->add_ids(3186);
  req.mutable_token_ids()->add_ids(29892);
  req.mutable_options()->set_max_tokens(100);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::GenerateResponse resp;
  grpc::Status status = stub->Generate(&ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("request needs 7 KV blocks"));
  EXPECT_THAT(status.error_message(), HasSubstr("the pool has 2"));
  // The refusal took no block.
  EXPECT_EQ(GetLoad(*stub).kv_blocks_free(), 2);
}

TEST_F(ServerFaultsTest, DeadlineExpiringInQueueEndsOkWithDeadlineReason) {
  e2e::ServerChild server;
  ASSERT_NO_FATAL_FAILURE(
      StartServer(server, {"--max_num_seqs=1", "--kv_cache_bytes=33554432"}));
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));

  // The long request holds the only sequence slot.
  grpc::ClientContext long_ctx;
  long_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto long_reader = stub->StreamGenerate(&long_ctx, LongRequest());
  v1::GenerateResponse msg;
  ASSERT_TRUE(long_reader->Read(&msg));

  v1::GenerateRequest req;
  req.set_text("Hello world");
  req.mutable_options()->set_max_tokens(8);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto reader = stub->StreamGenerate(&ctx, req);
  int num_tokens = 0;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::GenerateResponse part;
  while (reader->Read(&part)) {
    for (const v1::Choice& c : part.choices()) {
      num_tokens += c.token_ids_size();
      if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) reason = c.finish_reason();
    }
  }
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_EQ(reason, v1::FINISH_REASON_DEADLINE);
  EXPECT_EQ(num_tokens, 0);

  // The long request was still running all along.
  EXPECT_EQ(GetLoad(*stub).requests_running(), 1);
  long_ctx.TryCancel();
  while (long_reader->Read(&msg)) {
  }
  EXPECT_EQ(long_reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(ServerFaultsTest, ClientDisconnectFreesKvBlocksAndCountsCancelled) {
  e2e::ServerChild server;
  ASSERT_NO_FATAL_FAILURE(StartServer(server, {"--kv_cache_bytes=33554432"}));
  auto control = v1::InferenceService::NewStub(
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials()));
  const int32_t total = GetLoad(*control).kv_blocks_total();
  ASSERT_GT(total, 0);
  const double cancelled_before = CancelledCount(server.metrics_port());

  {
    // A channel of its own (own subchannel, so its own TCP connection).
    grpc::ChannelArguments channel_args;
    channel_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(
        server.target(), grpc::InsecureChannelCredentials(), channel_args);
    auto stub = v1::InferenceService::NewStub(channel);
    grpc::ClientContext ctx;
    auto reader = stub->StreamGenerate(&ctx, LongRequest());
    v1::GenerateResponse msg;
    ASSERT_TRUE(reader->Read(&msg));
    ASSERT_TRUE(reader->Read(&msg));
    EXPECT_LT(GetLoad(*control).kv_blocks_free(), total);
    // The client goes away mid-stream: the call is cancelled (RST_STREAM)
    // and the reader, stub and channel are destroyed without reading on.
    ctx.TryCancel();
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }

  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  v1::ServerLoad load;
  double cancelled = 0;
  do {
    absl::SleepFor(absl::Milliseconds(50));
    load = GetLoad(*control);
    cancelled = CancelledCount(server.metrics_port());
  } while ((load.kv_blocks_free() != total || load.requests_running() != 0 ||
            cancelled != cancelled_before + 1) &&
           absl::Now() < deadline);
  EXPECT_EQ(load.kv_blocks_free(), total);
  EXPECT_EQ(load.requests_running(), 0);
  EXPECT_EQ(load.requests_waiting(), 0);
  EXPECT_EQ(cancelled, cancelled_before + 1);
}

}  // namespace
}  // namespace openelm::testing
