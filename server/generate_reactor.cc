#include "server/generate_reactor.h"

#include <grpc/grpc.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/base/logging.h"
#include "server/proto_convert.h"
#include "server/proto_io.h"
#include "server/status_util.h"

namespace openelm::server {

absl::Time EngineDeadline(absl::Time grpc_deadline, absl::Time now) {
  if (grpc_deadline == absl::InfiniteFuture()) return grpc_deadline;
  const absl::Duration left = grpc_deadline - now;
  if (left <= absl::ZeroDuration()) return grpc_deadline;
  const absl::Duration margin =
      std::clamp(left / 5, absl::Milliseconds(20), absl::Seconds(1));
  return grpc_deadline - std::min(margin, left / 2);
}

// ---- GenerateCall ----

GenerateCall::GenerateCall(const ReactorEnv& call_env, RequestId call_id,
                           const char* method, std::string peer)
    : env(call_env), id(call_id) {
  access.Start(method, call_id, std::move(peer));
  env.tracker->Begin();
}

absl::Status GenerateCall::Submit(GenerateSpec spec, QuotaTicket admission,
                                  TokenSink* sink) {
  if (spec.params.prompt_logprobs >= 0) prompt = spec.prompt;
  ticket = std::move(admission);
  // Set before Submit: Cancel() may race with it and must reach the engine.
  submitted_.store(true);
  if (cancelled_.load()) {  // the client left while the request was admitted
    submitted_.store(false);
    ticket.Abandon();
    return absl::CancelledError("the client cancelled the call");
  }
  LlmEngine* engine = env.engine;
  absl::Status status = engine->Submit(id, std::move(spec), sink);
  if (!status.ok()) {
    submitted_.store(false);
    ticket.Abandon();
  }
  // On success the engine may already have finished the request and the
  // RPC may be gone: nothing of `this` is touched here.
  return status;
}

void GenerateCall::Cancel() {
  cancelled_.store(true);
  if (submitted_.load()) env.engine->Cancel(id);
}

void GenerateCall::RecordFinish(const FinishInfo& info) {
  ticket.Finish(info.num_output_tokens);
  access.RecordFinish(info);
}

RpcTracker* GenerateCall::Done() {
  WriteAccessLine(env.access_log, access);
  return env.tracker;
}

// ---- GenerateStreamReactor ----

GenerateStreamReactor::GenerateStreamReactor(const ReactorEnv& env, RequestId id,
                                             const char* method, std::string peer,
                                             grpc::CallbackServerContext* context)
    : call_(env, id, method, std::move(peer)) {
  absl::MutexLock lock(&stall_->mu);
  stall_->context = context;
}

void GenerateStreamReactor::FinishNow(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    finish_called_ = true;
  }
  call_.access.code = status.error_code();
  FinishOnce(status);
}

void GenerateStreamReactor::FinishOnce(const grpc::Status& status) {
  {
    absl::MutexLock lock(&stall_->mu);
    if (stall_->resetting != std::thread::id() &&
        stall_->resetting != std::this_thread::get_id()) {
      stall_->deferred = status;  // the alarm's thread finishes after TryCancel
      return;
    }
    stall_->context = nullptr;
  }
  Finish(status);  // `this` may be deleted from here on
}

void GenerateStreamReactor::ArmStallReset() {
  GenerateStreamReactor* self = this;
  std::shared_ptr<StallReset> stall = stall_;
  stall_alarm_.Set(
      absl::ToChronoTime(absl::Now() + kStalledWriteGrace), [self, stall](bool fired) {
        if (!fired) return;  // cancelled: the reactor is gone
        grpc::CallbackServerContext* context = nullptr;
        {
          absl::MutexLock lock(&stall->mu);
          if (stall->context == nullptr) return;  // finished meanwhile
          context = stall->context;
          stall->resetting = std::this_thread::get_id();
        }
        // Cancelling sends the status in trailers (HEADERS are not flow
        // controlled), so even this client learns why; the stuck write then
        // fails and OnWriteDone(false) finishes the reactor.
        OPENELM_LOG(WARNING) << "request " << self->call_.id
                             << ": the client accepted no data for "
                             << absl::FormatDuration(kStalledWriteGrace)
                             << " after the backlog cut; resetting the stream";
        const std::string message = absl::StrCat(
            "stream backlog exceeded ", self->call_.env.max_stream_backlog_bytes,
            " bytes and the client read nothing for ",
            absl::FormatDuration(kStalledWriteGrace));
        grpc_call_cancel_with_status(context->c_call(), GRPC_STATUS_RESOURCE_EXHAUSTED,
                                     message.c_str(), nullptr);
        std::optional<grpc::Status> deferred;
        {
          absl::MutexLock lock(&stall->mu);
          stall->resetting = std::thread::id();
          deferred = std::move(stall->deferred);
          stall->deferred.reset();
          if (deferred.has_value()) stall->context = nullptr;
        }
        // Finish() was held back for us, so `self` is still alive.
        if (deferred.has_value()) self->Finish(*deferred);
      });
}

absl::Status GenerateStreamReactor::Submit(GenerateSpec spec, QuotaTicket ticket) {
  last_output_.assign(static_cast<size_t>(std::max(spec.params.n, 1)),
                      absl::InfinitePast());
  return call_.Submit(std::move(spec), std::move(ticket), this);
}

v1::GenerateResponse* GenerateStreamReactor::TailLocked() {
  // The front message is the one being written while a write is in flight;
  // output then collects in a second message behind it.
  if (pending_.empty() || (write_in_flight_ && pending_.size() == 1)) {
    pending_.emplace_back().set_request_id(absl::StrCat(call_.id));
    tail_bytes_ = 0;
  }
  return &pending_.back();
}

void GenerateStreamReactor::OnOutput(const OutputDelta& delta) {
  if (delta.tokens.empty() && delta.text.empty() && delta.logprobs.empty()) {
    return;
  }
  call_.ticket.MarkStarted();
  const absl::Time now = absl::Now();
  if (static_cast<size_t>(delta.index) < last_output_.size() && !delta.tokens.empty()) {
    absl::Time& last = last_output_[delta.index];
    if (last != absl::InfinitePast() && call_.env.metrics != nullptr) {
      call_.env.metrics->ObserveInterTokenLatency(now - last,
                                                  static_cast<int>(delta.tokens.size()));
    }
    last = now;
  }
  Action next;
  bool arm_stall = false;
  {
    absl::MutexLock lock(&mu_);
    if (!broken_) {
      tail_bytes_ += AppendDelta(delta, call_.env.tokenizer, TailLocked());
      if (tail_bytes_ > call_.env.max_stream_backlog_bytes) {
        // The client is not reading: drop what waits and stop the request.
        overflowed_ = true;
        broken_ = true;
        if (write_in_flight_) {
          pending_.resize(1);
          arm_stall = true;
        } else {
          pending_.clear();
        }
      }
    }
    next = NextActionLocked();
  }
  // Before Perform: the engine has not finished, so nothing can have called
  // Finish() and `this` is alive.
  if (arm_stall) ArmStallReset();
  Perform(this, next);
}

void GenerateStreamReactor::OnFinish(const FinishInfo& info) {
  call_.RecordFinish(info);
  Action next;
  {
    absl::MutexLock lock(&mu_);
    engine_done_ = true;
    if (overflowed_) {
      final_status_ = ToGrpcStatus(absl::ResourceExhaustedError(
          absl::StrCat("stream backlog exceeded ", call_.env.max_stream_backlog_bytes,
                       " bytes: the client is not reading its stream")));
    } else {
      final_status_ = ToGrpcStatus(info.status);
    }
    if (!broken_) AppendFinish(info, call_.prompt, call_.env.tokenizer, TailLocked());
    next = NextActionLocked();
  }
  Perform(this, next);  // may Finish(): the engine does not touch us afterwards
}

void GenerateStreamReactor::OnWriteDone(bool ok) {
  Action next;
  {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    if (!pending_.empty()) pending_.pop_front();
    if (!ok) {
      broken_ = true;
      pending_.clear();
    }
    next = NextActionLocked();
  }
  Perform(this, next);
}

void GenerateStreamReactor::OnCancel() {
  // Client cancel, disconnect or gRPC deadline.
  call_.Cancel();
}

void GenerateStreamReactor::OnDone() {
  RpcTracker* tracker = call_.Done();
  delete this;
  tracker->End();
}

GenerateStreamReactor::Action GenerateStreamReactor::NextActionLocked() {
  Action a;
  if (finish_called_) return a;
  if (broken_ && !cancel_sent_ && !engine_done_) {
    // Stop the request at once, even while a write is stuck in flight (a
    // client that stopped reading never completes it). The engine still
    // calls OnFinish.
    cancel_sent_ = true;
    a.cancel_engine = call_.env.engine;
    a.cancel_id = call_.id;
    return a;
  }
  if (write_in_flight_) return a;
  if (!pending_.empty()) {
    write_in_flight_ = true;
    a.write = &pending_.front();  // deque keeps element addresses stable
  } else if (engine_done_) {
    finish_called_ = true;
    a.finish = final_status_;
    call_.access.code = final_status_.error_code();
  }
  return a;
}

void GenerateStreamReactor::Perform(GenerateStreamReactor* self, const Action& action) {
  if (action.write != nullptr) {
    SerializeResponse(*action.write, &self->write_buffer_);
    self->StartWrite(&self->write_buffer_);
  } else if (action.cancel_engine != nullptr) {
    action.cancel_engine->Cancel(action.cancel_id);
  } else if (action.finish.has_value()) {
    self->FinishOnce(*action.finish);  // `self` may be deleted from here on
  }
}

// ---- GenerateUnaryReactor ----

GenerateUnaryReactor::GenerateUnaryReactor(const ReactorEnv& env, RequestId id,
                                           grpc::ByteBuffer* raw_response,
                                           const char* method, std::string peer)
    : call_(env, id, method, std::move(peer)), raw_response_(raw_response) {}

void GenerateUnaryReactor::FinishNow(const grpc::Status& status) {
  call_.access.code = status.error_code();
  Finish(status);
}

absl::Status GenerateUnaryReactor::Submit(GenerateSpec spec, QuotaTicket ticket) {
  response_.set_request_id(absl::StrCat(call_.id));
  return call_.Submit(std::move(spec), std::move(ticket), this);
}

void GenerateUnaryReactor::OnOutput(const OutputDelta& delta) {
  if (!delta.tokens.empty()) call_.ticket.MarkStarted();
  AppendDelta(delta, call_.env.tokenizer, &response_);
}

void GenerateUnaryReactor::OnFinish(const FinishInfo& info) {
  call_.RecordFinish(info);
  AppendFinish(info, call_.prompt, call_.env.tokenizer, &response_);
  const grpc::Status status = ToGrpcStatus(info.status);
  call_.access.code = status.error_code();
  if (status.ok()) SerializeResponse(response_, raw_response_);
  Finish(status);  // last use of `this`
}

void GenerateUnaryReactor::OnCancel() { call_.Cancel(); }

void GenerateUnaryReactor::OnDone() {
  RpcTracker* tracker = call_.Done();
  delete this;
  tracker->End();
}

}  // namespace openelm::server
