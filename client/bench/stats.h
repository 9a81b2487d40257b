#ifndef OPENELM_CLIENT_BENCH_STATS_H_
#define OPENELM_CLIENT_BENCH_STATS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace openelm::bench {

// What the load generator observed for one request (client-side clock).
struct RequestRecord {
  int32_t tenant = 0;  // index into the tenant list; 0 without tenants
  bool success = false;
  int32_t status_code = 0;          // grpc::StatusCode value; 0 = OK
  std::string code_name;            // "ok", "unavailable", ... (see GrpcCodeName)
  std::string error;                // explained error message when !success
  int32_t prompt_tokens = 0;        // from the server's usage (or the planned length)
  int32_t output_tokens = 0;        // tokens received
  absl::Duration send_offset;       // request start, relative to the benchmark start
  absl::Duration ttft;              // send -> first chunk carrying a token
  absl::Duration e2e;               // send -> end of stream
  std::vector<absl::Duration> itl;  // gaps between consecutive token-carrying chunks
  // The server's own timings from the final message (zero when absent).
  absl::Duration server_ttft;
  absl::Duration server_e2e;
};

// Linear-interpolation percentile of an ascending-sorted sample (numpy's
// default): p in [0, 100]. 0 for an empty sample.
double Percentile(absl::Span<const double> sorted, double p);

// Distribution summary of a sample in milliseconds.
struct Summary {
  int64_t count = 0;
  double mean = 0, median = 0, stddev = 0, min = 0, max = 0;
  double p90 = 0, p99 = 0;
};
// `values` need not be sorted. Population standard deviation (as numpy.std).
Summary Summarize(std::vector<double> values);

// Time per output token after the first, in ms:
// (e2e - ttft) / (output_tokens - 1). nullopt when fewer than 2 tokens.
std::optional<double> TpotMs(const RequestRecord& record);

// Service-level objectives for goodput, in ms; unset = not constrained.
struct GoodputSlo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2e_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2e_ms; }
};
// Parses "ttft:500,tpot:50,e2e:2000" (keys ttft|tpot|e2e|e2el, positive ms).
absl::StatusOr<GoodputSlo> ParseGoodputSlo(absl::string_view spec);
// A successful request meets the SLO when every set bound holds. A request
// with one output token has no TPOT and passes the TPOT bound.
bool MeetsSlo(const RequestRecord& record, const GoodputSlo& slo);

// The aggregate figures of one run (or one tenant's share of it).
struct BenchmarkMetrics {
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double duration_s = 0;
  double request_throughput = 0;          // completed / s
  double output_throughput = 0;           // output tokens / s
  double total_token_throughput = 0;      // (input + output tokens) / s
  std::optional<double> request_goodput;  // SLO-meeting requests / s
  int64_t good_requests = 0;
  Summary ttft_ms, tpot_ms, itl_ms, e2e_ms;
  // The server's own TTFT and E2E from each stream's final message (its
  // clock starts when the engine accepts the request); the gap to the client
  // figures is the gRPC + client overhead.
  Summary server_ttft_ms, server_e2e_ms;
  std::map<std::string, int64_t> errors_by_code;  // "unavailable" -> 3
};

// Aggregates `records` over a run of `duration`. `tenant` >= 0 restricts to
// that tenant's records. Failed requests count only in `failed` and
// `errors_by_code` (keyed by `code_name`).
BenchmarkMetrics ComputeMetrics(absl::Span<const RequestRecord> records,
                                absl::Duration duration, const GoodputSlo& slo,
                                int32_t tenant = -1);

// A tiny JSON object writer for the result file (keys in insertion order).
class JsonObjectWriter {
 public:
  void AddString(absl::string_view key, absl::string_view value);
  void AddNumber(absl::string_view key, double value);
  void AddInt(absl::string_view key, int64_t value);
  void AddBool(absl::string_view key, bool value);
  // `json` must already be valid JSON (a nested object or array).
  void AddRaw(absl::string_view key, absl::string_view json);
  std::string Finish() const;  // "{...}"

  static std::string Quote(absl::string_view s);

 private:
  std::vector<std::string> members_;
};

// Flat vLLM-style members (mean_ttft_ms, p99_itl_ms, ...) of `metrics`.
void AppendMetricsJson(const BenchmarkMetrics& metrics, JsonObjectWriter* out);

// Human-readable report block, in the style of `vllm bench serve`.
std::string FormatMetrics(const BenchmarkMetrics& metrics, absl::string_view title);

}  // namespace openelm::bench

#endif  // OPENELM_CLIENT_BENCH_STATS_H_
