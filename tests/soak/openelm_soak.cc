// openelm_soak: a bounded soak / chaos client for a local openelm_server.
//
// Sends a mix of streaming and unary Generate calls, with random cancels,
// random short deadlines, slow readers, invalid requests and abrupt client
// disconnects (a child process killed with SIGKILL mid-stream), keeping up to
// --concurrency calls in flight with the gRPC callback API (no thread per
// call). When the load is over it checks that
//   * every call got exactly one final status, of a code its kind allows
//     (invalid requests: INVALID_ARGUMENT; nothing else: INTERNAL/UNKNOWN/...),
//     and streams ended with exactly one final message per choice;
//   * the server holds no request and no KV block (GetServerLoad);
//   * the server's RSS (VmRSS of --server_pid) grew < --max_rss_growth after
//     the warm-up;
//   * the server is alive (grpc.health.v1 SERVING);
// then optionally sends SIGTERM under load (--sigterm) and checks that every
// in-flight call still ends with a clear status and the process exits.
// Prints a report and exits 1 on any violation, 2 on bad flags.
//
// Loopback only: targets other than 127.0.0.1 / localhost / [::1] are
// refused. Bounded by --requests and --duration.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "tests/soak/soak_util.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "Server address (loopback only).");
ABSL_FLAG(int32_t, requests, 1000, "Calls to send (upper bound).");
ABSL_FLAG(absl::Duration, duration, absl::Minutes(10), "Stop sending after this long.");
ABSL_FLAG(int32_t, concurrency, 32, "Calls in flight at most.");
ABSL_FLAG(double, unary_fraction, 0.3, "Share of unary (non-streaming) calls.");
ABSL_FLAG(double, cancel_fraction, 0.1, "Share of calls cancelled at a random time.");
ABSL_FLAG(double, short_deadline_fraction, 0.1,
          "Share of calls with a 20-300 ms deadline.");
ABSL_FLAG(double, invalid_fraction, 0.05, "Share of invalid requests.");
ABSL_FLAG(double, disconnect_fraction, 0.02,
          "Share of streams run in a child process killed mid-stream.");
ABSL_FLAG(double, slow_reader_fraction, 0.05, "Share of streams that read slowly.");
ABSL_FLAG(int32_t, max_tokens, 48, "Largest max_tokens of a valid request.");
ABSL_FLAG(uint64_t, seed, 1, "Random seed of the request mix.");
ABSL_FLAG(int32_t, server_pid, 0, "Server pid: RSS sampling and --sigterm (0 = none).");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(20), "RSS baseline is taken after this.");
ABSL_FLAG(double, max_rss_growth, 0.02, "Allowed RSS growth after warm-up (fraction).");
ABSL_FLAG(bool, sigterm, false, "End with SIGTERM to --server_pid under load.");
ABSL_FLAG(absl::Duration, final_wait, absl::Seconds(60),
          "How long calls may take to finish after the load (else: hung).");
ABSL_FLAG(std::string, report_file, "", "Also write the report here.");
ABSL_FLAG(std::string, child_stream, "",
          "Internal: run one endless stream against this target (disconnect child).");

namespace openelm::soak {
namespace {

using v1::GenerateRequest;
using v1::GenerateResponse;

constexpr absl::string_view kPrompts[] = {
    "Once upon a time there was",
    "The capital of France is",
    "def fibonacci(n):",
    "In a hole in the ground there lived",
    "Les sanglots longs des violons de l'automne",
    "東京は",
    "1, 2, 3, 4,",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
};

// The kind of one call, chosen up front.
struct Plan {
  bool unary = false;
  bool invalid = false;
  bool cancel = false;
  absl::Duration cancel_after;
  bool short_deadline = false;
  absl::Duration deadline;
  bool slow_reader = false;
  absl::Duration read_delay;
};

GenerateRequest MakeValidRequest(std::mt19937_64& rng, int32_t max_tokens) {
  GenerateRequest r;
  r.set_text(std::string(kPrompts[rng() % std::size(kPrompts)]));
  v1::GenerationOptions* o = r.mutable_options();
  o->set_max_tokens(1 + static_cast<int32_t>(rng() % max_tokens));
  o->set_temperature(rng() % 2 == 0 ? 0.0f : 0.8f);
  o->set_seed(rng());
  if (rng() % 8 == 0) o->set_n(2);
  // add_stop(".") trips a gcc 12 -Wrestrict false positive at -O3.
  if (rng() % 8 == 0) o->add_stop()->push_back('.');
  if (rng() % 8 == 0) o->set_logprobs(2);
  if (rng() % 16 == 0) o->set_ignore_eos(true);
  return r;
}

// One of several ways to break a request; each must be INVALID_ARGUMENT.
GenerateRequest MakeInvalidRequest(std::mt19937_64& rng) {
  GenerateRequest r;
  r.set_text("Hello");
  v1::GenerationOptions* o = r.mutable_options();
  switch (rng() % 8) {
    case 0:
      o->set_temperature(5.0f);
      break;
    case 1:
      o->set_top_p(1.5f);
      break;
    case 2:
      o->set_max_tokens(0);
      break;
    case 3:
      o->set_n(100);
      break;
    case 4:
      for (int i = 0; i < 40; ++i) o->add_stop(absl::StrCat("s", i));
      break;
    case 5:
      o->set_logprobs(500);
      break;
    case 6:
      r.mutable_token_ids()->add_ids(1);
      r.mutable_token_ids()->add_ids(999999);
      break;
    default:
      o->set_max_tokens(100000);
      break;  // does not fit the context
  }
  return r;
}

// Shared by all calls: the stub, the timer, the results.
class Runner {
 public:
  Runner(std::shared_ptr<grpc::Channel> channel, Timer* timer)
      : stub_(v1::InferenceService::NewStub(channel)), timer_(timer) {}

  v1::InferenceService::Stub* stub() { return stub_.get(); }
  Timer* timer() { return timer_; }
  Results& results() { return results_; }

  void Started() {
    absl::MutexLock lock(&mu_);
    ++in_flight_;
  }
  void Finished() {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }
  // Blocks until fewer than `limit` calls are in flight.
  void WaitBelow(int32_t limit) {
    absl::MutexLock lock(&mu_);
    auto below = [this, limit]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ < limit; };
    mu_.Await(absl::Condition(&below));
  }
  // Waits up to `timeout` for all calls to finish; returns those left.
  int32_t WaitAllDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
    mu_.AwaitWithTimeout(absl::Condition(&none), timeout);
    return in_flight_;
  }

 private:
  std::unique_ptr<v1::InferenceService::Stub> stub_;
  Timer* timer_;
  Results results_;
  absl::Mutex mu_;
  int32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// Checks the status a call ended with against what its plan allows.
void CheckFinalStatus(const Plan& plan, const grpc::Status& status, Results& results,
                      absl::string_view what) {
  const grpc::StatusCode code = status.error_code();
  bool allowed = false;
  if (plan.invalid) {
    allowed = code == grpc::StatusCode::INVALID_ARGUMENT;
  } else {
    allowed = code == grpc::StatusCode::OK ||
              code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
              (plan.cancel && code == grpc::StatusCode::CANCELLED) ||
              (plan.short_deadline && code == grpc::StatusCode::DEADLINE_EXCEEDED) ||
              (results.shutting_down() && code == grpc::StatusCode::UNAVAILABLE);
  }
  if (!allowed) {
    results.Violation(absl::StrCat(what, ": unexpected status ", CodeName(code), " '",
                                   status.error_message(), "'"));
  }
}

// One streaming call. Owned by itself through `self_` until OnDone().
class StreamCall : public grpc::ClientReadReactor<GenerateResponse> {
 public:
  static void Start(Runner* runner, GenerateRequest request, const Plan& plan) {
    auto call =
        std::shared_ptr<StreamCall>(new StreamCall(runner, std::move(request), plan));
    call->self_ = call;
    call->Begin();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    Record();
    if (plan_.slow_reader) {
      // Hold the call open while the timer waits, then read again.
      AddHold();
      std::shared_ptr<StreamCall> self = self_;
      runner_->timer()->After(plan_.read_delay, [self] {
        self->StartRead(&self->response_);
        self->RemoveHold();
      });
    } else {
      StartRead(&response_);
    }
  }

  void OnDone(const grpc::Status& status) override {
    Results& results = runner_->results();
    results.CountStatus(status.error_code(), /*stream=*/true);
    CheckFinalStatus(plan_, status, results, "stream");
    if (status.ok()) {
      for (int32_t i = 0; i < num_choices_; ++i) {
        if (finals_[i] != 1) {
          results.Violation(absl::StrCat("stream ", request_id_, ": choice ", i, " got ",
                                         finals_[i], " final messages"));
        }
      }
    }
    runner_->Finished();
    std::shared_ptr<StreamCall> keep = std::move(self_);  // may free `this` on return
  }

 private:
  StreamCall(Runner* runner, GenerateRequest request, const Plan& plan)
      : runner_(runner), request_(std::move(request)), plan_(plan) {
    num_choices_ = request_.options().has_n() ? request_.options().n() : 1;
    finals_.assign(std::max(num_choices_, 1), 0);
  }

  void Begin() {
    if (plan_.short_deadline)
      context_.set_deadline(absl::ToChronoTime(absl::Now() + plan_.deadline));
    runner_->Started();
    runner_->stub()->async()->StreamGenerate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
    if (plan_.cancel) {
      std::shared_ptr<StreamCall> self = self_;
      runner_->timer()->After(plan_.cancel_after, [self] { self->context_.TryCancel(); });
    }
  }

  // One message: every choice may finish once, and say nothing after.
  void Record() {
    Results& results = runner_->results();
    if (request_id_.empty() && !response_.request_id().empty()) {
      request_id_ = response_.request_id();
      results.SeeRequestId(request_id_);
    }
    for (const v1::Choice& c : response_.choices()) {
      results.AddTokens(c.token_ids_size());
      if (c.index() < 0 || c.index() >= static_cast<int32_t>(finals_.size())) {
        results.Violation(
            absl::StrCat("stream ", request_id_, ": choice index ", c.index()));
        continue;
      }
      if (finals_[c.index()] > 0) {
        results.Violation(absl::StrCat("stream ", request_id_, ": choice ", c.index(),
                                       " got a message after its final one"));
      }
      if (c.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        ++finals_[c.index()];
        results.CountFinishReason(c.finish_reason());
      }
    }
  }

  Runner* const runner_;
  GenerateRequest request_;
  const Plan plan_;
  grpc::ClientContext context_;
  GenerateResponse response_;
  int32_t num_choices_ = 1;
  std::vector<int32_t> finals_;  // final messages seen per choice
  std::string request_id_;
  std::shared_ptr<StreamCall> self_;
};

// One unary call; the completion callback keeps it alive.
struct UnaryCall {
  Runner* runner = nullptr;
  GenerateRequest request;
  GenerateResponse response;
  grpc::ClientContext context;
  Plan plan;

  static void Start(Runner* runner, GenerateRequest request, const Plan& plan) {
    auto call = std::make_shared<UnaryCall>();
    call->runner = runner;
    call->request = std::move(request);
    call->plan = plan;
    if (plan.short_deadline) {
      call->context.set_deadline(absl::ToChronoTime(absl::Now() + plan.deadline));
    }
    runner->Started();
    runner->stub()->async()->Generate(
        &call->context, &call->request, &call->response,
        [call](grpc::Status status) { call->Done(status); });
    if (plan.cancel) {
      runner->timer()->After(plan.cancel_after, [call] { call->context.TryCancel(); });
    }
  }

  void Done(const grpc::Status& status) {
    Results& results = runner->results();
    results.CountStatus(status.error_code(), /*stream=*/false);
    CheckFinalStatus(plan, status, results, "unary");
    if (status.ok()) {
      results.SeeRequestId(response.request_id());
      const int32_t n = request.options().has_n() ? request.options().n() : 1;
      if (response.choices_size() != n) {
        results.Violation(absl::StrCat("unary ", response.request_id(), ": ",
                                       response.choices_size(), " choices, expected ",
                                       n));
      }
      for (const v1::Choice& c : response.choices()) {
        results.AddTokens(c.token_ids_size());
        if (c.finish_reason() == v1::FINISH_REASON_UNSPECIFIED) {
          results.Violation(absl::StrCat("unary ", response.request_id(),
                                         ": a choice has no finish reason"));
        } else {
          results.CountFinishReason(c.finish_reason());
        }
      }
    }
    runner->Finished();
  }
};

// Abrupt disconnect: a child process streams until it is SIGKILLed, so the
// server sees the TCP connection vanish mid-stream.
void StartDisconnect(Runner* runner, const std::string& target,
                     absl::Duration kill_after) {
  const pid_t pid = fork();
  if (pid < 0) {
    runner->results().Violation("fork failed");
    return;
  }
  if (pid == 0) {
    execl("/proc/self/exe", "openelm_soak",
          absl::StrCat("--child_stream=", target).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  runner->results().CountDisconnect();
  runner->timer()->After(kill_after, [pid] {
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
  });
}

// The disconnect child: one long stream, read until killed.
int RunChildStream(const std::string& target) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = v1::InferenceService::NewStub(channel);
  GenerateRequest request;
  request.set_text("Tell me a very long story about");
  request.mutable_options()->set_max_tokens(1000);
  request.mutable_options()->set_ignore_eos(true);
  grpc::ClientContext context;
  auto reader = stub->StreamGenerate(&context, request);
  GenerateResponse response;
  while (reader->Read(&response)) {
  }
  reader->Finish();
  return 0;
}

Plan DrawPlan(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Plan p;
  p.unary = u(rng) < absl::GetFlag(FLAGS_unary_fraction);
  p.invalid = u(rng) < absl::GetFlag(FLAGS_invalid_fraction);
  if (p.invalid) return p;
  const double chaos = u(rng);
  const double cancel = absl::GetFlag(FLAGS_cancel_fraction);
  const double deadline = absl::GetFlag(FLAGS_short_deadline_fraction);
  if (chaos < cancel) {
    p.cancel = true;
    p.cancel_after = absl::Milliseconds(1 + rng() % 400);
  } else if (chaos < cancel + deadline) {
    p.short_deadline = true;
    p.deadline = absl::Milliseconds(20 + rng() % 280);
  }
  if (!p.unary && u(rng) < absl::GetFlag(FLAGS_slow_reader_fraction)) {
    p.slow_reader = true;
    p.read_delay = absl::Milliseconds(20 + rng() % 200);
  }
  return p;
}

// Waits (up to `timeout`) for the server to report an empty engine and a
// full KV pool; returns the last load seen.
bool WaitForIdleServer(v1::InferenceService::Stub* stub, absl::Duration timeout,
                       v1::ServerLoad* load) {
  const absl::Time end = absl::Now() + timeout;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    const grpc::Status s =
        stub->GetServerLoad(&context, v1::GetServerLoadRequest(), load);
    if (s.ok() && load->requests_running() == 0 && load->requests_waiting() == 0 &&
        load->kv_blocks_free() == load->kv_blocks_total()) {
      return true;
    }
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(200));
  }
}

bool HealthServing(const std::shared_ptr<grpc::Channel>& channel, std::string* detail) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status s = stub->Check(&context, request, &response);
  *detail =
      s.ok()
          ? grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
          : absl::StrCat(CodeName(s.error_code()), " ", s.error_message());
  return s.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

int Run() {
  const std::string target = absl::GetFlag(FLAGS_target);
  if (!IsLoopbackTarget(target)) {
    std::fprintf(stderr, "openelm_soak: refusing non-loopback target '%s'\n",
                 target.c_str());
    return 2;
  }
  const int32_t max_requests = absl::GetFlag(FLAGS_requests);
  const int32_t concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  const int32_t max_tokens = std::max(1, absl::GetFlag(FLAGS_max_tokens));
  const pid_t server_pid = absl::GetFlag(FLAGS_server_pid);
  if (server_pid > 0 &&
      absl::GetFlag(FLAGS_warmup) + absl::Seconds(3) > absl::GetFlag(FLAGS_duration)) {
    std::fprintf(
        stderr,
        "openelm_soak: --duration must exceed --warmup by 3 s or more so that RSS "
        "is sampled after the warm-up\n");
    return 2;
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel =
      grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(30)))) {
    std::fprintf(stderr, "openelm_soak: cannot connect to %s\n", target.c_str());
    return 1;
  }
  Timer timer;
  Runner runner(channel, &timer);
  Results& results = runner.results();
  RssSampler rss(server_pid);
  const absl::Time start = absl::Now();
  rss.Start(start + absl::GetFlag(FLAGS_warmup));

  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  const absl::Time stop_at = start + absl::GetFlag(FLAGS_duration);
  int32_t sent = 0;
  while (sent < max_requests && absl::Now() < stop_at) {
    runner.WaitBelow(concurrency);
    const Plan plan = DrawPlan(rng);
    ++sent;
    std::uniform_real_distribution<double> u(0.0, 1.0);
    if (!plan.invalid && !plan.unary &&
        u(rng) < absl::GetFlag(FLAGS_disconnect_fraction)) {
      StartDisconnect(&runner, target, absl::Milliseconds(50 + rng() % 450));
      continue;
    }
    results.CountPlan(plan.unary, plan.invalid, plan.cancel, plan.short_deadline,
                      plan.slow_reader);
    GenerateRequest request =
        plan.invalid ? MakeInvalidRequest(rng) : MakeValidRequest(rng, max_tokens);
    if (plan.unary) {
      UnaryCall::Start(&runner, std::move(request), plan);
    } else {
      StreamCall::Start(&runner, std::move(request), plan);
    }
  }
  const int32_t hung = runner.WaitAllDone(absl::GetFlag(FLAGS_final_wait));
  if (hung > 0) results.Violation(absl::StrCat(hung, " calls never got a final status"));
  timer.Drain();  // disconnect children killed and reaped
  const absl::Duration load_time = absl::Now() - start;

  v1::ServerLoad load;
  if (!WaitForIdleServer(runner.stub(), absl::Seconds(15), &load)) {
    results.Violation(absl::StrFormat(
        "server not idle after the load: running %d waiting %d kv free %d of %d",
        load.requests_running(), load.requests_waiting(), load.kv_blocks_free(),
        load.kv_blocks_total()));
  }
  rss.Stop();
  const RssReport rss_report = rss.Report();
  if (server_pid > 0) {
    if (!rss_report.valid) {
      results.Violation(absl::StrFormat(
          "RSS: %d samples after the warm-up, 6 needed (the load ended %.1f s after the "
          "start, the warm-up is %.1f s): raise --requests/--duration or lower --warmup",
          rss_report.samples, absl::ToDoubleSeconds(load_time),
          absl::ToDoubleSeconds(absl::GetFlag(FLAGS_warmup))));
    } else if (rss_report.growth > absl::GetFlag(FLAGS_max_rss_growth)) {
      results.Violation(absl::StrFormat("RSS grew %.2f%% after warm-up (limit %.2f%%)",
                                        100 * rss_report.growth,
                                        100 * absl::GetFlag(FLAGS_max_rss_growth)));
    }
  }
  std::string health;
  if (!HealthServing(channel, &health)) {
    results.Violation(absl::StrCat("health check after the load: ", health));
  }

  std::string sigterm_report = "not requested";
  if (absl::GetFlag(FLAGS_sigterm) && server_pid > 0) {
    sigterm_report = SigtermUnderLoad(
        server_pid, absl::GetFlag(FLAGS_final_wait), results,
        [&runner, &rng, max_tokens] {
          GenerateRequest request = MakeValidRequest(rng, max_tokens);
          request.mutable_options()->set_max_tokens(std::max(max_tokens, 64));
          request.mutable_options()->set_ignore_eos(true);
          StreamCall::Start(&runner, std::move(request), Plan{});
        },
        [&runner](absl::Duration timeout) { return runner.WaitAllDone(timeout); });
  }

  const std::string report =
      results.Report(target, sent, load_time,
                     absl::StrFormat("running %d, waiting %d, kv free %d of %d",
                                     load.requests_running(), load.requests_waiting(),
                                     load.kv_blocks_free(), load.kv_blocks_total()),
                     rss_report, health, sigterm_report);
  std::fputs(report.c_str(), stdout);
  if (const std::string path = absl::GetFlag(FLAGS_report_file); !path.empty()) {
    std::ofstream(path) << report;
  }
  if (hung > 0) {
    // Hung calls still point at `runner`: leave without running destructors.
    std::fflush(stdout);
    std::_Exit(1);
  }
  return results.num_violations() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace openelm::soak

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Bounded soak/chaos test of a local openelm_server.");
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (const std::string child = absl::GetFlag(FLAGS_child_stream); !child.empty()) {
    return openelm::soak::RunChildStream(child);
  }
  return openelm::soak::Run();
}
