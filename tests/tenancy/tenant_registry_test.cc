#include "server/tenants/tenant_registry.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/tenants/quota.h"
#include "tests/testing/status_matchers.h"

namespace openelm::server {
namespace {

using ::openelm::testing::IsOk;
using ::openelm::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ConfigJson(int acme_max_concurrent, absl::string_view acme_key = "acme-key") {
  return absl::StrCat(R"({"tenants": [
      {"id": "acme", "api_key_sha256": [")",
                      HashApiKey(acme_key), R"("], "weight": 2,
       "limits": {"max_concurrent_requests": )",
                      acme_max_concurrent, R"(}},
      {"id": "beta", "api_key_sha256": [")",
                      HashApiKey("beta-key-1"), R"(", ")", HashApiKey("beta-key-2"),
                      R"("]}]})");
}

void WriteFile(const std::string& path, const std::string& text) {
  // Write then rename, like an editor or a config-management tool.
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

class TenantRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(::testing::TempDir(), "tenant_registry_test_", getpid(), "_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                         ".json");
    WriteFile(path_, ConfigJson(2));
  }
  void TearDown() override { std::remove(path_.c_str()); }
  std::string path_;
};

TEST(ApiKeyFromHeadersTest, BearerThenXApiKey) {
  EXPECT_EQ(*ApiKeyFromHeaders("Bearer abc", std::nullopt), "abc");
  EXPECT_EQ(*ApiKeyFromHeaders("bearer  abc ", "other"), "abc");
  EXPECT_EQ(*ApiKeyFromHeaders(std::nullopt, "xyz"), "xyz");
  EXPECT_EQ(*ApiKeyFromHeaders(std::nullopt, std::nullopt), "");
  EXPECT_THAT(ApiKeyFromHeaders("Basic dXNlcjpwdw==", std::nullopt),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("Bearer")));
  EXPECT_THAT(ApiKeyFromHeaders("Bearer ", std::nullopt),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(ApiKeyFromHeaders(std::nullopt, " "),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(TenantRegistryTest, AuthenticatesEachKeyToItsTenant) {
  ASSERT_OK_AND_ASSIGN(auto registry, TenantRegistry::CreateFromFile(path_));
  ASSERT_OK_AND_ASSIGN(TenantHandle acme, registry->Authenticate("acme-key"));
  EXPECT_EQ(acme->id, "acme");
  EXPECT_DOUBLE_EQ(acme->weight, 2.0);
  ASSERT_OK_AND_ASSIGN(TenantHandle b1, registry->Authenticate("beta-key-1"));
  ASSERT_OK_AND_ASSIGN(TenantHandle b2, registry->Authenticate("beta-key-2"));
  EXPECT_EQ(b1->id, "beta");
  EXPECT_EQ(b2->id, "beta");
}

TEST_F(TenantRegistryTest, MissingOrWrongKeyIsUnauthenticated) {
  ASSERT_OK_AND_ASSIGN(auto registry, TenantRegistry::CreateFromFile(path_));
  EXPECT_THAT(registry->Authenticate(""),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("missing API key")));
  absl::StatusOr<TenantHandle> wrong = registry->Authenticate("acme-key2");
  EXPECT_THAT(wrong,
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("invalid API key")));
  EXPECT_THAT(std::string(wrong.status().message()), Not(HasSubstr("acme-key2")));
  // The stored hash itself is not a key.
  EXPECT_THAT(registry->Authenticate(HashApiKey("acme-key")),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(TenantRegistrySingleUserTest, AuthOffMakesEveryoneDefault) {
  auto registry = TenantRegistry::CreateSingleUser();
  ASSERT_OK_AND_ASSIGN(TenantHandle a, registry->Authenticate(""));
  ASSERT_OK_AND_ASSIGN(TenantHandle b, registry->Authenticate("anything"));
  EXPECT_EQ(a->id, kDefaultTenantId);
  EXPECT_EQ(b->id, kDefaultTenantId);
  EXPECT_THAT(registry->Reload(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(TenantRegistryTest, ReloadSwapsConfigAndKeepsOldSnapshotsAlive) {
  ASSERT_OK_AND_ASSIGN(auto registry, TenantRegistry::CreateFromFile(path_));
  ASSERT_OK_AND_ASSIGN(TenantHandle before, registry->Authenticate("acme-key"));
  std::vector<double> pushed_weights;
  registry->AddReloadListener([&](const std::shared_ptr<const TenantsConfig>& c) {
    pushed_weights.push_back(TenantRegistry::Weights(*c).at("acme"));
  });

  WriteFile(path_, ConfigJson(5, "new-acme-key"));
  ASSERT_OK(registry->Reload());
  EXPECT_EQ(registry->generation(), 1);
  EXPECT_EQ(pushed_weights, std::vector<double>{2.0});
  // The old key is revoked, the new one works with the new limit.
  EXPECT_THAT(registry->Authenticate("acme-key"),
              StatusIs(absl::StatusCode::kUnauthenticated));
  ASSERT_OK_AND_ASSIGN(TenantHandle after, registry->Authenticate("new-acme-key"));
  EXPECT_EQ(after->limits.max_concurrent_requests, 5);
  // An in-flight request still sees the limits it was admitted under.
  EXPECT_EQ(before->limits.max_concurrent_requests, 2);
}

TEST_F(TenantRegistryTest, BadReloadKeepsOldConfig) {
  ASSERT_OK_AND_ASSIGN(auto registry, TenantRegistry::CreateFromFile(path_));
  WriteFile(path_, R"({"tenants": [{"id": "acme", "weight": -1}]})");
  EXPECT_THAT(registry->Reload(), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr(path_ + ": tenants[0].weight")));
  EXPECT_THAT(registry->last_reload_status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(registry->generation(), 0);
  EXPECT_OK(registry->Authenticate("acme-key"));
}

TEST_F(TenantRegistryTest, ReloadKeepsInFlightAccountingAndAppliesNewLimits) {
  ASSERT_OK_AND_ASSIGN(auto registry, TenantRegistry::CreateFromFile(path_));
  QuotaManager quota;
  const AdmissionRequest req{.prompt_tokens = 10, .max_tokens = 10};
  ASSERT_OK_AND_ASSIGN(TenantHandle acme, registry->Authenticate("acme-key"));
  ASSERT_OK_AND_ASSIGN(QuotaTicket t1, quota.Admit(*acme, req));
  ASSERT_OK_AND_ASSIGN(QuotaTicket t2, quota.Admit(*acme, req));
  EXPECT_THAT(quota.Admit(*acme, req), StatusIs(absl::StatusCode::kResourceExhausted));

  // Raise the limit to 3: two requests are still in flight, so one more fits.
  WriteFile(path_, ConfigJson(3));
  ASSERT_OK(registry->Reload());
  ASSERT_OK_AND_ASSIGN(TenantHandle acme2, registry->Authenticate("acme-key"));
  ASSERT_OK_AND_ASSIGN(QuotaTicket t3, quota.Admit(*acme2, req));
  EXPECT_THAT(quota.Admit(*acme2, req), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(quota.Usage("acme").in_flight, 3);

  // Lower it to 1: nothing in flight is dropped; new requests wait until
  // the tenant is below the new limit.
  WriteFile(path_, ConfigJson(1));
  ASSERT_OK(registry->Reload());
  ASSERT_OK_AND_ASSIGN(TenantHandle acme3, registry->Authenticate("acme-key"));
  EXPECT_TRUE(t1.held() && t2.held() && t3.held());
  t1.Finish(10);
  t2.Finish(10);
  EXPECT_THAT(quota.Admit(*acme3, req), StatusIs(absl::StatusCode::kResourceExhausted));
  t3.Finish(10);
  EXPECT_OK(quota.Admit(*acme3, req));
}

TEST_F(TenantRegistryTest, WatcherReloadsWhenTheFileChanges) {
  ASSERT_OK_AND_ASSIGN(auto registry, TenantRegistry::CreateFromFile(path_));
  ConfigFileWatcher watcher(registry.get(), absl::Milliseconds(10));
  WriteFile(path_, ConfigJson(7));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  // generation() moves inside Reload(); num_reloads() right after it returns.
  while ((registry->generation() < 1 || watcher.num_reloads() < 1) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(registry->generation(), 1);
  EXPECT_EQ(watcher.num_reloads(), 1);
  EXPECT_EQ(registry->config()->FindTenant("acme")->limits.max_concurrent_requests, 7);
}

TEST_F(TenantRegistryTest, ConcurrentAuthenticateDuringReloads) {
  ASSERT_OK_AND_ASSIGN(auto registry, TenantRegistry::CreateFromFile(path_));
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        absl::StatusOr<TenantHandle> t = registry->Authenticate("beta-key-1");
        if (!t.ok() || (*t)->id != "beta") failures.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 50; ++i) {
    WriteFile(path_, ConfigJson(1 + i % 3));
    ASSERT_OK(registry->Reload());
  }
  stop.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(registry->generation(), 50);
}

}  // namespace
}  // namespace openelm::server
