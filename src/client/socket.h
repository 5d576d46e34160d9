// Blocking POSIX TCP sockets with deadlines, for devices, the OBF and server-side workers.
// No Boost. Thread-safety: a Socket is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::client {

using Deadline = std::chrono::steady_clock::time_point;

inline Deadline After(std::chrono::milliseconds d) { return std::chrono::steady_clock::now() + d; }

struct Endpoint {
  std::string host;  // IP literal or name resolvable by getaddrinfo
  uint16_t port = 0;
};

// "host:port" or "[v6]:port". kLocalUsage/kConfig on a malformed value.
Result<Endpoint> ParseEndpoint(std::string_view text);

class Socket {
 public:
  // kIo/kIoFailed when no address accepts the connection; kTimeout/kDeadline.
  static Result<Socket> Connect(const Endpoint& endpoint, Deadline deadline);
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket();
  Socket(Socket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  Result<void> SendAll(ByteSpan data, Deadline deadline);
  // Waits for data; an empty result means the peer closed (EOF or reset).
  Result<Bytes> ReadSome(Deadline deadline, std::string_view what);
  std::string peer_address() const;

 private:
  int fd_ = -1;
};

class ListeningSocket {
 public:
  static Result<ListeningSocket> Bind(const Endpoint& endpoint);
  ~ListeningSocket();
  ListeningSocket(ListeningSocket&& other) noexcept : fd_(other.fd_), port_(other.port_) {
    other.fd_ = -1;
  }
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;

  Result<Socket> Accept(Deadline deadline);
  uint16_t port() const { return port_; }

 private:
  ListeningSocket(int fd, uint16_t port) : fd_(fd), port_(port) {}
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace mte::client
