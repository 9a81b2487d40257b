#ifndef OPENELM_SERVER_HTTP_HTTP_CALL_H_
#define OPENELM_SERVER_HTTP_HTTP_CALL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/request/request_types.h"
#include "server/access_log.h"
#include "server/http/openai_protocol.h"
#include "server/service_core.h"
#include "server/tenants/quota.h"

namespace openelm::server::http_front {

// One generation request of the HTTP API: 1..kMaxPromptsPerRequest engine
// requests (one per prompt) whose output becomes one response. The engine
// thread formats output into `pending_` (SSE events) or collects it in the
// builder; the connection's strand takes it with TakeOutput() and writes it,
// formatting the JSON body there (never on the engine thread). Kept alive by the
// connection and, while any engine request runs, by itself (`self_`), so the engine never
// calls a deleted sink.
class HttpCall : public std::enable_shared_from_this<HttpCall> {
 public:
  struct Input {
    openai::Endpoint endpoint;
    std::string body;
    std::optional<std::string> authorization;
    std::optional<std::string> x_api_key;
    std::optional<std::string> timeout;
  };
  // What the connection writes next.
  struct Output {
    bool head = false;                     // the response head (first Output only)
    int status = 200;                      // with head
    bool stream = false;                   // with head: SSE (chunked) or a whole body
    std::optional<int64_t> retry_after_s;  // with head
    std::string data;                      // body (whole) or the next SSE bytes
    bool end = false;                      // nothing follows
    bool close = false;                    // with end: close the connection afterwards
  };

  HttpCall(ServiceCore* core, AccessLog* access_log, int64_t max_backlog,
           absl::Duration default_timeout, const char* method, std::string peer)
      : core_(core),
        access_log_(access_log),
        max_backlog_(max_backlog),
        default_timeout_(default_timeout),
        id_(core->NextRequestId()) {
    access_.Start(method, id_, std::move(peer));
    core_->tracker().Begin();
  }
  ~HttpCall() {
    WriteAccessLine(access_log_, access_);
    core_->tracker().End();
  }

  // Called when output is ready to take (any thread). Cleared at the end.
  void SetNotify(std::function<void()> notify) {
    absl::MutexLock lock(&mu_);
    notify_ = std::move(notify);
  }
  void ClearNotify() {
    std::function<void()> old;
    absl::MutexLock lock(&mu_);
    old = std::move(notify_);
    notify_ = nullptr;
  }

  // Work queue: authenticate, parse, validate, tokenize, admit, submit.
  void Admit(const Input& input);
  // The request could not be queued or admitted: an error response.
  void Fail(const absl::Status& status, std::optional<absl::Duration> retry_after = {});
  // The client went away: stop every engine request (each still finishes).
  void Cancel();
  // Strand: the next bytes to write, false when there are none yet.
  bool TakeOutput(Output* out);
  bool overflowed() {
    absl::MutexLock lock(&mu_);
    return overflowed_;
  }

 private:
  // One engine request of the call.
  class PromptSink final : public TokenSink {
   public:
    PromptSink(HttpCall* call, int index) : call_(call), index_(index) {}
    void OnOutput(const OutputDelta& delta) override { call_->OnOutput(index_, delta); }
    void OnFinish(const FinishInfo& info) override { call_->OnFinish(index_, info); }
    RequestId id = 0;
    QuotaTicket ticket;
    bool submitted = false;
    // Engine thread only: when each completion last produced tokens.
    std::vector<absl::Time> last_output;

   private:
    HttpCall* const call_;
    const int index_;
  };

  void OnOutput(int index, const OutputDelta& delta);
  void OnFinish(int index, const FinishInfo& info);
  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (notify_) notify_();
  }
  void FailLocked(const absl::Status& status, std::optional<absl::Duration> retry_after)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ServiceCore* const core_;
  AccessLog* const access_log_;
  const int64_t max_backlog_;
  const absl::Duration default_timeout_;
  const RequestId id_;

  absl::Mutex mu_;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
  // Written by the admitting thread before any engine request runs, then
  // read-only; the builder is used under mu_.
  openai::HttpRequest request_;
  std::unique_ptr<openai::ResponseBuilder> builder_ ABSL_GUARDED_BY(mu_);
  LlmEngine* engine_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Built by the admitting thread before engine_ is set; fixed afterwards.
  std::vector<std::unique_ptr<PromptSink>> sinks_;
  std::shared_ptr<HttpCall> self_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool decided_ ABSL_GUARDED_BY(mu_) = false;  // head known
  bool head_taken_ ABSL_GUARDED_BY(mu_) = false;
  bool streaming_ ABSL_GUARDED_BY(mu_) = false;  // head is SSE
  bool done_ ABSL_GUARDED_BY(mu_) = false;       // no more output
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool body_due_ ABSL_GUARDED_BY(mu_) = false;  // TakeOutput formats the body
  int status_ ABSL_GUARDED_BY(mu_) = 200;
  std::optional<int64_t> retry_after_s_ ABSL_GUARDED_BY(mu_);
  absl::Status engine_error_ ABSL_GUARDED_BY(mu_);
  std::string pending_ ABSL_GUARDED_BY(mu_);
  // Access record: the admitting thread, then the engine thread under mu_,
  // read in the destructor.
  AccessRecord access_;
};

}  // namespace openelm::server::http_front

#endif  // OPENELM_SERVER_HTTP_HTTP_CALL_H_
