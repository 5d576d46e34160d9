#include "proto/tls_stack.h"

namespace mte::proto {

const char* LayerName(size_t index, size_t depth) {
  if (depth <= 1) return "";
  return index == 0 ? "outer" : "inner";
}

TlsStack::TlsStack(std::unique_ptr<crypto::TlsEngine> bottom) {
  layers_.push_back(std::move(bottom));
}

void TlsStack::Push(std::unique_ptr<crypto::TlsEngine> engine, ByteSpan pending) {
  engine->FeedCiphertext(pending);
  layers_.push_back(std::move(engine));
}

Result<void> TlsStack::Pump(size_t from, Bytes input) {
  for (size_t i = from; i < layers_.size(); ++i) {
    auto& engine = *layers_[i];
    engine.FeedCiphertext(input);
    if (auto r = engine.Advance(); !r) {
      Error error = r.error();
      const char* name = LayerName(i, layers_.size());
      if (*name != '\0') error.detail = std::string(name) + " TLS: " + error.detail;
      return Fail(std::move(error));
    }
    if (i + 1 == layers_.size()) break;
    if (engine.PeerClosed()) lower_closed_ = true;
    input = engine.TakePlaintext();
  }
  Flush();
  return {};
}

Result<void> TlsStack::FeedCiphertext(ByteSpan data) {
  if (layers_.empty()) return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "empty TLS stack");
  return Pump(0, Bytes(data.begin(), data.end()));
}

Result<void> TlsStack::Advance() { return Pump(0, {}); }

Bytes TlsStack::TakePlaintext() { return top().TakePlaintext(); }

Result<void> TlsStack::WritePlaintext(ByteSpan data) {
  MTE_TRY(top().WritePlaintext(data));
  Flush();
  return {};
}

void TlsStack::Shutdown(bool all) {
  for (size_t i = layers_.size(); i-- > 0;) {
    Flush();
    layers_[i]->Shutdown();
    if (!all) break;
  }
  Flush();
}

// Moves every layer's pending ciphertext into the plaintext of the layer below. A lower layer
// that is not yet established (or failed) keeps nothing: its Write fails and the bytes are
// dropped, which only happens on a connection that is failing anyway.
void TlsStack::Flush() {
  for (size_t i = layers_.size(); i-- > 1;) {
    if (!layers_[i]->HasCiphertext()) continue;
    Bytes out = layers_[i]->TakeCiphertext();
    (void)layers_[i - 1]->WritePlaintext(out);
  }
}

Bytes TlsStack::TakeCiphertext() {
  Flush();
  return layers_.front()->TakeCiphertext();
}

bool TlsStack::PeerClosed() const { return lower_closed_ || top().PeerClosed(); }

}  // namespace mte::proto
