// mte_bench_bare: the cost floor of a Flow B enrolment's cryptography, measured with the raw
// OpenSSL API (no OpenMTE TLS engine, no HTTP, no database, no sockets).
//
// One "nested handshake" = outer TLS 1.3 with the MEF's ECDSA P-256 certificate (X25519), then,
// inside the outer session, an inner TLS 1.2 handshake of the RSPF chosen with --inner:
//   ppsk (default): TLS_PSK_WITH_AES_128_CBC_SHA256, TS-0003's mandatory PPSK suite;
//   cert: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (TS-0003 §10.2.3), mutually authenticated: the
//         MEF's certificate again, and a device certificate (P-256) that the server verifies
//         against the device CA during the handshake.
// Both client and server run in this thread over memory BIOs; the inner flights are carried as
// outer application data by a manual pump.
//
// CPU is charged per side with CLOCK_THREAD_CPUTIME_ID around each side's turn (a run of that
// side's SSL_new / SSL_do_handshake / SSL_read / SSL_write / SSL_free calls), so
// server CPU = server outer + server inner work, client CPU likewise.
//
// The certificates come from crypto::CreateDevPki (the same generator as `mte init`) with the
// MEF leaf exactly as `mte init` specifies it; the suite and group lists and the common SSL_CTX
// settings are the product's own (crypto/tls_profile.h), and the per-context choices mirror
// src/crypto/tls_engine.cc (which list goes to which context, PSK callbacks, SNI, verification).
//
// Output: one line per repetition, a summary, and machine-readable key=value lines.
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench_util.h"
#include "crypto/device_pki.h"
#include "crypto/pki.h"
#include "crypto/tls_profile.h"

namespace {

using mte::bench::Median;
using mte::bench::ThreadCpuNs;

namespace fs = std::filesystem;

constexpr const char* kFqdn = "mef.bench.test";
constexpr const char* kPskIdentity = "kpm-0@maker.bench.test";
// The product's lists (src/crypto/tls_profile.h).
using mte::crypto::tls_profile::kCert12Ciphers;
using mte::crypto::tls_profile::kPsk12Ciphers;
// The device's inner suite in the Flow B benchmark (RspfTlsOptions tls12 only, this suite).
constexpr const char* kInnerPskCipher = "PSK-AES128-CBC-SHA256";
constexpr const char* kInnerCertCipher = "ECDHE-ECDSA-AES128-SHA256";
const char* g_inner_cipher = kInnerPskCipher;

unsigned char g_kpm[32];

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "mte_bench_bare: %s\n", what);
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

// --- contexts (as tls_engine.cc builds them) -----------------------------------------------------

void Common(SSL_CTX* ctx, bool tls12, bool tls13) {
  if (!mte::crypto::tls_profile::ApplyCommon(ctx, tls12, tls13)) Die("common TLS settings");
}

int ServerName(SSL* ssl, int* alert, void*) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr || strcasecmp(name, kFqdn) != 0) {
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

// The MEF's listener context (apps/mte/main.cc: psk = true plus the MEF certificate).
SSL_CTX* OuterServerCtx(const fs::path& pki) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) Die("SSL_CTX_new");
  Common(ctx, true, true);
  std::string ciphers = std::string(kPsk12Ciphers) + ":" + kCert12Ciphers;
  if (SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) Die("cipher list");
  if (SSL_CTX_use_certificate_chain_file(ctx, (pki / "mef.crt").c_str()) != 1) Die("mef.crt");
  if (SSL_CTX_use_PrivateKey_file(ctx, (pki / "mef.key").c_str(), SSL_FILETYPE_PEM) != 1) {
    Die("mef.key");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) Die("key mismatch");
  SSL_CTX_set_psk_server_callback(ctx, &ServerPsk);
  SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
  SSL_CTX_set_tlsext_servername_callback(ctx, &ServerName);
  return ctx;
}

// The MEF's RSPF (inner) context: PSK only.
SSL_CTX* InnerServerCtx() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) Die("SSL_CTX_new");
  Common(ctx, true, true);
  if (SSL_CTX_set_cipher_list(ctx, kPsk12Ciphers) != 1) Die("cipher list");
  SSL_CTX_set_psk_server_callback(ctx, &ServerPsk);
  SSL_CTX_set_options(ctx, SSL_OP_ALLOW_NO_DHE_KEX);
  SSL_CTX_set_tlsext_servername_callback(ctx, &ServerName);
  return ctx;
}

// The device's outer context: trust the development CA, TLS 1.2 and 1.3 offered.
SSL_CTX* OuterClientCtx(const fs::path& pki) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) Die("SSL_CTX_new");
  Common(ctx, true, true);
  if (SSL_CTX_set_cipher_list(ctx, kCert12Ciphers) != 1) Die("cipher list");
  if (SSL_CTX_load_verify_locations(ctx, (pki / "ca.crt").c_str(), nullptr) != 1) Die("ca.crt");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return ctx;
}

// The device's inner context: TLS 1.2 only, PSK-AES128-CBC-SHA256 only.
SSL_CTX* InnerClientCtx() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) Die("SSL_CTX_new");
  Common(ctx, true, false);
  if (SSL_CTX_set_cipher_list(ctx, kInnerPskCipher) != 1) Die("cipher list");
  SSL_CTX_set_psk_client_callback(ctx, &ClientPsk);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return ctx;
}

// The certificate RSPF's inner server context (src/mef/rspf/cert/cert_rspf.cc): the MEF
// certificate, the certificate suites, a device certificate required. The product verifies the
// device's chain after the handshake (crypto::VerifyDeviceChain); here OpenSSL verifies it against
// the device CA inside the handshake, which is the same signature and chain work.
SSL_CTX* InnerCertServerCtx(const fs::path& pki, const fs::path& device_ca) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) Die("SSL_CTX_new");
  Common(ctx, true, true);
  if (SSL_CTX_set_cipher_list(ctx, kCert12Ciphers) != 1) Die("cipher list");
  if (SSL_CTX_use_certificate_chain_file(ctx, (pki / "mef.crt").c_str()) != 1) Die("mef.crt");
  if (SSL_CTX_use_PrivateKey_file(ctx, (pki / "mef.key").c_str(), SSL_FILETYPE_PEM) != 1) {
    Die("mef.key");
  }
  if (SSL_CTX_load_verify_locations(ctx, (device_ca / "ca.crt").c_str(), nullptr) != 1) {
    Die("device ca.crt");
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  static const unsigned char kContext[] = "mte-bench";
  SSL_CTX_set_session_id_context(ctx, kContext, sizeof kContext - 1);
  SSL_CTX_set_tlsext_servername_callback(ctx, &ServerName);
  return ctx;
}

// The certificate device's inner context (src/proto/rspf/cert_device.cc): its certificate and
// key, the MEF's trust anchor, TLS 1.2 only with TS-0003's mandatory certificate suite.
SSL_CTX* InnerCertClientCtx(const fs::path& pki, const fs::path& device) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) Die("SSL_CTX_new");
  Common(ctx, true, false);
  if (SSL_CTX_set_cipher_list(ctx, kInnerCertCipher) != 1) Die("cipher list");
  if (SSL_CTX_use_certificate_chain_file(ctx, (device / "device.crt").c_str()) != 1) {
    Die("device.crt");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, (device / "device.key").c_str(), SSL_FILETYPE_PEM) != 1) {
    Die("device.key");
  }
  if (SSL_CTX_load_verify_locations(ctx, (pki / "ca.crt").c_str(), nullptr) != 1) Die("ca.crt");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  return ctx;
}

// --- one side of a nested connection ----------------------------------------------------------

struct Layer {
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // owned by ssl
  BIO* wbio = nullptr;  // owned by ssl
  bool done = false;
};

void NewLayer(Layer& layer, SSL_CTX* ctx, bool server) {
  layer.ssl = SSL_new(ctx);
  if (layer.ssl == nullptr) Die("SSL_new");
  layer.rbio = BIO_new(BIO_s_mem());
  layer.wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(layer.rbio, -1);
  SSL_set_bio(layer.ssl, layer.rbio, layer.wbio);
  if (server) {
    SSL_set_accept_state(layer.ssl);
  } else {
    SSL_set_tlsext_host_name(layer.ssl, kFqdn);
    if (SSL_CTX_get_verify_mode(SSL_get_SSL_CTX(layer.ssl)) & SSL_VERIFY_PEER) {
      SSL_set_hostflags(layer.ssl, X509_CHECK_FLAG_NO_WILDCARDS);
      SSL_set1_host(layer.ssl, kFqdn);
    }
    SSL_set_connect_state(layer.ssl);
  }
}

// Advances a handshake; dies on a real error.
void Handshake(Layer& layer, const char* what) {
  if (layer.done) return;
  int rc = SSL_do_handshake(layer.ssl);
  if (rc == 1) {
    layer.done = true;
    return;
  }
  int err = SSL_get_error(layer.ssl, rc);
  if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) Die(what);
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

struct Side {
  bool server = false;
  SSL_CTX* outer_ctx = nullptr;
  SSL_CTX* inner_ctx = nullptr;
  Layer outer, inner;
  bool inner_started = false;
  int64_t cpu_ns = 0;        // all of this side's work
  int64_t inner_cpu_ns = 0;  // the part spent in the inner layer's SSL calls (informational)
  std::vector<unsigned char> scratch;

  // One turn: consume `in` (outer ciphertext from the peer), produce outer ciphertext in `out`.
  void Turn(const std::vector<unsigned char>& in, std::vector<unsigned char>& out) {
    int64_t t0 = ThreadCpuNs();
    if (outer.ssl == nullptr) NewLayer(outer, outer_ctx, server);
    if (!in.empty()) BIO_write(outer.rbio, in.data(), static_cast<int>(in.size()));
    Handshake(outer, server ? "server outer handshake" : "client outer handshake");
    if (outer.done) {
      // Outer application data = inner ciphertext.
      scratch.clear();
      unsigned char buf[16384];
      while (true) {
        size_t n = 0;
        int rc = SSL_read_ex(outer.ssl, buf, sizeof buf, &n);
        if (rc != 1) {
          int err = SSL_get_error(outer.ssl, rc);
          if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) Die("outer SSL_read");
          break;
        }
        scratch.insert(scratch.end(), buf, buf + n);
      }
      int64_t ti = ThreadCpuNs();
      if (!inner_started && (!server || !scratch.empty())) {
        NewLayer(inner, inner_ctx, server);
        inner_started = true;
      }
      if (inner_started) {
        if (!scratch.empty())
          BIO_write(inner.rbio, scratch.data(), static_cast<int>(scratch.size()));
        Handshake(inner, server ? "server inner handshake" : "client inner handshake");
        scratch.clear();
        Drain(inner.wbio, scratch);
      }
      inner_cpu_ns += ThreadCpuNs() - ti;
      if (!scratch.empty()) {
        size_t written = 0;
        if (SSL_write_ex(outer.ssl, scratch.data(), scratch.size(), &written) != 1 ||
            written != scratch.size()) {
          Die("outer SSL_write");
        }
      }
    }
    out.clear();
    Drain(outer.wbio, out);
    cpu_ns += ThreadCpuNs() - t0;
  }

  void Free() {
    int64_t t0 = ThreadCpuNs();
    int64_t ti = t0;
    if (inner.ssl != nullptr) {
      SSL_free(inner.ssl);
      inner_cpu_ns += ThreadCpuNs() - ti;
    }
    if (outer.ssl != nullptr) SSL_free(outer.ssl);
    cpu_ns += ThreadCpuNs() - t0;
    outer = {};
    inner = {};
    inner_started = false;
  }
};

struct Totals {
  int64_t server_ns = 0, client_ns = 0, server_inner_ns = 0, client_inner_ns = 0;
};

void OneHandshake(SSL_CTX* sctx_outer, SSL_CTX* sctx_inner, SSL_CTX* cctx_outer,
                  SSL_CTX* cctx_inner, Totals& totals, bool check) {
  Side client, server;
  client.server = false;
  client.outer_ctx = cctx_outer;
  client.inner_ctx = cctx_inner;
  server.server = true;
  server.outer_ctx = sctx_outer;
  server.inner_ctx = sctx_inner;
  std::vector<unsigned char> to_server, to_client;
  client.Turn({}, to_server);  // ClientHello
  for (int round = 0; round < 32; ++round) {
    server.Turn(to_server, to_client);
    client.Turn(to_client, to_server);
    if (client.inner.done && server.inner.done && to_server.empty()) break;
  }
  if (!client.inner.done || !server.inner.done) Die("nested handshake did not complete");
  if (check) {
    // The configuration really is what the benchmark claims.
    const bool device_cert = g_inner_cipher == kInnerCertCipher;
    if (std::strcmp(SSL_get_version(server.outer.ssl), "TLSv1.3") != 0 ||
        std::strcmp(SSL_get_version(server.inner.ssl), "TLSv1.2") != 0 ||
        std::strcmp(SSL_get_cipher_name(server.inner.ssl), g_inner_cipher) != 0) {
      Die("unexpected negotiated versions or suites");
    }
    if (device_cert && (SSL_get0_peer_certificate(server.inner.ssl) == nullptr ||
                        SSL_get_verify_result(server.inner.ssl) != X509_V_OK)) {
      Die("the device certificate was not verified");
    }
    std::printf(
        "negotiated: outer %s %s (peer cert verified: %s, group X25519: %s), inner %s %s%s\n",
        SSL_get_version(server.outer.ssl), SSL_get_cipher_name(server.outer.ssl),
        SSL_get_verify_result(client.outer.ssl) == X509_V_OK ? "yes" : "NO",
        SSL_get_negotiated_group(server.outer.ssl) == NID_X25519 ? "yes" : "no",
        SSL_get_version(server.inner.ssl), SSL_get_cipher_name(server.inner.ssl),
        device_cert ? " (device certificate verified by the server: yes)" : "");
  }
  client.Free();
  server.Free();
  totals.server_ns += server.cpu_ns;
  totals.client_ns += client.cpu_ns;
  totals.server_inner_ns += server.inner_cpu_ns;
  totals.client_inner_ns += client.inner_cpu_ns;
}

}  // namespace

int main(int argc, char** argv) {
  // --inner ppsk|cert, then the common repetition options.
  std::vector<char*> rest{argv[0]};
  std::string inner = "ppsk";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--inner") == 0 && i + 1 < argc) {
      inner = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (inner != "ppsk" && inner != "cert") {
    std::fprintf(stderr, "mte_bench_bare: --inner must be ppsk or cert\n");
    return 2;
  }
  const bool cert = inner == "cert";
  if (cert) g_inner_cipher = kInnerCertCipher;
  mte::bench::RepArgs args;
  if (!mte::bench::ParseRepArgs(static_cast<int>(rest.size()), rest.data(),
                                "mte_bench_bare [--inner ppsk|cert]", args)) {
    return 2;
  }
  const int reps = args.reps, per_rep = args.per_rep, warmup = args.warmup;
  RAND_bytes(g_kpm, sizeof g_kpm);
  fs::path dir = fs::temp_directory_path() / ("mte-bench-pki." + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::vector<mte::crypto::LeafSpec> leaves;
  // Exactly the MEF leaf of `mte init` (apps/mte/main.cc).
  leaves.push_back({"mef", kFqdn, {kFqdn}, {}, true, true});
  if (auto ok = mte::crypto::CreateDevPki(dir, "OpenMTE development CA", leaves,
                                          std::chrono::system_clock::now());
      !ok) {
    std::fprintf(stderr, "mte_bench_bare: CreateDevPki: %s\n", ok.error().detail.c_str());
    return 1;
  }
  const fs::path device_ca = dir / "device-ca", device = dir / "device";
  if (cert) {
    // A maker's device CA and one factory certificate, as `mte admin pki` makes them.
    auto now = std::chrono::system_clock::now();
    auto ok = mte::crypto::CreateDeviceCa(device_ca, "Bench Device CA", now);
    mte::crypto::DeviceCertSpec spec;
    spec.device_id = "bench-device-0";
    if (ok) ok = mte::crypto::IssueDeviceCert(device_ca, spec, device, now);
    if (!ok) {
      std::fprintf(stderr, "mte_bench_bare: device PKI: %s\n", ok.error().detail.c_str());
      return 1;
    }
  }
  SSL_CTX* sctx_outer = OuterServerCtx(dir);
  SSL_CTX* sctx_inner = cert ? InnerCertServerCtx(dir, device_ca) : InnerServerCtx();
  SSL_CTX* cctx_outer = OuterClientCtx(dir);
  SSL_CTX* cctx_inner = cert ? InnerCertClientCtx(dir, device) : InnerClientCtx();
  fs::remove_all(dir, ec);

  Totals ignored;
  OneHandshake(sctx_outer, sctx_inner, cctx_outer, cctx_inner, ignored, /*check=*/true);
  for (int i = 0; i < warmup; ++i) {
    OneHandshake(sctx_outer, sctx_inner, cctx_outer, cctx_inner, ignored, false);
  }
  std::vector<double> server_us, client_us, server_inner_us, client_inner_us, loop_rate;
  for (int r = 0; r < reps; ++r) {
    Totals t;
    auto w0 = std::chrono::steady_clock::now();
    for (int i = 0; i < per_rep; ++i) {
      OneHandshake(sctx_outer, sctx_inner, cctx_outer, cctx_inner, t, false);
    }
    double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    double s = t.server_ns / 1e3 / per_rep, c = t.client_ns / 1e3 / per_rep;
    server_us.push_back(s);
    client_us.push_back(c);
    server_inner_us.push_back(t.server_inner_ns / 1e3 / per_rep);
    client_inner_us.push_back(t.client_inner_ns / 1e3 / per_rep);
    loop_rate.push_back(per_rep / wall_s);
    std::printf(
        "  rep %d: %d nested handshakes, server %.0f us/hs (inner %.0f), client %.0f us/hs "
        "(inner %.0f), in-process loop %.0f hs/s\n",
        r + 1, per_rep, s, server_inner_us.back(), c, client_inner_us.back(), loop_rate.back());
  }
  double s = Median(server_us), c = Median(client_us);
  std::printf("bare nested handshakes, %s inner (median of %d x %d after %d warm-up):\n",
              cert ? "certificate" : "PSK", reps, per_rep, warmup);
  std::printf(
      "  server CPU %.0f us/handshake (inner part %.0f) -> %.0f handshakes/s per server "
      "core\n",
      s, Median(server_inner_us), 1e6 / s);
  std::printf("  client CPU %.0f us/handshake (inner part %.0f)\n", c, Median(client_inner_us));
  std::printf("  in-process loop (client and server on one thread): %.0f handshakes/s\n",
              Median(loop_rate));
  std::printf("bare_server_cpu_us=%.1f\n", s);
  std::printf("bare_client_cpu_us=%.1f\n", c);
  std::printf("bare_server_hs_per_s=%.0f\n", 1e6 / s);
  std::printf("bare_loop_hs_per_s=%.0f\n", Median(loop_rate));
  SSL_CTX_free(sctx_outer);
  SSL_CTX_free(sctx_inner);
  SSL_CTX_free(cctx_outer);
  SSL_CTX_free(cctx_inner);
  return 0;
}
