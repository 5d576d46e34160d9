// Blocking TLS + HTTP/1.1 client over a POSIX TCP socket, for devices (the enrolee library and
// CLI), the OBF, and server-side worker threads (the MEF's outbox). No Boost.
//
// Exchange: connect, handshake, optional exporter hook, one request/response, close_notify,
// close. RunEnrolment: drives the sans-IO enrolment state machine over a connection.
// Every step observes one overall deadline.
// Thread-safety: free functions; blocking; never call on an I/O thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/result.h"
#include "client/socket.h"
#include "crypto/tls_engine.h"
#include "proto/enrolment_client.h"
#include "proto/http.h"

namespace mte::client {

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

// The same on an already connected socket (e.g. one accepted by a device).
Result<ExchangeResult> ExchangeOn(Socket& socket, std::unique_ptr<crypto::TlsEngine> tls,
                                  const proto::HttpRequest& request, Deadline deadline,
                                  const SessionHook& after_handshake = {});

// A persistent TLS + HTTP/1.1 connection for a worker that sends many requests to one peer (the
// MEF's outbox to the MAF): one handshake, then keep-alive requests; it reconnects when the peer
// has closed the connection. Requests must be idempotent: after a connection is found dead,
// the request is sent once more on a new one.
class KeepAliveClient {
 public:
  using EngineFactory = std::function<Result<std::unique_ptr<crypto::TlsEngine>>()>;
  KeepAliveClient(Endpoint endpoint, EngineFactory new_engine, std::chrono::milliseconds timeout);
  Result<proto::HttpResponse> RoundTrip(const proto::HttpRequest& request);

 private:
  Result<void> Connect(Deadline deadline);
  Result<proto::HttpResponse> TryRoundTrip(const proto::HttpRequest& request, Deadline deadline,
                                           bool* stale);
  Endpoint endpoint_;
  EngineFactory new_engine_;
  std::chrono::milliseconds timeout_;
  std::optional<Socket> socket_;
  std::unique_ptr<crypto::TlsEngine> tls_;
};

// Runs `machine` (already created) to completion over a new connection to the MEF.
Result<proto::EnrolmentResult> RunEnrolment(const Endpoint& mef, proto::EnrolmentClient& machine,
                                            Deadline deadline);

// Runs a server TLS handshake on an accepted socket and reads one HTTP request.
struct ServerSession {
  std::unique_ptr<crypto::TlsEngine> tls;
  proto::HttpRequest request;
};
Result<ServerSession> AcceptRequest(Socket& socket, std::unique_ptr<crypto::TlsEngine> tls,
                                    Deadline deadline);
// Sends a response on a session from AcceptRequest, then close_notify.
Result<void> SendResponse(Socket& socket, ServerSession& session,
                          const proto::HttpResponse& response, Deadline deadline);

}  // namespace mte::client
