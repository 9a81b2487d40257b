#include "server/http/http_call.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/base/logging.h"
#include "server/http/http_request.h"

namespace openelm::server::http_front {
namespace {

// The request deadline from `x-request-timeout` (seconds) or the default.
absl::StatusOr<absl::Time> RequestDeadline(std::optional<std::string> header,
                                           absl::Duration default_timeout,
                                           absl::Time now) {
  if (header.has_value()) {
    double seconds = 0;
    if (!absl::SimpleAtod(*header, &seconds) || !std::isfinite(seconds) || seconds <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("x-request-timeout: expected a positive number of seconds (got \"",
                       http_front::QuoteClientText(*header, 64), "\")"));
    }
    return now + absl::Seconds(std::min(seconds, 86400.0 * 365));
  }
  if (default_timeout > absl::ZeroDuration()) return now + default_timeout;
  return absl::InfiniteFuture();
}

}  // namespace

void HttpCall::FailLocked(const absl::Status& status,
                          std::optional<absl::Duration> retry_after) {
  status_ = openai::HttpStatusCode(status.code());
  if (retry_after.has_value()) {
    retry_after_s_ = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(*retry_after))));
  }
  pending_ = openai::ErrorBody(status);
  access_.code = static_cast<grpc::StatusCode>(status.code());
  decided_ = true;
  done_ = true;
  streaming_ = false;
  NotifyLocked();
}

void HttpCall::Fail(const absl::Status& status,
                    std::optional<absl::Duration> retry_after) {
  core_->CountRejection(status, access_.tenant, ApiLabel::kHttp);
  absl::MutexLock lock(&mu_);
  FailLocked(status, retry_after);
}

void HttpCall::Admit(const Input& input) {
  absl::StatusOr<const ServingState*> ready = core_->GetReady();
  if (!ready.ok()) return Fail(ready.status());
  const ServingState& state = **ready;
  absl::StatusOr<TenantHandle> tenant =
      core_->Authenticate(input.authorization, input.x_api_key);
  if (!tenant.ok()) return Fail(tenant.status());
  access_.tenant = *tenant != nullptr ? (*tenant)->id : "";

  absl::StatusOr<openai::HttpRequest> parsed =
      openai::ParseRequestBody(input.endpoint, input.body);
  if (!parsed.ok()) return Fail(parsed.status());
  request_ = *std::move(parsed);
  const absl::Time now = absl::Now();
  absl::StatusOr<absl::Time> deadline =
      RequestDeadline(input.timeout, default_timeout_, now);
  if (!deadline.ok()) return Fail(deadline.status());

  // Validation, limits and messages: the shared parser, under the HTTP names.
  absl::StatusOr<std::vector<GenerateSpec>> built =
      http_front::BuildSpecs(request_, *state.tokenizer, state.limits);
  if (!built.ok()) return Fail(built.status());
  std::vector<GenerateSpec> specs = *std::move(built);
  for (size_t i = 0; i < specs.size(); ++i) {
    auto sink = std::make_unique<PromptSink>(this, static_cast<int>(i));
    sink->id = i == 0 ? id_ : core_->NextRequestId();
    specs[i].deadline = *deadline;
    specs[i].api = ApiName(ApiLabel::kHttp);
    sink->last_output.assign(static_cast<size_t>(std::max(specs[i].params.n, 1)),
                             absl::InfinitePast());
    std::optional<absl::Duration> retry;
    absl::Status admitted =
        core_->AdmitQuota(state, *tenant, &specs[i], &sink->ticket, &retry);
    if (!admitted.ok()) {
      for (auto& s : sinks_) s->ticket.Abandon();
      return Fail(admitted, retry);
    }
    sinks_.push_back(std::move(sink));
  }

  const std::string id_text = absl::StrCat(
      request_.endpoint == openai::Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-",
      id_);
  absl::MutexLock lock(&mu_);
  engine_ = state.engine;  // from here on Cancel() may walk sinks_
  builder_ = std::make_unique<openai::ResponseBuilder>(
      request_, id_text, absl::ToUnixSeconds(now), state.limits.model_id,
      state.tokenizer);
  if (cancelled_) {
    for (auto& s : sinks_) s->ticket.Abandon();
    core_->CountRejection(absl::CancelledError(""), access_.tenant, ApiLabel::kHttp);
    FailLocked(absl::CancelledError("the client went away before the request started"),
               std::nullopt);
    return;
  }
  absl::Status failure;
  for (size_t i = 0; i < sinks_.size(); ++i) {
    PromptSink& sink = *sinks_[i];
    if (!failure.ok()) {
      sink.ticket.Abandon();
      continue;
    }
    // The engine may call the sink as soon as Submit returns; it waits on
    // mu_ (held here) until this loop is done.
    absl::Status s = engine_->Submit(sink.id, std::move(specs[i]), &sink);
    if (!s.ok()) {
      sink.ticket.Abandon();
      failure = s;
      continue;
    }
    sink.submitted = true;
    ++outstanding_;
  }
  if (!failure.ok()) {
    core_->CountRejection(failure, access_.tenant, ApiLabel::kHttp);
    if (outstanding_ == 0) {
      FailLocked(failure, std::nullopt);
      return;
    }
    // Some prompts run: stop them and answer with the failure once they end.
    engine_error_ = failure;
    for (auto& s : sinks_) {
      if (s->submitted) engine_->Cancel(s->id);
    }
    self_ = shared_from_this();
    return;
  }
  self_ = shared_from_this();
  if (request_.stream) {
    decided_ = true;
    streaming_ = true;
    NotifyLocked();
  }
}

void HttpCall::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (engine_ == nullptr) return;
  for (auto& s : sinks_) {
    if (s->submitted) engine_->Cancel(s->id);
  }
}

void HttpCall::OnOutput(int index, const OutputDelta& delta) {
  if (delta.tokens.empty() && delta.text.empty()) return;
  PromptSink& sink = *sinks_[index];
  sink.ticket.MarkStarted();
  // Inter-token latency of streamed completions, as the gRPC streams report it.
  if (request_.stream && !delta.tokens.empty() && core_->metrics() != nullptr &&
      static_cast<size_t>(delta.index) < sink.last_output.size()) {
    const absl::Time now = absl::Now();
    absl::Time& last = sink.last_output[delta.index];
    if (last != absl::InfinitePast()) {
      core_->metrics()->ObserveInterTokenLatency(now - last,
                                                 static_cast<int>(delta.tokens.size()));
    }
    last = now;
  }
  absl::MutexLock lock(&mu_);
  if (!request_.stream) {
    builder_->CollectDelta(index, delta);
    return;
  }
  if (overflowed_) return;
  builder_->AppendDelta(index, delta, &pending_);
  if (static_cast<int64_t>(pending_.size()) > max_backlog_) {
    // The client is not reading: drop what waits and stop every request.
    overflowed_ = true;
    pending_.clear();
    for (auto& s : sinks_) {
      if (s->submitted) engine_->Cancel(s->id);
    }
    OPENELM_LOG(WARNING) << "request " << id_ << ": HTTP stream backlog exceeded "
                         << max_backlog_ << " bytes; cancelled";
  }
  NotifyLocked();
}

void HttpCall::OnFinish(int index, const FinishInfo& info) {
  sinks_[index]->ticket.Finish(info.num_output_tokens);
  std::shared_ptr<HttpCall> keep;
  absl::MutexLock lock(&mu_);
  // The access line sums the prompts' token counts (RecordFinish keeps one).
  const int32_t prompt_tokens = access_.prompt_tokens + info.num_prompt_tokens;
  const int32_t cached_tokens = access_.cached_tokens + info.num_cached_tokens;
  const int32_t output_tokens = access_.output_tokens + info.num_output_tokens;
  access_.RecordFinish(info);
  access_.prompt_tokens = prompt_tokens;
  access_.cached_tokens = cached_tokens;
  access_.output_tokens = output_tokens;
  if (!info.status.ok() && engine_error_.ok()) engine_error_ = info.status;
  if (request_.stream) {
    if (!overflowed_ && engine_error_.ok())
      builder_->AppendFinish(index, info, &pending_);
  } else {
    builder_->CollectFinish(index, info);
  }
  if (--outstanding_ > 0) {
    NotifyLocked();
    return;
  }
  keep = std::move(self_);  // released after the lock, when the call may go
  if (overflowed_) {
    const absl::Status cut = absl::ResourceExhaustedError(
        absl::StrCat("stream backlog exceeded ", max_backlog_,
                     " bytes: the client is not reading its stream"));
    access_.code = static_cast<grpc::StatusCode>(cut.code());
    builder_->AppendError(cut, &pending_);
  } else if (streaming_) {
    if (engine_error_.ok()) {
      builder_->AppendEnd(&pending_);
    } else {
      access_.code = static_cast<grpc::StatusCode>(engine_error_.code());
      builder_->AppendError(engine_error_, &pending_);
    }
  } else if (!engine_error_.ok()) {
    FailLocked(engine_error_, std::nullopt);
    return;
  } else {
    // The body is formatted by TakeOutput on the connection's strand: with
    // logprobs it can be megabytes, which must not stall the engine thread.
    body_due_ = true;
    decided_ = true;
  }
  done_ = true;
  NotifyLocked();
}

bool HttpCall::TakeOutput(Output* out) {
  absl::MutexLock lock(&mu_);
  if (!decided_) return false;
  *out = Output();
  if (!head_taken_) {
    head_taken_ = true;
    out->head = true;
    out->status = status_;
    out->stream = streaming_;
    out->retry_after_s = retry_after_s_;
  }
  if (body_due_) {
    body_due_ = false;
    pending_ = builder_->Body();
  }
  out->data = std::move(pending_);
  pending_.clear();
  out->end = done_;
  // A client cut for not reading does not get to keep its connection.
  out->close = done_ && overflowed_;
  return out->head || out->end || !out->data.empty();
}

}  // namespace openelm::server::http_front
