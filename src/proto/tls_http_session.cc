#include "proto/tls_http_session.h"

#include "proto/onem2m.h"

namespace mte::proto {

TlsHttpSession::TlsHttpSession(std::unique_ptr<crypto::TlsEngine> tls, HttpLimits limits)
    : tls_(std::move(tls)), decoder_(limits) {}

Result<void> TlsHttpSession::FeedCiphertext(ByteSpan data) {
  if (finished_) return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "session finished");
  tls_->FeedCiphertext(data);
  if (auto advanced = tls_->Advance(); !advanced) {
    finished_ = true;
    return advanced;
  }
  Bytes plain = tls_->TakePlaintext();
  ByteSpan input = plain;
  while (true) {
    auto decoded = decoder_.Feed(input);
    input = {};
    if (!decoded) {
      // Answer once, then close: the stream position is unknown after a framing error.
      HttpResponse response = MakeErrorResponse(RscFor(decoded.error()), decoded.error().detail, "");
      response.keep_alive = false;
      (void)tls_->WritePlaintext(AsBytes(response.Serialize()));
      tls_->Shutdown();
      finished_ = true;
      return Fail(decoded.error());
    }
    if (!decoded->has_value()) break;
    requests_.push_back(std::move(**decoded));
  }
  if (tls_->PeerClosed()) finished_ = true;
  return {};
}

std::optional<HttpRequest> TlsHttpSession::NextRequest() {
  if (requests_.empty()) return std::nullopt;
  HttpRequest request = std::move(requests_.front());
  requests_.pop_front();
  return request;
}

Result<void> TlsHttpSession::SendResponse(const HttpResponse& response) {
  MTE_TRY(tls_->WritePlaintext(AsBytes(response.Serialize())));
  if (!response.keep_alive) {
    tls_->Shutdown();
    finished_ = true;
  }
  return {};
}

}  // namespace mte::proto
