#include "client/https_client.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mte::client {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

Error IoError(std::string what) {
  return Error{ErrorKind::kIo, Errc::kIoFailed, what + ": " + std::strerror(errno)};
}

Error Timeout(std::string_view what) {
  return Error{ErrorKind::kTimeout, Errc::kDeadline, std::string(what) + ": deadline expired"};
}

Result<void> WaitFor(int fd, short events, Clock::time_point deadline, std::string_view what) {
  while (true) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, RemainingMs(deadline));
    if (rc > 0) return {};
    if (rc == 0) return Fail(Timeout(what));
    if (errno != EINTR) return Fail(IoError("poll"));
  }
}

Result<std::unique_ptr<Fd>> Connect(const Endpoint& endpoint, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  std::string port = std::to_string(endpoint.port);
  int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot resolve " + endpoint.host + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(list, ::freeaddrinfo);
  Error last{ErrorKind::kIo, Errc::kIoFailed, "no address for " + endpoint.host};
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    auto fd = std::make_unique<Fd>(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
                                                               SOCK_CLOEXEC, ai->ai_protocol));
    if (fd->get() < 0) {
      last = IoError("socket");
      continue;
    }
    if (::connect(fd->get(), ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS) {
      last = IoError("connect to " + endpoint.host + ":" + port);
      continue;
    }
    auto waited = WaitFor(fd->get(), POLLOUT, deadline, "connect");
    if (!waited) return Fail(waited.error());
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd->get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) return fd;
    errno = err;
    last = IoError("connect to " + endpoint.host + ":" + port);
  }
  return Fail(last);
}

Result<void> SendAll(int fd, const Bytes& data, Clock::time_point deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      MTE_TRY(WaitFor(fd, POLLOUT, deadline, "send"));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return Fail(IoError("send"));
  }
  return {};
}

// Reads once (blocking until data, EOF or deadline). Returns an empty vector on EOF.
Result<Bytes> ReadSome(int fd, Clock::time_point deadline, std::string_view what) {
  while (true) {
    MTE_TRY(WaitFor(fd, POLLIN, deadline, what));
    Bytes buf(16384);
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    if (errno == EAGAIN || errno == EINTR) continue;
    if (errno == ECONNRESET) return Bytes{};
    return Fail(IoError("recv"));
  }
}

}  // namespace

Result<Endpoint> ParseEndpoint(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find("]:");
    if (close == std::string_view::npos) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "expected [v6-address]:port");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "expected HOST:PORT, got '" +
                                                             std::string(text) + "'");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  if (port.empty() || port.size() > 5) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "bad port in '" + std::string(text) + "'");
  }
  for (char c : port) {
    if (c < '0' || c > '9') {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "bad port in '" + std::string(text) + "'");
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "bad port in '" + std::string(text) + "'");
  }
  return Endpoint{std::string(host), static_cast<uint16_t>(value)};
}

Result<ExchangeResult> Exchange(const Endpoint& endpoint, std::unique_ptr<crypto::TlsEngine> tls,
                                const proto::HttpRequest& request,
                                const ExchangeOptions& options) {
  auto deadline = Clock::now() + options.deadline;
  MTE_TRY_ASSIGN(auto fd, Connect(endpoint, deadline));
  int s = fd->get();
  // Handshake.
  MTE_TRY(tls->Advance());
  while (!tls->HandshakeComplete()) {
    MTE_TRY(SendAll(s, tls->TakeCiphertext(), deadline));
    MTE_TRY_ASSIGN(Bytes in, ReadSome(s, deadline, "TLS handshake"));
    if (in.empty()) {
      tls->Advance().has_value();  // let an alert, if any, be recorded
      return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                  "server closed the connection during the TLS handshake" +
                      (tls->failure().empty() ? std::string() : ": " + tls->failure()));
    }
    tls->FeedCiphertext(in);
    if (auto r = tls->Advance(); !r) {
      (void)SendAll(s, tls->TakeCiphertext(), deadline);  // our alert, best effort
      return Fail(r.error());
    }
  }
  if (options.after_handshake) MTE_TRY(options.after_handshake(*tls));
  MTE_TRY(tls->WritePlaintext(AsBytes(request.Serialize())));
  MTE_TRY(SendAll(s, tls->TakeCiphertext(), deadline));
  proto::ResponseDecoder decoder;
  ExchangeResult result;
  result.tls_version = tls->version();
  result.cipher = tls->cipher();
  while (true) {
    Bytes plain = tls->TakePlaintext();
    MTE_TRY_ASSIGN(auto decoded, decoder.Feed(plain));
    if (decoded.has_value()) {
      result.response = std::move(*decoded);
      break;
    }
    if (tls->PeerClosed()) {
      MTE_TRY_ASSIGN(auto last, decoder.FeedEof());
      result.response = std::move(*last);
      break;
    }
    MTE_TRY_ASSIGN(Bytes in, ReadSome(s, deadline, "HTTP response"));
    if (in.empty()) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kClosed,
                  "server closed the connection without a complete response");
    }
    tls->FeedCiphertext(in);
    MTE_TRY(tls->Advance());
  }
  tls->Shutdown();
  (void)SendAll(s, tls->TakeCiphertext(), deadline);
  return result;
}

}  // namespace mte::client
