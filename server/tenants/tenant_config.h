#ifndef OPENELM_SERVER_TENANTS_TENANT_CONFIG_H_
#define OPENELM_SERVER_TENANTS_TENANT_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace openelm::server {

// The tenant every request belongs to when auth is off (single-user mode).
inline constexpr absl::string_view kDefaultTenantId = "default";

// Per-tenant limits. 0 means "no limit" for the integer fields.
struct TenantLimits {
  int32_t max_concurrent_requests = 0;  // admitted and not finished
  int32_t max_queued_requests = 0;      // admitted and not yet started
  int64_t prompt_tokens_per_minute = 0;
  int64_t output_tokens_per_minute = 0;  // charged as max_tokens * n up front
  int32_t max_max_tokens = 0;            // largest max_tokens a request may ask
  double max_kv_share = 1.0;             // (0, 1]: fraction of all KV blocks
};

struct TenantSpec {
  std::string id;  // [A-Za-z0-9_.-]{1,64}; also the metrics label value
  // SHA-256 of each API key, 64 lowercase hex digits (normalised on parse).
  std::vector<std::string> api_key_sha256;
  double weight = 1.0;  // fair-scheduling weight, > 0
  TenantLimits limits;
};

// A prompt prefix that every tenant may share in the prefix cache (e.g. the
// deployment's system prompt). `pinned` ones must never be evicted.
// kind "text" (default): prompts of completions that start with `text`
// (encoded like a prompt, with BOS); kind "chat_system": chat requests whose
// system message is `text` (the chat template rendered with it).
struct SharedPrefix {
  std::string name;
  std::string text;
  bool pinned = false;
  bool chat_system = false;
};

// The parsed tenants file:
//   {"auth_enabled": true,
//    "shared_prefixes": [{"name": "sys", "text": "...", "pinned": true,
//                         "kind": "chat_system"}],
//    "tenants": [{"id": "acme", "api_key_sha256": ["<64 hex>"], "weight": 1.0,
//                 "limits": {"max_concurrent_requests": 8, ...}}]}
// Unknown fields are errors (they are usually typos of a limit).
struct TenantsConfig {
  bool auth_enabled = true;
  std::vector<SharedPrefix> shared_prefixes;
  std::vector<TenantSpec> tenants;

  // The tenant with `id`, or nullptr.
  const TenantSpec* FindTenant(absl::string_view id) const;

  // Auth off, one tenant "default" with no limits: the local default run.
  static TenantsConfig SingleUser();
};

// Parses and validates a tenants file's text. `source` (usually the path)
// prefixes every error: kInvalidArgument "<source>: tenants[1].limits.
// max_kv_share: must be in (0, 1], got 1.5". Checks: types, ranges, unique
// tenant ids, unique keys across all tenants, unique shared-prefix names,
// well-formed hashes, at least one tenant when auth is enabled.
absl::StatusOr<TenantsConfig> ParseTenantsConfig(absl::string_view json_text,
                                                 absl::string_view source);

// Reads and parses `path`. kNotFound / kPermissionDenied name the path.
absl::StatusOr<TenantsConfig> LoadTenantsConfig(const std::string& path);

// SHA-256 of `data` as 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view data);

// What a tenants file stores for `api_key` (Sha256Hex of the key's bytes).
inline std::string HashApiKey(absl::string_view api_key) { return Sha256Hex(api_key); }

}  // namespace openelm::server

#endif  // OPENELM_SERVER_TENANTS_TENANT_CONFIG_H_
