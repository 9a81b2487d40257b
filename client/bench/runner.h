#ifndef OPENELM_CLIENT_BENCH_RUNNER_H_
#define OPENELM_CLIENT_BENCH_RUNNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/bench/stats.h"
#include "client/bench/workload.h"
#include "client/openelm_client.h"

namespace openelm::bench {

struct RunnerOptions {
  // At most this many streams in flight; 0 = unlimited. Like vLLM, arrivals
  // that find the limit reached wait for a slot (no catch-up).
  int32_t max_concurrency = 0;
  // API key per tenant index (empty: the client's own key).
  std::vector<std::string> tenant_api_keys;
  bool show_progress = false;  // progress bar on stderr
  std::string progress_label = "requests";
};

struct RunResult {
  std::vector<RequestRecord> records;  // in PlannedRequest order
  absl::Duration duration;             // first send -> last completion
};

// Sends `requests` as StreamGenerate calls at their arrival offsets, using the
// gRPC callback API (one ClientReadReactor per stream, no thread per
// request), and times every chunk on arrival.
//
// Blocks the calling thread until all requests finished. `client` must
// outlive the call. Not reentrant per client only in the sense of sharing
// the channel; concurrent Run() calls are safe but compete for the server.
RunResult RunBenchmark(OpenElmClient& client, absl::Span<const PlannedRequest> requests,
                       const RunnerOptions& options);

}  // namespace openelm::bench

#endif  // OPENELM_CLIENT_BENCH_RUNNER_H_
