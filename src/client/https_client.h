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
