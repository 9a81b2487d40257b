#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "absl/time/time.h"
#include "client/bench/workload.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm::bench {
namespace {

using ::openelm::testing::StatusIs;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Mean and coefficient of variation of n gaps.
std::pair<double, double> GapStats(ArrivalProcess& p, int n) {
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    const double g = absl::ToDoubleSeconds(p.NextGap());
    sum += g;
    sq += g * g;
  }
  const double mean = sum / n;
  const double var = sq / n - mean * mean;
  return {mean, std::sqrt(var) / mean};
}

TEST(ArrivalProcessTest, PoissonHasTheRequestedMeanRate) {
  ArrivalProcess p(/*rate_per_s=*/20, /*burstiness=*/1.0, /*seed=*/7);
  auto [mean, cv] = GapStats(p, 50000);
  EXPECT_NEAR(mean, 1.0 / 20, 0.02 / 20);  // 2% of the mean
  EXPECT_NEAR(cv, 1.0, 0.03);              // exponential gaps: CV 1
}

TEST(ArrivalProcessTest, BurstinessKeepsTheRateAndChangesTheSpread) {
  // Gamma(shape k): CV = 1/sqrt(k). k = 0.25 -> CV 2 (bursty); k = 4 -> 0.5.
  ArrivalProcess bursty(10, 0.25, 11);
  auto [mean_b, cv_b] = GapStats(bursty, 100000);
  EXPECT_NEAR(mean_b, 0.1, 0.004);
  EXPECT_NEAR(cv_b, 2.0, 0.08);
  ArrivalProcess steady(10, 4.0, 11);
  auto [mean_s, cv_s] = GapStats(steady, 50000);
  EXPECT_NEAR(mean_s, 0.1, 0.002);
  EXPECT_NEAR(cv_s, 0.5, 0.02);
}

TEST(ArrivalProcessTest, InfiniteRateSendsEverythingAtOnce) {
  ArrivalProcess p(kInf, 1.0, 1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p.NextGap(), absl::ZeroDuration());
}

TEST(ArrivalProcessTest, SameSeedSameGaps) {
  ArrivalProcess a(5, 0.5, 42), b(5, 0.5, 42), c(5, 0.5, 43);
  bool any_differs = false;
  for (int i = 0; i < 100; ++i) {
    const absl::Duration ga = a.NextGap();
    EXPECT_EQ(ga, b.NextGap());
    any_differs |= ga != c.NextGap();
  }
  EXPECT_TRUE(any_differs);
}

TEST(ParseTest, RatesTenantsAndDatasets) {
  EXPECT_TRUE(std::isinf(*ParseRate("inf")));
  EXPECT_EQ(*ParseRate("2.5"), 2.5);
  EXPECT_THAT(ParseRate("0"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseRate("fast"), StatusIs(absl::StatusCode::kInvalidArgument));

  ASSERT_OK_AND_ASSIGN(auto tenants, ParseTenants("alice:k1:2,bob::inf"));
  ASSERT_EQ(tenants.size(), 2u);
  EXPECT_EQ(tenants[0].name, "alice");
  EXPECT_EQ(tenants[0].api_key, "k1");
  EXPECT_EQ(tenants[0].rate_per_s, 2);
  EXPECT_EQ(tenants[1].api_key, "");
  EXPECT_TRUE(std::isinf(tenants[1].rate_per_s));
  EXPECT_TRUE(ParseTenants("")->empty());
  EXPECT_THAT(ParseTenants("a:k"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseTenants("a:k:1,a:j:2"), StatusIs(absl::StatusCode::kInvalidArgument));

  EXPECT_EQ(*ParseDataset("shared_prefix"), Dataset::kSharedPrefix);
  EXPECT_THAT(ParseDataset("sharegpt"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(BuildWorkloadTest, RandomIdsHaveExactLengthsAndBos) {
  WorkloadOptions o;
  o.num_requests = 50;
  o.input_len = 128;
  o.output_len = 64;
  ASSERT_OK_AND_ASSIGN(auto w, BuildWorkload(o, kInf, 1.0, {}));
  ASSERT_EQ(w.size(), 50u);
  for (const PlannedRequest& p : w) {
    ASSERT_TRUE(p.request.has_token_ids());
    const auto& ids = p.request.token_ids().ids();
    EXPECT_EQ(ids.size(), 128);
    EXPECT_EQ(p.planned_prompt_tokens, 128);
    EXPECT_EQ(ids[0], 1);
    for (int i = 1; i < ids.size(); ++i) {
      EXPECT_GE(ids[i], 3);
      EXPECT_LT(ids[i], 32000);
    }
    EXPECT_EQ(p.request.options().max_tokens(), 64);
    EXPECT_TRUE(p.request.options().ignore_eos());
    EXPECT_EQ(p.request.options().temperature(), 0);
    EXPECT_EQ(p.arrival, absl::ZeroDuration());
  }
  EXPECT_NE(w[0].request.token_ids().ids(1), w[1].request.token_ids().ids(1));
}

TEST(BuildWorkloadTest, RangeRatioBoundsLengths) {
  WorkloadOptions o;
  o.num_requests = 200;
  o.input_len = 100;
  o.output_len = 50;
  o.range_ratio = 0.5;
  ASSERT_OK_AND_ASSIGN(auto w, BuildWorkload(o, kInf, 1.0, {}));
  int min_in = 1 << 30, max_in = 0;
  for (const PlannedRequest& p : w) {
    min_in = std::min(min_in, p.planned_prompt_tokens);
    max_in = std::max(max_in, p.planned_prompt_tokens);
    EXPECT_GE(p.request.options().max_tokens(), 25);
    EXPECT_LE(p.request.options().max_tokens(), 75);
  }
  EXPECT_GE(min_in, 50);
  EXPECT_LE(max_in, 150);
  EXPECT_LT(min_in, 70);  // the range is actually used
  EXPECT_GT(max_in, 130);
}

TEST(BuildWorkloadTest, SharedPrefixRequestsReuseTheirPrefix) {
  WorkloadOptions o;
  o.dataset = Dataset::kSharedPrefix;
  o.num_requests = 12;
  o.num_prefixes = 3;
  o.prefix_len = 32;
  o.input_len = 8;
  ASSERT_OK_AND_ASSIGN(auto w, BuildWorkload(o, kInf, 1.0, {}));
  for (int i = 0; i < 12; ++i) {
    const auto& ids = w[i].request.token_ids().ids();
    ASSERT_EQ(ids.size(), 40);
    const auto& first = w[i % 3].request.token_ids().ids();
    for (int k = 0; k < 32; ++k) EXPECT_EQ(ids[k], first[k]) << "request " << i;
  }
  // Different prefixes differ, suffixes differ.
  EXPECT_NE(w[0].request.token_ids().ids(5), w[1].request.token_ids().ids(5));
  EXPECT_NE(w[0].request.token_ids().ids(35), w[3].request.token_ids().ids(35));
}

TEST(BuildWorkloadTest, RandomWordsAreTextPrompts) {
  WorkloadOptions o;
  o.dataset = Dataset::kRandomWords;
  o.num_requests = 3;
  o.input_len = 11;
  ASSERT_OK_AND_ASSIGN(auto w, BuildWorkload(o, kInf, 1.0, {}));
  ASSERT_TRUE(w[0].request.has_text());
  EXPECT_EQ(std::count(w[0].request.text().begin(), w[0].request.text().end(), ' '), 9);
}

TEST(BuildWorkloadTest, PoissonArrivalsAreIncreasingAtTheRate) {
  WorkloadOptions o;
  o.num_requests = 2000;
  o.input_len = 4;
  ASSERT_OK_AND_ASSIGN(auto w, BuildWorkload(o, /*rate=*/50, 1.0, {}));
  EXPECT_EQ(w[0].arrival, absl::ZeroDuration());
  for (size_t i = 1; i < w.size(); ++i) EXPECT_GE(w[i].arrival, w[i - 1].arrival);
  // 1999 gaps of mean 20 ms: within 5% (about 2.2 standard errors).
  EXPECT_NEAR(absl::ToDoubleSeconds(w.back().arrival), 1999 / 50.0, 0.05 * 1999 / 50.0);
}

TEST(BuildWorkloadTest, TenantsShareByRate) {
  WorkloadOptions o;
  o.num_requests = 2000;
  o.input_len = 4;
  std::vector<TenantSpec> tenants = {{"a", "ka", 10}, {"b", "kb", 30}};
  ASSERT_OK_AND_ASSIGN(auto w, BuildWorkload(o, kInf, 1.0, tenants));
  std::map<int, int> count;
  for (size_t i = 0; i < w.size(); ++i) {
    ++count[w[i].tenant];
    if (i > 0) {
      EXPECT_GE(w[i].arrival, w[i - 1].arrival);
    }
  }
  EXPECT_NEAR(count[1] / 2000.0, 0.75, 0.03);
  // The merged stream runs at the sum of the rates: 2000 / 40 per s = 50 s.
  EXPECT_NEAR(absl::ToDoubleSeconds(w.back().arrival), 50, 2.5);
}

TEST(BuildWorkloadTest, InfiniteRateTenantsAlternate) {
  WorkloadOptions o;
  o.num_requests = 6;
  o.input_len = 4;
  std::vector<TenantSpec> tenants = {{"a", "", kInf}, {"b", "", kInf}};
  ASSERT_OK_AND_ASSIGN(auto w, BuildWorkload(o, kInf, 1.0, tenants));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(w[i].tenant, i % 2);
}

TEST(BuildWorkloadTest, RejectsBadOptions) {
  WorkloadOptions o;
  o.num_requests = 0;
  EXPECT_THAT(BuildWorkload(o, kInf, 1.0, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  o.num_requests = 1;
  o.range_ratio = 1.0;
  EXPECT_THAT(BuildWorkload(o, kInf, 1.0, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  o.range_ratio = 0;
  EXPECT_THAT(BuildWorkload(o, kInf, 0.0, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace openelm::bench
