#include "client/bench/runner.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/client_callback.h"

namespace openelm::bench {
namespace {

// Completion bookkeeping shared by the dispatcher and the reactors.
struct RunState {
  absl::Mutex mu;
  int32_t in_flight ABSL_GUARDED_BY(mu) = 0;
  int32_t done ABSL_GUARDED_BY(mu) = 0;
  absl::Time last_done ABSL_GUARDED_BY(mu);
};

// Finish reasons that mean the request was not served to completion.
bool IsAbnormalFinish(v1::FinishReason reason) {
  return reason == v1::FINISH_REASON_DEADLINE || reason == v1::FINISH_REASON_ERROR ||
         reason == v1::FINISH_REASON_SHUTDOWN || reason == v1::FINISH_REASON_CANCELLED;
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// One StreamGenerate call. Owns itself: created by the dispatcher, deleted in
// OnDone(). Reactions run on gRPC's callback threads and never block (the
// only lock is RunState::mu, held for a few increments).
class StreamCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  StreamCall(OpenElmClient& client, const PlannedRequest& planned,
             absl::string_view api_key, RequestRecord* record, RunState* state)
      : client_(client), planned_(planned), record_(record), state_(state) {
    client_.ConfigureContext(&context_, api_key);
    record_->tenant = planned.tenant;
    record_->prompt_tokens = planned.planned_prompt_tokens;
  }

  void Start(absl::Time run_start) {
    send_time_ = absl::Now();
    record_->send_offset = send_time_ - run_start;
    client_.stub()->async()->StreamGenerate(&context_, &planned_.request, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // end of stream; OnDone() follows
    const absl::Time now = absl::Now();
    int32_t n = 0;
    for (const v1::Choice& c : response_.choices()) n += c.token_ids_size();
    if (n > 0) {
      if (tokens_ == 0) {
        record_->ttft = now - send_time_;
      } else {
        record_->itl.push_back(now - last_token_time_);
      }
      last_token_time_ = now;
      tokens_ += n;
    }
    for (const v1::Choice& c : response_.choices()) {
      if (IsAbnormalFinish(c.finish_reason())) abnormal_finish_ = c.finish_reason();
    }
    if (response_.has_usage() && response_.usage().prompt_tokens() > 0) {
      record_->prompt_tokens = response_.usage().prompt_tokens();
    }
    if (response_.has_timings()) {
      record_->server_ttft = FromProto(response_.timings().time_to_first_token());
      record_->server_e2e = FromProto(response_.timings().total_time());
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    const absl::Time now = absl::Now();
    record_->e2e = now - send_time_;
    record_->output_tokens = tokens_;
    record_->status_code = static_cast<int32_t>(status.error_code());
    record_->code_name = GrpcCodeName(status.error_code());
    record_->success = status.ok();
    if (status.ok() && abnormal_finish_ != v1::FINISH_REASON_UNSPECIFIED) {
      // The server ended the call normally but did not complete the request
      // (e.g. it stopped at the deadline): count it as failed.
      record_->success = false;
      record_->code_name = absl::AsciiStrToLower(absl::StrCat(
          "finish_",
          absl::StripPrefix(v1::FinishReason_Name(abnormal_finish_), "FINISH_REASON_")));
      record_->error = absl::StrCat("request ended with ", record_->code_name);
    }
    if (!status.ok()) {
      record_->error =
          std::string(ExplainGrpcStatus(status, client_.options().target).message());
    }
    RunState* state = state_;
    delete this;  // nothing of `this` is used below
    absl::MutexLock lock(&state->mu);
    --state->in_flight;
    ++state->done;
    state->last_done = now;
  }

 private:
  OpenElmClient& client_;
  const PlannedRequest& planned_;
  RequestRecord* const record_;
  RunState* const state_;
  grpc::ClientContext context_;
  v1::GenerateResponse response_;
  absl::Time send_time_;
  absl::Time last_token_time_;
  int32_t tokens_ = 0;
  v1::FinishReason abnormal_finish_ = v1::FINISH_REASON_UNSPECIFIED;
};

void DrawProgress(const RunnerOptions& options, int32_t done, int32_t total,
                  absl::Time start) {
  if (!options.show_progress) return;
  constexpr int kWidth = 30;
  const int filled = total > 0 ? done * kWidth / total : kWidth;
  std::string bar(filled, '=');
  if (filled < kWidth) bar += '>';
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "\r[%s] %d/%d %s  %.1fs", bar.c_str(), done, total,
               options.progress_label.c_str(),
               absl::ToDoubleSeconds(absl::Now() - start));
  if (done == total) std::fputc('\n', stderr);
  std::fflush(stderr);
}

}  // namespace

RunResult RunBenchmark(OpenElmClient& client, absl::Span<const PlannedRequest> requests,
                       const RunnerOptions& options) {
  RunResult result;
  result.records.resize(requests.size());
  const int32_t total = static_cast<int32_t>(requests.size());
  RunState state;
  const absl::Duration kTick = absl::Milliseconds(100);
  const absl::Time start = absl::Now();
  {
    absl::MutexLock lock(&state.mu);
    state.last_done = start;
  }
  int32_t last_drawn = -1;
  auto draw = [&](int32_t done) {
    if (done != last_drawn) DrawProgress(options, done, total, start);
    last_drawn = done;
  };

  for (int32_t i = 0; i < total; ++i) {
    const PlannedRequest& planned = requests[i];
    // Wait for the arrival time (absolute, so gaps do not drift).
    const absl::Time due = start + planned.arrival;
    for (absl::Time now = absl::Now(); now < due; now = absl::Now()) {
      absl::SleepFor(std::min(due - now, kTick));
      int32_t done;
      {
        absl::MutexLock lock(&state.mu);
        done = state.done;
      }
      draw(done);
    }
    // Wait for a concurrency slot.
    int32_t done;
    {
      absl::MutexLock lock(&state.mu);
      auto has_slot = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
        return options.max_concurrency <= 0 || state.in_flight < options.max_concurrency;
      };
      while (!state.mu.AwaitWithTimeout(absl::Condition(&has_slot), kTick)) {
      }
      ++state.in_flight;
      done = state.done;
    }
    draw(done);
    const std::string& key =
        planned.tenant < static_cast<int32_t>(options.tenant_api_keys.size())
            ? options.tenant_api_keys[planned.tenant]
            : client.options().api_key;
    auto* call = new StreamCall(client, planned, key, &result.records[i], &state);
    call->Start(start);
  }

  absl::Time last_done;
  for (;;) {
    int32_t done;
    {
      absl::MutexLock lock(&state.mu);
      auto all_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state.mu) {
        return state.done == total;
      };
      const bool finished = state.mu.AwaitWithTimeout(absl::Condition(&all_done), kTick);
      done = state.done;
      last_done = state.last_done;
      if (finished) break;
    }
    draw(done);
  }
  draw(total);
  result.duration = last_done - start;
  return result;
}

}  // namespace openelm::bench
