#ifndef OPENELM_SERVER_HTTP_HTTP_REQUEST_H_
#define OPENELM_SERVER_HTTP_HTTP_REQUEST_H_

// The HTTP front's request handling that needs no socket: reading one request
// from bytes under the server's limits, routing, and turning a parsed OpenAI
// body into engine specs through the shared request parser. The connections
// of http_server.cc use exactly these; the fuzz target
// (tests/fuzz/fuzz_http_request.cc) drives them with arbitrary bytes.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/request/request_types.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/http/openai_protocol.h"
#include "server/request_parser.h"

namespace openelm::server::http_front {

// Largest request line plus headers accepted.
inline constexpr uint32_t kMaxHeaderBytes = 16 << 10;

enum class Route {
  kHealth,           // GET|HEAD /health, /health/ready: 200 when ready
  kHealthLive,       // GET|HEAD /health/live: 200 while the process serves
  kModels,           // GET /v1/models
  kModel,            // GET /v1/models/{id}
  kCompletions,      // POST /v1/completions
  kChatCompletions,  // POST /v1/chat/completions
  kNotFound,
};

struct RouteMatch {
  Route route = Route::kNotFound;
  bool method_allowed = true;
  const char* allowed = "";  // the method(s) the route takes, for 405 / Allow
  std::string model_id;      // kModel
};

// `target` may carry a query string (ignored).
RouteMatch MatchRoute(absl::string_view method, absl::string_view target);

// NOT_FOUND naming `target` (its first 128 bytes, invalid UTF-8 shown as
// U+FFFD), for a request that matches no route.
absl::Status NoRouteError(absl::string_view target);

// `text` with every byte that does not start a valid UTF-8 character
// replaced by U+FFFD, cut to at most `max_bytes` at a character boundary:
// client bytes quoted in an error message.
std::string QuoteClientText(absl::string_view text, size_t max_bytes);

// The engine requests of a parsed body: one per prompt (completions) or one
// (chat), validated, tokenized and fitted to the context by the shared
// parser under the HTTP names (a list of prompts names each "prompt[i]").
absl::StatusOr<std::vector<GenerateSpec>> BuildSpecs(const openai::HttpRequest& request,
                                                     const Tokenizer& tokenizer,
                                                     const RequestLimits& limits);

// One complete HTTP/1.x request read from `bytes` with the parser settings of
// the connections (header and body limits). kInvalidArgument for malformed
// or incomplete input, kResourceExhausted for a body over the limit.
struct RawRequest {
  std::string method;
  std::string target;
  std::string body;
  std::optional<std::string> authorization;
  std::optional<std::string> x_api_key;
  std::optional<std::string> request_timeout;
  bool keep_alive = true;
};
absl::StatusOr<RawRequest> ParseRawRequest(absl::string_view bytes,
                                           int64_t max_body_bytes);

}  // namespace openelm::server::http_front

#endif  // OPENELM_SERVER_HTTP_HTTP_REQUEST_H_
