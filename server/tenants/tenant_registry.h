#ifndef OPENELM_SERVER_TENANTS_TENANT_REGISTRY_H_
#define OPENELM_SERVER_TENANTS_TENANT_REGISTRY_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/tenants/tenant_config.h"

namespace openelm::server {

// An authenticated tenant. The spec is part of the config snapshot that was
// current when the request authenticated; holding the handle keeps that
// snapshot alive, so a reload never changes a request's limits midway.
using TenantHandle = std::shared_ptr<const TenantSpec>;

// Extracts the API key from request metadata values (nullopt = header
// absent): `authorization: Bearer <key>` (scheme case-insensitive) wins over
// `x-api-key: <key>`. Returns "" when neither header is present, and
// kUnauthenticated when the authorization header is not a Bearer token or a
// header is present but empty.
absl::StatusOr<std::string> ApiKeyFromHeaders(
    std::optional<absl::string_view> authorization,
    std::optional<absl::string_view> x_api_key);

// The current tenants configuration plus API-key authentication.
//
// Holds an immutable snapshot (std::shared_ptr<const ...>) behind a mutex;
// readers copy the pointer and never block a reload for longer than that
// copy. Reload() parses the new file first and swaps only when it is valid,
// so a bad edit keeps the old config. Usage accounting (QuotaManager) lives
// elsewhere, keyed by tenant id, so it survives reloads.
//
// Thread-safe: every method may be called from any thread (gRPC threads
// authenticate, the signal thread or a ConfigFileWatcher reloads).
class TenantRegistry {
 public:
  // Called after each successful reload with the new snapshot (on the
  // reloading thread, without the registry's lock held). Used to push new
  // fair-scheduling weights to the engine.
  using ReloadListener = std::function<void(const std::shared_ptr<const TenantsConfig>&)>;

  // Loads `path` (errors name it). The path is kept for Reload().
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> CreateFromFile(
      const std::string& path);
  // An in-memory config (no file; Reload() without a path then fails).
  static std::unique_ptr<TenantRegistry> Create(TenantsConfig config);
  // Auth off; every request is tenant "default" with no limits.
  static std::unique_ptr<TenantRegistry> CreateSingleUser();

  TenantRegistry(const TenantRegistry&) = delete;
  TenantRegistry& operator=(const TenantRegistry&) = delete;

  // Maps an API key ("" = none presented) to its tenant. With auth disabled
  // every request is the "default" tenant and the key is ignored. Otherwise
  // kUnauthenticated for a missing or unknown key; the message never echoes
  // the key. The stored hashes are compared in constant time, all of them
  // every time.
  absl::StatusOr<TenantHandle> Authenticate(absl::string_view api_key) const;

  // The current snapshot.
  std::shared_ptr<const TenantsConfig> config() const;

  // Re-reads the file given at creation (the SIGHUP entry point).
  absl::Status Reload();
  // Reads `path`, and on success makes it the file used by later Reload()s.
  absl::Status Reload(const std::string& path);
  // Swaps in an already parsed config.
  void Replace(TenantsConfig config);

  void AddReloadListener(ReloadListener listener);

  // The file Reload() reads ("" for in-memory registries).
  std::string path() const;
  // Number of successful swaps since creation.
  int64_t generation() const;
  // Status of the last Reload() (OK before the first).
  absl::Status last_reload_status() const;

  // Fair-scheduling weights of `config`'s tenants (FairQueue::SetWeights).
  static absl::flat_hash_map<std::string, double> Weights(const TenantsConfig& config);

 private:
  struct Snapshot;
  TenantRegistry(std::shared_ptr<const Snapshot> snapshot, std::string path);
  static std::shared_ptr<const Snapshot> MakeSnapshot(TenantsConfig config);
  void Swap(std::shared_ptr<const Snapshot> snapshot);
  std::shared_ptr<const Snapshot> snapshot() const;

  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  std::string path_ ABSL_GUARDED_BY(mu_);
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_reload_status_ ABSL_GUARDED_BY(mu_);
  std::vector<ReloadListener> listeners_ ABSL_GUARDED_BY(mu_);
  absl::Mutex reload_mu_;  // serialises whole reloads (read + swap + notify)
};

// Polls the registry's file and calls Reload() when its modification time,
// size or inode changes (an editor's atomic rename counts). A failed reload
// is logged and keeps the old config; the next change is tried again.
//
// Owns one background thread, stopped and joined by the destructor.
// `registry` must outlive the watcher. Thread-safe.
class ConfigFileWatcher {
 public:
  ConfigFileWatcher(TenantRegistry* registry, absl::Duration poll_interval);
  ~ConfigFileWatcher();
  ConfigFileWatcher(const ConfigFileWatcher&) = delete;
  ConfigFileWatcher& operator=(const ConfigFileWatcher&) = delete;

  // Reloads attempted because the file changed.
  int64_t num_reloads() const;

 private:
  struct FileStamp {
    bool exists = false;
    int64_t mtime_ns = 0;
    int64_t size = 0;
    uint64_t inode = 0;
    bool operator==(const FileStamp&) const = default;
  };
  static FileStamp Stat(const std::string& path);
  void Run();

  TenantRegistry* const registry_;
  const absl::Duration poll_interval_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t num_reloads_ ABSL_GUARDED_BY(mu_) = 0;
  FileStamp last_stamp_;  // watcher thread only (and the constructor)
  std::thread thread_;
};

}  // namespace openelm::server

#endif  // OPENELM_SERVER_TENANTS_TENANT_REGISTRY_H_
