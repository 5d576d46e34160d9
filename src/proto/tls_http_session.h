// Sans-IO server connection: a stack of TLS engines carrying HTTP/1.1 requests and responses.
// Ciphertext in, requests out; responses in, ciphertext out. net/ moves the bytes and calls the
// handler; in-process tests drive it directly.
//
// A handler may switch protocols (HTTP Upgrade, Flow B): after a 101 response, Upgrade() pushes an
// inner TLS engine whose records travel as the outer session's application data; requests then
// come from, and responses go to, the inner session.
// Thread-safety: single-threaded.
#pragma once

#include <deque>
#include <memory>
#include <optional>

#include "crypto/tls_engine.h"
#include "proto/http.h"
#include "proto/tls_stack.h"

namespace mte::proto {

class TlsHttpSession;
class PendingReply;  // proto/server_connection.h

// What a handler answers: a response, and for a 101 response the inner (server) engine that the
// session then tunnels. Or, when the answer depends on work running elsewhere, `pending`: the
// connection waits for it to complete and then asks the handler again with OnResume.
struct HttpReply {
  HttpResponse response;
  std::unique_ptr<crypto::TlsEngine> upgrade;
  std::shared_ptr<PendingReply> pending;
};

// Per-connection application logic (it may keep state across the connection's requests).
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  virtual HttpReply OnRequest(const HttpRequest& request, const TlsHttpSession& session) = 0;
  // After OnRequest answered `pending` and that work completed: the reply to the same request.
  virtual HttpReply OnResume(const HttpRequest& request, const TlsHttpSession& session) {
    static_cast<void>(request);
    static_cast<void>(session);
    return {};
  }
  // Called once when the connection has ended, for whatever reason (after the last request, a
  // failed handshake, a deadline, the peer going away). `session` shows how far it got.
  virtual void OnClose(const TlsHttpSession& session) { static_cast<void>(session); }
};

class TlsHttpSession {
 public:
  TlsHttpSession(std::unique_ptr<crypto::TlsEngine> tls, HttpLimits limits);

  // Feeds ciphertext from the peer and advances TLS and HTTP. Errors are final; after an error
  // TakeCiphertext() may still hold a TLS alert or an HTTP error response worth sending.
  // An HTTP-level error (oversized, malformed) is answered here with a oneM2M 400 response and
  // the connection is marked for closing.
  Result<void> FeedCiphertext(ByteSpan data);

  std::optional<HttpRequest> NextRequest();
  // Sends a response on the top layer. A response with keep_alive == false closes every layer.
  Result<void> SendResponse(const HttpResponse& response);
  // After a 101 response: tunnels `inner` (a server engine) in the current top layer.
  // REQUIRES: no other request is queued.
  Result<void> Upgrade(std::unique_ptr<crypto::TlsEngine> inner);

  Bytes TakeCiphertext() { return stack_.TakeCiphertext(); }
  // The outermost handshake is complete.
  bool HandshakeComplete() const { return stack_.layer(0).HandshakeComplete(); }
  // The session is finished: peer closed, an error happened, or a response said Connection: close.
  bool Finished() const { return finished_; }
  // The top layer (the one requests come from) and every layer (0 = outermost).
  const crypto::TlsEngine& tls() const { return stack_.top(); }
  const crypto::TlsEngine& tls(size_t layer) const { return stack_.layer(layer); }
  size_t depth() const { return stack_.depth(); }

 private:
  Result<void> DecodeTop(Bytes plain);

  TlsStack stack_;
  HttpLimits limits_;
  RequestDecoder decoder_;
  std::deque<HttpRequest> requests_;
  bool awaiting_upgrade_ = false;
  bool finished_ = false;
};

}  // namespace mte::proto
