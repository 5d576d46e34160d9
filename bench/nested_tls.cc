#include "nested_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <strings.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "crypto/device_pki.h"
#include "crypto/pki.h"
#include "crypto/tls_profile.h"

namespace mte::bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPskIdentity = "kpm-0@maker.bench.test";
// The product's lists (src/crypto/tls_profile.h).
using mte::crypto::tls_profile::kCert12Ciphers;
using mte::crypto::tls_profile::kPsk12Ciphers;
// The device's inner suite in the Flow B benchmark (RspfTlsOptions tls12 only, this suite).
constexpr const char* kInnerPskCipher = "PSK-AES128-CBC-SHA256";
constexpr const char* kInnerCertCipher = "ECDHE-ECDSA-AES128-SHA256";

unsigned char g_kpm[32];

void Common(SSL_CTX* ctx, bool tls12, bool tls13) {
  if (!mte::crypto::tls_profile::ApplyCommon(ctx, tls12, tls13)) DieSsl("common TLS settings");
}

int ServerName(SSL* ssl, int* alert, void*) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr || strcasecmp(name, kBenchFqdn) != 0) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

unsigned int ServerPsk(SSL*, const char* identity, unsigned char* psk, unsigned int max_len) {
  if (identity == nullptr || std::strcmp(identity, kPskIdentity) != 0 || max_len < sizeof g_kpm) {
    RAND_bytes(psk, 32);
    return 32;
  }
  std::memcpy(psk, g_kpm, sizeof g_kpm);
  return sizeof g_kpm;
}

unsigned int ClientPsk(SSL*, const char*, char* identity, unsigned int max_identity_len,
                       unsigned char* psk, unsigned int max_psk_len) {
  if (std::strlen(kPskIdentity) + 1 > max_identity_len || sizeof g_kpm > max_psk_len) return 0;
  std::memcpy(identity, kPskIdentity, std::strlen(kPskIdentity) + 1);
  std::memcpy(psk, g_kpm, sizeof g_kpm);
  return sizeof g_kpm;
}

SSL_CTX* NewCtx(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) DieSsl("SSL_CTX_new");
  return ctx;
}

void UseCertificate(SSL_CTX* ctx, const fs::path& chain, const fs::path& key) {
  if (SSL_CTX_use_certificate_chain_file(ctx, chain.c_str()) != 1) DieSsl(chain.c_str());
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) DieSsl(key.c_str());
  if (SSL_CTX_check_private_key(ctx) != 1) DieSsl("key mismatch");
}

void Trust(SSL_CTX* ctx, const fs::path& ca, int mode) {
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) DieSsl(ca.c_str());
  SSL_CTX_set_verify(ctx, mode, nullptr);
}

}  // namespace

const char* InnerCipher(Inner inner) {
  return inner == Inner::kCert ? kInnerCertCipher : kInnerPskCipher;
}

void DieSsl(const char* what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what);
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

void CreateNestedPki(const fs::path& dir, Inner inner) {
  std::vector<mte::crypto::LeafSpec> leaves;
  // Exactly the MEF leaf of `mte init` (apps/mte/main.cc).
  leaves.push_back({"mef", kBenchFqdn, {kBenchFqdn}, {}, true, true});
  const auto now = std::chrono::system_clock::now();
  auto ok = mte::crypto::CreateDevPki(dir, "OpenMTE development CA", leaves, now);
  if (ok && inner == Inner::kCert) {
    // A maker's device CA and one factory certificate, as `mte admin pki` makes them.
    ok = mte::crypto::CreateDeviceCa(dir / "device-ca", "Bench Device CA", now);
    mte::crypto::DeviceCertSpec spec;
    spec.device_id = "bench-device-0";
    if (ok) ok = mte::crypto::IssueDeviceCert(dir / "device-ca", spec, dir / "device", now);
  }
  if (!ok) DieSsl(("PKI: " + ok.error().detail).c_str());
}

void SetBenchKpm(const unsigned char (&kpm)[32]) { std::memcpy(g_kpm, kpm, sizeof g_kpm); }

void RandomBenchKpm() {
  if (RAND_bytes(g_kpm, sizeof g_kpm) != 1) DieSsl("RAND_bytes");
}

SSL_CTX* OuterServerCtx(const fs::path& pki) {
  SSL_CTX* ctx = NewCtx(TLS_server_method());
  Common(ctx, true, true);
  std::string ciphers = std::string(kPsk12Ciphers) + ":" + kCert12Ciphers;
  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) DieSsl("cipher list");
  UseCertificate(ctx, pki / "mef.crt", pki / "mef.key");
  SSL_CTX_set_psk_server_callback(ctx, &ServerPsk);
  SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
  SSL_CTX_set_tlsext_servername_callback(ctx, &ServerName);
  return ctx;
}

SSL_CTX* InnerServerCtx(Inner inner, const fs::path& pki) {
  SSL_CTX* ctx = NewCtx(TLS_server_method());
  Common(ctx, true, true);
  if (inner == Inner::kPpsk) {
    if (SSL_CTX_set_cipher_list(ctx, kPsk12Ciphers) != 1) DieSsl("cipher list");
    SSL_CTX_set_psk_server_callback(ctx, &ServerPsk);
    SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
  } else {
    // The certificate RSPF's inner server context (src/mef/rspf/cert/cert_rspf.cc): the MEF
    // certificate, the certificate suites, a device certificate required. The product verifies
    // the device's chain after the handshake (crypto::VerifyDeviceChain); here OpenSSL verifies
    // it against the device CA inside the handshake, which is the same signature and chain work.
    if (SSL_CTX_set_cipher_list(ctx, kCert12Ciphers) != 1) DieSsl("cipher list");
    UseCertificate(ctx, pki / "mef.crt", pki / "mef.key");
    Trust(ctx, pki / "device-ca" / "ca.crt", SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    static const unsigned char kContext[] = "mte-bench";
    SSL_CTX_set_session_id_context(ctx, kContext, sizeof kContext - 1);
  }
  SSL_CTX_set_tlsext_servername_callback(ctx, &ServerName);
  return ctx;
}

SSL_CTX* OuterClientCtx(const fs::path& pki) {
  SSL_CTX* ctx = NewCtx(TLS_client_method());
  Common(ctx, true, true);
  if (SSL_CTX_set_cipher_list(ctx, kCert12Ciphers) != 1) DieSsl("cipher list");
  Trust(ctx, pki / "ca.crt", SSL_VERIFY_PEER);
  return ctx;
}

SSL_CTX* InnerClientCtx(Inner inner, const fs::path& pki) {
  SSL_CTX* ctx = NewCtx(TLS_client_method());
  Common(ctx, true, false);
  if (SSL_CTX_set_cipher_list(ctx, InnerCipher(inner)) != 1) DieSsl("cipher list");
  if (inner == Inner::kPpsk) {
    SSL_CTX_set_psk_client_callback(ctx, &ClientPsk);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    // The certificate device's inner context (src/proto/rspf/cert_device.cc): its certificate
    // and key, the MEF's trust anchor.
    UseCertificate(ctx, pki / "device" / "device.crt", pki / "device" / "device.key");
    Trust(ctx, pki / "ca.crt", SSL_VERIFY_PEER);
  }
  return ctx;
}

void NewLayer(Layer& layer, SSL_CTX* ctx, bool server) {
  layer.ssl = SSL_new(ctx);
  if (layer.ssl == nullptr) DieSsl("SSL_new");
  layer.rbio = BIO_new(BIO_s_mem());
  layer.wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(layer.rbio, -1);
  SSL_set_bio(layer.ssl, layer.rbio, layer.wbio);
  if (server) {
    SSL_set_accept_state(layer.ssl);
  } else {
    SSL_set_tlsext_host_name(layer.ssl, kBenchFqdn);
    if (SSL_CTX_get_verify_mode(SSL_get_SSL_CTX(layer.ssl)) & SSL_VERIFY_PEER) {
      SSL_set_hostflags(layer.ssl, X509_CHECK_FLAG_NO_WILDCARDS);
      SSL_set1_host(layer.ssl, kBenchFqdn);
    }
    SSL_set_connect_state(layer.ssl);
  }
}

void Handshake(Layer& layer, const char* what) {
  if (layer.done) return;
  int rc = SSL_do_handshake(layer.ssl);
  if (rc == 1) {
    layer.done = true;
    return;
  }
  int err = SSL_get_error(layer.ssl, rc);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) DieSsl(what);
}

void Drain(BIO* from, std::vector<unsigned char>& to) {
  size_t pending = BIO_ctrl_pending(from);
  size_t old = to.size();
  to.resize(old + pending);
  if (pending > 0) {
    int n = BIO_read(from, to.data() + old, static_cast<int>(pending));
    to.resize(old + static_cast<size_t>(std::max(n, 0)));
  }
}

}  // namespace mte::bench
