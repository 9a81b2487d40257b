#ifndef OPENELM_TESTS_SERVER_TENANCY_TEST_UTIL_H_
#define OPENELM_TESTS_SERVER_TENANCY_TEST_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "openelm/v1/inference.grpc.pb.h"
#include "server/options.h"
#include "server/tenants/tenant_config.h"
#include "tests/server/tiny_server.h"

// Helpers for the multi-tenant server tests: tenants files, server options
// for the tiny model, and clients that present an API key.
namespace openelm::testing {

// One tenant of a generated tenants file. `limits_json` is the body of the
// "limits" object (e.g. `"max_concurrent_requests": 1`), possibly empty.
struct TestTenant {
  std::string id;
  std::string api_key;
  double weight = 1.0;
  std::string limits_json;
};

// `shared_prefixes_json`: the body of the "shared_prefixes" array, if any.
inline std::string TenantsJson(const std::vector<TestTenant>& tenants,
                               bool auth_enabled = true,
                               const std::string& shared_prefixes_json = "") {
  std::vector<std::string> items;
  for (const TestTenant& t : tenants) {
    items.push_back(absl::StrCat(R"({"id": ")", t.id, R"(", "api_key_sha256": [")",
                                 ::openelm::server::HashApiKey(t.api_key),
                                 R"("], "weight": )", t.weight, R"(, "limits": {)",
                                 t.limits_json, "}}"));
  }
  return absl::StrCat(R"({"auth_enabled": )", auth_enabled ? "true" : "false",
                      R"(, "shared_prefixes": [)", shared_prefixes_json, "]",
                      R"(, "tenants": [)", absl::StrJoin(items, ", "), "]}");
}

// Writes the file in one go via a temporary and a rename (as editors do).
inline void WriteTenantsFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
  }
  std::rename(tmp.c_str(), path.c_str());
}

// TinyServerOptions plus a deeper queue and a 100 ms tenants-file poll.
inline ::openelm::server::ServerOptions TinyTenancyOptions(const std::string& model_dir,
                                                           const std::string& tokenizer) {
  ::openelm::server::ServerOptions o = TinyServerOptions(model_dir, tokenizer);
  o.engine.max_queued_requests = 256;
  o.tenants_poll_interval = absl::Milliseconds(100);
  return o;
}

// A client context carrying `api_key` as a Bearer token ("" = no key) and a
// deadline of `timeout`.
inline std::unique_ptr<grpc::ClientContext> KeyedContext(
    const std::string& api_key, absl::Duration timeout = absl::Seconds(30)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!api_key.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
  return ctx;
}

inline v1::GenerateRequest GreedyRequest(const std::string& text, int max_tokens) {
  v1::GenerateRequest req;
  req.set_text(text);
  req.mutable_options()->set_max_tokens(max_tokens);
  req.mutable_options()->set_temperature(0.0f);
  req.mutable_options()->set_ignore_eos(true);
  return req;
}

// The value of trailing metadata `key`, or "" when absent.
inline std::string Trailer(const grpc::ClientContext& ctx, const std::string& key) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find(key);
  if (it == trailers.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace openelm::testing

#endif  // OPENELM_TESTS_SERVER_TENANCY_TEST_UTIL_H_
