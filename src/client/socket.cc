#include "client/socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace mte::client {
namespace {

int RemainingMs(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

Error IoError(const std::string& what) {
  return Error{ErrorKind::kIo, Errc::kIoFailed, what + ": " + std::strerror(errno)};
}

Result<void> WaitFor(int fd, short events, Deadline deadline, std::string_view what) {
  while (true) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, RemainingMs(deadline));
    if (rc > 0) return {};
    if (rc == 0) {
      return Fail(ErrorKind::kTimeout, Errc::kDeadline, std::string(what) + ": deadline expired");
    }
    if (errno != EINTR) return Fail(IoError("poll"));
  }
}

using AddrInfoPtr = std::unique_ptr<addrinfo, void (*)(addrinfo*)>;

Result<AddrInfoPtr> Resolve(const Endpoint& endpoint, bool passive) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  std::string port = std::to_string(endpoint.port);
  int rc = ::getaddrinfo(endpoint.host.empty() ? nullptr : endpoint.host.c_str(), port.c_str(),
                         &hints, &list);
  if (rc != 0) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot resolve " + endpoint.host + ": " + ::gai_strerror(rc));
  }
  return AddrInfoPtr(list, ::freeaddrinfo);
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
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                  "expected HOST:PORT, got '" + std::string(text) + "'");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  bool ok = !port.empty() && port.size() <= 5;
  for (char c : port) {
    if (c < '0' || c > '9') ok = false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (!ok || value > 65535) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "bad port in '" + std::string(text) + "'");
  }
  return Endpoint{std::string(host), static_cast<uint16_t>(value)};
}

Socket::~Socket() {
  if (fd_ >= 0) ::close(fd_);
}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Result<Socket> Socket::Connect(const Endpoint& endpoint, Deadline deadline) {
  if (endpoint.port == 0) return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "port 0");
  MTE_TRY_ASSIGN(auto list, Resolve(endpoint, false));
  std::string where = endpoint.host + ":" + std::to_string(endpoint.port);
  Error last{ErrorKind::kIo, Errc::kIoFailed, "no address for " + endpoint.host};
  for (addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    Socket s(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol));
    if (s.fd_ < 0) {
      last = IoError("socket");
      continue;
    }
    int one = 1;
    ::setsockopt(s.fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(s.fd_, ai->ai_addr, ai->ai_addrlen) == 0) return s;
    if (errno != EINPROGRESS) {
      last = IoError("connect to " + where);
      continue;
    }
    MTE_TRY(WaitFor(s.fd_, POLLOUT, deadline, "connect to " + where));
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s.fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) return s;
    errno = err;
    last = IoError("connect to " + where);
  }
  return Fail(last);
}

Result<void> Socket::SendAll(ByteSpan data, Deadline deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      MTE_TRY(WaitFor(fd_, POLLOUT, deadline, "send"));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return Fail(IoError("send"));
  }
  return {};
}

Result<Bytes> Socket::ReadSome(Deadline deadline, std::string_view what) {
  while (true) {
    MTE_TRY(WaitFor(fd_, POLLIN, deadline, what));
    Bytes buf(16384);
    ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
    if (n >= 0) {
      buf.resize(static_cast<size_t>(n));
      return buf;
    }
    if (errno == EAGAIN || errno == EINTR) continue;
    if (errno == ECONNRESET) return Bytes{};
    return Fail(IoError("recv"));
  }
}

std::string Socket::peer_address() const {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, host, sizeof host);
  } else if (addr.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr, host, sizeof host);
  }
  return host;
}

Result<ListeningSocket> ListeningSocket::Bind(const Endpoint& endpoint) {
  MTE_TRY_ASSIGN(auto list, Resolve(endpoint, true));
  std::string where = endpoint.host + ":" + std::to_string(endpoint.port);
  for (addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 8) != 0) {
      Error error = IoError("listen on " + where);
      ::close(fd);
      return Fail(error);
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    uint16_t port = bound.ss_family == AF_INET6
                        ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                        : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    return ListeningSocket(fd, port);
  }
  return Fail(ErrorKind::kIo, Errc::kIoFailed, "no address to listen on for " + where);
}

ListeningSocket::~ListeningSocket() {
  if (fd_ >= 0) ::close(fd_);
}

Result<Socket> ListeningSocket::Accept(Deadline deadline) {
  while (true) {
    MTE_TRY(WaitFor(fd_, POLLIN, deadline, "waiting for a connection"));
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return Socket(fd);
    if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
    return Fail(IoError("accept"));
  }
}

}  // namespace mte::client
