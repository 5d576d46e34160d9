#include "net/http_fetch.h"

#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <cctype>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "base/thread_name.h"
#include "proto/http.h"

namespace mte::net {
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxUrlBytes = 2048;
constexpr size_t kMaxHostBytes = 253;      // RFC 1035 §2.3.4, in text form
constexpr uint16_t kDefaultHttpPort = 80;  // RFC 9110 §4.2.1

// A parsed "http://host[:port]/path" (RFC 3986 §3, RFC 9110 §4.2.1).
struct Target {
  std::string host;  // for the resolver: an IP literal without brackets, or a name
  std::optional<asio::ip::address> literal;  // set for IP literals: no name lookup
  uint16_t port = kDefaultHttpPort;
  std::string authority;  // the URL's authority as written, for Host (RFC 9110 §7.2)
  std::string display;    // "host:port" / "[v6]:port", for messages
  std::string path;       // origin-form request-target (RFC 9112 §3.2.1)
};

bool IsHostNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.';
}

Result<Target> ParseUrl(std::string_view url) {
  auto bad = [url](std::string_view why) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "bad OCSP responder URL '" + std::string(url.substr(0, kMaxUrlBytes)) +
                    "': " + std::string(why));
  };
  if (url.size() > kMaxUrlBytes) return bad("longer than 2048 bytes");
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return bad("contains a space, control or non-ASCII character");
  }
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return bad("expected http://host[:port]/path");
  std::string scheme(url.substr(0, scheme_end));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // RFC 3986 §3.1: the scheme is case-insensitive.
  if (scheme == "https") {
    return bad(
        "https is not supported; OCSP responses are signed and use plain http "
        "(RFC 6960 A.1)");
  }
  if (scheme != "http") return bad("the scheme must be http");

  std::string_view rest = url.substr(scheme_end + 3);
  size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.empty()) return bad("no host");
  if (authority.find('@') != std::string_view::npos) return bad("userinfo is not allowed");

  Target target;
  target.authority = std::string(authority);
  std::string_view after_host;
  if (authority.front() == '[') {  // RFC 3986 §3.2.2 IP-literal
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 literal");
    target.host = std::string(authority.substr(1, close - 1));
    boost::system::error_code ec;
    auto v6 = asio::ip::make_address_v6(target.host, ec);
    // Zone identifiers (RFC 6874) are link-local only; an OCSP responder never needs one.
    if (ec || target.host.find('%') != std::string::npos) return bad("bad IPv6 literal");
    target.literal = asio::ip::address(v6);
    after_host = authority.substr(close + 1);
  } else {
    size_t colon = authority.find(':');
    target.host = std::string(authority.substr(0, colon));
    after_host = colon == std::string_view::npos ? std::string_view() : authority.substr(colon);
    if (target.host.empty()) return bad("no host");
    if (target.host.size() > kMaxHostBytes) return bad("host name too long");
    bool dotted_digits = true;
    for (char c : target.host) {
      if (!IsHostNameChar(c)) return bad("bad character in the host");
      if (std::isdigit(static_cast<unsigned char>(c)) == 0 && c != '.') dotted_digits = false;
    }
    if (dotted_digits) {
      // All digits and dots is meant as IPv4 (RFC 3986 §3.2.2); never hand getaddrinfo a
      // shorthand such as "127.1".
      boost::system::error_code ec;
      auto v4 = asio::ip::make_address_v4(target.host, ec);
      if (ec) return bad("bad IPv4 address");
      target.literal = asio::ip::address(v4);
    }
  }
  if (!after_host.empty()) {
    if (after_host.front() != ':') return bad("unexpected characters after the host");
    std::string_view digits = after_host.substr(1);
    if (digits.empty()) return bad("empty port");
    if (digits.size() > 5) return bad("port out of range");
    unsigned value = 0;
    for (char c : digits) {
      if (std::isdigit(static_cast<unsigned char>(c)) == 0) return bad("bad port");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return bad("port " + std::to_string(value) + " out of range");
    target.port = static_cast<uint16_t>(value);
  }
  target.display =
      (target.literal && target.literal->is_v6() ? "[" + target.host + "]" : target.host) + ":" +
      std::to_string(target.port);

  tail = tail.substr(0, tail.find('#'));  // RFC 3986 §3.5: the fragment is not sent
  if (tail.empty()) {
    target.path = "/";
  } else if (tail.front() == '?') {
    target.path = "/" + std::string(tail);
  } else {
    target.path = std::string(tail);
  }
  return target;
}

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

}  // namespace

struct FetchState;

struct HttpFetcher::Impl {
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(ioc);
  std::thread thread;
  std::mutex mu;
  bool stopping = false;                                 // guarded by mu
  std::unordered_set<std::shared_ptr<FetchState>> live;  // guarded by mu: posted and not finished

  void Shutdown();
};

// One exchange. Everything but construction runs on the fetcher's thread. Finish delivers the
// result once, whoever calls it first: the exchange itself, its deadline timer, or shutdown. The
// coroutine only learns of an early Finish when its pending operation completes (cancelled), and
// then stops without touching the result.
struct FetchState : std::enable_shared_from_this<FetchState> {
  FetchState(HttpFetcher::Impl& owner_impl, FetchRequest req, FetchDone done_fn)
      : owner(owner_impl),
        request(std::move(req)),
        done(std::move(done_fn)),
        resolver(owner_impl.ioc),
        socket(owner_impl.ioc),
        timer(owner_impl.ioc) {}

  void Finish(Result<FetchResponse> result) {
    if (finished) return;
    finished = true;
    auto self = shared_from_this();
    boost::system::error_code ignored;
    timer.cancel();
    resolver.cancel();
    socket.close(ignored);
    {
      std::lock_guard lock(owner.mu);
      owner.live.erase(self);
    }
    FetchDone callback = std::move(done);
    done = nullptr;
    callback(std::move(result));
  }

  HttpFetcher::Impl& owner;
  FetchRequest request;
  FetchDone done;
  std::string peer = "OCSP responder";  // "OCSP responder host:port" once the URL is parsed
  tcp::resolver resolver;
  tcp::socket socket;
  asio::steady_timer timer;
  bool finished = false;
};

namespace {

Error Closed(const FetchState& fetch) {
  return Error{ErrorKind::kIo, Errc::kClosed,
               fetch.peer + ": fetch cancelled because the HTTP fetcher is shutting down"};
}

// The value a coroutine returns once Finish has already run; nobody reads it.
tl::unexpected<Error> Superseded() {
  return Fail(ErrorKind::kInternal, Errc::kInvariant, "fetch already finished");
}

FetchResponse ToFetchResponse(proto::HttpResponse response) {
  FetchResponse out;
  out.status = response.status;
  out.content_type = std::string(response.headers.Get("Content-Type").value_or(""));
  out.body.assign(response.body.begin(), response.body.end());
  return out;
}

asio::awaitable<Result<FetchResponse>> Run(std::shared_ptr<FetchState> f) {
  if (f->finished) co_return Superseded();
  const FetchRequest& req = f->request;
  auto parsed = ParseUrl(req.url);
  if (!parsed) co_return Fail(parsed.error());
  Target target = std::move(*parsed);
  if (req.timeout.count() <= 0) {
    co_return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "OCSP fetch timeout must be positive");
  }
  if (HasLineBreak(req.content_type) || HasLineBreak(req.accept)) {
    co_return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                   "OCSP fetch Content-Type/Accept contain a line break");
  }
  f->peer = "OCSP responder " + target.display;

  // One deadline for the whole exchange; every await below ends when it passes.
  f->timer.expires_after(req.timeout);
  f->timer.async_wait([self = f](const boost::system::error_code& ec) {
    if (ec) return;
    self->Finish(Fail(ErrorKind::kTimeout, Errc::kDeadline,
                      self->peer + " did not answer within " +
                          std::to_string(self->request.timeout.count()) + " ms"));
  });

  std::vector<tcp::endpoint> endpoints;
  if (target.literal) {
    // No resolver for IP literals: Asio resolves on one shared thread, and a hung name lookup
    // must not hold up fetches that need none.
    endpoints.emplace_back(*target.literal, target.port);
  } else {
    auto [ec, results] = co_await f->resolver.async_resolve(
        target.host, std::to_string(target.port), tcp::resolver::numeric_service,
        asio::as_tuple(asio::use_awaitable));
    if (f->finished) co_return Superseded();
    if (ec) {
      co_return Fail(ErrorKind::kIo, Errc::kIoFailed,
                     f->peer + " unreachable: cannot resolve " + target.host + ": " + ec.message());
    }
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }

  {
    auto [ec, endpoint] =
        co_await asio::async_connect(f->socket, endpoints, asio::as_tuple(asio::use_awaitable));
    if (f->finished) co_return Superseded();
    if (ec)
      co_return Fail(ErrorKind::kIo, Errc::kIoFailed, f->peer + " unreachable: " + ec.message());
  }
  boost::system::error_code ignored;
  f->socket.set_option(tcp::no_delay(true), ignored);

  // RFC 6960 A.1.1: POST with Content-Type application/ocsp-request; one exchange per connection.
  proto::HttpRequest http;
  http.method = "POST";
  http.target = target.path;
  http.headers.Add("Host", target.authority);  // RFC 9112 §3.2
  if (!req.content_type.empty()) http.headers.Add("Content-Type", req.content_type);
  if (!req.accept.empty()) http.headers.Add("Accept", req.accept);
  http.body.assign(req.body.begin(), req.body.end());
  http.keep_alive = false;  // Content-Length and "Connection: close" (RFC 9112 §9.6)
  const std::string wire = http.Serialize();
  {
    auto [ec, n] = co_await asio::async_write(f->socket, asio::buffer(wire),
                                              asio::as_tuple(asio::use_awaitable));
    if (f->finished) co_return Superseded();
    if (ec) {
      co_return Fail(ErrorKind::kIo, Errc::kIoFailed,
                     f->peer + ": sending the request failed: " + ec.message());
    }
  }

  proto::ResponseDecoder decoder(proto::HttpLimits{proto::kMaxHeaderBytes, req.max_response_bytes});
  std::vector<uint8_t> buf(kReadChunk);
  for (;;) {
    auto [ec, n] =
        co_await f->socket.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (f->finished) co_return Superseded();
    Result<std::optional<proto::HttpResponse>> got = std::optional<proto::HttpResponse>();
    if (ec == asio::error::eof) {
      got = decoder.FeedEof();  // completes a close-delimited body (RFC 9112 §6.3 item 8)
    } else if (ec) {
      co_return Fail(ErrorKind::kIo, Errc::kIoFailed,
                     f->peer + ": reading the answer failed: " + ec.message());
    } else {
      got = decoder.Feed(ByteSpan(buf.data(), n));
    }
    // RFC 9110 §15.2: skip interim 1xx responses; 101 is only valid after an Upgrade request.
    while (got.has_value() && got->has_value() && (*got)->status >= 100 && (*got)->status < 200) {
      if ((*got)->status == 101) {
        co_return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                       f->peer + " switched protocols without being asked");
      }
      got = decoder.Feed({});
    }
    if (!got.has_value()) {
      Error error = std::move(got).error();
      error.detail = f->peer + ": " + error.detail;
      if (error.code == Errc::kTooLarge) {
        error.detail += " (limits: " + std::to_string(proto::kMaxHeaderBytes) + " header bytes, " +
                        std::to_string(req.max_response_bytes) + " body bytes)";
      }
      co_return Fail(std::move(error));
    }
    if (got->has_value()) co_return ToFetchResponse(std::move(**got));
  }
}

asio::awaitable<void> Exchange(std::shared_ptr<FetchState> fetch) {
  Result<FetchResponse> result = co_await Run(fetch);
  fetch->Finish(std::move(result));
}

}  // namespace

void HttpFetcher::Impl::Shutdown() {
  std::vector<std::shared_ptr<FetchState>> pending;
  {
    std::lock_guard lock(mu);
    stopping = true;
    pending.assign(live.begin(), live.end());
  }
  for (auto& fetch : pending) fetch->Finish(Fail(Closed(*fetch)));
}

HttpFetcher::HttpFetcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpFetcher>> HttpFetcher::Create() {
  auto impl = std::make_unique<Impl>();
  try {
    impl->thread = std::thread([raw = impl.get()] {
      SetThreadName("mte-fetch");
      for (;;) {
        // An exception here escaped a `done` callback (the exchanges catch their own); log it
        // and keep serving the other fetches.
        try {
          raw->ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("HTTP fetcher: a completion callback threw: {}", e.what());
        } catch (...) {
          spdlog::error("HTTP fetcher: a completion callback threw");
        }
      }
    });
  } catch (const std::system_error& e) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                std::string("cannot start the HTTP fetcher thread: ") + e.what());
  }
  return std::unique_ptr<HttpFetcher>(new HttpFetcher(std::move(impl)));
}

HttpFetcher::~HttpFetcher() {
  if (!impl_) return;
  if (std::this_thread::get_id() == impl_->thread.get_id()) {
    // Joining ourselves would deadlock. Let the thread finish the shutdown once the current
    // callback returns, and leak the state it still uses.
    spdlog::error("HTTP fetcher destroyed from its own thread; leaking it instead of deadlocking");
    Impl* impl = impl_.release();
    asio::post(impl->ioc, [impl] { impl->Shutdown(); });
    impl->guard.reset();
    impl->thread.detach();
    return;
  }
  asio::post(impl_->ioc, [impl = impl_.get()] { impl->Shutdown(); });
  impl_->guard.reset();
  impl_->thread.join();
}

void HttpFetcher::Post(FetchRequest request, FetchDone done) {
  auto fetch = std::make_shared<FetchState>(*impl_, std::move(request), std::move(done));
  {
    std::unique_lock lock(impl_->mu);
    if (impl_->stopping) {
      // Only reachable from a `done` on the fetcher's thread during destruction.
      lock.unlock();
      FetchDone callback = std::move(fetch->done);
      callback(Fail(Closed(*fetch)));
      return;
    }
    impl_->live.insert(fetch);
  }
  asio::co_spawn(impl_->ioc, Exchange(fetch), [fetch](const std::exception_ptr& e) {
    if (!e) return;
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
    spdlog::error("{}: exception in the fetch or its callback: {}", fetch->peer, what);
    fetch->Finish(Fail(ErrorKind::kInternal, Errc::kInvariant,
                       fetch->peer + ": unexpected exception: " + what));
  });
}

Result<FetchResponse> HttpFetcher::PostAndWait(FetchRequest request) {
  if (std::this_thread::get_id() == impl_->thread.get_id()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConflict,
                "PostAndWait called on the HTTP fetcher's own thread");
  }
  auto promise = std::make_shared<std::promise<Result<FetchResponse>>>();
  auto future = promise->get_future();
  Post(std::move(request),
       [promise](Result<FetchResponse> result) { promise->set_value(std::move(result)); });
  return future.get();
}

}  // namespace mte::net
