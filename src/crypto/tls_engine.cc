#include "crypto/tls_engine.h"

#include <openssl/rand.h>
#include <openssl/tls1.h>
#include <strings.h>

#include <algorithm>
#include <cstring>

#include "crypto/keys.h"
#include "crypto/ossl.h"
#include "crypto/tls_profile.h"

namespace mte::crypto {
namespace {

using tls_profile::kCert12Ciphers;
using tls_profile::kPsk12Ciphers;

constexpr size_t kMaxPskIdentity = 255;
constexpr size_t kMaxPsk = 64;

int EngineIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

struct TlsContext::Impl {
  SslCtxPtr ctx;
  OcspStapleSource ocsp_staple;
  std::vector<Bytes> trust_spki_sha256;  // client: verify by pinned key (TlsClientOptions)
};

struct TlsEngine::Impl {
  std::shared_ptr<const TlsContext> context;
  SslPtr ssl;
  BIO* rbio = nullptr;  // owned by ssl
  BIO* wbio = nullptr;  // owned by ssl
  PskLookup psk_lookup;
  std::optional<SecretBytes> client_psk;
  Bytes plaintext;
  X509StackPtr pinned_anchors;  // the presented certificates a pin named (VerifyPinned)
  bool handshake_done = false;
  bool peer_closed = false;
  bool dead = false;
};

// Static OpenSSL callbacks with access to TlsEngine internals.
struct TlsCallbacks {
  static TlsEngine* EngineOf(SSL* ssl) {
    return static_cast<TlsEngine*>(SSL_get_ex_data(ssl, EngineIndex()));
  }

  // SNI is mandatory (TS-0003 §10.2.1); only the configured name is accepted.
  static int ServerName(SSL* ssl, int* alert, void*) {
    TlsEngine* engine = EngineOf(ssl);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    const std::string& expected = engine->impl_->context->server_name();
    if (name == nullptr) {
      engine->failure_ = "client sent no server_name (SNI is required)";
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    if (strcasecmp(name, expected.c_str()) != 0) {
      engine->failure_ = "client asked for server_name '" + std::string(name).substr(0, 255) +
                         "', this server is '" + expected + "'";
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
  }

  // TLS 1.2 PSK key exchange, and TLS 1.3 external PSK through OpenSSL's compatibility path
  // (which builds a TLS_AES_128_GCM_SHA256 session from this key).
  static unsigned int ServerPsk(SSL* ssl, const char* identity, unsigned char* psk,
                                unsigned int max_psk_len) {
    TlsEngine* engine = EngineOf(ssl);
    std::string_view id = identity == nullptr ? std::string_view() : std::string_view(identity);
    std::optional<SecretBytes> key;
    if (id.size() > kMaxPskIdentity) {
      id = {};  // never looked up, never recorded: fails like any unknown identity
    } else {
      engine->psk_identity_ = std::string(id);
      if (!id.empty() && engine->impl_->psk_lookup) key = engine->impl_->psk_lookup(id);
    }
    if (!key.has_value() || key->empty() || key->size() > max_psk_len) {
      // RFC 4279 §2: continue with a random key so that an unknown identity fails exactly like
      // a wrong key (at Finished / the binder), revealing nothing to the peer.
      engine->failure_ = "unknown PSK identity";
      RAND_bytes(psk, 32);
      return 32;
    }
    auto bytes = key->Expose(SecretAccess::ForCrypto());
    std::memcpy(psk, bytes.data(), bytes.size());
    return static_cast<unsigned int>(bytes.size());
  }

  // RFC 6066 §8: the server's stapled response, when the client asked for one.
  static int ServerStatus(SSL* ssl, void*) {
    TlsEngine* engine = EngineOf(ssl);
    const auto& source = engine->impl_->context->impl().ocsp_staple;
    if (!source) return SSL_TLSEXT_ERR_NOACK;
    std::shared_ptr<const Bytes> response = source();
    if (!response || response->empty()) return SSL_TLSEXT_ERR_NOACK;
    OpensslBytesPtr copy(
        static_cast<unsigned char*>(OPENSSL_memdup(response->data(), response->size())));
    if (!copy) return SSL_TLSEXT_ERR_NOACK;
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy.get(), static_cast<long>(response->size())) != 1) {
      return SSL_TLSEXT_ERR_NOACK;
    }
    copy.release();  // now owned by the SSL
    return SSL_TLSEXT_ERR_OK;
  }

  // The server chain of a client that trusts pinned keys (TlsClientOptions::trust_spki_sha256):
  // the presented certificates whose SubjectPublicKeyInfo hashes to a pin become the trust
  // anchors of an otherwise ordinary verification (X509_V_FLAG_PARTIAL_CHAIN, so that a pinned
  // intermediate or leaf can end the path). The host name check is the one SSL_set1_host set.
  static int VerifyPinned(X509_STORE_CTX* store_ctx, void* /*arg*/) {
    auto* ssl = static_cast<SSL*>(
        X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
    TlsEngine* engine = EngineOf(ssl);
    const auto& pins = engine->impl_->context->impl().trust_spki_sha256;
    X509StackPtr anchors(sk_X509_new_null());
    if (!anchors) return 0;
    STACK_OF(X509)* presented = X509_STORE_CTX_get0_untrusted(store_ctx);
    for (int i = 0; presented != nullptr && i < sk_X509_num(presented); ++i) {
      X509* cert = sk_X509_value(presented, i);
      unsigned char* der = nullptr;
      int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
      if (len <= 0) continue;
      OpensslBytesPtr owned(der);
      auto digest = Sha256(ByteSpan(der, static_cast<size_t>(len)));
      for (const Bytes& pin : pins) {
        if (pin.size() != digest.size() || !std::equal(pin.begin(), pin.end(), digest.begin())) {
          continue;
        }
        if (X509_up_ref(cert) != 1) return 0;
        X509Ptr held(cert);
        if (sk_X509_push(anchors.get(), held.get()) <= 0) return 0;
        held.release();  // now owned by `anchors`
        break;
      }
    }
    if (sk_X509_num(anchors.get()) == 0) {
      engine->failure_ = "no certificate the server presented has a pinned key (SPKI SHA-256)";
      X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_UNTRUSTED);
      return 0;
    }
    X509_STORE_CTX_set0_trusted_stack(store_ctx, anchors.get());
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(store_ctx), X509_V_FLAG_PARTIAL_CHAIN);
    // The context only borrows the stack; the engine keeps it until it goes away.
    engine->impl_->pinned_anchors = std::move(anchors);
    return X509_verify_cert(store_ctx) == 1 ? 1 : 0;
  }

  static unsigned int ClientPsk(SSL* ssl, const char* /*hint*/, char* identity,
                                unsigned int max_identity_len, unsigned char* psk,
                                unsigned int max_psk_len) {
    TlsEngine* engine = EngineOf(ssl);
    const std::string& id = engine->impl_->context->psk_identity();
    const auto& key = engine->impl_->client_psk;
    if (!key.has_value() || id.size() + 1 > max_identity_len || key->size() > max_psk_len) {
      return 0;
    }
    std::memcpy(identity, id.c_str(), id.size() + 1);
    auto bytes = key->Expose(SecretAccess::ForCrypto());
    std::memcpy(psk, bytes.data(), bytes.size());
    engine->psk_identity_ = id;
    return static_cast<unsigned int>(bytes.size());
  }
};

namespace {

Result<void> LoadCertAndKey(SSL_CTX* ctx, const std::string& chain, const std::string& key) {
  if (SSL_CTX_use_certificate_chain_file(ctx, chain.c_str()) != 1) {
    return Fail(OsslError("load certificate chain " + chain, ErrorKind::kLocalUsage,
                          Errc::kConfig));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return Fail(OsslError("load private key " + key, ErrorKind::kLocalUsage, Errc::kConfig));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Fail(OsslError("private key does not match certificate " + chain,
                          ErrorKind::kLocalUsage, Errc::kConfig));
  }
  return {};
}

Result<void> AddTrustPem(SSL_CTX* ctx, const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Fail(OsslError("BIO_new_mem_buf"));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    if (X509_STORE_add_cert(store, cert.get()) != 1) {
      return Fail(OsslError("add trust anchor", ErrorKind::kLocalUsage, Errc::kConfig));
    }
    ++added;
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
  if (added == 0) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "no certificate in trust anchor PEM");
  }
  return {};
}

}  // namespace

TlsContext::~TlsContext() = default;

Result<std::shared_ptr<const TlsContext>> TlsContext::Server(const TlsServerOptions& options) {
  if (options.server_name.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "TLS server needs a server name");
  }
  bool has_cert = !options.cert_chain_pem_file.empty();
  if (!options.psk && !has_cert) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "TLS server needs a PSK or a certificate");
  }
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return Fail(OsslError("SSL_CTX_new"));
  MTE_TRY(tls_profile::ApplyCommon(ctx.get(), options.tls12, options.tls13));
  std::string ciphers;
  if (options.psk) ciphers = kPsk12Ciphers;
  if (has_cert) ciphers += std::string(ciphers.empty() ? "" : ":") + kCert12Ciphers;
  if (SSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != 1) {
    return Fail(OsslError("set cipher list"));
  }
  if (has_cert) MTE_TRY(LoadCertAndKey(ctx.get(), options.cert_chain_pem_file, options.key_pem_file));
  if (options.psk) {
    SSL_CTX_set_psk_server_callback(ctx.get(), &TlsCallbacks::ServerPsk);
    // psk_ke is allowed for clients that offer nothing else (GnuTLS can); an OpenSSL 3.0 server
    // still prefers psk_dhe_ke whenever the client offers it (no SSL_OP_PREFER_NO_DHE_KEX before OpenSSL 3.3).
    SSL_CTX_set_options(ctx.get(), SSL_OP_ALLOW_NO_DHE_KEX);
  }
  if (!options.client_ca_pem_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), options.client_ca_pem_file.c_str(), nullptr) != 1) {
      return Fail(OsslError("load client CA " + options.client_ca_pem_file, ErrorKind::kLocalUsage,
                            Errc::kConfig));
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  } else if (options.unverified_client_cert != UnverifiedClientCert::kNone) {
    int mode = SSL_VERIFY_PEER;
    if (options.unverified_client_cert == UnverifiedClientCert::kRequired) {
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(ctx.get(), mode, nullptr);
    // The chain is judged by the application after the handshake; OpenSSL still checks the
    // CertificateVerify signature (proof of possession of the certificate's key).
    SSL_CTX_set_cert_verify_callback(ctx.get(), [](X509_STORE_CTX*, void*) { return 1; }, nullptr);
  }
  if (SSL_CTX_get_verify_mode(ctx.get()) & SSL_VERIFY_PEER) {
    // With client certificates OpenSSL insists on a session ID context before it takes a TLS 1.3
    // external PSK (treated as a resumption); there is no resumption otherwise (no tickets).
    static constexpr unsigned char kSessionContext[] = "openmte";
    if (SSL_CTX_set_session_id_context(ctx.get(), kSessionContext, sizeof kSessionContext - 1) !=
        1) {
      return Fail(OsslError("set session id context"));
    }
  }
  if (options.ocsp_staple) {
    if (!has_cert) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "OCSP stapling needs a certificate");
    }
    SSL_CTX_set_tlsext_status_cb(ctx.get(), &TlsCallbacks::ServerStatus);
  }
  if (options.require_sni) {
    SSL_CTX_set_tlsext_servername_callback(ctx.get(), &TlsCallbacks::ServerName);
  }
  auto context = std::shared_ptr<TlsContext>(new TlsContext());
  context->server_ = true;
  context->server_name_ = options.server_name;
  context->impl_ = std::make_unique<Impl>();
  context->impl_->ctx = std::move(ctx);
  context->impl_->ocsp_staple = options.ocsp_staple;
  return std::shared_ptr<const TlsContext>(std::move(context));
}

Result<std::shared_ptr<const TlsContext>> TlsContext::Client(const TlsClientOptions& options) {
  if (options.server_name.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "TLS client needs a server name (SNI)");
  }
  bool psk = !options.psk_identity.empty();
  bool pinned = !options.trust_spki_sha256.empty();
  bool verify = !options.trust_pem_file.empty() || !options.trust_pem.empty() || pinned;
  if (pinned && (!options.trust_pem_file.empty() || !options.trust_pem.empty())) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "TLS client trusts either anchors or pinned keys, not both");
  }
  for (const Bytes& pin : options.trust_spki_sha256) {
    if (pin.size() != 32) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "a pinned key digest must be 32 octets");
    }
  }
  if (!psk && !verify) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "TLS client needs trust anchors or a PSK identity");
  }
  if (options.psk_identity.size() > kMaxPskIdentity) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "PSK identity longer than 255 bytes");
  }
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Fail(OsslError("SSL_CTX_new"));
  MTE_TRY(tls_profile::ApplyCommon(ctx.get(), options.tls12, options.tls13));
  std::string ciphers = options.tls12_ciphers;
  if (ciphers.empty()) ciphers = psk ? kPsk12Ciphers : kCert12Ciphers;
  if (SSL_CTX_set_cipher_list(ctx.get(), ciphers.c_str()) != 1) {
    return Fail(OsslError("set cipher list '" + ciphers + "'", ErrorKind::kLocalUsage,
                          Errc::kConfig));
  }
  if (psk) SSL_CTX_set_psk_client_callback(ctx.get(), &TlsCallbacks::ClientPsk);
  if (!options.trust_pem_file.empty() &&
      SSL_CTX_load_verify_locations(ctx.get(), options.trust_pem_file.c_str(), nullptr) != 1) {
    return Fail(OsslError("load trust anchors " + options.trust_pem_file, ErrorKind::kLocalUsage,
                          Errc::kConfig));
  }
  if (!options.trust_pem.empty()) MTE_TRY(AddTrustPem(ctx.get(), options.trust_pem));
  // A PSK-only client has no trust anchors: with SSL_VERIFY_PEER and an empty store, a server
  // that answers with a certificate instead of the PSK fails verification.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (pinned) SSL_CTX_set_cert_verify_callback(ctx.get(), &TlsCallbacks::VerifyPinned, nullptr);
  if (!options.cert_chain_pem_file.empty()) {
    MTE_TRY(LoadCertAndKey(ctx.get(), options.cert_chain_pem_file, options.key_pem_file));
  }
  auto context = std::shared_ptr<TlsContext>(new TlsContext());
  context->server_ = false;
  context->server_name_ = options.server_name;
  context->psk_identity_ = options.psk_identity;
  context->request_ocsp_staple_ = options.request_ocsp_staple;
  context->impl_ = std::make_unique<Impl>();
  context->impl_->ctx = std::move(ctx);
  context->impl_->trust_spki_sha256 = options.trust_spki_sha256;
  return std::shared_ptr<const TlsContext>(std::move(context));
}

namespace {

Result<std::unique_ptr<TlsEngine::Impl>> NewImpl(const std::shared_ptr<const TlsContext>& context) {
  auto impl = std::make_unique<TlsEngine::Impl>();
  impl->context = context;
  impl->ssl.reset(SSL_new(context->impl().ctx.get()));
  if (!impl->ssl) return Fail(OsslError("SSL_new"));
  BioPtr rbio(BIO_new(BIO_s_mem()));
  BioPtr wbio(BIO_new(BIO_s_mem()));
  if (!rbio || !wbio) return Fail(OsslError("BIO_new"));
  impl->rbio = rbio.release();  // owned by the SSL from SSL_set_bio below
  impl->wbio = wbio.release();
  // An empty read BIO means "wait for more", not end of file.
  BIO_set_mem_eof_return(impl->rbio, -1);
  SSL_set_bio(impl->ssl.get(), impl->rbio, impl->wbio);  // the SSL now owns both BIOs
  return impl;
}

}  // namespace

Result<std::unique_ptr<TlsEngine>> TlsEngine::Server(std::shared_ptr<const TlsContext> context,
                                                     PskLookup psk_lookup) {
  if (!context || !context->is_server()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "not a server TLS context");
  }
  auto engine = std::unique_ptr<TlsEngine>(new TlsEngine());
  MTE_TRY_ASSIGN(engine->impl_, NewImpl(context));
  engine->impl_->psk_lookup = std::move(psk_lookup);
  SSL_set_ex_data(engine->impl_->ssl.get(), EngineIndex(), engine.get());
  SSL_set_accept_state(engine->impl_->ssl.get());
  return engine;
}

Result<std::unique_ptr<TlsEngine>> TlsEngine::Client(std::shared_ptr<const TlsContext> context,
                                                     std::optional<SecretBytes> psk) {
  if (!context || context->is_server()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "not a client TLS context");
  }
  if (!context->psk_identity().empty() && (!psk.has_value() || psk->empty() ||
                                           psk->size() > kMaxPsk)) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "PSK client needs a key of 1..64 octets");
  }
  auto engine = std::unique_ptr<TlsEngine>(new TlsEngine());
  MTE_TRY_ASSIGN(engine->impl_, NewImpl(context));
  engine->impl_->client_psk = std::move(psk);
  SSL* ssl = engine->impl_->ssl.get();
  SSL_set_ex_data(ssl, EngineIndex(), engine.get());
  const std::string& name = context->server_name();
  if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return Fail(OsslError("set SNI"));
  if (context->request_ocsp_staple() &&
      SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp) != 1) {
    return Fail(OsslError("request OCSP stapling"));
  }
  if (SSL_CTX_get_verify_mode(context->impl().ctx.get()) & SSL_VERIFY_PEER) {
    // TS-0003 §8.1.2.5: the FQDN must match subjectAltName exactly; no wildcards.
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_WILDCARDS);
    if (SSL_set1_host(ssl, name.c_str()) != 1) return Fail(OsslError("set verify host"));
  }
  SSL_set_connect_state(ssl);
  return engine;
}

TlsEngine::~TlsEngine() = default;

void TlsEngine::FeedCiphertext(ByteSpan data) {
  if (!data.empty()) BIO_write(impl_->rbio, data.data(), static_cast<int>(data.size()));
}

Bytes TlsEngine::TakeCiphertext() {
  Bytes out(static_cast<size_t>(BIO_ctrl_pending(impl_->wbio)));
  if (!out.empty()) {
    int n = BIO_read(impl_->wbio, out.data(), static_cast<int>(out.size()));
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  return out;
}

bool TlsEngine::HasCiphertext() const { return BIO_ctrl_pending(impl_->wbio) > 0; }

namespace {

Error HandshakeError(const std::string& failure) {
  // Classify by the first OpenSSL reason; our own callbacks' reason (if any) wins as detail.
  unsigned long e = ERR_peek_error();
  int reason = ERR_GET_REASON(e);
  Error error = OsslError("TLS handshake failed", ErrorKind::kPeerProtocol, Errc::kMalformed);
  switch (reason) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_CIPHERS_AVAILABLE:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
      error.code = Errc::kUnsupported;
      break;
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_DIGEST_CHECK_FAILED:
    case SSL_R_BINDER_DOES_NOT_VERIFY:
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    case SSL_R_PSK_IDENTITY_NOT_FOUND:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
    // What a PSK peer sends for a wrong key (TLS 1.3 binder: illegal_parameter; TLS 1.2:
    // bad_record_mac); with certificates these alerts do not occur for a wrong credential.
    case SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER:
    case SSL_R_SSLV3_ALERT_BAD_RECORD_MAC:
    case SSL_R_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      error.kind = ErrorKind::kPeerAuth;
      error.code = Errc::kAuthFailed;
      break;
    default:
      break;
  }
  if (!failure.empty()) {
    error.detail = "TLS handshake failed: " + failure;
    if (failure == "unknown PSK identity") {
      error.kind = ErrorKind::kPeerAuth;
      error.code = Errc::kAuthFailed;
    }
  }
  ERR_clear_error();
  return error;
}

}  // namespace

Result<void> TlsEngine::Advance() {
  if (impl_->dead) {
    return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "TLS engine already failed");
  }
  SSL* ssl = impl_->ssl.get();
  ERR_clear_error();
  if (!impl_->handshake_done) {
    int rc = SSL_do_handshake(ssl);
    if (rc != 1) {
      int err = SSL_get_error(ssl, rc);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return {};
      impl_->dead = true;
      if (err == SSL_ERROR_ZERO_RETURN) {
        return Fail(ErrorKind::kPeerProtocol, Errc::kClosed, "peer closed during handshake");
      }
      if (failure_.empty() && SSL_get_verify_result(ssl) != X509_V_OK) {
        failure_ = std::string("certificate verification failed: ") +
                   X509_verify_cert_error_string(SSL_get_verify_result(ssl));
      }
      Error error = HandshakeError(failure_);
      if (failure_.empty()) failure_ = error.detail;
      return Fail(std::move(error));
    }
    impl_->handshake_done = true;
    // An unknown identity was answered with a random key; such a handshake cannot complete.
    // (Belt and braces: never report success for it.)
    if (failure_ == "unknown PSK identity") {
      impl_->dead = true;
      return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "TLS handshake failed: " + failure_);
    }
    // A PSK client must only accept a handshake that used the PSK (TLS 1.3: the PSK was
    // "resumed"; TLS 1.2: a PSK suite), never one authenticated some other way.
    if (!impl_->context->is_server() && !impl_->context->psk_identity().empty()) {
      const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
      bool psk_used = SSL_version(ssl) == TLS1_3_VERSION
                          ? SSL_session_reused(ssl) == 1
                          : cipher != nullptr && SSL_CIPHER_get_auth_nid(cipher) == NID_auth_psk;
      if (!psk_used) {
        impl_->dead = true;
        psk_identity_.clear();
        failure_ = "the server did not authenticate with the PSK";
        return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "TLS handshake failed: " + failure_);
      }
    }
  }
  uint8_t buf[16384];
  while (true) {
    size_t n = 0;
    int rc = SSL_read_ex(ssl, buf, sizeof buf, &n);
    if (rc == 1) {
      impl_->plaintext.insert(impl_->plaintext.end(), buf, buf + n);
      continue;
    }
    int err = SSL_get_error(ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return {};
    if (err == SSL_ERROR_ZERO_RETURN) {
      impl_->peer_closed = true;
      return {};
    }
    impl_->dead = true;
    Error error = OsslError("TLS record error", ErrorKind::kPeerProtocol, Errc::kMalformed);
    ERR_clear_error();
    return Fail(std::move(error));
  }
}

bool TlsEngine::HandshakeComplete() const { return impl_->handshake_done; }

bool TlsEngine::PeerClosed() const { return impl_->peer_closed; }

Bytes TlsEngine::TakePlaintext() {
  Bytes out;
  out.swap(impl_->plaintext);
  return out;
}

size_t TlsEngine::PlaintextSize() const { return impl_->plaintext.size(); }

Result<void> TlsEngine::WritePlaintext(ByteSpan data) {
  if (!impl_->handshake_done || impl_->dead) {
    return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "TLS session is not established");
  }
  ERR_clear_error();
  size_t offset = 0;
  while (offset < data.size()) {
    size_t written = 0;
    if (SSL_write_ex(impl_->ssl.get(), data.data() + offset, data.size() - offset, &written) != 1) {
      impl_->dead = true;
      return Fail(OsslError("TLS write failed", ErrorKind::kIo, Errc::kIoFailed));
    }
    offset += written;
  }
  return {};
}

void TlsEngine::Shutdown() {
  if (impl_->handshake_done && !impl_->dead) {
    ERR_clear_error();
    SSL_shutdown(impl_->ssl.get());
    ERR_clear_error();
  }
}

Result<SecretBytes> TlsEngine::Export(std::string_view label, size_t length,
                                      std::optional<ByteSpan> context) const {
  if (!impl_->handshake_done) {
    return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "exporter needs a completed handshake");
  }
  SecretBytes out(length);
  auto bytes = out.ExposeMutable(SecretAccess::ForCrypto());
  ERR_clear_error();
  int rc = SSL_export_keying_material(
      impl_->ssl.get(), bytes.data(), length, label.data(), label.size(),
      context.has_value() ? context->data() : nullptr, context.has_value() ? context->size() : 0,
      context.has_value() ? 1 : 0);
  if (rc != 1) return Fail(OsslError("exporter"));
  return out;
}

std::string TlsEngine::server_name() const {
  const char* name = SSL_get_servername(impl_->ssl.get(), TLSEXT_NAMETYPE_host_name);
  return name == nullptr ? std::string() : std::string(name);
}

std::string TlsEngine::version() const { return SSL_get_version(impl_->ssl.get()); }

std::string TlsEngine::cipher() const {
  const char* name = SSL_get_cipher_name(impl_->ssl.get());
  return name == nullptr ? std::string() : std::string(name);
}

std::vector<std::string> TlsEngine::peer_dns_names() const {
  std::vector<std::string> names;
  X509* cert = SSL_get0_peer_certificate(impl_->ssl.get());
  if (cert == nullptr || SSL_get_verify_result(impl_->ssl.get()) != X509_V_OK) return names;
  GeneralNamesPtr sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!sans) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans.get(), i);
    if (gn->type == GEN_DNS) {
      const ASN1_STRING* s = gn->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    }
  }
  return names;
}

std::vector<Bytes> TlsEngine::peer_chain_der() const {
  std::vector<Bytes> chain;
  auto push = [&chain](X509* cert) {
    int n = i2d_X509(cert, nullptr);
    if (n <= 0) return;
    Bytes der(static_cast<size_t>(n));
    unsigned char* p = der.data();
    if (i2d_X509(cert, &p) == n) chain.push_back(std::move(der));
  };
  SSL* ssl = impl_->ssl.get();
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return chain;
  push(leaf);
  // On the server side the stack excludes the leaf; on the client side it starts with it.
  STACK_OF(X509)* rest = SSL_get_peer_cert_chain(ssl);
  for (int i = 0; rest != nullptr && i < sk_X509_num(rest); ++i) {
    X509* cert = sk_X509_value(rest, i);
    if (i == 0 && X509_cmp(cert, leaf) == 0) continue;
    push(cert);
  }
  return chain;
}

Bytes TlsEngine::stapled_ocsp_response() const {
  const unsigned char* data = nullptr;
  long n = SSL_get_tlsext_status_ocsp_resp(impl_->ssl.get(), &data);
  if (n <= 0 || data == nullptr) return {};
  return Bytes(data, data + n);
}

}  // namespace mte::crypto
