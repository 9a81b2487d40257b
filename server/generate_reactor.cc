#include "server/generate_reactor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/proto_convert.h"
#include "server/status_util.h"

namespace openelm::server {

// ---- RpcTracker ----

void RpcTracker::Begin() {
  absl::MutexLock lock(&mu_);
  ++active_;
}

void RpcTracker::End() {
  absl::MutexLock lock(&mu_);
  --active_;
}

int RpcTracker::active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

bool RpcTracker::WaitForIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return active_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

absl::Time EngineDeadline(absl::Time grpc_deadline, absl::Time now) {
  if (grpc_deadline == absl::InfiniteFuture()) return grpc_deadline;
  const absl::Duration left = grpc_deadline - now;
  if (left <= absl::ZeroDuration()) return grpc_deadline;
  const absl::Duration margin =
      std::clamp(left / 5, absl::Milliseconds(20), absl::Seconds(1));
  return grpc_deadline - std::min(margin, left / 2);
}

// ---- GenerateStreamReactor ----

GenerateStreamReactor::GenerateStreamReactor(const ReactorEnv& env, RequestId id)
    : env_(env), id_(id) {
  env_.tracker->Begin();
}

void GenerateStreamReactor::FinishNow(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    finish_called_ = true;
  }
  Finish(status);
}

absl::Status GenerateStreamReactor::Submit(GenerateSpec spec, QuotaTicket ticket) {
  last_output_.assign(static_cast<size_t>(std::max(spec.params.n, 1)),
                      absl::InfinitePast());
  if (spec.params.prompt_logprobs >= 0) prompt_ = spec.prompt;
  ticket_ = std::move(ticket);
  // Set before Submit: OnCancel may race with it and must reach the engine.
  submitted_.store(true);
  absl::Status status = env_.engine->Submit(id_, std::move(spec), this);
  if (!status.ok()) {
    submitted_.store(false);
    ticket_.Abandon();
  }
  // On success the engine may already be calling us; `this` stays valid until
  // the handler returns (gRPC calls OnDone only after that).
  return status;
}

v1::GenerateResponse* GenerateStreamReactor::TailLocked() {
  // The front message is the one being written while a write is in flight;
  // output then collects in a second message behind it.
  if (pending_.empty() || (write_in_flight_ && pending_.size() == 1)) {
    pending_.emplace_back().set_request_id(absl::StrCat(id_));
    tail_bytes_ = 0;
  }
  return &pending_.back();
}

void GenerateStreamReactor::OnOutput(const OutputDelta& delta) {
  if (delta.tokens.empty() && delta.text.empty() && delta.logprobs.empty()) {
    return;
  }
  ticket_.MarkStarted();
  const absl::Time now = absl::Now();
  if (static_cast<size_t>(delta.index) < last_output_.size() &&
      !delta.tokens.empty()) {
    absl::Time& last = last_output_[delta.index];
    if (last != absl::InfinitePast() && env_.metrics != nullptr) {
      env_.metrics->ObserveInterTokenLatency(
          now - last, static_cast<int>(delta.tokens.size()));
    }
    last = now;
  }
  Action next;
  {
    absl::MutexLock lock(&mu_);
    if (!broken_) {
      tail_bytes_ += AppendDelta(delta, env_.tokenizer, TailLocked());
      if (tail_bytes_ > kMaxStreamBacklogBytes) {
        // The client is not reading: drop what waits and stop the request.
        overflowed_ = true;
        broken_ = true;
        if (write_in_flight_) {
          pending_.resize(1);
        } else {
          pending_.clear();
        }
      }
    }
    next = NextActionLocked();
  }
  Perform(next);
}

void GenerateStreamReactor::OnFinish(const FinishInfo& info) {
  ticket_.Finish(info.num_output_tokens);
  Action next;
  {
    absl::MutexLock lock(&mu_);
    engine_done_ = true;
    if (overflowed_) {
      final_status_ = grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("stream backlog exceeded ", kMaxStreamBacklogBytes,
                       " bytes: the client is not reading its stream"));
    } else {
      final_status_ = ToGrpcStatus(info.status);
    }
    if (!broken_) AppendFinish(info, prompt_, env_.tokenizer, TailLocked());
    next = NextActionLocked();
  }
  Perform(next);  // may Finish(): the engine does not touch us afterwards
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
  Perform(next);
}

void GenerateStreamReactor::OnCancel() {
  // Client cancel, disconnect or gRPC deadline: the engine answers with
  // OnFinish within one step, and that leads to Finish().
  if (submitted_.load()) env_.engine->Cancel(id_);
}

void GenerateStreamReactor::OnDone() {
  RpcTracker* tracker = env_.tracker;
  delete this;
  tracker->End();
}

GenerateStreamReactor::Action GenerateStreamReactor::NextActionLocked() {
  Action a;
  if (write_in_flight_ || finish_called_) return a;
  if (!pending_.empty()) {
    write_in_flight_ = true;
    a.write = &pending_.front();  // deque keeps element addresses stable
  } else if (engine_done_) {
    finish_called_ = true;
    a.finish = final_status_;
  } else if (broken_ && !cancel_sent_) {
    cancel_sent_ = true;
    a.cancel = true;  // the engine will still call OnFinish
  }
  return a;
}

void GenerateStreamReactor::Perform(const Action& action) {
  if (action.write != nullptr) {
    StartWrite(action.write);
  } else if (action.cancel) {
    env_.engine->Cancel(id_);
  } else if (action.finish.has_value()) {
    Finish(*action.finish);  // `this` may be deleted from here on
  }
}

// ---- GenerateUnaryReactor ----

GenerateUnaryReactor::GenerateUnaryReactor(const ReactorEnv& env, RequestId id,
                                           v1::GenerateResponse* response)
    : env_(env), id_(id), response_(response) {
  env_.tracker->Begin();
}

void GenerateUnaryReactor::FinishNow(const grpc::Status& status) {
  Finish(status);
}

absl::Status GenerateUnaryReactor::Submit(GenerateSpec spec, QuotaTicket ticket) {
  response_->set_request_id(absl::StrCat(id_));
  if (spec.params.prompt_logprobs >= 0) prompt_ = spec.prompt;
  ticket_ = std::move(ticket);
  submitted_.store(true);
  absl::Status status = env_.engine->Submit(id_, std::move(spec), this);
  if (!status.ok()) {
    submitted_.store(false);
    ticket_.Abandon();
  }
  return status;
}

void GenerateUnaryReactor::OnOutput(const OutputDelta& delta) {
  if (!delta.tokens.empty()) ticket_.MarkStarted();
  AppendDelta(delta, env_.tokenizer, response_);
}

void GenerateUnaryReactor::OnFinish(const FinishInfo& info) {
  ticket_.Finish(info.num_output_tokens);
  AppendFinish(info, prompt_, env_.tokenizer, response_);
  Finish(ToGrpcStatus(info.status));  // last use of `this`
}

void GenerateUnaryReactor::OnCancel() {
  if (submitted_.load()) env_.engine->Cancel(id_);
}

void GenerateUnaryReactor::OnDone() {
  RpcTracker* tracker = env_.tracker;
  delete this;
  tracker->End();
}

}  // namespace openelm::server
