#include "proto/tls_http_session.h"

#include "proto/onem2m.h"

namespace mte::proto {

TlsHttpSession::TlsHttpSession(std::unique_ptr<crypto::TlsEngine> tls, HttpLimits limits)
    : stack_(std::move(tls)), limits_(limits), decoder_(limits) {}

Result<void> TlsHttpSession::FeedCiphertext(ByteSpan data) {
  if (finished_) return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "session finished");
  if (auto fed = stack_.FeedCiphertext(data); !fed) {
    finished_ = true;
    return fed;
  }
  MTE_TRY(DecodeTop(stack_.TakePlaintext()));
  if (stack_.PeerClosed()) finished_ = true;
  return {};
}

Result<void> TlsHttpSession::DecodeTop(Bytes plain) {
  ByteSpan input = plain;
  while (true) {
    if (awaiting_upgrade_) {
      // Bytes after an Upgrade request may already be the next protocol (e.g. a ClientHello):
      // keep them raw until the handler has answered.
      decoder_.Buffer(input);
      return {};
    }
    auto decoded = decoder_.Feed(input);
    input = {};
    if (!decoded) {
      // Answer once, then close: the stream position is unknown after a framing error.
      HttpResponse response =
          MakeErrorResponse(RscFor(decoded.error()), decoded.error().detail, "");
      response.keep_alive = false;
      (void)stack_.WritePlaintext(AsBytes(response.Serialize()));
      stack_.Shutdown(/*all=*/true);
      finished_ = true;
      return Fail(decoded.error());
    }
    if (!decoded->has_value()) break;
    if ((*decoded)->headers.Get("Upgrade")) awaiting_upgrade_ = true;
    requests_.push_back(std::move(**decoded));
  }
  return {};
}

std::optional<HttpRequest> TlsHttpSession::NextRequest() {
  if (requests_.empty()) return std::nullopt;
  HttpRequest request = std::move(requests_.front());
  requests_.pop_front();
  return request;
}

Result<void> TlsHttpSession::SendResponse(const HttpResponse& response) {
  MTE_TRY(stack_.WritePlaintext(AsBytes(response.Serialize())));
  // Decoding stops behind the Upgrade request, so it is the one answered here once no request is
  // queued; the answer to a request before it settles nothing.
  if (awaiting_upgrade_ && requests_.empty() && response.status != 101) {
    // The Upgrade was declined: whatever followed the request is parsed as HTTP again.
    awaiting_upgrade_ = false;
    MTE_TRY(DecodeTop({}));
  }
  if (!response.keep_alive) {
    stack_.Shutdown(/*all=*/true);
    finished_ = true;
  }
  return {};
}

Result<void> TlsHttpSession::Upgrade(std::unique_ptr<crypto::TlsEngine> inner) {
  if (!requests_.empty()) {
    finished_ = true;
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "requests were pipelined after an Upgrade request");
  }
  // Bytes after the Upgrade request already belong to the inner protocol.
  awaiting_upgrade_ = false;
  Bytes pending = decoder_.TakeBuffered();
  stack_.Push(std::move(inner));
  decoder_ = RequestDecoder(limits_);
  if (auto fed = stack_.FeedCiphertext({}); !fed) {
    finished_ = true;
    return fed;
  }
  if (!pending.empty()) {
    // Re-inject as the outer layer's plaintext = the inner layer's ciphertext.
    stack_.top().FeedCiphertext(pending);
    if (auto fed = stack_.Advance(); !fed) {
      finished_ = true;
      return fed;
    }
    MTE_TRY(DecodeTop(stack_.TakePlaintext()));
  }
  return {};
}

}  // namespace mte::proto
