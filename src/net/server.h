// The networking layer (docs/architecture.md §1): TCP listeners whose connections carry TLS (our sans-IO
// engine) and HTTP/1.1 to a request handler. Only this component and apps/ include Asio.
//
// Threads: `io_threads` run the io_context. Each connection is a coroutine on its own strand that
// reads, runs the TLS engine (handshake crypto, PSK lookups that read the database) and the
// handler inline, and writes: no thread hop per read. A listener whose handlers may block for long
// (the portal's Argon2id) sets `offload`, and its TLS and handler work runs on a pool of
// `worker_threads` instead. Every connection has one deadline: the whole handshake, then an idle
// one until a request begins, a request one from its first byte to its last, and a write one per
// response.
// Thread-safety: Listen before Run; Stop from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "crypto/tls_engine.h"
#include "proto/http.h"
#include "proto/tls_http_session.h"

namespace mte::net {

struct ConnectionInfo {
  std::string listener;      // listener name, e.g. "mef"
  std::string peer_address;  // "127.0.0.1"
};

// A stateless handler (one call per request).
using Handler = std::function<proto::HttpResponse(
    const proto::HttpRequest&, const crypto::TlsEngine&, const ConnectionInfo&)>;
// Or one handler object per connection, which may keep state and switch protocols (Upgrade).
using ConnectionFactory =
    std::function<std::unique_ptr<proto::ConnectionHandler>(const ConnectionInfo&)>;

struct ListenerOptions {
  std::string name;
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0 = any free port
  std::shared_ptr<const crypto::TlsContext> tls;
  crypto::PskLookup psk_lookup;  // required for PSK contexts
  Handler handler;                        // exactly one of handler and connection_factory
  ConnectionFactory connection_factory;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds idle_timeout{30000};     // from an answer to the next request's first byte
  std::chrono::milliseconds request_timeout{10000};  // from a request's first byte to its last
  proto::HttpLimits http_limits;
  // Admission: at most `max_connections` open; when full, the oldest connection that has not
  // sent a byte yet is closed for the new one. At most `max_connections_per_address` from one
  // client address (a NAT of a few hundred devices fits in the default).
  size_t max_connections = 4096;
  size_t max_connections_per_address = 512;
  // Run TLS and the handler on the worker pool instead of the I/O thread (slow handlers).
  bool offload = false;
};

class Server {
 public:
  Server(int io_threads, int worker_threads);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting (once Run is called). Returns the bound port.
  // kIo/kIoFailed if the address cannot be bound.
  Result<uint16_t> Listen(ListenerOptions options);

  // Runs until Stop() or, with handle_signals, SIGINT/SIGTERM; then stops accepting, lets open
  // connections finish for up to `grace`, closes the rest and joins all threads.
  void Run(bool handle_signals, std::chrono::milliseconds grace = std::chrono::seconds(3));
  void Stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mte::net
