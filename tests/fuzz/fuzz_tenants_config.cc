// Fuzz target: the tenants file parser (server/tenants/tenant_config.h).
//
// Properties: never crashes; errors are kInvalidArgument with the source
// name as prefix; an accepted config satisfies the documented checks
// (unique tenant ids, 64-hex lowercase key hashes unique across tenants,
// weight > 0, max_kv_share in (0, 1], at least one tenant with auth on) and
// FindTenant finds each tenant.

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "server/tenants/tenant_config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) { return 0; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<openelm::server::TenantsConfig> config =
      openelm::server::ParseTenantsConfig(text, "fuzz-tenants.json");
  if (!config.ok()) {
    OPENELM_FUZZ_CHECK(config.status().code() == absl::StatusCode::kInvalidArgument,
                       "unexpected error code: %s", config.status().ToString().c_str());
    OPENELM_FUZZ_CHECK(absl::StartsWith(config.status().message(), "fuzz-tenants.json"),
                       "error does not name the source: %s",
                       config.status().ToString().c_str());
    return 0;
  }
  OPENELM_FUZZ_CHECK(!config->auth_enabled || !config->tenants.empty(),
                     "auth enabled with no tenants");
  std::set<std::string> ids;
  std::set<std::string> keys;
  for (const openelm::server::TenantSpec& t : config->tenants) {
    OPENELM_FUZZ_CHECK(ids.insert(t.id).second, "duplicate tenant id '%s'", t.id.c_str());
    OPENELM_FUZZ_CHECK(!t.id.empty() && t.id.size() <= 64, "tenant id of %zu bytes",
                       t.id.size());
    OPENELM_FUZZ_CHECK(t.weight > 0, "tenant '%s' weight %g", t.id.c_str(), t.weight);
    OPENELM_FUZZ_CHECK(t.limits.max_kv_share > 0 && t.limits.max_kv_share <= 1,
                       "tenant '%s' max_kv_share %g", t.id.c_str(),
                       t.limits.max_kv_share);
    OPENELM_FUZZ_CHECK(
        t.limits.max_concurrent_requests >= 0 && t.limits.max_queued_requests >= 0 &&
            t.limits.prompt_tokens_per_minute >= 0 &&
            t.limits.output_tokens_per_minute >= 0 && t.limits.max_max_tokens >= 0,
        "tenant '%s' has a negative limit", t.id.c_str());
    for (const std::string& k : t.api_key_sha256) {
      OPENELM_FUZZ_CHECK(
          k.size() == 64 && k.find_first_not_of("0123456789abcdef") == std::string::npos,
          "malformed key hash '%s'", k.c_str());
      OPENELM_FUZZ_CHECK(keys.insert(k).second, "key hash used twice");
    }
    OPENELM_FUZZ_CHECK(config->FindTenant(t.id) == &t, "FindTenant('%s') failed",
                       t.id.c_str());
  }
  std::set<std::string> prefixes;
  for (const openelm::server::SharedPrefix& p : config->shared_prefixes) {
    OPENELM_FUZZ_CHECK(prefixes.insert(p.name).second, "duplicate shared prefix '%s'",
                       p.name.c_str());
  }
  return 0;
}
