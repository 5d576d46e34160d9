// Sans-IO server connection: a TLS engine carrying HTTP/1.1 requests and responses.
// Ciphertext in, requests out; responses in, ciphertext out. net/ moves the bytes and calls the
// handler; in-process tests drive it directly.
// Thread-safety: single-threaded.
#pragma once

#include <deque>
#include <memory>
#include <optional>

#include "crypto/tls_engine.h"
#include "proto/http.h"

namespace mte::proto {

class TlsHttpSession {
 public:
  TlsHttpSession(std::unique_ptr<crypto::TlsEngine> tls, HttpLimits limits);

  // Feeds ciphertext from the peer and advances TLS and HTTP. Errors are final; after an error
  // TakeCiphertext() may still hold a TLS alert or an HTTP error response worth sending.
  // An HTTP-level error (oversized, malformed) is answered here with a oneM2M 400 response and
  // the connection is marked for closing.
  Result<void> FeedCiphertext(ByteSpan data);

  std::optional<HttpRequest> NextRequest();
  Result<void> SendResponse(const HttpResponse& response);

  Bytes TakeCiphertext() { return tls_->TakeCiphertext(); }
  bool HandshakeComplete() const { return tls_->HandshakeComplete(); }
  // The session is finished: peer closed, an error happened, or a response said Connection: close.
  bool Finished() const { return finished_; }
  const crypto::TlsEngine& tls() const { return *tls_; }

 private:
  std::unique_ptr<crypto::TlsEngine> tls_;
  RequestDecoder decoder_;
  std::deque<HttpRequest> requests_;
  bool finished_ = false;
};

}  // namespace mte::proto
