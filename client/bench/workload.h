#ifndef OPENELM_CLIENT_BENCH_WORKLOAD_H_
#define OPENELM_CLIENT_BENCH_WORKLOAD_H_

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "openelm/v1/inference.pb.h"

namespace openelm::bench {

// Inter-arrival times of a request stream, as in `vllm bench serve`:
// gaps are Gamma(shape = burstiness, scale = 1 / (rate * burstiness)), so the
// mean rate is `rate` whatever the burstiness; burstiness 1 is a Poisson
// process (exponential gaps), < 1 is burstier, > 1 more regular. An infinite
// rate sends everything at once (every gap is zero).
//
// Thread-compatible. Deterministic for a given seed.
class ArrivalProcess {
 public:
  ArrivalProcess(double rate_per_s, double burstiness, uint64_t seed);
  absl::Duration NextGap();

 private:
  bool infinite_;
  std::mt19937_64 rng_;
  std::gamma_distribution<double> gamma_;
};

// Parses --request_rate: "inf" or a positive number of requests per second.
absl::StatusOr<double> ParseRate(absl::string_view text);

// One tenant of a multi-tenant mix: requests carry its API key and arrive
// at its own rate.
struct TenantSpec {
  std::string name;
  std::string api_key;
  double rate_per_s = std::numeric_limits<double>::infinity();
};
// Parses "name:key:rate,name2:key2:rate2" (rate "inf" allowed; key may be
// empty for "no key"). Names must be unique.
absl::StatusOr<std::vector<TenantSpec>> ParseTenants(absl::string_view spec);

enum class Dataset {
  kRandomIds,     // uniform random token ids, exact prompt length
  kRandomWords,   // random English words as text (length approximate)
  kSharedPrefix,  // num_prefixes random id prefixes, each followed by random suffixes
};
absl::StatusOr<Dataset> ParseDataset(absl::string_view name);

struct WorkloadOptions {
  Dataset dataset = Dataset::kRandomIds;
  int32_t num_requests = 100;
  // Lengths are drawn uniformly from [len * (1 - range_ratio), len * (1 + range_ratio)].
  int32_t input_len = 128;   // prompt tokens incl. BOS (shared prefix: suffix length)
  int32_t output_len = 64;   // max_tokens
  double range_ratio = 0;    // in [0, 1)
  int32_t num_prefixes = 4;  // shared prefix: N prefixes, requests cycle over them
  int32_t prefix_len = 256;  // shared prefix: tokens per prefix
  bool ignore_eos = true;    // so output lengths are exactly output_len
  float temperature = 0;     // 0 = greedy
  int32_t vocab_size = 32000;
  uint64_t seed = 0;
  std::string model;
};

// One request of the run, fully prepared before the clock starts.
struct PlannedRequest {
  absl::Duration arrival;  // offset from the run start
  int32_t tenant = 0;
  int32_t planned_prompt_tokens = 0;  // exact for id datasets, estimate for words
  v1::GenerateRequest request;
};

// Builds the requests and their arrival times. Without tenants all requests
// follow one ArrivalProcess(rate, burstiness); with tenants each tenant has
// its own process at its rate (the same burstiness) and the merged stream is
// cut at num_requests. Deterministic for options.seed.
absl::StatusOr<std::vector<PlannedRequest>> BuildWorkload(
    const WorkloadOptions& options, double rate_per_s, double burstiness,
    const std::vector<TenantSpec>& tenants);

}  // namespace openelm::bench

#endif  // OPENELM_CLIENT_BENCH_WORKLOAD_H_
