#include "client/bench/http_runner.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace openelm::bench {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

std::string RequestBody(const v1::GenerateRequest& request) {
  nlohmann::json body;
  if (request.has_token_ids()) {
    body["prompt"] = std::vector<int32_t>(request.token_ids().ids().begin(),
                                          request.token_ids().ids().end());
  } else {
    body["prompt"] = request.text();
  }
  if (!request.model().empty()) body["model"] = request.model();
  const v1::GenerationOptions& o = request.options();
  if (o.has_max_tokens()) body["max_tokens"] = o.max_tokens();
  if (o.has_temperature()) body["temperature"] = o.temperature();
  if (o.has_seed()) body["seed"] = o.seed();
  if (o.ignore_eos()) body["ignore_eos"] = true;
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  return body.dump();
}

// One streaming request on a fresh connection; fills `record`.
void RunOne(const std::string& host, int port, const std::string& api_key,
            const PlannedRequest& planned, absl::Time run_start, RequestRecord* record) {
  record->tenant = planned.tenant;
  record->prompt_tokens = planned.planned_prompt_tokens;
  const absl::Time send = absl::Now();
  record->send_offset = send - run_start;
  auto fail = [&](const std::string& why) {
    record->success = false;
    record->code_name = "http_error";
    record->error = why;
    record->e2e = absl::Now() - send;
  };
  net::io_context ioc;
  tcp::socket socket(ioc);
  beast::error_code ec;
  socket.connect(tcp::endpoint(net::ip::make_address(host, ec), port), ec);
  if (ec) return fail(absl::StrCat("connect: ", ec.message()));
  socket.set_option(tcp::no_delay(true), ec);
  http::request<http::string_body> req(http::verb::post, "/v1/completions", 11);
  req.set(http::field::host, host);
  req.set(http::field::content_type, "application/json");
  if (!api_key.empty()) req.set(http::field::authorization, "Bearer " + api_key);
  req.body() = RequestBody(planned.request);
  req.prepare_payload();
  http::write(socket, req, ec);
  if (ec) return fail(absl::StrCat("write: ", ec.message()));

  beast::flat_buffer buffer;
  http::response_parser<http::empty_body> head_parser;
  http::read_header(socket, buffer, head_parser, ec);
  if (ec) return fail(absl::StrCat("read: ", ec.message()));
  const int status = head_parser.get().result_int();
  // The body as it arrives: the parser hands over each chunk's bytes.
  http::response_parser<http::buffer_body> parser(std::move(head_parser));
  std::string pending;
  char chunk[16 << 10];
  absl::Time last_text;
  int32_t text_events = 0;
  bool done = false;
  std::string error_text;
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    // read_some: return with whatever arrived (read() would wait to fill
    // the buffer, delaying every chunk).
    http::read_some(socket, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail(absl::StrCat("read: ", ec.message()));
    pending.append(chunk, sizeof(chunk) - parser.get().body().size);
    for (size_t end = pending.find("\n\n"); end != std::string::npos;
         end = pending.find("\n\n")) {
      const std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      const absl::Time now = absl::Now();
      if (event == "data: [DONE]") {
        done = true;
        continue;
      }
      if (status != 200 || absl::StrContains(event, "\"error\"")) {
        error_text = event.substr(0, 300);
        continue;
      }
      if (absl::StrContains(event, "\"usage\":{")) {
        nlohmann::json j = nlohmann::json::parse(event.substr(6), nullptr, false);
        if (!j.is_discarded() && j["usage"].is_object()) {
          record->output_tokens = j["usage"].value("completion_tokens", 0);
          record->prompt_tokens =
              j["usage"].value("prompt_tokens", record->prompt_tokens);
        }
        continue;
      }
      // One chunk per engine output of the choice, text or not (text may be
      // held back until a UTF-8 character or a stop string is complete).
      if (absl::StrContains(event, "\"choices\":[{") &&
          absl::StrContains(event, "\"finish_reason\":null")) {
        if (text_events == 0) {
          record->ttft = now - send;
        } else {
          record->itl.push_back(now - last_text);
        }
        last_text = now;
        ++text_events;
      }
    }
  }
  record->e2e = absl::Now() - send;
  record->status_code = status == 200 ? 0 : status;
  record->success = status == 200 && done && error_text.empty();
  record->code_name = record->success ? "ok" : absl::StrCat("http_", status);
  if (!record->success) {
    record->error = error_text.empty() ? pending.substr(0, 300) : error_text;
  }
}

}  // namespace

RunResult RunHttpBenchmark(const std::string& host, int port, const std::string& api_key,
                           absl::Span<const PlannedRequest> requests,
                           const RunnerOptions& options) {
  RunResult result;
  result.records.resize(requests.size());
  const int32_t total = static_cast<int32_t>(requests.size());
  absl::Mutex mu;
  int32_t in_flight = 0;
  absl::Time last_done;
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  last_done = start;
  for (int32_t i = 0; i < total; ++i) {
    const PlannedRequest& planned = requests[i];
    const absl::Time due = start + planned.arrival;
    if (due > absl::Now()) absl::SleepFor(due - absl::Now());
    {
      absl::MutexLock lock(&mu);
      auto has_slot = [&] {
        mu.AssertHeld();
        return options.max_concurrency <= 0 || in_flight < options.max_concurrency;
      };
      mu.Await(absl::Condition(&has_slot));
      ++in_flight;
    }
    const std::string& key =
        planned.tenant < static_cast<int32_t>(options.tenant_api_keys.size())
            ? options.tenant_api_keys[planned.tenant]
            : api_key;
    threads.emplace_back([&, i, key] {
      RunOne(host, port, key, requests[i], start, &result.records[i]);
      absl::MutexLock lock(&mu);
      --in_flight;
      last_done = std::max(last_done, absl::Now());
    });
  }
  for (std::thread& t : threads) t.join();
  result.duration = last_done - start;
  return result;
}

}  // namespace openelm::bench
