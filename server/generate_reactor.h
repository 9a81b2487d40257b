#ifndef OPENELM_SERVER_GENERATE_REACTOR_H_
#define OPENELM_SERVER_GENERATE_REACTOR_H_

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/llm_engine.h"
#include "engine/tokenizer/tokenizer.h"
#include "openelm/v1/inference.pb.h"
#include "server/access_log.h"
#include "server/metrics.h"
#include "server/service_core.h"
#include "server/tenants/quota.h"

namespace openelm::server {

// Default bound on output queued for a client that does not read: once the
// message waiting behind the one being written grows past it, the request is
// cancelled and the stream ends with RESOURCE_EXHAUSTED
// (ServerOptions::max_stream_backlog_bytes).
inline constexpr int64_t kMaxStreamBacklogBytes = 1 << 20;

// After that cut, how long the write the client never accepted may stay stuck
// before the server resets the stream (a reader that is only slow still gets
// the RESOURCE_EXHAUSTED status within this time; one that stopped reading
// for good cannot take even the trailers, so only a reset ends its call).
inline constexpr absl::Duration kStalledWriteGrace = absl::Seconds(2);

// What a generation reactor uses; everything outlives every reactor (the
// Server shuts gRPC down before destroying them).
struct ReactorEnv {
  LlmEngine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  Metrics* metrics = nullptr;  // may be null
  RpcTracker* tracker = nullptr;
  int64_t max_stream_backlog_bytes = kMaxStreamBacklogBytes;
  AccessLog* access_log = nullptr;  // null: no access log
};

// What the two generation reactors share: the call's environment and id,
// the engine submission and its race with OnCancel, the tenant's quota
// ticket, the prompt kept for prompt logprobs, and the access record.
// Thread-safety: Submit and Cancel may race (atomics); the rest follows the
// owning reactor's rules.
class GenerateCall {
 public:
  GenerateCall(const ReactorEnv& env, RequestId id, const char* method, std::string peer);

  // Hands the request to the engine with `sink`. On error nothing was
  // submitted and the ticket's charge is refunded (Abandon). The ticket is
  // marked started at the first output and finished in RecordFinish(). On
  // success the engine may already have finished the request and the RPC
  // may be gone: the caller must not touch the reactor again.
  absl::Status Submit(GenerateSpec spec, QuotaTicket ticket, TokenSink* sink);
  // The reactor's OnCancel: stops a submitted request (the engine answers
  // with OnFinish within one step) or keeps one being admitted from being
  // submitted.
  void Cancel();
  // The reactor's OnFinish bookkeeping: ticket and access record.
  void RecordFinish(const FinishInfo& info);
  // The reactor's OnDone bookkeeping: queues the access line. Returns the
  // tracker to End() once the reactor is deleted.
  RpcTracker* Done();

  const ReactorEnv env;
  const RequestId id;
  // Copy of the prompt, kept only when prompt logprobs were requested.
  std::vector<TokenId> prompt;
  // The tenant's admission: the admitting thread until Submit succeeds, then
  // the engine thread (OnOutput / OnFinish).
  QuotaTicket ticket;
  // Written by the admitting thread, then OnFinish, then the thread that
  // calls Finish(); read in OnDone (gRPC orders OnDone after Finish).
  AccessRecord access;

 private:
  std::atomic<bool> submitted_{false};
  std::atomic<bool> cancelled_{false};  // Cancel() ran
};

// One StreamGenerate / StreamChat RPC: a gRPC write reactor fed by the engine
// as its TokenSink.
//
// Output is coalesced: at most two messages exist, the one being written and
// the one collecting new output behind it, so no thread is parked per request
// and a slow reader costs one growing message (bounded, see above).
//
// Lifetime: created by the method handler; then exactly one of FinishNow()
// or Submit() is called, from the handler or later from the service's work
// queue; deleted in OnDone(). Finish() is called only
// (a) by FinishNow() / after a failed Submit(), or (b) after the engine's
// OnFinish(), so the engine never calls a deleted sink. Decisions are made
// under mu_ and acted on (StartWrite, Cancel, Finish) after unlocking;
// Finish() is the last use of `this`.
//
// Thread-safety: OnOutput/OnFinish run on the engine thread, the gRPC
// reactions on library threads; shared state is guarded by mu_.
class GenerateStreamReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                                    public TokenSink {
 public:
  // `method` (a literal) and `peer` are for the access log.
  // `context` is the call's, valid until OnDone().
  GenerateStreamReactor(const ReactorEnv& env, RequestId id, const char* method,
                        std::string peer, grpc::CallbackServerContext* context);

  // The authenticated tenant, for the access log (before Submit/FinishNow).
  void NoteTenant(absl::string_view tenant) { call_.access.tenant = std::string(tenant); }
  // Ends the RPC before anything was submitted.
  void FinishNow(const grpc::Status& status);
  // Hands the request to the engine. On error nothing was submitted, the
  // ticket's charge is refunded (Abandon) and the caller must call
  // FinishNow(). The ticket is marked started at the first output and
  // finished with the output token count in OnFinish().
  absl::Status Submit(GenerateSpec spec, QuotaTicket ticket = QuotaTicket());

  // TokenSink (engine thread).
  void OnOutput(const OutputDelta& delta) override;
  void OnFinish(const FinishInfo& info) override;

  // gRPC reactions.
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // What to do after unlocking mu_. At most one is set. A cancel carries
  // what it needs, because by the time it runs the engine may have finished
  // the request and the RPC may be gone (`this` deleted).
  struct Action {
    const v1::GenerateResponse* write = nullptr;
    LlmEngine* cancel_engine = nullptr;
    RequestId cancel_id = 0;
    std::optional<grpc::Status> finish;
  };

  // Lets the stall alarm reset a stream whose write never completes without
  // racing the reactor's own Finish(): shared with the alarm's callback,
  // which may run after the reactor is gone.
  struct StallReset {
    absl::Mutex mu;
    // Null once Finish() was called (OnDone may follow at any time).
    grpc::CallbackServerContext* context ABSL_GUARDED_BY(mu) = nullptr;
    // The thread inside TryCancel(); a Finish() from another thread waits in
    // `deferred` for it to return (TryCancel may run reactions inline).
    std::thread::id resetting ABSL_GUARDED_BY(mu);
    std::optional<grpc::Status> deferred ABSL_GUARDED_BY(mu);
  };

  // Every Finish() goes through here (see StallReset).
  void FinishOnce(const grpc::Status& status);
  // Arms the stall alarm (engine thread, at the backlog cut).
  void ArmStallReset();

  v1::GenerateResponse* TailLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Action NextActionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Static: an empty action or a cancel must not touch `self`, which may
  // already be deleted; a write or a finish is only decided while `self` is
  // certain to be alive (no other path can call Finish()).
  static void Perform(GenerateStreamReactor* self, const Action& action);

  GenerateCall call_;
  const std::shared_ptr<StallReset> stall_ = std::make_shared<StallReset>();
  grpc::Alarm stall_alarm_;
  // Engine-thread only: when each completion last produced output.
  std::vector<absl::Time> last_output_;

  absl::Mutex mu_;
  std::deque<v1::GenerateResponse> pending_ ABSL_GUARDED_BY(mu_);
  // The front message serialized, while its write is in flight (the method
  // is raw; see proto_io.h). Touched only by whoever starts the write.
  grpc::ByteBuffer write_buffer_;
  int64_t tail_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;      // client gone or too slow
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;  // backlog bound hit
  bool cancel_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool engine_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status final_status_ ABSL_GUARDED_BY(mu_);
};

// One Generate / Chat RPC (unary): collects the whole output into the
// response and finishes after the engine's OnFinish().
//
// Lifetime and thread-safety as GenerateStreamReactor: the response is
// touched only by the engine thread (or the admitting thread before Submit), and
// OnCancel only forwards to LlmEngine::Cancel.
class GenerateUnaryReactor final : public grpc::ServerUnaryReactor, public TokenSink {
 public:
  // `raw_response` is owned by gRPC and valid until OnDone(); the response
  // is collected in a message of our own and serialized into it at the end.
  GenerateUnaryReactor(const ReactorEnv& env, RequestId id,
                       grpc::ByteBuffer* raw_response, const char* method,
                       std::string peer);

  void NoteTenant(absl::string_view tenant) { call_.access.tenant = std::string(tenant); }
  void FinishNow(const grpc::Status& status);
  // As GenerateStreamReactor::Submit.
  absl::Status Submit(GenerateSpec spec, QuotaTicket ticket = QuotaTicket());

  void OnOutput(const OutputDelta& delta) override;
  void OnFinish(const FinishInfo& info) override;

  void OnCancel() override;
  void OnDone() override;

 private:
  GenerateCall call_;
  grpc::ByteBuffer* const raw_response_;
  v1::GenerateResponse response_;
};

// The engine deadline for a request whose gRPC deadline is `grpc_deadline`:
// a little earlier (a fifth of the time left, clamped to 20 ms..1 s, and at
// most half of it), so the
// server ends the stream itself with FINISH_REASON_DEADLINE and the partial
// output before gRPC's own timer cancels the call.
absl::Time EngineDeadline(absl::Time grpc_deadline, absl::Time now);

}  // namespace openelm::server

#endif  // OPENELM_SERVER_GENERATE_REACTOR_H_
