// In-memory drivers for crypto::TlsEngine pairs (rustls do_handshake, s2n I/O pairs): ciphertext
// is moved between two engines in the same thread, with no sockets. Also the nested shape of
// docs/conventions.md §1: an inner engine pair whose ciphertext is the plaintext of an outer pair.
// Thread-safety: free functions over caller-owned engines.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/error.h"
#include "base/secret.h"
#include "crypto/tls_engine.h"

namespace mte::testlib {

// The outcome of driving a handshake. An error is the first one that engine's Advance() returned.
struct HandshakeOutcome {
  bool client_complete = false;
  bool server_complete = false;
  std::optional<Error> client_error;
  std::optional<Error> server_error;
  int rounds = 0;

  bool BothComplete() const {
    return client_complete && server_complete && !client_error && !server_error;
  }
  bool AnyFailed() const { return client_error.has_value() || server_error.has_value(); }
};

// Moves ciphertext both ways (client first) and advances both engines until both handshakes are
// complete and no ciphertext is in flight, one side fails, or `max_rounds` rounds have passed.
// When one side fails, whatever it still has to send (an alert) is delivered to the other side
// once, and that side's reaction is recorded too.
HandshakeOutcome PumpHandshake(crypto::TlsEngine& client, crypto::TlsEngine& server,
                               int max_rounds = 16);

// Moves all pending ciphertext from `from` to `to` and advances `to`. Returns Advance()'s result.
Result<void> Transfer(crypto::TlsEngine& from, crypto::TlsEngine& to);

// Nested TLS: the inner engines' ciphertext travels as the outer engines' plaintext. The outer
// handshake must already be complete. Same stopping rules as PumpHandshake, for the inner pair;
// an outer failure is reported as an error of the inner engine on the side that saw it.
HandshakeOutcome PumpNestedHandshake(crypto::TlsEngine& inner_client,
                                     crypto::TlsEngine& inner_server,
                                     crypto::TlsEngine& outer_client,
                                     crypto::TlsEngine& outer_server, int max_rounds = 16);

// Sends inner plaintext through both layers: inner `from` encrypts, outer `from_outer` carries it
// to `to_outer`, whose plaintext is fed to inner `to`. Returns the first error.
Result<void> TransferNested(crypto::TlsEngine& from, crypto::TlsEngine& from_outer,
                            crypto::TlsEngine& to_outer, crypto::TlsEngine& to);

// A SecretBytes holding the bytes of `text` (test keys only).
SecretBytes Secret(std::string_view text);
// A SecretBytes of `size` bytes with value (seed + i) mod 256.
SecretBytes PatternSecret(size_t size, uint8_t seed);

}  // namespace mte::testlib
