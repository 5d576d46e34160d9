#include "client/https_client.h"

namespace mte::client {
namespace {

// Drives a handshake of `tls` over `socket` to completion.
Result<void> Handshake(Socket& socket, crypto::TlsEngine& tls, Deadline deadline) {
  MTE_TRY(tls.Advance());
  while (!tls.HandshakeComplete()) {
    MTE_TRY(socket.SendAll(tls.TakeCiphertext(), deadline));
    MTE_TRY_ASSIGN(Bytes in, socket.ReadSome(deadline, "TLS handshake"));
    if (in.empty()) {
      return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                  "the peer closed the connection during the TLS handshake" +
                      (tls.failure().empty() ? std::string() : ": " + tls.failure()));
    }
    tls.FeedCiphertext(in);
    if (auto r = tls.Advance(); !r) {
      (void)socket.SendAll(tls.TakeCiphertext(), deadline);  // our alert, best effort
      return Fail(r.error());
    }
  }
  // The server's last flight (or nothing) goes out now.
  return socket.SendAll(tls.TakeCiphertext(), deadline);
}

}  // namespace

Result<ExchangeResult> ExchangeOn(Socket& socket, std::unique_ptr<crypto::TlsEngine> tls,
                                  const proto::HttpRequest& request, Deadline deadline,
                                  const SessionHook& after_handshake) {
  MTE_TRY(Handshake(socket, *tls, deadline));
  if (after_handshake) MTE_TRY(after_handshake(*tls));
  MTE_TRY(tls->WritePlaintext(AsBytes(request.Serialize())));
  MTE_TRY(socket.SendAll(tls->TakeCiphertext(), deadline));
  proto::ResponseDecoder decoder;
  ExchangeResult result;
  result.tls_version = tls->version();
  result.cipher = tls->cipher();
  while (true) {
    Bytes plain = tls->TakePlaintext();
    MTE_TRY_ASSIGN(auto decoded, decoder.Feed(plain));
    if (decoded.has_value()) {
      result.response = std::move(*decoded);
      break;
    }
    if (tls->PeerClosed()) {
      MTE_TRY_ASSIGN(auto last, decoder.FeedEof());
      result.response = std::move(*last);
      break;
    }
    MTE_TRY_ASSIGN(Bytes in, socket.ReadSome(deadline, "HTTP response"));
    if (in.empty()) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kClosed,
                  "the peer closed the connection without a complete response");
    }
    tls->FeedCiphertext(in);
    MTE_TRY(tls->Advance());
  }
  tls->Shutdown();
  (void)socket.SendAll(tls->TakeCiphertext(), deadline);
  return result;
}

Result<ExchangeResult> Exchange(const Endpoint& endpoint, std::unique_ptr<crypto::TlsEngine> tls,
                                const proto::HttpRequest& request,
                                const ExchangeOptions& options) {
  auto deadline = After(options.deadline);
  MTE_TRY_ASSIGN(auto socket, Socket::Connect(endpoint, deadline));
  return ExchangeOn(socket, std::move(tls), request, deadline, options.after_handshake);
}

KeepAliveClient::KeepAliveClient(Endpoint endpoint, EngineFactory new_engine,
                                 std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), new_engine_(std::move(new_engine)), timeout_(timeout) {}

Result<void> KeepAliveClient::Connect(Deadline deadline) {
  socket_.reset();
  tls_.reset();
  MTE_TRY_ASSIGN(auto socket, Socket::Connect(endpoint_, deadline));
  MTE_TRY_ASSIGN(auto engine, new_engine_());
  MTE_TRY(Handshake(socket, *engine, deadline));
  socket_.emplace(std::move(socket));
  tls_ = std::move(engine);
  return {};
}

Result<proto::HttpResponse> KeepAliveClient::TryRoundTrip(const proto::HttpRequest& request,
                                                          Deadline deadline, bool* stale) {
  *stale = false;
  // Bytes that arrived while idle can only be the peer's close_notify (or garbage).
  if (tls_->PeerClosed()) {
    *stale = true;
    return Fail(ErrorKind::kIo, Errc::kClosed, "the connection was closed by the peer");
  }
  MTE_TRY(tls_->WritePlaintext(AsBytes(request.Serialize())));
  if (auto sent = socket_->SendAll(tls_->TakeCiphertext(), deadline); !sent) {
    *stale = true;
    return Fail(sent.error());
  }
  proto::ResponseDecoder decoder;
  bool got_bytes = false;
  while (true) {
    Bytes plain = tls_->TakePlaintext();
    got_bytes = got_bytes || !plain.empty();
    MTE_TRY_ASSIGN(auto decoded, decoder.Feed(plain));
    if (decoded.has_value()) return std::move(*decoded);
    if (tls_->PeerClosed()) {
      *stale = !got_bytes;
      return Fail(ErrorKind::kPeerProtocol, Errc::kClosed,
                  "the peer closed the connection without a complete response");
    }
    MTE_TRY_ASSIGN(Bytes in, socket_->ReadSome(deadline, "HTTP response"));
    if (in.empty()) {
      *stale = !got_bytes;
      return Fail(ErrorKind::kPeerProtocol, Errc::kClosed,
                  "the peer closed the connection without a complete response");
    }
    tls_->FeedCiphertext(in);
    MTE_TRY(tls_->Advance());
  }
}

Result<proto::HttpResponse> KeepAliveClient::RoundTrip(const proto::HttpRequest& request) {
  auto deadline = After(timeout_);
  bool fresh = false;
  if (!socket_) {
    MTE_TRY(Connect(deadline));
    fresh = true;
  }
  bool stale = false;
  auto response = TryRoundTrip(request, deadline, &stale);
  if (!response && stale && !fresh) {
    // The peer closed an idle connection (its idle timeout): once more on a new one.
    MTE_TRY(Connect(deadline));
    response = TryRoundTrip(request, deadline, &stale);
  }
  if (!response || !response->keep_alive) {
    socket_.reset();
    tls_.reset();
  }
  return response;
}

Result<proto::EnrolmentResult> RunEnrolment(const Endpoint& mef, proto::EnrolmentClient& machine,
                                            Deadline deadline) {
  MTE_TRY_ASSIGN(auto socket, Socket::Connect(mef, deadline));
  MTE_TRY(machine.Start());
  while (true) {
    MTE_TRY(socket.SendAll(machine.TakeCiphertext(), deadline));
    if (machine.phase() == proto::EnrolmentClient::Phase::kDone) break;
    auto in = socket.ReadSome(deadline, proto::EnrolmentClient::PhaseName(machine.phase()));
    if (!in) {
      Error error = in.error();
      error.detail = std::string(proto::EnrolmentClient::PhaseName(machine.phase())) +
                     " failed: " + error.detail;
      return Fail(std::move(error));
    }
    if (in->empty()) {
      MTE_TRY(machine.FeedEof());
      break;
    }
    if (auto fed = machine.FeedCiphertext(*in); !fed) {
      (void)socket.SendAll(machine.TakeCiphertext(), deadline);  // alerts, best effort
      return Fail(fed.error());
    }
  }
  return machine.TakeResult();
}

Result<ServerSession> AcceptRequest(Socket& socket, std::unique_ptr<crypto::TlsEngine> tls,
                                    Deadline deadline) {
  MTE_TRY(Handshake(socket, *tls, deadline));
  proto::RequestDecoder decoder;
  while (true) {
    Bytes plain = tls->TakePlaintext();
    MTE_TRY_ASSIGN(auto decoded, decoder.Feed(plain));
    if (decoded.has_value()) return ServerSession{std::move(tls), std::move(*decoded)};
    if (tls->PeerClosed()) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kClosed, "the peer closed before a request");
    }
    MTE_TRY_ASSIGN(Bytes in, socket.ReadSome(deadline, "HTTP request"));
    if (in.empty()) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kClosed, "the peer closed before a request");
    }
    tls->FeedCiphertext(in);
    MTE_TRY(tls->Advance());
  }
}

Result<void> SendResponse(Socket& socket, ServerSession& session,
                          const proto::HttpResponse& response, Deadline deadline) {
  MTE_TRY(session.tls->WritePlaintext(AsBytes(response.Serialize())));
  session.tls->Shutdown();
  return socket.SendAll(session.tls->TakeCiphertext(), deadline);
}

}  // namespace mte::client
