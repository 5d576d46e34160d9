#include "testlib/tls_pair.h"

#include <functional>
#include <utility>

namespace mte::testlib {
namespace {

using crypto::TlsEngine;

// What one delivery did to each side.
struct Delivery {
  std::optional<Error> sender_error;
  std::optional<Error> receiver_error;
};

using Link = std::function<Delivery(TlsEngine& from, TlsEngine& to)>;

Delivery DirectLink(TlsEngine& from, TlsEngine& to) {
  Delivery d;
  to.FeedCiphertext(from.TakeCiphertext());
  if (auto r = to.Advance(); !r) d.receiver_error = r.error();
  return d;
}

HandshakeOutcome Drive(TlsEngine& client, TlsEngine& server, int max_rounds,
                       const Link& client_to_server, const Link& server_to_client) {
  HandshakeOutcome out;
  auto record = [](std::optional<Error>& slot, std::optional<Error> error) {
    if (error && !slot) slot = std::move(error);
  };
  auto deliver = [&](bool from_client) {
    TlsEngine& from = from_client ? client : server;
    TlsEngine& to = from_client ? server : client;
    std::optional<Error>& from_error = from_client ? out.client_error : out.server_error;
    std::optional<Error>& to_error = from_client ? out.server_error : out.client_error;
    if (to_error) return;
    Delivery d = from_client ? client_to_server(from, to) : server_to_client(from, to);
    record(from_error, std::move(d.sender_error));
    record(to_error, std::move(d.receiver_error));
  };

  // The client speaks first.
  if (auto r = client.Advance(); !r) out.client_error = r.error();
  for (int round = 1; round <= max_rounds && !out.AnyFailed(); ++round) {
    out.rounds = round;
    deliver(/*from_client=*/true);
    if (out.AnyFailed()) break;
    deliver(/*from_client=*/false);
    if (out.AnyFailed()) break;
    if (client.HandshakeComplete() && server.HandshakeComplete() && !client.HasCiphertext() &&
        !server.HasCiphertext()) {
      break;
    }
  }
  // A failed side may still hold an alert: deliver it once so the peer's reaction is recorded.
  if (out.client_error && !out.server_error) deliver(/*from_client=*/true);
  if (out.server_error && !out.client_error) deliver(/*from_client=*/false);
  out.client_complete = client.HandshakeComplete();
  out.server_complete = server.HandshakeComplete();
  return out;
}

// Inner ciphertext -> outer plaintext -> outer ciphertext -> outer plaintext -> inner ciphertext.
Link NestedLink(TlsEngine& outer_from, TlsEngine& outer_to) {
  return [&outer_from, &outer_to](TlsEngine& from, TlsEngine& to) {
    Delivery d;
    Bytes inner = from.TakeCiphertext();
    if (!inner.empty()) {
      if (auto r = outer_from.WritePlaintext(inner); !r) {
        d.sender_error = r.error();
        return d;
      }
    }
    outer_to.FeedCiphertext(outer_from.TakeCiphertext());
    if (auto r = outer_to.Advance(); !r) {
      d.receiver_error = r.error();
      return d;
    }
    to.FeedCiphertext(outer_to.TakePlaintext());
    if (auto r = to.Advance(); !r) d.receiver_error = r.error();
    return d;
  };
}

}  // namespace

HandshakeOutcome PumpHandshake(TlsEngine& client, TlsEngine& server, int max_rounds) {
  return Drive(client, server, max_rounds, DirectLink, DirectLink);
}

Result<void> Transfer(TlsEngine& from, TlsEngine& to) {
  to.FeedCiphertext(from.TakeCiphertext());
  return to.Advance();
}

HandshakeOutcome PumpNestedHandshake(TlsEngine& inner_client, TlsEngine& inner_server,
                                     TlsEngine& outer_client, TlsEngine& outer_server,
                                     int max_rounds) {
  return Drive(inner_client, inner_server, max_rounds, NestedLink(outer_client, outer_server),
               NestedLink(outer_server, outer_client));
}

Result<void> TransferNested(TlsEngine& from, TlsEngine& from_outer, TlsEngine& to_outer,
                            TlsEngine& to) {
  Delivery d = NestedLink(from_outer, to_outer)(from, to);
  if (d.sender_error) return Fail(*d.sender_error);
  if (d.receiver_error) return Fail(*d.receiver_error);
  return {};
}

SecretBytes Secret(std::string_view text) {
  return SecretBytes(AsBytes(text), SecretAccess::ForCrypto());
}

SecretBytes PatternSecret(size_t size, uint8_t seed) {
  SecretBytes out(size);
  auto bytes = out.ExposeMutable(SecretAccess::ForCrypto());
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + i);
  return out;
}

}  // namespace mte::testlib
