#include "client/bench/workload.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace openelm::bench {
namespace {

constexpr int32_t kBosId = 1;
constexpr int32_t kFirstOrdinaryId = 3;  // 0..2 are unk, bos, eos

// Common short English words: each is usually one Llama-2 token with its
// leading space, so word count approximates the prompt length.
constexpr const char* kWords[] = {
    "the",   "of",    "and",    "to",    "in",     "is",      "was",   "for",   "on",
    "that",  "with",  "as",     "by",    "at",     "from",    "his",   "her",   "it",
    "an",    "are",   "were",   "which", "be",     "this",    "had",   "not",   "but",
    "one",   "they",  "have",   "first", "new",    "after",   "who",   "all",   "two",
    "their", "time",  "also",   "has",   "been",   "more",    "other", "when",  "into",
    "year",  "city",  "school", "over",  "during", "between", "world", "state", "where",
    "while", "about", "people", "water", "house",  "small",   "light", "river", "music",
    "story", "night", "road",   "game",  "team",   "book",    "king",  "field", "power",
    "early", "began", "long",   "great", "place",  "well",    "under", "later", "made",
    "some",  "three", "group",  "south", "north",  "life",    "part",  "line",  "film",
    "work",  "name",  "most",   "same",  "only",   "known",   "high",  "open",  "family",
    "court", "party", "church", "album", "season", "tree",    "sea"};
constexpr int32_t kNumWords = sizeof(kWords) / sizeof(kWords[0]);

int32_t DrawLength(int32_t len, double range_ratio, std::mt19937_64& rng) {
  if (range_ratio <= 0) return len;
  const int32_t lo =
      std::max<int32_t>(1, static_cast<int32_t>(std::floor(len * (1 - range_ratio))));
  const int32_t hi =
      std::max<int32_t>(lo, static_cast<int32_t>(std::ceil(len * (1 + range_ratio))));
  return std::uniform_int_distribution<int32_t>(lo, hi)(rng);
}

void AppendRandomIds(int32_t n, int32_t vocab_size, std::mt19937_64& rng,
                     v1::TokenIds* ids) {
  std::uniform_int_distribution<int32_t> token(kFirstOrdinaryId, vocab_size - 1);
  for (int32_t i = 0; i < n; ++i) ids->add_ids(token(rng));
}

}  // namespace

ArrivalProcess::ArrivalProcess(double rate_per_s, double burstiness, uint64_t seed)
    : infinite_(!std::isfinite(rate_per_s) || rate_per_s <= 0),
      rng_(seed),
      gamma_(burstiness > 0 ? burstiness : 1.0,
             infinite_ ? 1.0 : 1.0 / (rate_per_s * (burstiness > 0 ? burstiness : 1.0))) {
}

absl::Duration ArrivalProcess::NextGap() {
  if (infinite_) return absl::ZeroDuration();
  return absl::Seconds(gamma_(rng_));
}

absl::StatusOr<double> ParseRate(absl::string_view text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t == "inf" || t == "infinity") return std::numeric_limits<double>::infinity();
  double rate = 0;
  if (!absl::SimpleAtod(t, &rate) || !(rate > 0) || !std::isfinite(rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request rate \"", text, "\" must be a positive number of requests/s or inf"));
  }
  return rate;
}

absl::StatusOr<std::vector<TenantSpec>> ParseTenants(absl::string_view spec) {
  std::vector<TenantSpec> tenants;
  std::set<std::string> names;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    std::vector<std::string> parts = absl::StrSplit(item, ':');
    if (parts.size() != 3 || parts[0].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tenants: \"", item, "\" must be name:api_key:rate (e.g. alice:k1:2.5)"));
    }
    TenantSpec t;
    t.name = parts[0];
    t.api_key = parts[1];
    absl::StatusOr<double> rate = ParseRate(parts[2]);
    if (!rate.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenants: tenant ", t.name, ": ", rate.status().message()));
    }
    t.rate_per_s = *rate;
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenants: duplicate tenant ", t.name));
    }
    tenants.push_back(std::move(t));
  }
  return tenants;
}

absl::StatusOr<Dataset> ParseDataset(absl::string_view name) {
  if (name == "random") return Dataset::kRandomIds;
  if (name == "random_words") return Dataset::kRandomWords;
  if (name == "shared_prefix") return Dataset::kSharedPrefix;
  return absl::InvalidArgumentError(
      absl::StrCat("--dataset=", name, ": use random, random_words or shared_prefix"));
}

absl::StatusOr<std::vector<PlannedRequest>> BuildWorkload(
    const WorkloadOptions& options, double rate_per_s, double burstiness,
    const std::vector<TenantSpec>& tenants) {
  if (options.num_requests <= 0) {
    return absl::InvalidArgumentError("--num_requests must be positive");
  }
  if (options.input_len < 1 || options.output_len < 1) {
    return absl::InvalidArgumentError("--input_len and --output_len must be >= 1");
  }
  if (options.range_ratio < 0 || options.range_ratio >= 1) {
    return absl::InvalidArgumentError("--range_ratio must be in [0, 1)");
  }
  if (!(burstiness > 0)) return absl::InvalidArgumentError("--burstiness must be > 0");
  if (options.dataset == Dataset::kSharedPrefix &&
      (options.num_prefixes < 1 || options.prefix_len < 1)) {
    return absl::InvalidArgumentError("--num_prefixes and --prefix_len must be >= 1");
  }
  std::mt19937_64 rng(options.seed);

  // Prompts first, so that arrival times do not change the prompts.
  std::vector<v1::TokenIds> prefixes;
  if (options.dataset == Dataset::kSharedPrefix) {
    prefixes.resize(options.num_prefixes);
    for (v1::TokenIds& p : prefixes) {
      p.add_ids(kBosId);
      AppendRandomIds(options.prefix_len - 1, options.vocab_size, rng, &p);
    }
  }
  std::vector<PlannedRequest> planned(options.num_requests);
  for (int32_t i = 0; i < options.num_requests; ++i) {
    PlannedRequest& p = planned[i];
    v1::GenerateRequest& r = p.request;
    r.set_model(options.model);
    const int32_t len = DrawLength(options.input_len, options.range_ratio, rng);
    switch (options.dataset) {
      case Dataset::kRandomIds: {
        v1::TokenIds* ids = r.mutable_token_ids();
        ids->add_ids(kBosId);
        AppendRandomIds(len - 1, options.vocab_size, rng, ids);
        p.planned_prompt_tokens = ids->ids_size();
        break;
      }
      case Dataset::kSharedPrefix: {
        v1::TokenIds* ids = r.mutable_token_ids();
        *ids = prefixes[i % options.num_prefixes];
        AppendRandomIds(len, options.vocab_size, rng, ids);
        p.planned_prompt_tokens = ids->ids_size();
        break;
      }
      case Dataset::kRandomWords: {
        std::uniform_int_distribution<int32_t> word(0, kNumWords - 1);
        std::string text;
        for (int32_t w = 0; w + 1 < len; ++w) {
          if (!text.empty()) text += ' ';
          text += kWords[word(rng)];
        }
        r.set_text(std::move(text));
        p.planned_prompt_tokens = len;  // estimate: BOS + one token per word
        break;
      }
    }
    v1::GenerationOptions* o = r.mutable_options();
    o->set_max_tokens(DrawLength(options.output_len, options.range_ratio, rng));
    o->set_temperature(options.temperature);
    o->set_ignore_eos(options.ignore_eos);
    if (options.temperature > 0) o->set_seed(options.seed + static_cast<uint64_t>(i));
  }

  // Arrival times.
  if (tenants.empty()) {
    ArrivalProcess arrivals(rate_per_s, burstiness, options.seed ^ 0x9e3779b97f4a7c15ull);
    absl::Duration t = absl::ZeroDuration();
    for (PlannedRequest& p : planned) {
      p.arrival = t;
      t += arrivals.NextGap();
    }
    return planned;
  }
  // Per tenant streams, merged by time; ties (infinite rates) round-robin.
  std::vector<std::tuple<absl::Duration, int32_t, int32_t>> merged;  // (time, k, tenant)
  for (int32_t ti = 0; ti < static_cast<int32_t>(tenants.size()); ++ti) {
    ArrivalProcess arrivals(tenants[ti].rate_per_s, burstiness,
                            options.seed * 1000003ull + static_cast<uint64_t>(ti) + 1);
    absl::Duration t = absl::ZeroDuration();
    for (int32_t k = 0; k < options.num_requests; ++k) {
      merged.emplace_back(t, k, ti);
      t += arrivals.NextGap();
    }
  }
  std::sort(merged.begin(), merged.end());
  for (int32_t i = 0; i < options.num_requests; ++i) {
    planned[i].arrival = std::get<0>(merged[i]);
    planned[i].tenant = std::get<2>(merged[i]);
  }
  return planned;
}

}  // namespace openelm::bench
