#include "server/tenants/tenant_registry.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/base/logging.h"
#include "engine/base/status_macros.h"

namespace openelm::server {
namespace {

using Digest = std::array<unsigned char, 32>;

Digest Sha256(absl::string_view data) {
  Digest digest{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return digest;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10;
}

// `hex` was validated by the config parser (64 hex digits).
Digest DigestFromHex(absl::string_view hex) {
  Digest digest{};
  for (size_t i = 0; i < digest.size(); ++i) {
    digest[i] =
        static_cast<unsigned char>(HexValue(hex[2 * i]) << 4 | HexValue(hex[2 * i + 1]));
  }
  return digest;
}

}  // namespace

struct TenantRegistry::Snapshot {
  std::shared_ptr<const TenantsConfig> config;
  std::vector<std::pair<Digest, size_t>> keys;  // key hash -> tenant index
  std::optional<size_t> default_tenant;         // index of "default"
};

absl::StatusOr<std::string> ApiKeyFromHeaders(
    std::optional<absl::string_view> authorization,
    std::optional<absl::string_view> x_api_key) {
  if (authorization.has_value()) {
    absl::string_view value = absl::StripAsciiWhitespace(*authorization);
    constexpr absl::string_view kBearer = "bearer ";
    if (value.size() <= kBearer.size() || !absl::StartsWithIgnoreCase(value, kBearer)) {
      return absl::UnauthenticatedError(
          "authorization metadata must be \"Bearer <api key>\"");
    }
    absl::string_view key = absl::StripAsciiWhitespace(value.substr(kBearer.size()));
    if (key.empty()) {
      return absl::UnauthenticatedError("empty bearer token");
    }
    return std::string(key);
  }
  if (x_api_key.has_value()) {
    absl::string_view key = absl::StripAsciiWhitespace(*x_api_key);
    if (key.empty()) return absl::UnauthenticatedError("empty x-api-key");
    return std::string(key);
  }
  return std::string();
}

TenantRegistry::TenantRegistry(std::shared_ptr<const Snapshot> snapshot, std::string path)
    : snapshot_(std::move(snapshot)), path_(std::move(path)) {}

std::shared_ptr<const TenantRegistry::Snapshot> TenantRegistry::MakeSnapshot(
    TenantsConfig config) {
  auto snapshot = std::make_shared<Snapshot>();
  auto shared_config = std::make_shared<const TenantsConfig>(std::move(config));
  for (size_t i = 0; i < shared_config->tenants.size(); ++i) {
    const TenantSpec& tenant = shared_config->tenants[i];
    for (const std::string& hex : tenant.api_key_sha256) {
      snapshot->keys.emplace_back(DigestFromHex(hex), i);
    }
    if (tenant.id == kDefaultTenantId) snapshot->default_tenant = i;
  }
  snapshot->config = std::move(shared_config);
  return snapshot;
}

absl::StatusOr<std::unique_ptr<TenantRegistry>> TenantRegistry::CreateFromFile(
    const std::string& path) {
  OPENELM_ASSIGN_OR_RETURN(TenantsConfig config, LoadTenantsConfig(path));
  return std::unique_ptr<TenantRegistry>(
      new TenantRegistry(MakeSnapshot(std::move(config)), path));
}

std::unique_ptr<TenantRegistry> TenantRegistry::Create(TenantsConfig config) {
  return std::unique_ptr<TenantRegistry>(
      new TenantRegistry(MakeSnapshot(std::move(config)), ""));
}

std::unique_ptr<TenantRegistry> TenantRegistry::CreateSingleUser() {
  return Create(TenantsConfig::SingleUser());
}

std::shared_ptr<const TenantRegistry::Snapshot> TenantRegistry::snapshot() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

std::shared_ptr<const TenantsConfig> TenantRegistry::config() const {
  return snapshot()->config;
}

absl::StatusOr<TenantHandle> TenantRegistry::Authenticate(
    absl::string_view api_key) const {
  std::shared_ptr<const Snapshot> snap = snapshot();
  const TenantsConfig& config = *snap->config;
  if (!config.auth_enabled) {
    if (!snap->default_tenant.has_value()) {
      return absl::InternalError("auth is off but there is no default tenant");
    }
    return TenantHandle(snap->config, &config.tenants[*snap->default_tenant]);
  }
  if (api_key.empty()) {
    return absl::UnauthenticatedError(
        "missing API key: send metadata \"authorization: Bearer <key>\" or "
        "\"x-api-key: <key>\"");
  }
  // Compare against every stored hash without an early exit, so the time
  // taken does not depend on which (if any) key matched.
  const Digest presented = Sha256(api_key);
  size_t match = config.tenants.size();
  for (const auto& [digest, tenant_index] : snap->keys) {
    const bool equal = CRYPTO_memcmp(digest.data(), presented.data(), digest.size()) == 0;
    match = equal ? tenant_index : match;
  }
  if (match == config.tenants.size()) {
    return absl::UnauthenticatedError("invalid API key");
  }
  return TenantHandle(snap->config, &config.tenants[match]);
}

void TenantRegistry::Swap(std::shared_ptr<const Snapshot> snapshot) {
  std::vector<ReloadListener> listeners;
  std::shared_ptr<const TenantsConfig> config = snapshot->config;
  {
    absl::MutexLock lock(&mu_);
    snapshot_ = std::move(snapshot);
    ++generation_;
    listeners = listeners_;
  }
  for (const ReloadListener& listener : listeners) listener(config);
}

absl::Status TenantRegistry::Reload() { return Reload(path()); }

absl::Status TenantRegistry::Reload(const std::string& path) {
  absl::MutexLock reload_lock(&reload_mu_);
  absl::Status status;
  if (path.empty()) {
    status =
        absl::FailedPreconditionError("this tenant registry was not loaded from a file");
  } else {
    absl::StatusOr<TenantsConfig> config = LoadTenantsConfig(path);
    if (config.ok()) {
      {
        absl::MutexLock lock(&mu_);
        path_ = path;
      }
      Swap(MakeSnapshot(*std::move(config)));
      OPENELM_LOG(INFO) << "tenants config reloaded from " << path << " ("
                        << this->config()->tenants.size() << " tenants)";
    } else {
      status = config.status();
      OPENELM_LOG(WARNING) << "tenants config reload failed, keeping the old "
                              "one: "
                           << status.message();
    }
  }
  absl::MutexLock lock(&mu_);
  last_reload_status_ = status;
  return status;
}

void TenantRegistry::Replace(TenantsConfig config) {
  absl::MutexLock reload_lock(&reload_mu_);
  Swap(MakeSnapshot(std::move(config)));
}

void TenantRegistry::AddReloadListener(ReloadListener listener) {
  absl::MutexLock lock(&mu_);
  listeners_.push_back(std::move(listener));
}

std::string TenantRegistry::path() const {
  absl::MutexLock lock(&mu_);
  return path_;
}

int64_t TenantRegistry::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

absl::Status TenantRegistry::last_reload_status() const {
  absl::MutexLock lock(&mu_);
  return last_reload_status_;
}

absl::flat_hash_map<std::string, double> TenantRegistry::Weights(
    const TenantsConfig& config) {
  absl::flat_hash_map<std::string, double> weights;
  for (const TenantSpec& t : config.tenants) weights[t.id] = t.weight;
  return weights;
}

// ---- ConfigFileWatcher ----

ConfigFileWatcher::ConfigFileWatcher(TenantRegistry* registry,
                                     absl::Duration poll_interval)
    : registry_(registry),
      poll_interval_(poll_interval),
      last_stamp_(Stat(registry->path())),
      thread_([this] { Run(); }) {}

ConfigFileWatcher::~ConfigFileWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

int64_t ConfigFileWatcher::num_reloads() const {
  absl::MutexLock lock(&mu_);
  return num_reloads_;
}

ConfigFileWatcher::FileStamp ConfigFileWatcher::Stat(const std::string& path) {
  FileStamp stamp;
  struct stat st;
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return stamp;
  stamp.exists = true;
  stamp.mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  stamp.size = static_cast<int64_t>(st.st_size);
  stamp.inode = static_cast<uint64_t>(st.st_ino);
  return stamp;
}

void ConfigFileWatcher::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      // Sleeps for one interval unless the destructor asks to stop.
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), poll_interval_);
      if (stop_) return;
    }
    const FileStamp stamp = Stat(registry_->path());
    // A vanished file (mid-rename) is not a change worth a failed reload.
    if (!stamp.exists || stamp == last_stamp_) continue;
    last_stamp_ = stamp;
    (void)registry_->Reload();  // logs and records its own errors
    absl::MutexLock lock(&mu_);
    ++num_reloads_;
  }
}

}  // namespace openelm::server
