#include "server/tenants/quota.h"

#include <string>
#include <utility>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm::server {
namespace {

using ::openelm::testing::IsOk;
using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

class QuotaTest : public ::testing::Test {
 protected:
  QuotaTest()
      : now_(absl::FromUnixSeconds(1'700'000'000)),
        quota_(QuotaOptions{.clock = [this] { return now_; },
                            .busy_retry_after = absl::Milliseconds(250)}) {
    tenant_.id = "acme";
  }

  absl::StatusOr<QuotaTicket> Admit(int64_t prompt, int32_t max_tokens, int32_t n = 1) {
    return quota_.Admit(
        tenant_,
        AdmissionRequest{.prompt_tokens = prompt, .max_tokens = max_tokens, .n = n});
  }

  absl::Time now_;
  QuotaManager quota_;
  TenantSpec tenant_;
};

TEST_F(QuotaTest, NoLimitsAdmitsEverything) {
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK_AND_ASSIGN(QuotaTicket t, Admit(100000, 100000));
    EXPECT_TRUE(t.held());
  }
  EXPECT_EQ(quota_.Usage("acme").in_flight, 0);
}

TEST_F(QuotaTest, MaxConcurrentRequests) {
  tenant_.limits.max_concurrent_requests = 2;
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(1, 1));
  ASSERT_OK_AND_ASSIGN(QuotaTicket b, Admit(1, 1));
  absl::StatusOr<QuotaTicket> c = Admit(1, 1);
  EXPECT_THAT(c,
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("tenant \"acme\" is over its max_concurrent_requests")));
  EXPECT_THAT(RetryAfter(c.status()), Optional(absl::Milliseconds(250)));
  // Started requests still count; a finished one frees its slot.
  a.MarkStarted();
  EXPECT_THAT(Admit(1, 1), StatusIs(absl::StatusCode::kResourceExhausted));
  a.Finish(1);
  EXPECT_FALSE(a.held());
  EXPECT_OK(Admit(1, 1));
}

TEST_F(QuotaTest, TicketDestructorAndMoveReleaseExactlyOnce) {
  tenant_.limits.max_concurrent_requests = 1;
  {
    ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(1, 1));
    QuotaTicket moved = std::move(a);
    EXPECT_FALSE(a.held());  // NOLINT(bugprone-use-after-move): checked on purpose
    EXPECT_EQ(quota_.Usage("acme").in_flight, 1);
    QuotaTicket assigned;
    assigned = std::move(moved);
    EXPECT_EQ(quota_.Usage("acme").in_flight, 1);
  }
  EXPECT_EQ(quota_.Usage("acme").in_flight, 0);
  EXPECT_EQ(quota_.Usage("acme").queued, 0);
  EXPECT_OK(Admit(1, 1));
}

TEST_F(QuotaTest, MaxQueuedRequestsCountsOnlyNotStarted) {
  tenant_.limits.max_queued_requests = 1;
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(1, 1));
  EXPECT_THAT(Admit(1, 1), StatusIs(absl::StatusCode::kResourceExhausted,
                                    HasSubstr("max_queued_requests")));
  a.MarkStarted();
  a.MarkStarted();  // idempotent
  EXPECT_EQ(quota_.Usage("acme").queued, 0);
  ASSERT_OK_AND_ASSIGN(QuotaTicket b, Admit(1, 1));
  EXPECT_EQ(quota_.Usage("acme").in_flight, 2);
  EXPECT_EQ(quota_.Usage("acme").queued, 1);
}

TEST_F(QuotaTest, MaxMaxTokensHasNoRetryHint) {
  tenant_.limits.max_max_tokens = 64;
  EXPECT_OK(Admit(1, 64));
  absl::StatusOr<QuotaTicket> t = Admit(1, 65);
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("max_max_tokens limit: max_tokens 65 > 64")));
  EXPECT_EQ(RetryAfter(t.status()), std::nullopt);
}

TEST_F(QuotaTest, PromptTokensPerMinuteBucketRefillsOverTime) {
  tenant_.limits.prompt_tokens_per_minute = 600;  // 10 tokens per second
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(400, 1));
  ASSERT_OK_AND_ASSIGN(QuotaTicket b, Admit(200, 1));
  absl::StatusOr<QuotaTicket> c = Admit(50, 1);
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("prompt_tokens_per_minute")));
  // 50 tokens at 10/s: retry after 5 s.
  EXPECT_THAT(RetryAfter(c.status()), Optional(absl::Seconds(5)));
  now_ += absl::Milliseconds(4900);
  EXPECT_THAT(Admit(50, 1), StatusIs(absl::StatusCode::kResourceExhausted));
  now_ += absl::Milliseconds(100);
  EXPECT_OK(Admit(50, 1));
  // The bucket never holds more than a minute's worth.
  now_ += absl::Hours(1);
  EXPECT_DOUBLE_EQ(quota_.Usage("acme").prompt_tokens_available, 600.0);
}

TEST_F(QuotaTest, RequestLargerThanTheBucketIsRefusedWithoutRetry) {
  tenant_.limits.prompt_tokens_per_minute = 100;
  tenant_.limits.output_tokens_per_minute = 100;
  absl::StatusOr<QuotaTicket> p = Admit(101, 1);
  EXPECT_THAT(p, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("the prompt alone has 101 tokens")));
  EXPECT_EQ(RetryAfter(p.status()), std::nullopt);
  absl::StatusOr<QuotaTicket> o = Admit(1, 51, /*n=*/2);
  EXPECT_THAT(o, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("max_tokens * n = 102")));
  EXPECT_EQ(RetryAfter(o.status()), std::nullopt);
}

TEST_F(QuotaTest, OutputChargedAsMaxTokensAndUnusedPartRefunded) {
  tenant_.limits.output_tokens_per_minute = 100;
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(1, 60));
  EXPECT_DOUBLE_EQ(quota_.Usage("acme").output_tokens_available, 40.0);
  absl::StatusOr<QuotaTicket> b = Admit(1, 50);
  EXPECT_THAT(b, StatusIs(absl::StatusCode::kResourceExhausted,
                          HasSubstr("output_tokens_per_minute")));
  // 10 missing tokens at 100/min: 6 s.
  EXPECT_THAT(RetryAfter(b.status()), Optional(absl::Seconds(6)));
  a.Finish(/*output_tokens=*/15);  // 45 unused tokens come back
  EXPECT_DOUBLE_EQ(quota_.Usage("acme").output_tokens_available, 85.0);
  EXPECT_OK(Admit(1, 50));
}

TEST_F(QuotaTest, AbandonRefundsEverything) {
  tenant_.limits.prompt_tokens_per_minute = 100;
  tenant_.limits.output_tokens_per_minute = 100;
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(70, 70));
  EXPECT_THAT(Admit(70, 70), StatusIs(absl::StatusCode::kResourceExhausted));
  a.Abandon();
  EXPECT_EQ(quota_.Usage("acme").in_flight, 0);
  EXPECT_OK(Admit(70, 70));
}

TEST_F(QuotaTest, RefusalChargesNothing) {
  tenant_.limits.prompt_tokens_per_minute = 100;
  tenant_.limits.output_tokens_per_minute = 100;
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(10, 95));
  // The prompt bucket has room but the output bucket does not: all or nothing.
  EXPECT_THAT(Admit(50, 10), StatusIs(absl::StatusCode::kResourceExhausted,
                                      HasSubstr("output_tokens_per_minute")));
  EXPECT_DOUBLE_EQ(quota_.Usage("acme").prompt_tokens_available, 90.0);
  EXPECT_EQ(quota_.Usage("acme").in_flight, 1);
}

TEST_F(QuotaTest, MaxKvShare) {
  tenant_.limits.max_kv_share = 0.5;
  auto admit = [&](int64_t used, int64_t needed) {
    return quota_.Admit(tenant_, AdmissionRequest{.prompt_tokens = 1,
                                                  .max_tokens = 1,
                                                  .kv_blocks_used = used,
                                                  .kv_blocks_needed = needed,
                                                  .kv_blocks_total = 100});
  };
  EXPECT_OK(admit(40, 10));
  absl::StatusOr<QuotaTicket> over = admit(40, 11);
  EXPECT_THAT(over, StatusIs(absl::StatusCode::kResourceExhausted,
                             HasSubstr("max_kv_share limit: 40 + 11 KV blocks")));
  EXPECT_THAT(RetryAfter(over.status()), Optional(absl::Milliseconds(250)));
  // A tenant holding nothing may always start one request.
  EXPECT_OK(admit(0, 80));
}

TEST_F(QuotaTest, TenantsAreIndependent) {
  tenant_.limits.max_concurrent_requests = 1;
  TenantSpec other = tenant_;
  other.id = "other";
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(1, 1));
  ASSERT_OK_AND_ASSIGN(
      QuotaTicket b,
      quota_.Admit(other, AdmissionRequest{.prompt_tokens = 1, .max_tokens = 1}));
  EXPECT_THAT(Admit(1, 1), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST_F(QuotaTest, NewLimitAppliesToBucketWithoutResettingIt) {
  tenant_.limits.prompt_tokens_per_minute = 1000;
  ASSERT_OK_AND_ASSIGN(QuotaTicket a, Admit(900, 1));
  // The limit drops to 200 (config reload): the level is clamped, not reset.
  tenant_.limits.prompt_tokens_per_minute = 200;
  EXPECT_THAT(Admit(150, 1), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_OK(Admit(100, 1));
}

}  // namespace
}  // namespace openelm::server
