#include "server/tenants/quota.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace openelm::server {
namespace {

using quota_internal::TenantUsage;
using quota_internal::TokenBucket;

absl::Status Exhausted(absl::string_view tenant, absl::string_view limit,
                       absl::string_view detail,
                       std::optional<absl::Duration> retry_after) {
  std::string message =
      absl::StrCat("tenant \"", tenant, "\" is over its ", limit, " limit: ", detail);
  if (retry_after.has_value()) {
    const int64_t ms = std::max<int64_t>(
        1, absl::ToInt64Milliseconds(absl::Ceil(*retry_after, absl::Milliseconds(1))));
    absl::StrAppend(&message, " (retry after ", ms, " ms)");
    absl::Status status = absl::ResourceExhaustedError(message);
    status.SetPayload(kRetryAfterPayloadUrl, absl::Cord(absl::StrCat(ms)));
    return status;
  }
  return absl::ResourceExhaustedError(message);
}

// How long until `bucket` holds `cost` tokens at `limit` per minute.
absl::Duration TimeUntilAvailable(const TokenBucket& bucket, double cost, int64_t limit) {
  const double deficit = cost - bucket.level;
  return absl::Seconds(60.0 * deficit / static_cast<double>(limit));
}

}  // namespace

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryAfterPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return absl::Milliseconds(ms);
}

namespace quota_internal {

void TokenBucket::Refill(absl::Time now, int64_t limit) {
  if (limit <= 0) {  // unlimited (now)
    capacity = 0;
    level = 0;
    last = now;
    return;
  }
  if (capacity == 0) {
    level = static_cast<double>(limit);  // first use: a full bucket
  } else if (now > last) {
    level += absl::ToDoubleSeconds(now - last) / 60.0 * static_cast<double>(limit);
  }
  capacity = limit;
  level = std::min(level, static_cast<double>(limit));
  last = std::max(last, now);
}

void TokenBucket::Add(double tokens) {
  if (capacity == 0) return;
  level = std::min(level + tokens, static_cast<double>(capacity));
}

}  // namespace quota_internal

// ---- QuotaTicket ----

QuotaTicket::QuotaTicket(std::shared_ptr<TenantUsage> usage, std::string tenant,
                         int64_t prompt_tokens, int64_t output_tokens)
    : usage_(std::move(usage)),
      tenant_(std::move(tenant)),
      prompt_tokens_(prompt_tokens),
      output_tokens_(output_tokens) {}

QuotaTicket::QuotaTicket(QuotaTicket&& other) noexcept
    : usage_(std::move(other.usage_)),
      tenant_(std::move(other.tenant_)),
      prompt_tokens_(other.prompt_tokens_),
      output_tokens_(other.output_tokens_),
      started_(other.started_) {
  other.usage_ = nullptr;
}

QuotaTicket& QuotaTicket::operator=(QuotaTicket&& other) noexcept {
  if (this != &other) {
    Release(0, 0);
    usage_ = std::move(other.usage_);
    other.usage_ = nullptr;
    tenant_ = std::move(other.tenant_);
    prompt_tokens_ = other.prompt_tokens_;
    output_tokens_ = other.output_tokens_;
    started_ = other.started_;
  }
  return *this;
}

QuotaTicket::~QuotaTicket() { Release(0, 0); }

void QuotaTicket::MarkStarted() {
  if (usage_ == nullptr || started_) return;
  started_ = true;
  absl::MutexLock lock(&usage_->mu);
  --usage_->queued;
}

void QuotaTicket::Finish(int64_t output_tokens) {
  Release(0, std::max<int64_t>(0, output_tokens_ - std::max<int64_t>(0, output_tokens)));
}

void QuotaTicket::Abandon() { Release(prompt_tokens_, output_tokens_); }

void QuotaTicket::Release(int64_t prompt_refund, int64_t output_refund) {
  if (usage_ == nullptr) return;
  std::shared_ptr<TenantUsage> usage = std::move(usage_);
  usage_ = nullptr;
  const absl::Time now = usage->clock();
  absl::MutexLock lock(&usage->mu);
  --usage->in_flight;
  if (!started_) --usage->queued;
  if (prompt_refund > 0) {
    usage->prompt.Refill(now, usage->prompt.capacity);
    usage->prompt.Add(static_cast<double>(prompt_refund));
  }
  if (output_refund > 0) {
    usage->output.Refill(now, usage->output.capacity);
    usage->output.Add(static_cast<double>(output_refund));
  }
}

// ---- QuotaManager ----

QuotaManager::QuotaManager(QuotaOptions options) : options_(std::move(options)) {}

std::shared_ptr<TenantUsage> QuotaManager::UsageFor(absl::string_view tenant) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<TenantUsage>& usage = usage_[tenant];
  if (usage == nullptr) {
    usage = std::make_shared<TenantUsage>();
    usage->clock = options_.clock ? options_.clock : [] { return absl::Now(); };
  }
  return usage;
}

absl::StatusOr<QuotaTicket> QuotaManager::Admit(const TenantSpec& tenant,
                                                const AdmissionRequest& request) {
  const TenantLimits& limits = tenant.limits;
  const absl::string_view id = tenant.id;
  const int64_t prompt_cost = std::max<int64_t>(0, request.prompt_tokens);
  const int64_t output_cost =
      static_cast<int64_t>(std::max(0, request.max_tokens)) * std::max(1, request.n);

  // Limits a request can break on its own: waiting does not help.
  if (limits.max_max_tokens > 0 && request.max_tokens > limits.max_max_tokens) {
    return Exhausted(
        id, "max_max_tokens",
        absl::StrCat("max_tokens ", request.max_tokens, " > ", limits.max_max_tokens),
        std::nullopt);
  }
  if (limits.prompt_tokens_per_minute > 0 &&
      prompt_cost > limits.prompt_tokens_per_minute) {
    return Exhausted(
        id, "prompt_tokens_per_minute",
        absl::StrCat("the prompt alone has ", prompt_cost, " tokens, more than ",
                     limits.prompt_tokens_per_minute, " per minute"),
        std::nullopt);
  }
  if (limits.output_tokens_per_minute > 0 &&
      output_cost > limits.output_tokens_per_minute) {
    return Exhausted(id, "output_tokens_per_minute",
                     absl::StrCat("max_tokens * n = ", output_cost, " is more than ",
                                  limits.output_tokens_per_minute, " per minute"),
                     std::nullopt);
  }

  std::shared_ptr<TenantUsage> usage = UsageFor(id);
  const absl::Time now = usage->clock();
  {
    absl::MutexLock lock(&usage->mu);
    // Plan: check everything, change nothing.
    if (limits.max_concurrent_requests > 0 &&
        usage->in_flight >= limits.max_concurrent_requests) {
      return Exhausted(id, "max_concurrent_requests",
                       absl::StrCat(usage->in_flight, " requests in flight"),
                       options_.busy_retry_after);
    }
    if (limits.max_queued_requests > 0 && usage->queued >= limits.max_queued_requests) {
      return Exhausted(id, "max_queued_requests",
                       absl::StrCat(usage->queued, " requests queued"),
                       options_.busy_retry_after);
    }
    if (request.kv_blocks_total > 0 && limits.max_kv_share < 1.0 &&
        request.kv_blocks_used > 0) {
      // A tenant holding no blocks is always let in, or a request bigger
      // than its share could never run.
      const double allowed =
          limits.max_kv_share * static_cast<double>(request.kv_blocks_total);
      if (static_cast<double>(request.kv_blocks_used + request.kv_blocks_needed) >
          allowed) {
        return Exhausted(
            id, "max_kv_share",
            absl::StrCat(request.kv_blocks_used, " + ", request.kv_blocks_needed,
                         " KV blocks would exceed ", limits.max_kv_share, " of ",
                         request.kv_blocks_total),
            options_.busy_retry_after);
      }
    }
    usage->prompt.Refill(now, limits.prompt_tokens_per_minute);
    usage->output.Refill(now, limits.output_tokens_per_minute);
    if (limits.prompt_tokens_per_minute > 0 &&
        usage->prompt.level < static_cast<double>(prompt_cost)) {
      return Exhausted(
          id, "prompt_tokens_per_minute",
          absl::StrCat(static_cast<int64_t>(usage->prompt.level),
                       " prompt tokens left, the request needs ", prompt_cost),
          TimeUntilAvailable(usage->prompt, static_cast<double>(prompt_cost),
                             limits.prompt_tokens_per_minute));
    }
    if (limits.output_tokens_per_minute > 0 &&
        usage->output.level < static_cast<double>(output_cost)) {
      return Exhausted(
          id, "output_tokens_per_minute",
          absl::StrCat(static_cast<int64_t>(usage->output.level),
                       " output tokens left, max_tokens * n = ", output_cost),
          TimeUntilAvailable(usage->output, static_cast<double>(output_cost),
                             limits.output_tokens_per_minute));
    }
    // Apply.
    ++usage->in_flight;
    ++usage->queued;
    if (limits.prompt_tokens_per_minute > 0) {
      usage->prompt.level -= static_cast<double>(prompt_cost);
    }
    if (limits.output_tokens_per_minute > 0) {
      usage->output.level -= static_cast<double>(output_cost);
    }
  }
  return QuotaTicket(std::move(usage), std::string(id), prompt_cost, output_cost);
}

TenantUsageView QuotaManager::Usage(absl::string_view tenant) const {
  std::shared_ptr<TenantUsage> usage;
  {
    absl::MutexLock lock(&mu_);
    auto it = usage_.find(tenant);
    if (it == usage_.end()) return TenantUsageView{};
    usage = it->second;
  }
  const absl::Time now = usage->clock();
  absl::MutexLock lock(&usage->mu);
  TenantUsageView view;
  view.in_flight = usage->in_flight;
  view.queued = usage->queued;
  quota_internal::TokenBucket prompt = usage->prompt;
  quota_internal::TokenBucket output = usage->output;
  prompt.Refill(now, prompt.capacity);
  output.Refill(now, output.capacity);
  view.prompt_tokens_available = prompt.level;
  view.output_tokens_available = output.level;
  return view;
}

}  // namespace openelm::server
