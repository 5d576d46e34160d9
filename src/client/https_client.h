// Blocking TLS + HTTP/1.1 client over a POSIX TCP socket, for devices (the enrolee library and
// CLI) and for server-side worker threads (the MEF's outbox). No Boost: the device library links
// only this, crypto/ and proto/.
//
// One call = connect, handshake, optional exporter, one request/response, close_notify, close.
// Every step observes one overall deadline.
// Thread-safety: free functions; blocking; never call on an I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "crypto/tls_engine.h"
#include "proto/http.h"

namespace mte::client {

struct Endpoint {
  std::string host;  // IP literal or name resolvable by getaddrinfo
  uint16_t port = 0;
};

// "host:port" or "[v6]:port". kLocalUsage/kConfig on a malformed value.
Result<Endpoint> ParseEndpoint(std::string_view text);

// Called after the handshake, before the request is sent; may inspect the session (exporter,
// version). An error aborts the exchange.
using SessionHook = std::function<Result<void>(const crypto::TlsEngine&)>;

struct ExchangeOptions {
  std::chrono::milliseconds deadline{15000};
  SessionHook after_handshake;
};

struct ExchangeResult {
  proto::HttpResponse response;
  std::string tls_version;
  std::string cipher;
};

// Errors: kIo/kIoFailed (connect/read/write), kTimeout/kDeadline, and the TLS engine's errors
// (kPeerAuth/kAuthFailed for a wrong PSK or an unverifiable certificate).
Result<ExchangeResult> Exchange(const Endpoint& endpoint, std::unique_ptr<crypto::TlsEngine> tls,
                                const proto::HttpRequest& request,
                                const ExchangeOptions& options = {});

}  // namespace mte::client
