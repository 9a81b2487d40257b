#ifndef OPENELM_SERVER_TENANTS_QUOTA_H_
#define OPENELM_SERVER_TENANTS_QUOTA_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/tenants/tenant_config.h"

namespace openelm::server {

// Status payload (type URL) carrying the retry hint of a quota rejection, as
// decimal milliseconds. The server copies it into trailing metadata under
// kRetryAfterMetadataKey.
inline constexpr absl::string_view kRetryAfterPayloadUrl =
    "type.openelm.dev/retry-after-ms";
inline constexpr absl::string_view kRetryAfterMetadataKey = "retry-after-ms";

// The retry hint attached to `status` by QuotaManager::Admit(), if any. None
// when waiting cannot help (the request alone exceeds a limit).
std::optional<absl::Duration> RetryAfter(const absl::Status& status);

struct QuotaOptions {
  // Time source for the token buckets; tests pass a fake. Default absl::Now.
  std::function<absl::Time()> clock;
  // Hint returned for limits that free up when other requests finish
  // (concurrency, queue, KV share): there is no way to know exactly when.
  absl::Duration busy_retry_after = absl::Seconds(1);
};

// What admission needs to know about one request.
struct AdmissionRequest {
  int64_t prompt_tokens = 0;
  int32_t max_tokens = 0;  // per completion
  int32_t n = 1;           // completions; output is charged max_tokens * n
  // KV-share check (skipped when kv_blocks_total == 0): blocks this tenant's
  // requests hold now, this request's own need, and the pool size.
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_needed = 0;
  int64_t kv_blocks_total = 0;
};

// Per-tenant usage numbers (tests, metrics, debugging).
struct TenantUsageView {
  int32_t in_flight = 0;               // admitted, not finished
  int32_t queued = 0;                  // admitted, not started
  double prompt_tokens_available = 0;  // bucket levels (0 when unlimited)
  double output_tokens_available = 0;
};

namespace quota_internal {

// A token bucket of `limit` tokens per minute, full when first used.
struct TokenBucket {
  int64_t capacity = 0;  // the limit it was last refilled with; 0 = unlimited
  double level = 0;
  absl::Time last;
  void Refill(absl::Time now, int64_t limit);
  void Add(double tokens);
};

// Usage of one tenant; shared by the manager and the tenant's tickets.
struct TenantUsage {
  std::function<absl::Time()> clock;
  absl::Mutex mu;
  int32_t in_flight ABSL_GUARDED_BY(mu) = 0;
  int32_t queued ABSL_GUARDED_BY(mu) = 0;
  TokenBucket prompt ABSL_GUARDED_BY(mu);
  TokenBucket output ABSL_GUARDED_BY(mu);
};

}  // namespace quota_internal

// The admission of one request. Releasing it (Finish(), Abandon() or the
// destructor) gives its concurrency slot back. Movable, not copyable.
//
// Thread-safe with respect to other tickets and the manager; one ticket is
// used by one request at a time (the server's reactor, under its own lock).
class QuotaTicket {
 public:
  QuotaTicket() = default;
  QuotaTicket(QuotaTicket&& other) noexcept;
  QuotaTicket& operator=(QuotaTicket&& other) noexcept;
  QuotaTicket(const QuotaTicket&) = delete;
  QuotaTicket& operator=(const QuotaTicket&) = delete;
  // Finishes with no refund if still held.
  ~QuotaTicket();

  // The request left the engine's queue (first scheduled or first token):
  // it no longer counts against max_queued_requests. Idempotent.
  void MarkStarted();

  // The request ended having generated `output_tokens` (all completions);
  // the unused part of the max_tokens * n charged at admission goes back to
  // the output bucket. Later calls are no-ops.
  void Finish(int64_t output_tokens);

  // The request never ran (e.g. the engine refused it): refunds prompt and
  // output tokens in full.
  void Abandon();

  bool held() const { return usage_ != nullptr; }
  const std::string& tenant() const { return tenant_; }
  int64_t charged_prompt_tokens() const { return prompt_tokens_; }
  int64_t charged_output_tokens() const { return output_tokens_; }

 private:
  friend class QuotaManager;
  QuotaTicket(std::shared_ptr<quota_internal::TenantUsage> usage, std::string tenant,
              int64_t prompt_tokens, int64_t output_tokens);
  void Release(int64_t prompt_refund, int64_t output_refund);

  std::shared_ptr<quota_internal::TenantUsage> usage_;
  std::string tenant_;
  int64_t prompt_tokens_ = 0;
  int64_t output_tokens_ = 0;
  bool started_ = false;
};

// Per-tenant admission control, applied by the server BEFORE a request is
// handed to the engine (so a refused request never takes a KV block):
//   max_max_tokens, max_concurrent_requests, max_queued_requests,
//   max_kv_share, prompt_tokens_per_minute, output_tokens_per_minute.
// Admission is all or nothing: every limit is checked first, then all are
// charged. Refusals are kResourceExhausted naming the tenant and the limit,
// with a retry hint (RetryAfter()) when waiting can help.
//
// Usage is keyed by tenant id and independent of the config snapshot: limits
// are passed in per call (from the request's TenantHandle), so a reload
// changes the limits of new requests while in-flight tickets keep counting.
//
// Thread-safe: Admit() may be called from any gRPC thread.
class QuotaManager {
 public:
  explicit QuotaManager(QuotaOptions options = {});
  QuotaManager(const QuotaManager&) = delete;
  QuotaManager& operator=(const QuotaManager&) = delete;

  absl::StatusOr<QuotaTicket> Admit(const TenantSpec& tenant,
                                    const AdmissionRequest& request);

  TenantUsageView Usage(absl::string_view tenant) const;

 private:
  std::shared_ptr<quota_internal::TenantUsage> UsageFor(absl::string_view tenant);

  const QuotaOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<quota_internal::TenantUsage>> usage_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_TENANTS_QUOTA_H_
