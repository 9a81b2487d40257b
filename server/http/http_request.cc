#include "server/http/http_request.h"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/utf8.h"

namespace openelm::server::http_front {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

constexpr absl::string_view kModelsPrefix = "/v1/models/";

}  // namespace

RouteMatch MatchRoute(absl::string_view method, absl::string_view target) {
  target = target.substr(0, target.find('?'));
  RouteMatch m;
  const bool get = method == "GET" || method == "HEAD";
  if (target == "/health" || target == "/health/ready" || target == "/health/live") {
    m.route = target == "/health/live" ? Route::kHealthLive : Route::kHealth;
    m.allowed = "GET, HEAD";
    m.method_allowed = get;
  } else if (target == "/v1/models") {
    m.route = Route::kModels;
    m.allowed = "GET";
    m.method_allowed = method == "GET";
  } else if (absl::StartsWith(target, kModelsPrefix) &&
             target.size() > kModelsPrefix.size()) {
    m.route = Route::kModel;
    m.allowed = "GET";
    m.method_allowed = method == "GET";
    m.model_id = std::string(target.substr(kModelsPrefix.size()));
  } else if (target == "/v1/completions" || target == "/v1/chat/completions") {
    m.route = target == "/v1/completions" ? Route::kCompletions : Route::kChatCompletions;
    m.allowed = "POST";
    m.method_allowed = method == "POST";
  }
  return m;
}

std::string QuoteClientText(absl::string_view text, size_t max_bytes) {
  // Only the input's first max_bytes + 4 bytes can reach the quote: every
  // input byte gives at least one output byte, and a character that starts
  // at or before byte max_bytes is at most 4 bytes long, so it is parsed the
  // same way in the cut input as in the whole. The rest is never scanned.
  const absl::string_view head = text.substr(0, max_bytes + 4);
  return std::string(utf8::Prefix(utf8::ReplaceInvalid(head), max_bytes));
}

absl::Status NoRouteError(absl::string_view target) {
  return absl::NotFoundError(absl::StrCat("no route for ", QuoteClientText(target, 128)));
}

absl::StatusOr<std::vector<GenerateSpec>> BuildSpecs(const openai::HttpRequest& request,
                                                     const Tokenizer& tokenizer,
                                                     const RequestLimits& limits) {
  std::vector<GenerateSpec> specs;
  if (request.endpoint == openai::Endpoint::kChatCompletions) {
    absl::StatusOr<GenerateSpec> spec =
        ParseChatRequest(request.chat, tokenizer, limits, openai::ChatDialect());
    if (!spec.ok()) return spec.status();
    specs.push_back(*std::move(spec));
    return specs;
  }
  const bool several = request.prompts.size() > 1;
  for (size_t i = 0; i < request.prompts.size(); ++i) {
    ApiDialect dialect = openai::CompletionsDialect();
    if (several) {
      dialect.text = absl::StrCat("prompt[", i, "]");
      dialect.token_ids = dialect.text;
    }
    absl::StatusOr<GenerateSpec> spec =
        ParseGenerateRequest(request.prompts[i], tokenizer, limits, dialect);
    if (!spec.ok()) return spec.status();
    specs.push_back(*std::move(spec));
  }
  if (specs.empty()) return absl::InvalidArgumentError("prompt: required");
  return specs;
}

absl::StatusOr<RawRequest> ParseRawRequest(absl::string_view bytes,
                                           int64_t max_body_bytes) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kMaxHeaderBytes);
  parser.body_limit(static_cast<uint64_t>(max_body_bytes));
  parser.eager(true);
  beast::error_code ec;
  size_t used = 0;
  while (!ec && !parser.is_done() && used < bytes.size()) {
    const size_t n =
        parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    if (n == 0 && !ec) break;
    used += n;
  }
  // put_eof only after some input (Beast asserts it): with nothing, or only
  // part of a request, the request is incomplete.
  if (!ec && !parser.is_done() && parser.got_some()) parser.put_eof(ec);
  if (ec == http::error::body_limit) {
    return absl::ResourceExhaustedError(
        absl::StrCat("request body: larger than ", max_body_bytes, " bytes"));
  }
  if (ec || !parser.is_done()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed HTTP request: ", ec ? ec.message() : std::string("incomplete")));
  }
  http::request<http::string_body> request = parser.release();
  RawRequest raw;
  raw.method = std::string(request.method_string());
  raw.target = std::string(request.target());
  raw.body = std::move(request.body());
  raw.keep_alive = request.keep_alive();
  auto header = [&request](http::field field) -> std::optional<std::string> {
    auto it = request.find(field);
    if (it == request.end()) return std::nullopt;
    return std::string(it->value());
  };
  raw.authorization = header(http::field::authorization);
  if (auto it = request.find("x-api-key"); it != request.end()) {
    raw.x_api_key = std::string(it->value());
  }
  if (auto it = request.find("x-request-timeout"); it != request.end()) {
    raw.request_timeout = std::string(it->value());
  }
  return raw;
}

}  // namespace openelm::server::http_front
