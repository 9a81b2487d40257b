#include "server/http/http_server.h"

#include <openssl/ssl.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/base/json.h"
#include "engine/base/logging.h"
#include "engine/base/status_macros.h"
#include "engine/tokenizer/utf8.h"
#include "server/generate_reactor.h"
#include "server/http/http_call.h"
#include "server/http/http_request.h"
#include "server/http/openai_protocol.h"
#include "server/http/peer_probe.h"

namespace openelm::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

constexpr char kServerHeader[] = "openelm-serve";
// How often a connection whose socket holds unread bytes is checked for a
// hang-up while its call runs (a readable-socket wait cannot tell then).
constexpr std::chrono::milliseconds kHangUpPollInterval(20);

std::optional<absl::string_view> HeaderValue(
    const http::request<http::string_body>& request, absl::string_view name) {
  auto it = request.find(beast::string_view(name.data(), name.size()));
  if (it == request.end()) return std::nullopt;
  return absl::string_view(it->value().data(), it->value().size());
}

// ---- Connections ----

// What the server keeps of each connection, to break the connection <-> call
// reference cycle of connections still open when the I/O threads stop.
class ConnectionBase {
 public:
  virtual ~ConnectionBase() = default;
  virtual void Abandon() = 0;
};

// Per-server state the connections share.
struct ServerState {
  absl::Mutex mu;
  std::vector<std::weak_ptr<ConnectionBase>> open ABSL_GUARDED_BY(mu);
  HttpServerOptions options;
  ServiceCore* core = nullptr;
  AccessLog* access_log = nullptr;
  std::atomic<int> connections{0};
  std::atomic<bool> stopping{false};
};

nlohmann::json ModelJson(const ServingState& state) {
  return {{"id", state.model_info.id()},
          {"object", "model"},
          {"created", 0},
          {"owned_by", "openelm-serve"},
          {"max_model_len", state.model_info.max_context_length()}};
}

// One HTTP/1.1 connection over `Stream` (a beast::tcp_stream, or an
// ssl_stream over one). All of its handlers run on its strand.
template <typename Stream>
class Connection final : public ConnectionBase,
                         public std::enable_shared_from_this<Connection<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  Connection(ServerState* server, Stream stream)
      : server_(server),
        stream_(std::move(stream)),
        stall_timer_(stream_.get_executor()),
        hangup_timer_(stream_.get_executor()) {
    ++server_->connections;
  }
  ~Connection() override {
    Abandon();
    --server_->connections;
  }
  // The I/O threads stopped (or the connection is going): forget the call.
  void Abandon() override {
    if (call_ == nullptr) return;
    call_->Cancel();
    call_->ClearNotify();
    call_.reset();
  }

  void Start() {
    beast::error_code ec;
    const tcp::endpoint remote = Socket().remote_endpoint(ec);
    if (!ec) peer_ = absl::StrCat(remote.address().to_string(), ":", remote.port());
    if constexpr (kTls) {
      Lowest().expires_after(ToChrono(server_->options.idle_timeout));
      stream_.async_handshake(net::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code e) {
                                if (e) return self->Close();
                                self->ReadRequest();
                              });
    } else {
      net::dispatch(stream_.get_executor(),
                    [self = this->shared_from_this()] { self->ReadRequest(); });
    }
  }

 private:
  static std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
    return absl::ToChronoNanoseconds(d);
  }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }
  tcp::socket& Socket() { return Lowest().socket(); }

  void ReadRequest() {
    if (server_->stopping.load()) return Close();
    parser_.emplace();
    parser_->header_limit(http_front::kMaxHeaderBytes);
    parser_->body_limit(static_cast<uint64_t>(server_->options.max_body_bytes));
    Lowest().expires_after(ToChrono(server_->options.idle_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       self->OnRead(ec);
                     });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == beast::error::timeout || ec == net::error::operation_aborted) {
      return Close();
    }
    if (ec == http::error::body_limit) {
      return ReplyError(
          absl::InvalidArgumentError(absl::StrCat(
              "request body: larger than ", server_->options.max_body_bytes, " bytes")),
          /*keep_alive=*/false, 413);
    }
    if (ec) {
      // Malformed HTTP: answer 400 once, then close.
      return ReplyError(absl::InvalidArgumentError(
                            absl::StrCat("malformed HTTP request: ", ec.message())),
                        /*keep_alive=*/false);
    }
    request_ = parser_->release();
    keep_alive_ = request_.keep_alive();
    Lowest().expires_never();
    Route();
  }

  void Route() {
    const beast::string_view method = request_.method_string();
    const beast::string_view target = request_.target();
    const http_front::RouteMatch match =
        http_front::MatchRoute(absl::string_view(method.data(), method.size()),
                               absl::string_view(target.data(), target.size()));
    if (match.route == http_front::Route::kNotFound) {
      return ReplyError(
          http_front::NoRouteError(absl::string_view(target.data(), target.size())),
          keep_alive_);
    }
    if (!match.method_allowed) return MethodNotAllowed(match.allowed);
    switch (match.route) {
      case http_front::Route::kHealth: {
        absl::StatusOr<const ServingState*> ready = server_->core->GetReady();
        if (!ready.ok()) return ReplyError(ready.status(), keep_alive_);
        return Reply(200, "application/json", R"({"status":"ok"})", keep_alive_);
      }
      case http_front::Route::kHealthLive:
        return Reply(200, "application/json", R"({"status":"alive"})", keep_alive_);
      case http_front::Route::kModels:
      case http_front::Route::kModel:
        return Models(match);
      case http_front::Route::kCompletions:
        return Generate(openai::Endpoint::kCompletions);
      case http_front::Route::kChatCompletions:
        return Generate(openai::Endpoint::kChatCompletions);
      case http_front::Route::kNotFound:
        break;
    }
  }

  void MethodNotAllowed(const char* allowed) {
    allow_ = allowed;
    ReplyError(absl::InvalidArgumentError(
                   absl::StrCat("method ", std::string(request_.method_string()),
                                " is not allowed here; use ", allowed)),
               keep_alive_, 405);
  }

  void Models(const http_front::RouteMatch& match) {
    absl::StatusOr<const ServingState*> ready = server_->core->GetReady();
    if (!ready.ok()) {
      server_->core->CountRejection(ready.status(), "", ApiLabel::kHttp);
      return ReplyError(ready.status(), keep_alive_);
    }
    absl::StatusOr<TenantHandle> tenant = server_->core->Authenticate(
        HeaderValue(request_, "authorization"), HeaderValue(request_, "x-api-key"));
    if (!tenant.ok()) {
      server_->core->CountRejection(tenant.status(), "", ApiLabel::kHttp);
      return ReplyError(tenant.status(), keep_alive_);
    }
    const ServingState& state = **ready;
    if (match.route == http_front::Route::kModels) {
      return Reply(
          200, "application/json",
          JsonDump(nlohmann::json{{"object", "list"},
                                  {"data", nlohmann::json::array({ModelJson(state)})}}),
          keep_alive_);
    }
    const absl::string_view id = match.model_id;
    if (id != state.model_info.id()) {
      return ReplyError(
          absl::NotFoundError(absl::StrCat(
              "model: unknown model \"", http_front::QuoteClientText(id, 128),
              "\"; this server serves \"", state.model_info.id(), "\"")),
          keep_alive_);
    }
    return Reply(200, "application/json", JsonDump(ModelJson(state)), keep_alive_);
  }

  void Generate(openai::Endpoint endpoint) {
    const char* method = endpoint == openai::Endpoint::kCompletions
                             ? "http:/v1/completions"
                             : "http:/v1/chat/completions";
    auto call = std::make_shared<http_front::HttpCall>(
        server_->core, server_->access_log, server_->options.max_stream_backlog_bytes,
        server_->options.default_request_timeout, method,
        server_->access_log != nullptr ? peer_ : std::string());
    call_ = call;
    stall_armed_ = false;
    auto self = this->shared_from_this();
    auto executor = stream_.get_executor();
    call->SetNotify([self, executor] { net::post(executor, [self] { self->Pump(); }); });
    WatchForDisconnect();
    http_front::HttpCall::Input input;
    input.endpoint = endpoint;
    input.body = std::move(request_.body());
    auto copy = [this](absl::string_view name) -> std::optional<std::string> {
      std::optional<absl::string_view> v = HeaderValue(request_, name);
      if (!v.has_value()) return std::nullopt;
      return std::string(*v);
    };
    input.authorization = copy("authorization");
    input.x_api_key = copy("x-api-key");
    input.timeout = copy("x-request-timeout");
    if (!server_->core->Schedule(
            [call, input = std::move(input)] { call->Admit(input); })) {
      call->Fail(server_->core->BusyStatus(), absl::Seconds(1));
    }
  }

  // ---- Output of the current call ----

  void Pump() {
    if (call_ == nullptr) return;
    if (!stall_armed_ && call_->overflowed()) ArmStall();
    if (writing_) return;
    http_front::HttpCall::Output out;
    if (!call_->TakeOutput(&out)) return;
    if (out.head && !out.stream) {
      // A whole response: the JSON body or an error.
      return Reply(out.status, "application/json", std::move(out.data),
                   keep_alive_ && !client_gone_, out.retry_after_s, /*ends_call=*/true);
    }
    writing_ = true;
    if (out.head) {
      auto head = std::make_shared<http::response<http::empty_body>>(http::status::ok,
                                                                     request_.version());
      head->set(http::field::server, kServerHeader);
      head->set(http::field::content_type, "text/event-stream");
      head->set(http::field::cache_control, "no-cache");
      // HTTP/1.0 has no chunked encoding: its stream is the raw events, and
      // the closed connection marks the end.
      chunked_ = request_.version() >= 11;
      if (!chunked_) keep_alive_ = false;
      head->keep_alive(keep_alive_);
      head->chunked(chunked_);
      auto serializer =
          std::make_shared<http::response_serializer<http::empty_body>>(*head);
      pending_data_ = std::move(out.data);
      pending_end_ = out.end;
      if (out.close) keep_alive_ = false;
      http::async_write_header(stream_, *serializer,
                               [self = this->shared_from_this(), head, serializer](
                                   beast::error_code ec, size_t) {
                                 self->writing_ = false;
                                 if (ec) return self->StreamBroken();
                                 self->WriteChunk(std::move(self->pending_data_),
                                                  self->pending_end_);
                               });
      return;
    }
    writing_ = false;
    if (out.close) keep_alive_ = false;
    WriteChunk(std::move(out.data), out.end);
  }

  void WriteChunk(std::string data, bool end) {
    if (data.empty() && !end) return Pump();
    writing_ = true;
    chunk_ = std::move(data);
    auto done = [self = this->shared_from_this(), end](beast::error_code ec, size_t) {
      if (ec) {
        self->writing_ = false;
        return self->StreamBroken();
      }
      if (!end) {
        self->writing_ = false;
        return self->Pump();
      }
      if (!self->chunked_) {
        self->writing_ = false;
        return self->EndCall(/*keep_alive=*/false);
      }
      net::async_write(self->stream_, http::make_chunk_last(),
                       [self](beast::error_code e, size_t) {
                         self->writing_ = false;
                         if (e) return self->StreamBroken();
                         self->EndCall(self->keep_alive_ && !self->client_gone_);
                       });
    };
    if (chunk_.empty()) {
      done(beast::error_code(), 0);
      return;
    }
    if (!chunked_) {
      net::async_write(stream_, net::buffer(chunk_), std::move(done));
      return;
    }
    net::async_write(stream_, http::make_chunk(net::buffer(chunk_)), std::move(done));
  }

  // The client is gone or too slow: stop its requests; the call still ends
  // (its final event cannot be written) when the engine finishes them.
  void StreamBroken() {
    client_gone_ = true;
    if (call_ != nullptr) call_->Cancel();
    Close();
  }

  void ArmStall() {
    stall_armed_ = true;
    stall_timer_.expires_after(ToChrono(kStalledWriteGrace));
    stall_timer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec || !self->writing_) return;  // cancelled, or the write went through
      OPENELM_LOG(WARNING) << "HTTP client " << self->peer_
                           << " accepted no data after the backlog cut; closing";
      self->StreamBroken();
    });
  }

  // A wait on the socket while a call runs: readable with nothing to read
  // means the client closed (or reset) its side. The wake-up can be stale
  // (asio reports readiness it saw earlier), so the socket is probed without
  // waiting and the watch is armed again when it is quiet.
  void WatchForDisconnect() {
    const uint64_t generation = ++watch_generation_;
    Socket().async_wait(tcp::socket::wait_read, [self = this->shared_from_this(),
                                                 generation](beast::error_code ec) {
      if (generation != self->watch_generation_ || self->call_ == nullptr) return;
      if (ec == net::error::operation_aborted) return;
      if (ec) return self->ClientGone();
      switch (http_front::ProbePeer(self->Socket().native_handle())) {
        case http_front::PeerState::kQuiet:
          return self->WatchForDisconnect();
        case http_front::PeerState::kGone:
          return self->ClientGone();
        case http_front::PeerState::kBytesWaiting:
          // Bytes wait unread (a pipelined request, or TLS records such as
          // a close_notify): the socket stays readable, so from now on the
          // peer's hang-up is polled for instead.
          return self->PollForHangUp(generation);
      }
    });
  }

  // Every kHangUpPollInterval while the call runs: has the peer shut its
  // side (FIN or reset), whatever unread bytes precede that?
  void PollForHangUp(uint64_t generation) {
    pollfd p{};
    p.fd = Socket().native_handle();
    p.events = POLLRDHUP;
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      return ClientGone();
    }
    hangup_timer_.expires_after(kHangUpPollInterval);
    hangup_timer_.async_wait(
        [self = this->shared_from_this(), generation](beast::error_code ec) {
          if (ec || generation != self->watch_generation_ || self->call_ == nullptr) {
            return;
          }
          self->PollForHangUp(generation);
        });
  }

  void ClientGone() {
    client_gone_ = true;
    if (call_ != nullptr) call_->Cancel();
  }

  void EndCall(bool keep_alive) {
    if (call_ != nullptr) {
      call_->ClearNotify();
      call_.reset();
    }
    ++watch_generation_;
    stall_timer_.cancel();
    hangup_timer_.cancel();
    beast::error_code ignored;
    Socket().cancel(ignored);  // the disconnect watch
    if (keep_alive && !server_->stopping.load()) return ReadRequest();
    Close();
  }

  void Reply(int status, const char* content_type, std::string body, bool keep_alive,
             std::optional<int64_t> retry_after_s = std::nullopt,
             bool ends_call = false) {
    auto response = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(status),
        request_.version() == 0 ? 11 : request_.version());
    response->set(http::field::server, kServerHeader);
    response->set(http::field::content_type, content_type);
    if (retry_after_s.has_value()) {
      response->set(http::field::retry_after, std::to_string(*retry_after_s));
    }
    if (!allow_.empty()) {
      response->set(http::field::allow, allow_);
      allow_.clear();
    }
    response->keep_alive(keep_alive);
    if (request_.method() != http::verb::head) response->body() = std::move(body);
    response->prepare_payload();
    writing_ = true;
    http::async_write(stream_, *response,
                      [self = this->shared_from_this(), response, keep_alive, ends_call](
                          beast::error_code ec, size_t) {
                        self->writing_ = false;
                        if (ends_call || self->call_ != nullptr) {
                          return self->EndCall(!ec && keep_alive);
                        }
                        if (ec || !keep_alive) return self->Close();
                        self->ReadRequest();
                      });
  }

  void ReplyError(const absl::Status& status, bool keep_alive,
                  std::optional<int> http_status = std::nullopt) {
    Reply(http_status.value_or(openai::HttpStatusCode(status.code())), "application/json",
          openai::ErrorBody(status), keep_alive);
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    // The call ends when its engine requests finish; nothing more is written.
    Abandon();
    stall_timer_.cancel();
    hangup_timer_.cancel();
    beast::error_code ignored;
    Socket().shutdown(tcp::socket::shutdown_both, ignored);
    Socket().close(ignored);
  }

  ServerState* const server_;
  Stream stream_;
  net::steady_timer stall_timer_;
  net::steady_timer hangup_timer_;  // PollForHangUp
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  std::string peer_;
  std::string allow_;
  bool keep_alive_ = true;
  bool chunked_ = true;  // the current event stream's framing (HTTP/1.1)
  std::shared_ptr<http_front::HttpCall> call_;
  bool writing_ = false;
  bool stall_armed_ = false;
  bool client_gone_ = false;
  bool closed_ = false;
  uint64_t watch_generation_ = 0;
  std::string chunk_;
  std::string pending_data_;
  bool pending_end_ = false;
};

}  // namespace

// ---- HttpServer ----

class HttpServer::Impl {
 public:
  explicit Impl(int threads) : ioc_(threads), acceptor_(net::make_strand(ioc_)) {}

  absl::Status Open(const HttpServerOptions& options, ServiceCore* core,
                    AccessLog* access_log) {
    state_.options = options;
    state_.core = core;
    state_.access_log = access_log;
    if (!options.tls.cert_path.empty()) {
      OPENELM_RETURN_IF_ERROR(BuildServerCredentials(options.tls).status());
      tls_.emplace(net::ssl::context::tls_server);
      tls_->set_options(net::ssl::context::default_workarounds |
                        net::ssl::context::no_sslv2 | net::ssl::context::no_sslv3 |
                        net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1);
      beast::error_code ec;
      tls_->use_certificate_chain_file(options.tls.cert_path, ec);
      if (!ec)
        tls_->use_private_key_file(options.tls.key_path, net::ssl::context::pem, ec);
      if (!ec && !options.tls.client_ca_path.empty()) {
        tls_->load_verify_file(options.tls.client_ca_path, ec);
        tls_->set_verify_mode(net::ssl::verify_peer |
                              net::ssl::verify_fail_if_no_peer_cert);
      }
      if (ec) {
        return absl::InvalidArgumentError(
            absl::StrCat("HTTP TLS setup failed: ", ec.message()));
      }
    }
    beast::error_code ec;
    tcp::endpoint endpoint;
    const net::ip::address address = net::ip::make_address(options.host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, static_cast<uint16_t>(options.port));
    } else {  // a name such as "localhost"
      tcp::resolver resolver(ioc_);
      auto results = resolver.resolve(options.host, std::to_string(options.port), ec);
      if (ec || results.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--host=", options.host, " cannot be resolved for HTTP"));
      }
      endpoint = results.begin()->endpoint();
    }
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", options.host,
                                                 ":", options.port, ": ", ec.message()));
    }
    port_ = acceptor_.local_endpoint().port();
    Accept();
    for (int i = 0; i < std::max(1, options.num_threads); ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    return absl::OkStatus();
  }

  int port() const { return port_; }

  void Shutdown(absl::Duration grace) {
    if (shut_down_) return;
    shut_down_ = true;
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    state_.stopping.store(true);
    // Responses still being written (every call has its final event by now).
    const absl::Time deadline = absl::Now() + grace;
    while (state_.core->tracker().active() > 0 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ioc_.stop();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    // Connections still open hold their call and the call holds them.
    std::vector<std::weak_ptr<ConnectionBase>> open;
    {
      absl::MutexLock lock(&state_.mu);
      open.swap(state_.open);
    }
    for (auto& weak : open) {
      if (std::shared_ptr<ConnectionBase> c = weak.lock()) c->Abandon();
    }
  }

 private:
  void Accept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           [this](beast::error_code ec, tcp::socket socket) {
                             if (ec == net::error::operation_aborted) return;
                             if (!ec) OnAccept(std::move(socket));
                             if (acceptor_.is_open()) Accept();
                           });
  }

  void OnAccept(tcp::socket socket) {
    if (state_.connections.load() >= state_.options.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);
      return;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    if (state_.options.socket_send_buffer_bytes > 0) {
      socket.set_option(
          net::socket_base::send_buffer_size(state_.options.socket_send_buffer_bytes),
          ignored);
    }
    if (tls_.has_value()) {
      Track(std::make_shared<Connection<beast::ssl_stream<beast::tcp_stream>>>(
                &state_, beast::ssl_stream<beast::tcp_stream>(std::move(socket), *tls_)))
          ->Start();
    } else {
      Track(std::make_shared<Connection<beast::tcp_stream>>(
                &state_, beast::tcp_stream(std::move(socket))))
          ->Start();
    }
  }

  template <typename C>
  std::shared_ptr<C> Track(std::shared_ptr<C> connection) {
    absl::MutexLock lock(&state_.mu);
    // Drop the entries of closed connections now and then.
    if (state_.open.size() >= 256) {
      std::erase_if(state_.open, [](const auto& w) { return w.expired(); });
    }
    state_.open.push_back(connection);
    return connection;
  }

  ServerState state_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::optional<net::ssl::context> tls_;
  std::vector<std::thread> threads_;
  int port_ = 0;
  bool shut_down_ = false;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(
    const HttpServerOptions& options, ServiceCore* core, AccessLog* access_log) {
  auto impl = std::make_unique<Impl>(std::max(1, options.num_threads));
  OPENELM_RETURN_IF_ERROR(impl->Open(options, core, access_log));
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

int HttpServer::port() const { return impl_->port(); }

void HttpServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }

}  // namespace openelm::server
