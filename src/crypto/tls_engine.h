// Sans-IO TLS (docs/conventions.md §1): an OpenSSL SSL* over two memory BIOs. Ciphertext in and out,
// plaintext in and out, handshake status, exporter. No sockets, no threads, no clock.
//
// The same engine serves TCP (net/ pumps bytes), the nested inner handshake of Flow B (the inner
// engine's ciphertext is the outer engine's plaintext) and in-process tests.
//
// Profiles (TS-0003 §10.2, docs/conventions.md §2): TLS 1.2 and 1.3 only; SNI required by servers;
// PSK suites TLS_PSK_WITH_AES_128_CBC_SHA256 and ECDHE-PSK (preferred), TLS 1.3 external PSK
// (psk_dhe_ke preferred; psk_ke allowed for clients that offer nothing else); certificate suites
// ECDHE-ECDSA on P-256. No renegotiation, no session tickets, no resumption.
//
// Thread-safety: a TlsContext is immutable after creation and may be shared; a TlsEngine is
// single-threaded (but may move between threads between calls).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"
#include "base/secret.h"

namespace mte::crypto {

// Looks up the PSK for a psk_identity; nullopt for an unknown identity. Called synchronously from
// inside the handshake, on the thread that calls TlsEngine::Advance (in servers, the connection's
// own thread, so a short database lookup is allowed).
using PskLookup = std::function<std::optional<SecretBytes>(std::string_view identity)>;

// A client certificate that the handshake takes without judging its chain: the handshake proves
// only that the client holds the certificate's key (CertificateVerify). The application judges
// the chain afterwards (TlsEngine::peer_chain_der), with its own trust anchors, clock and
// revocation sources, so that a refusal can be explained to the client in HTTP.
enum class UnverifiedClientCert {
  kNone,      // no CertificateRequest
  kOptional,  // CertificateRequest; a client may answer with no certificate
  kRequired,  // CertificateRequest; no certificate fails the handshake
};

// The current DER OCSP response for the server's own certificate (RFC 6066 §8), or null: stapled
// to handshakes whose client asks for it. Called during the handshake; must be fast.
using OcspStapleSource = std::function<std::shared_ptr<const Bytes>()>;

struct TlsServerOptions {
  std::string server_name;  // the only SNI value accepted (case-insensitive)
  bool require_sni = true;  // false only for browser-facing listeners (IP literals carry no SNI)
  bool psk = false;         // accept PSK handshakes (the lookup is given per engine)
  std::string cert_chain_pem_file;  // server certificate chain (leaf first); empty = none
  std::string key_pem_file;
  std::string client_ca_pem_file;   // non-empty: require a client certificate from this CA
  UnverifiedClientCert unverified_client_cert = UnverifiedClientCert::kNone;  // exclusive with the CA
  OcspStapleSource ocsp_staple;     // set: staple when asked (needs a certificate)
  bool tls12 = true;
  bool tls13 = true;
};

struct TlsClientOptions {
  std::string server_name;      // SNI; also the name verified in the server certificate
  std::string trust_pem_file;   // verify the server certificate against these anchors
  std::string trust_pem;        // ... or against these (PEM text); either or both may be set
  // ... or, with neither set, by key: SHA-256 digests (32 octets each) of DER
  // SubjectPublicKeyInfos. A certificate of the presented chain whose key is listed becomes the
  // only trust anchor (partial chain), and the path from the leaf to it is verified as usual
  // (signatures, validity, the name). No CA store is involved.
  std::vector<Bytes> trust_spki_sha256;
  std::string cert_chain_pem_file;  // client certificate (mutual TLS)
  std::string key_pem_file;
  std::string psk_identity;     // PSK mode when non-empty
  bool tls12 = true;
  bool tls13 = true;
  std::string tls12_ciphers;    // override the TLS 1.2 cipher list (OpenSSL syntax); empty = default
  bool request_ocsp_staple = false;  // ask the server for its OCSP response (RFC 6066 §8)
};

class TlsContext {
 public:
  static Result<std::shared_ptr<const TlsContext>> Server(const TlsServerOptions& options);
  static Result<std::shared_ptr<const TlsContext>> Client(const TlsClientOptions& options);
  ~TlsContext();

  bool is_server() const { return server_; }
  const std::string& server_name() const { return server_name_; }
  const std::string& psk_identity() const { return psk_identity_; }
  bool request_ocsp_staple() const { return request_ocsp_staple_; }
  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  TlsContext() = default;
  bool server_ = false;
  std::string server_name_;
  std::string psk_identity_;
  bool request_ocsp_staple_ = false;
  std::unique_ptr<Impl> impl_;
};

class TlsEngine {
 public:
  // `psk_lookup` is required when the context accepts PSK.
  static Result<std::unique_ptr<TlsEngine>> Server(std::shared_ptr<const TlsContext> context,
                                                   PskLookup psk_lookup = {});
  // `psk` is required when the context is a PSK client.
  static Result<std::unique_ptr<TlsEngine>> Client(std::shared_ptr<const TlsContext> context,
                                                   std::optional<SecretBytes> psk = std::nullopt);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Ciphertext received from the peer. The engine buffers it until Advance().
  void FeedCiphertext(ByteSpan data);
  // Ciphertext to send to the peer (handshake flights, records, alerts). Clears the buffer.
  Bytes TakeCiphertext();
  bool HasCiphertext() const;

  // Runs the handshake as far as the buffered input allows, then decrypts every complete record
  // into the plaintext buffer. Errors are final (the engine is dead afterwards, but
  // TakeCiphertext() may still hold an alert worth sending):
  //   kPeerAuth/kAuthFailed       wrong or unknown PSK, certificate verification failure
  //   kPeerProtocol/kUnsupported  TLS version or cipher not acceptable
  //   kPeerProtocol/kMalformed    anything else the peer got wrong (garbage, bad SNI, ...)
  Result<void> Advance();

  bool HandshakeComplete() const;
  // True once the peer's close_notify has been processed.
  bool PeerClosed() const;

  // Decrypted application data received so far. Clears the buffer.
  Bytes TakePlaintext();
  size_t PlaintextSize() const;

  // Encrypts application data. REQUIRES: HandshakeComplete().
  Result<void> WritePlaintext(ByteSpan data);
  // Queues close_notify.
  void Shutdown();

  // RFC 5705 / RFC 8446 §7.5 exporter. `context` nullopt = "no context" (use_context = 0).
  Result<SecretBytes> Export(std::string_view label, size_t length,
                             std::optional<ByteSpan> context = std::nullopt) const;

  // After the handshake: the negotiated PSK identity ("" for certificate handshakes), the SNI the
  // client sent, the protocol version ("TLSv1.2"/"TLSv1.3"), the cipher name, and the verified
  // peer certificate's subjectAltName DNS entries (mutual TLS).
  const std::string& psk_identity() const { return psk_identity_; }
  std::string server_name() const;
  std::string version() const;
  std::string cipher() const;
  std::vector<std::string> peer_dns_names() const;
  // The certificates the peer presented, leaf first, DER, as sent (not verified by this engine
  // when the context takes unverified client certificates). Empty when it presented none.
  std::vector<Bytes> peer_chain_der() const;
  // The OCSP response the server stapled (client side; RFC 6066 §8), DER; empty if none.
  Bytes stapled_ocsp_response() const;

  // Why the last handshake failed, for logs (never contains secrets). Empty if it did not fail.
  const std::string& failure() const { return failure_; }

  struct Impl;

 private:
  TlsEngine() = default;
  std::unique_ptr<Impl> impl_;
  std::string psk_identity_;
  std::string failure_;
  friend struct TlsCallbacks;
};

}  // namespace mte::crypto
