#include <vector>

#include "absl/time/time.h"
#include "client/bench/stats.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm::bench {
namespace {

using ::openelm::testing::StatusIs;
using ::testing::DoubleNear;
using ::testing::HasSubstr;

RequestRecord Ok(double ttft_ms, double e2e_ms, int32_t out_tokens, int32_t prompt = 10) {
  RequestRecord r;
  r.success = true;
  r.code_name = "ok";
  r.prompt_tokens = prompt;
  r.output_tokens = out_tokens;
  r.ttft = absl::Milliseconds(ttft_ms);
  r.e2e = absl::Milliseconds(e2e_ms);
  return r;
}

TEST(PercentileTest, InterpolatesLinearlyLikeNumpy) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);  // numpy.percentile([1,2,3,4], 90)
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile(std::vector<double>{7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile(std::vector<double>{}, 50), 0);
}

TEST(SummarizeTest, SortsAndUsesPopulationStddev) {
  Summary s = Summarize({4, 1, 3, 2});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.median, 2.5);
  EXPECT_DOUBLE_EQ(s.stddev, std::sqrt(1.25));
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 4);
  EXPECT_DOUBLE_EQ(s.p90, 3.7);
}

TEST(TpotTest, ExcludesTheFirstToken) {
  // 10 tokens: the first at 100 ms, the rest over 190 ms more -> 9 gaps.
  EXPECT_THAT(*TpotMs(Ok(100, 290, 10)), DoubleNear(190.0 / 9, 1e-9));
  EXPECT_FALSE(TpotMs(Ok(100, 100, 1)).has_value());
  EXPECT_FALSE(TpotMs(Ok(0, 0, 0)).has_value());
}

TEST(GoodputTest, ParsesSpec) {
  ASSERT_OK_AND_ASSIGN(auto slo, ParseGoodputSlo("ttft:500, tpot:50,e2el:2000"));
  EXPECT_EQ(*slo.ttft_ms, 500);
  EXPECT_EQ(*slo.tpot_ms, 50);
  EXPECT_EQ(*slo.e2e_ms, 2000);
  EXPECT_TRUE(ParseGoodputSlo("")->empty());
  EXPECT_THAT(ParseGoodputSlo("ttft:-1"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseGoodputSlo("itl:5"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("itl")));
}

TEST(GoodputTest, RequestMustMeetEverySetBound) {
  GoodputSlo slo;
  slo.ttft_ms = 100;
  slo.tpot_ms = 10;
  EXPECT_TRUE(MeetsSlo(Ok(100, 190, 10), slo));   // tpot = 10 exactly
  EXPECT_FALSE(MeetsSlo(Ok(101, 190, 10), slo));  // ttft too slow
  EXPECT_FALSE(MeetsSlo(Ok(50, 500, 10), slo));   // tpot 50
  EXPECT_TRUE(MeetsSlo(Ok(50, 5000, 1), slo));    // one token: no tpot
  RequestRecord failed = Ok(1, 1, 5);
  failed.success = false;
  EXPECT_FALSE(MeetsSlo(failed, slo));
}

TEST(ComputeMetricsTest, AggregatesThroughputLatencyAndErrors) {
  std::vector<RequestRecord> records = {Ok(10, 110, 11, 20), Ok(30, 230, 21, 30)};
  records[0].itl = {absl::Milliseconds(10), absl::Milliseconds(20)};
  records[1].tenant = 1;
  RequestRecord failed;
  failed.code_name = "resource_exhausted";
  failed.status_code = 8;
  failed.prompt_tokens = 99;  // ignored: failed requests add no tokens
  records.push_back(failed);
  records.push_back(failed);
  GoodputSlo slo;
  slo.ttft_ms = 20;
  BenchmarkMetrics m = ComputeMetrics(records, absl::Seconds(2), slo);
  EXPECT_EQ(m.completed, 2);
  EXPECT_EQ(m.failed, 2);
  EXPECT_EQ(m.errors_by_code.at("resource_exhausted"), 2);
  EXPECT_EQ(m.total_input_tokens, 50);
  EXPECT_EQ(m.total_output_tokens, 32);
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(m.output_throughput, 16.0);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 41.0);
  EXPECT_EQ(m.good_requests, 1);
  EXPECT_DOUBLE_EQ(*m.request_goodput, 0.5);
  EXPECT_DOUBLE_EQ(m.ttft_ms.mean, 20);
  EXPECT_DOUBLE_EQ(m.e2e_ms.mean, 170);
  EXPECT_DOUBLE_EQ(m.tpot_ms.mean, 10);  // both requests: 100/10 and 200/20
  EXPECT_EQ(m.itl_ms.count, 2);
  EXPECT_DOUBLE_EQ(m.itl_ms.mean, 15);
  EXPECT_EQ(m.server_e2e_ms.count, 0);  // no server timings were recorded

  records[0].server_ttft = absl::Milliseconds(4);
  records[0].server_e2e = absl::Milliseconds(100);
  BenchmarkMetrics with_server = ComputeMetrics(records, absl::Seconds(2), slo);
  EXPECT_EQ(with_server.server_e2e_ms.count, 1);
  EXPECT_DOUBLE_EQ(with_server.server_ttft_ms.mean, 4);
  EXPECT_DOUBLE_EQ(with_server.server_e2e_ms.mean, 100);

  BenchmarkMetrics t1 = ComputeMetrics(records, absl::Seconds(2), GoodputSlo(), 1);
  EXPECT_EQ(t1.completed, 1);
  EXPECT_EQ(t1.failed, 0);
  EXPECT_EQ(t1.total_output_tokens, 21);
  EXPECT_FALSE(t1.request_goodput.has_value());
}

TEST(JsonObjectWriterTest, EscapesAndKeepsOrder) {
  JsonObjectWriter w;
  w.AddString("s", "a\"b\\c\n\x01");
  w.AddInt("i", -3);
  w.AddNumber("d", 0.25);
  w.AddNumber("nan", std::nan(""));
  w.AddBool("b", true);
  w.AddRaw("o", "{}");
  EXPECT_EQ(w.Finish(),
            "{\"s\":\"a\\\"b\\\\c\\n\\u0001\",\"i\":-3,\"d\":0.25,\"nan\":null,"
            "\"b\":true,\"o\":{}}");
}

TEST(JsonObjectWriterTest, MetricsUseVllmKeyNames) {
  JsonObjectWriter w;
  AppendMetricsJson(ComputeMetrics({Ok(10, 20, 2)}, absl::Seconds(1), GoodputSlo()), &w);
  const std::string json = w.Finish();
  for (const char* key :
       {"\"completed\":1", "\"mean_ttft_ms\":10", "\"median_tpot_ms\":10",
        "\"p99_itl_ms\"", "\"mean_e2el_ms\":20", "\"output_throughput\":2",
        "\"errors_by_code\":{}"}) {
    EXPECT_THAT(json, HasSubstr(key));
  }
}

}  // namespace
}  // namespace openelm::bench
