// The server side of one connection as a sans-IO core: a TlsHttpSession plus the handler, in the
// one order every listener follows: request -> response -> (Upgrade: tunnel the inner engine) ->
// next request ... -> close. net/ drives it from a socket; the service tests drive it in memory,
// so both run this loop and no copy of it.
//
// A handler may answer later (HttpReply::pending): the connection then handles no further request
// until the driver calls Resume() on the connection's own thread, after the pending work has woken
// it. Thread-safety: single-threaded, except PendingReply (any thread).
#pragma once

#include <functional>
#include <memory>
#include <mutex>

#include "proto/tls_http_session.h"

namespace mte::proto {

// A one-shot signal from work running elsewhere (e.g. a certificate status request) to the
// connection that waits for it. Thread-safe.
class PendingReply {
 public:
  // Marks the work done and runs the waker, if one is set (on the calling thread). Idempotent.
  void Complete();
  // Sets the waker: it runs once, at once when the work is already done, else from Complete().
  void OnComplete(std::function<void()> wake);
  bool done() const;

 private:
  mutable std::mutex mutex_;
  bool done_ = false;
  std::function<void()> wake_;
};

class ServerConnection {
 public:
  ServerConnection(std::unique_ptr<crypto::TlsEngine> tls, HttpLimits limits,
                   std::unique_ptr<ConnectionHandler> handler);
  // Ends the connection (the handler's OnClose) if Close() was not called.
  ~ServerConnection();
  ServerConnection(const ServerConnection&) = delete;
  ServerConnection& operator=(const ServerConnection&) = delete;

  // Ciphertext from the peer: TLS, HTTP, then the handler for each complete request (unless a
  // reply is pending). An error is final; TakeCiphertext() may still hold an alert or an HTTP
  // error response worth sending.
  Result<void> FeedCiphertext(ByteSpan data);
  // The reply the handler is working on, or null. The driver waits for it, then calls Resume().
  const std::shared_ptr<PendingReply>& pending() const { return pending_; }
  // REQUIRES: pending() is done. Asks the handler for its reply, sends it, and handles the
  // requests that queued meanwhile.
  Result<void> Resume();

  Bytes TakeCiphertext() { return session_.TakeCiphertext(); }
  // Nothing more will happen: write what TakeCiphertext() holds, then close the socket.
  bool Finished() const { return failed_ || answered_close_ || session_.Finished(); }
  // The handler's OnClose, once.
  void Close();

  const TlsHttpSession& session() const { return session_; }
  // Every request handled and the response sent for it, for tests and logs: "METHOD target".
  using Observer = std::function<void(const HttpRequest&, const HttpResponse&)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }

 private:
  Result<void> HandleQueued();
  Result<void> Send(const HttpRequest& request, HttpReply reply);

  TlsHttpSession session_;
  std::unique_ptr<ConnectionHandler> handler_;
  std::shared_ptr<PendingReply> pending_;
  HttpRequest pending_request_;
  Observer observer_;
  bool failed_ = false;
  bool answered_close_ = false;
  bool closed_ = false;
};

// A ConnectionHandler for listeners whose requests are independent of each other.
using RequestHandler =
    std::function<HttpResponse(const HttpRequest&, const crypto::TlsEngine& tls)>;
std::unique_ptr<ConnectionHandler> StatelessHandler(RequestHandler handler);

}  // namespace mte::proto
