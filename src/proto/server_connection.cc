#include "proto/server_connection.h"

namespace mte::proto {

void PendingReply::Complete() {
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    if (done_) return;
    done_ = true;
    wake.swap(wake_);
  }
  if (wake) wake();
}

void PendingReply::OnComplete(std::function<void()> wake) {
  {
    std::lock_guard lock(mutex_);
    if (!done_) {
      wake_ = std::move(wake);
      return;
    }
  }
  wake();
}

bool PendingReply::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

ServerConnection::ServerConnection(std::unique_ptr<crypto::TlsEngine> tls, HttpLimits limits,
                                   std::unique_ptr<ConnectionHandler> handler)
    : session_(std::move(tls), limits), handler_(std::move(handler)) {}

ServerConnection::~ServerConnection() { Close(); }

void ServerConnection::Close() {
  if (closed_) return;
  closed_ = true;
  handler_->OnClose(session_);
}

Result<void> ServerConnection::FeedCiphertext(ByteSpan data) {
  if (auto fed = session_.FeedCiphertext(data); !fed) {
    failed_ = true;
    // Requests decoded before the error are still answered (the error may be a later one).
    static_cast<void>(HandleQueued());
    return fed;
  }
  return HandleQueued();
}

Result<void> ServerConnection::Resume() {
  if (!pending_ || !pending_->done()) {
    return Fail(ErrorKind::kInternal, Errc::kClosed, "Resume without a completed pending reply");
  }
  pending_.reset();
  HttpRequest request = std::move(pending_request_);
  MTE_TRY(Send(request, handler_->OnResume(request, session_)));
  return HandleQueued();
}

Result<void> ServerConnection::HandleQueued() {
  // Requests are answered even after the peer's close_notify (a client may send its request and
  // close in one flight); a response that closes the connection ends the loop.
  while (!pending_ && !answered_close_) {
    auto request = session_.NextRequest();
    if (!request) break;
    MTE_TRY(Send(*request, handler_->OnRequest(*request, session_)));
  }
  return {};
}

Result<void> ServerConnection::Send(const HttpRequest& request, HttpReply reply) {
  if (reply.pending) {
    pending_ = std::move(reply.pending);
    pending_request_ = request;
    return {};
  }
  if (!request.keep_alive && !reply.upgrade) reply.response.keep_alive = false;
  if (observer_) observer_(request, reply.response);
  if (!reply.response.keep_alive) answered_close_ = true;
  if (auto sent = session_.SendResponse(reply.response); !sent) {
    failed_ = true;
    return sent;
  }
  if (reply.upgrade && reply.response.keep_alive) {
    if (auto up = session_.Upgrade(std::move(reply.upgrade)); !up) {
      failed_ = true;
      return up;
    }
  }
  return {};
}

namespace {

class Stateless final : public ConnectionHandler {
 public:
  explicit Stateless(RequestHandler handler) : handler_(std::move(handler)) {}
  HttpReply OnRequest(const HttpRequest& request, const TlsHttpSession& session) override {
    HttpReply reply;
    reply.response = handler_(request, session.tls());
    return reply;
  }

 private:
  RequestHandler handler_;
};

}  // namespace

std::unique_ptr<ConnectionHandler> StatelessHandler(RequestHandler handler) {
  return std::make_unique<Stateless>(std::move(handler));
}

}  // namespace mte::proto
