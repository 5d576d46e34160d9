// TLS stacked on TLS by composition (docs/conventions.md §1, curl's filter chain): layer 0 talks to the
// network; the ciphertext of layer i+1 is the plaintext of layer i. Flow B runs the RSPF's TLS
// handshake (layer 1) inside the server-authenticated session (layer 0); Flow A has one layer.
// Sans-IO: ciphertext of layer 0 in and out, plaintext of the top layer in and out.
// Thread-safety: single-threaded.
#pragma once

#include <memory>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"
#include "crypto/tls_engine.h"

namespace mte::proto {

class TlsStack {
 public:
  TlsStack() = default;
  explicit TlsStack(std::unique_ptr<crypto::TlsEngine> bottom);

  // Adds a layer on top. Plaintext of the current top that arrives later (and `pending`, bytes of
  // the current top's plaintext already received but not yet consumed) becomes its ciphertext.
  void Push(std::unique_ptr<crypto::TlsEngine> engine, ByteSpan pending = {});

  // Network bytes in: advances every layer bottom-up; the top's plaintext accumulates.
  // Errors are final and name the failing layer ("inner"/"outer") in the detail.
  Result<void> FeedCiphertext(ByteSpan data);
  // Advances all layers without new input (e.g. after Push, to produce a client's first flight).
  Result<void> Advance();

  Bytes TakePlaintext();
  Result<void> WritePlaintext(ByteSpan data);
  // Queues close_notify on the top layer (and, when `all`, on every layer below too).
  void Shutdown(bool all);
  // Network bytes out: moves each layer's ciphertext into the layer below, then takes layer 0's.
  Bytes TakeCiphertext();

  size_t depth() const { return layers_.size(); }
  crypto::TlsEngine& layer(size_t i) { return *layers_[i]; }
  const crypto::TlsEngine& layer(size_t i) const { return *layers_[i]; }
  crypto::TlsEngine& top() { return *layers_.back(); }
  const crypto::TlsEngine& top() const { return *layers_.back(); }
  bool TopHandshakeComplete() const { return !layers_.empty() && top().HandshakeComplete(); }
  // The top layer's peer sent close_notify, or a layer below it closed.
  bool PeerClosed() const;

 private:
  Result<void> Pump(size_t from, Bytes input);
  void Flush();

  std::vector<std::unique_ptr<crypto::TlsEngine>> layers_;
  bool lower_closed_ = false;
};

// Names a layer for messages: "outer" for 0 of a two-layer stack, "inner" for 1, "" for one layer.
const char* LayerName(size_t index, size_t depth);

}  // namespace mte::proto
