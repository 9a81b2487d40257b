#ifndef OPENELM_CLIENT_BENCH_HTTP_RUNNER_H_
#define OPENELM_CLIENT_BENCH_HTTP_RUNNER_H_

#include <string>

#include "absl/types/span.h"
#include "client/bench/runner.h"
#include "client/bench/workload.h"

namespace openelm::bench {

// As RunBenchmark, over the OpenAI-compatible HTTP API instead of gRPC: each
// request is a streaming POST /v1/completions (the same prompt ids or text,
// max_tokens, temperature, seed and ignore_eos, with
// stream_options.include_usage) on its own HTTP/1.1 connection to
// `host`:`port`, with a blocking client thread per request in flight (at
// most max_concurrency, which HTTP runs should set). TTFT is the time to the
// first chunk of output (with or without text: text may be held back until a
// UTF-8 character is complete), ITL the gaps between such chunks, and the
// output token count comes from the final usage chunk.
RunResult RunHttpBenchmark(const std::string& host, int port, const std::string& api_key,
                           absl::Span<const PlannedRequest> requests,
                           const RunnerOptions& options);

}  // namespace openelm::bench

#endif  // OPENELM_CLIENT_BENCH_HTTP_RUNNER_H_
