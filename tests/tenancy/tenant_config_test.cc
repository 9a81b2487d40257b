#include "server/tenants/tenant_config.h"

#include <unistd.h>

#include <cstdio>
#include <ostream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace openelm::server {
namespace {

using ::openelm::testing::IsOk;
using ::openelm::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// SHA-256("test-key-1") etc., computed by the test through the public API and
// cross-checked against a known vector below.
std::string Hash(absl::string_view key) { return HashApiKey(key); }

TEST(Sha256Test, MatchesKnownVectors) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

std::string FullConfig() {
  return absl::StrCat(R"({
    "auth_enabled": true,
    "shared_prefixes": [{"name": "system", "text": "You are helpful.", "pinned": true}],
    "tenants": [
      {"id": "acme", "api_key_sha256": [")",
                      Hash("k1"), R"(", ")", Hash("k2"),
                      R"("], "weight": 3,
       "limits": {"max_concurrent_requests": 4, "max_queued_requests": 8,
                  "prompt_tokens_per_minute": 6000, "output_tokens_per_minute": 1200,
                  "max_kv_share": 0.5, "max_max_tokens": 256}},
      {"id": "beta.team_2", "api_key_sha256": [")",
                      absl::AsciiStrToUpper(Hash("k3")), R"("]}
    ]})");
}

TEST(TenantConfigTest, ParsesEveryField) {
  ASSERT_OK_AND_ASSIGN(TenantsConfig c, ParseTenantsConfig(FullConfig(), "t.json"));
  EXPECT_TRUE(c.auth_enabled);
  ASSERT_EQ(c.shared_prefixes.size(), 1u);
  EXPECT_EQ(c.shared_prefixes[0].name, "system");
  EXPECT_EQ(c.shared_prefixes[0].text, "You are helpful.");
  EXPECT_TRUE(c.shared_prefixes[0].pinned);
  ASSERT_EQ(c.tenants.size(), 2u);
  const TenantSpec* acme = c.FindTenant("acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->api_key_sha256, (std::vector<std::string>{Hash("k1"), Hash("k2")}));
  EXPECT_DOUBLE_EQ(acme->weight, 3.0);
  EXPECT_EQ(acme->limits.max_concurrent_requests, 4);
  EXPECT_EQ(acme->limits.max_queued_requests, 8);
  EXPECT_EQ(acme->limits.prompt_tokens_per_minute, 6000);
  EXPECT_EQ(acme->limits.output_tokens_per_minute, 1200);
  EXPECT_DOUBLE_EQ(acme->limits.max_kv_share, 0.5);
  EXPECT_EQ(acme->limits.max_max_tokens, 256);
  const TenantSpec* beta = c.FindTenant("beta.team_2");
  ASSERT_NE(beta, nullptr);
  // Upper-case hex is normalised; defaults apply to missing fields.
  EXPECT_EQ(beta->api_key_sha256, std::vector<std::string>{Hash("k3")});
  EXPECT_DOUBLE_EQ(beta->weight, 1.0);
  EXPECT_EQ(beta->limits.max_concurrent_requests, 0);
  EXPECT_DOUBLE_EQ(beta->limits.max_kv_share, 1.0);
  EXPECT_EQ(c.FindTenant("default"), nullptr);  // auth on: no implicit tenant
}

TEST(TenantConfigTest, AuthOffAddsUnlimitedDefaultTenant) {
  ASSERT_OK_AND_ASSIGN(TenantsConfig c,
                       ParseTenantsConfig(R"({"auth_enabled": false})", "x"));
  EXPECT_FALSE(c.auth_enabled);
  ASSERT_NE(c.FindTenant(kDefaultTenantId), nullptr);
  EXPECT_EQ(c.FindTenant(kDefaultTenantId)->limits.max_concurrent_requests, 0);
  // A configured "default" keeps its limits.
  ASSERT_OK_AND_ASSIGN(
      TenantsConfig d,
      ParseTenantsConfig(R"({"auth_enabled": false, "tenants": [{"id": "default",
          "limits": {"max_concurrent_requests": 2}}]})",
                         "x"));
  ASSERT_EQ(d.tenants.size(), 1u);
  EXPECT_EQ(d.tenants[0].limits.max_concurrent_requests, 2);
}

TEST(TenantConfigTest, SingleUserIsAuthOffDefault) {
  TenantsConfig c = TenantsConfig::SingleUser();
  EXPECT_FALSE(c.auth_enabled);
  ASSERT_EQ(c.tenants.size(), 1u);
  EXPECT_EQ(c.tenants[0].id, kDefaultTenantId);
}

struct BadCase {
  std::string name;
  std::string json;
  std::string expected;  // substring of the error
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class TenantConfigErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(TenantConfigErrorTest, NamesTheFieldAndTheFile) {
  const BadCase& c = GetParam();
  absl::StatusOr<TenantsConfig> got = ParseTenantsConfig(c.json, "/etc/tenants.json");
  EXPECT_THAT(got,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("/etc/tenants.json: "), HasSubstr(c.expected))));
}

std::string Tenant(absl::string_view body) {
  return absl::StrCat(R"({"tenants": [{"id": "a", "api_key_sha256": [")", Hash("a"),
                      R"("])", body, "}]}");
}

INSTANTIATE_TEST_SUITE_P(
    Errors, TenantConfigErrorTest,
    ::testing::Values(
        BadCase{"NotJson", "{", "JSON parse error"},
        BadCase{"TopLevelArray", "[]", "top level must be an object"},
        BadCase{"UnknownTopField", R"({"tenant": []})", "tenant: unknown field"},
        BadCase{"AuthNotBool", R"({"auth_enabled": 1})",
                "auth_enabled: must be true or false"},
        BadCase{"NoTenants", R"({"auth_enabled": true})",
                "tenants: auth_enabled is true but no tenant is defined"},
        BadCase{"NoKeys", R"({"tenants": [{"id": "a"}]})", "no tenant has an API key"},
        BadCase{"MissingId", R"({"tenants": [{"weight": 1}]})",
                "tenants[0].id: is required"},
        BadCase{"BadId", R"({"tenants": [{"id": "a b"}]})",
                "tenants[0].id: must be 1-64"},
        BadCase{"PlainKey", R"({"tenants": [{"id": "a", "api_key_sha256": ["secret"]}]})",
                "tenants[0].api_key_sha256[0]: must be a SHA-256 hex digest"},
        BadCase{"ZeroWeight", Tenant(R"(, "weight": 0)"),
                "tenants[0].weight: must be in (0, "},
        BadCase{"UnknownLimit", Tenant(R"(, "limits": {"max_concurent_requests": 1})"),
                "tenants[0].limits.max_concurent_requests: unknown field"},
        BadCase{"NegativeLimit", Tenant(R"(, "limits": {"max_queued_requests": -1})"),
                "tenants[0].limits.max_queued_requests: must be in [0, "},
        BadCase{"FractionalLimit", Tenant(R"(, "limits": {"max_max_tokens": 1.5})"),
                "tenants[0].limits.max_max_tokens: must be an integer"},
        BadCase{"KvShareTooBig", Tenant(R"(, "limits": {"max_kv_share": 1.5})"),
                "tenants[0].limits.max_kv_share: must be in (0, 1], got 1.5"},
        BadCase{"LimitsNotObject", Tenant(R"(, "limits": 3)"),
                "tenants[0].limits: must be an object"},
        BadCase{
            "DuplicateId",
            absl::StrCat(R"({"tenants": [{"id": "a"}, {"id": "a", "api_key_sha256": [")",
                         Hash("x"), R"("]}]})"),
            "tenants[1].id: duplicate tenant id \"a\""},
        BadCase{"DuplicateKey",
                absl::StrCat(R"({"tenants": [{"id": "a", "api_key_sha256": [")",
                             Hash("x"), R"("]}, {"id": "b", "api_key_sha256": [")",
                             absl::AsciiStrToUpper(Hash("x")), R"("]}]})"),
                "tenants[1].api_key_sha256[0]: the same key is already listed for "
                "tenant \"a\""},
        BadCase{"PrefixWithoutText",
                R"({"auth_enabled": false, "shared_prefixes": [{"name": "s"}]})",
                "shared_prefixes[0].text: is required"},
        BadCase{"PrefixBadKind",
                R"({"auth_enabled": false, "shared_prefixes": [{"name": "s", "text": "x",
                    "kind": "markdown"}]})",
                "shared_prefixes[0].kind: must be \"text\" or \"chat_system\""},
        BadCase{"DuplicatePrefix",
                R"({"auth_enabled": false, "shared_prefixes": [{"name": "s", "text": "x"},
                    {"name": "s", "text": "y"}]})",
                "shared_prefixes[1].name: duplicate name \"s\""}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(TenantConfigTest, LoadNamesMissingFile) {
  EXPECT_THAT(
      LoadTenantsConfig("/nonexistent/tenants.json"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/tenants.json")));
}

TEST(TenantConfigTest, LoadReadsFileAndNamesItInErrors) {
  const std::string path =
      absl::StrCat(::testing::TempDir(), "tenant_config_test_", getpid(), ".json");
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  const std::string text = FullConfig();
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  ASSERT_OK_AND_ASSIGN(TenantsConfig c, LoadTenantsConfig(path));
  EXPECT_EQ(c.tenants.size(), 2u);

  f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs(R"({"tenants": 1})", f);
  std::fclose(f);
  EXPECT_THAT(LoadTenantsConfig(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat(path, ": tenants: must be an array"))));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace openelm::server
