#include "server/tenants/tenant_config.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "engine/base/json.h"
#include "engine/base/status_macros.h"

namespace openelm::server {
namespace {

constexpr size_t kMaxConfigBytes = 16 << 20;
constexpr size_t kMaxTenantIdLength = 64;
constexpr int64_t kMaxCount = 1'000'000;
constexpr int64_t kMaxTokensPerMinute = int64_t{1} << 40;
constexpr int64_t kMaxMaxTokens = 1 << 20;
constexpr double kMaxWeight = 1e6;

// Reads one JSON object's members with error messages that carry the path
// of the field ("tenants[2].limits.weight") and the file name.
class ObjectReader {
 public:
  ObjectReader(const nlohmann::json& object, std::string path, absl::string_view source)
      : object_(object), path_(std::move(path)), source_(source) {}

  absl::Status Error(absl::string_view field, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": ", FieldPath(field), ": ", what));
  }

  std::string FieldPath(absl::string_view field) const {
    return path_.empty() ? std::string(field) : absl::StrCat(path_, ".", field);
  }

  // Fails on members not in `known`.
  absl::Status CheckKnown(const std::set<std::string>& known) const {
    for (const auto& [key, value] : object_.items()) {
      if (!known.contains(key)) return Error(key, "unknown field");
    }
    return absl::OkStatus();
  }

  const nlohmann::json* Find(absl::string_view field) const {
    return JsonFind(object_, field);
  }

  absl::Status ReadBool(absl::string_view field, bool* out) const {
    const nlohmann::json* v = Find(field);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_boolean()) return Error(field, "must be true or false");
    *out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status ReadString(absl::string_view field, bool required,
                          std::string* out) const {
    const nlohmann::json* v = Find(field);
    if (v == nullptr) {
      return required ? Error(field, "is required") : absl::OkStatus();
    }
    if (!v->is_string()) return Error(field, "must be a string");
    *out = v->get<std::string>();
    return absl::OkStatus();
  }

  template <typename Int>
  absl::Status ReadInt(absl::string_view field, int64_t max, Int* out) const {
    const nlohmann::json* v = Find(field);
    if (v == nullptr) return absl::OkStatus();
    const std::optional<int64_t> integer = JsonInt64(*v);
    if (!integer.has_value()) return Error(field, "must be an integer");
    const int64_t n = *integer;
    if (n < 0 || n > max) {
      return Error(field,
                   absl::StrCat("must be in [0, ", max, "] (0 = no limit), got ", n));
    }
    *out = static_cast<Int>(n);
    return absl::OkStatus();
  }

  // A number in (0, max].
  absl::Status ReadPositive(absl::string_view field, double max, double* out) const {
    const nlohmann::json* v = Find(field);
    if (v == nullptr) return absl::OkStatus();
    if (!v->is_number()) return Error(field, "must be a number");
    const double d = v->get<double>();
    if (!std::isfinite(d) || d <= 0 || d > max) {
      return Error(field, absl::StrCat("must be in (0, ", max, "], got ", d));
    }
    *out = d;
    return absl::OkStatus();
  }

 private:
  const nlohmann::json& object_;
  const std::string path_;
  const absl::string_view source_;
};

bool IsValidTenantId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxTenantIdLength) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' &&
        c != '.') {
      return false;
    }
  }
  return true;
}

bool IsSha256Hex(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::Status ParseLimits(const nlohmann::json& value, const std::string& path,
                         absl::string_view source, TenantLimits* limits) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", path, ": must be an object"));
  }
  ObjectReader r(value, path, source);
  OPENELM_RETURN_IF_ERROR(r.CheckKnown(
      {"max_concurrent_requests", "max_queued_requests", "prompt_tokens_per_minute",
       "output_tokens_per_minute", "max_max_tokens", "max_kv_share"}));
  OPENELM_RETURN_IF_ERROR(
      r.ReadInt("max_concurrent_requests", kMaxCount, &limits->max_concurrent_requests));
  OPENELM_RETURN_IF_ERROR(
      r.ReadInt("max_queued_requests", kMaxCount, &limits->max_queued_requests));
  OPENELM_RETURN_IF_ERROR(r.ReadInt("prompt_tokens_per_minute", kMaxTokensPerMinute,
                                    &limits->prompt_tokens_per_minute));
  OPENELM_RETURN_IF_ERROR(r.ReadInt("output_tokens_per_minute", kMaxTokensPerMinute,
                                    &limits->output_tokens_per_minute));
  OPENELM_RETURN_IF_ERROR(
      r.ReadInt("max_max_tokens", kMaxMaxTokens, &limits->max_max_tokens));
  OPENELM_RETURN_IF_ERROR(r.ReadPositive("max_kv_share", 1.0, &limits->max_kv_share));
  return absl::OkStatus();
}

absl::Status ParseTenant(const nlohmann::json& value, const std::string& path,
                         absl::string_view source, TenantSpec* tenant) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", path, ": must be an object"));
  }
  ObjectReader r(value, path, source);
  OPENELM_RETURN_IF_ERROR(r.CheckKnown({"id", "api_key_sha256", "weight", "limits"}));
  OPENELM_RETURN_IF_ERROR(r.ReadString("id", /*required=*/true, &tenant->id));
  if (!IsValidTenantId(tenant->id)) {
    return r.Error(
        "id", absl::StrCat("must be 1-", kMaxTenantIdLength,
                           " characters of [A-Za-z0-9_.-], got \"", tenant->id, "\""));
  }
  if (const nlohmann::json* keys = r.Find("api_key_sha256"); keys != nullptr) {
    if (!keys->is_array()) {
      return r.Error("api_key_sha256", "must be an array of strings");
    }
    for (size_t i = 0; i < keys->size(); ++i) {
      const nlohmann::json& key = (*keys)[i];
      const std::string field = absl::StrCat("api_key_sha256[", i, "]");
      if (!key.is_string() || !IsSha256Hex(key.get<std::string>())) {
        return r.Error(field,
                       "must be a SHA-256 hex digest (64 hex digits); store "
                       "the hash of the key, never the key itself");
      }
      tenant->api_key_sha256.push_back(absl::AsciiStrToLower(key.get<std::string>()));
    }
  }
  OPENELM_RETURN_IF_ERROR(r.ReadPositive("weight", kMaxWeight, &tenant->weight));
  if (const nlohmann::json* limits = r.Find("limits"); limits != nullptr) {
    OPENELM_RETURN_IF_ERROR(
        ParseLimits(*limits, r.FieldPath("limits"), source, &tenant->limits));
  }
  return absl::OkStatus();
}

absl::Status ParseSharedPrefix(const nlohmann::json& value, const std::string& path,
                               absl::string_view source, SharedPrefix* prefix) {
  if (!value.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", path, ": must be an object"));
  }
  ObjectReader r(value, path, source);
  OPENELM_RETURN_IF_ERROR(r.CheckKnown({"name", "text", "pinned", "kind"}));
  OPENELM_RETURN_IF_ERROR(r.ReadString("name", /*required=*/true, &prefix->name));
  OPENELM_RETURN_IF_ERROR(r.ReadString("text", /*required=*/true, &prefix->text));
  OPENELM_RETURN_IF_ERROR(r.ReadBool("pinned", &prefix->pinned));
  std::string kind = "text";
  OPENELM_RETURN_IF_ERROR(r.ReadString("kind", /*required=*/false, &kind));
  if (kind != "text" && kind != "chat_system") {
    return r.Error("kind", "must be \"text\" or \"chat_system\"");
  }
  prefix->chat_system = kind == "chat_system";
  if (prefix->name.empty()) return r.Error("name", "must not be empty");
  if (prefix->text.empty()) return r.Error("text", "must not be empty");
  return absl::OkStatus();
}

TenantSpec DefaultTenant() {
  TenantSpec tenant;
  tenant.id = std::string(kDefaultTenantId);
  return tenant;
}

}  // namespace

const TenantSpec* TenantsConfig::FindTenant(absl::string_view id) const {
  for (const TenantSpec& t : tenants) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

TenantsConfig TenantsConfig::SingleUser() {
  TenantsConfig config;
  config.auth_enabled = false;
  config.tenants.push_back(DefaultTenant());
  return config;
}

absl::StatusOr<TenantsConfig> ParseTenantsConfig(absl::string_view json_text,
                                                 absl::string_view source) {
  absl::StatusOr<nlohmann::json> root = ParseJson(json_text);
  if (!root.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": ", root.status().message()));
  }
  if (!root->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the top level must be an object"));
  }
  TenantsConfig config;
  ObjectReader r(*root, "", source);
  OPENELM_RETURN_IF_ERROR(r.CheckKnown({"auth_enabled", "shared_prefixes", "tenants"}));
  OPENELM_RETURN_IF_ERROR(r.ReadBool("auth_enabled", &config.auth_enabled));

  if (const nlohmann::json* prefixes = r.Find("shared_prefixes"); prefixes != nullptr) {
    if (!prefixes->is_array()) return r.Error("shared_prefixes", "must be an array");
    std::set<std::string> names;
    for (size_t i = 0; i < prefixes->size(); ++i) {
      const std::string path = absl::StrCat("shared_prefixes[", i, "]");
      SharedPrefix prefix;
      OPENELM_RETURN_IF_ERROR(ParseSharedPrefix((*prefixes)[i], path, source, &prefix));
      if (!names.insert(prefix.name).second) {
        return r.Error(absl::StrCat(path, ".name"),
                       absl::StrCat("duplicate name \"", prefix.name, "\""));
      }
      config.shared_prefixes.push_back(std::move(prefix));
    }
  }

  if (const nlohmann::json* tenants = r.Find("tenants"); tenants != nullptr) {
    if (!tenants->is_array()) return r.Error("tenants", "must be an array");
    std::map<std::string, std::string> key_owner;  // hash -> tenant id
    for (size_t i = 0; i < tenants->size(); ++i) {
      const std::string path = absl::StrCat("tenants[", i, "]");
      TenantSpec tenant;
      OPENELM_RETURN_IF_ERROR(ParseTenant((*tenants)[i], path, source, &tenant));
      if (config.FindTenant(tenant.id) != nullptr) {
        return r.Error(absl::StrCat(path, ".id"),
                       absl::StrCat("duplicate tenant id \"", tenant.id, "\""));
      }
      for (size_t k = 0; k < tenant.api_key_sha256.size(); ++k) {
        auto [it, inserted] = key_owner.emplace(tenant.api_key_sha256[k], tenant.id);
        if (!inserted) {
          return r.Error(absl::StrCat(path, ".api_key_sha256[", k, "]"),
                         absl::StrCat("the same key is already listed for tenant \"",
                                      it->second, "\""));
        }
      }
      config.tenants.push_back(std::move(tenant));
    }
  }

  if (config.auth_enabled) {
    if (config.tenants.empty()) {
      return r.Error("tenants", "auth_enabled is true but no tenant is defined");
    }
    size_t num_keys = 0;
    for (const TenantSpec& t : config.tenants) num_keys += t.api_key_sha256.size();
    if (num_keys == 0) {
      return r.Error("tenants", "auth_enabled is true but no tenant has an API key");
    }
  } else if (config.FindTenant(kDefaultTenantId) == nullptr) {
    // With auth off every request belongs to "default"; give it no limits
    // unless the file configures it.
    config.tenants.push_back(DefaultTenant());
  }
  return config;
}

absl::StatusOr<TenantsConfig> LoadTenantsConfig(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("cannot open tenants config ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::FailedPreconditionError(msg);
  }
  std::string text;
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    text.append(buf, n);
    if (text.size() > kMaxConfigBytes) {
      std::fclose(f);
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tenants config is larger than ", kMaxConfigBytes, " bytes"));
    }
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read tenants config ", path));
  }
  return ParseTenantsConfig(text, path);
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_Digest cannot fail for SHA-256 short of memory exhaustion.
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

}  // namespace openelm::server
