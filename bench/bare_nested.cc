// mte_bench_bare: the cost floor of a Flow B enrolment's cryptography, measured with the raw
// OpenSSL API (no OpenMTE TLS engine, no HTTP, no database, no sockets).
//
// One "nested handshake" is described in nested_tls.h; --inner ppsk (default) or cert picks the
// inner RSPF. Both client and server run in this thread over memory BIOs; the inner flights are carried as
// outer application data by a manual pump.
//
// CPU is charged per side with CLOCK_THREAD_CPUTIME_ID around each side's turn (a run of that
// side's SSL_new / SSL_do_handshake / SSL_read / SSL_write / SSL_free calls), so
// server CPU = server outer + server inner work, client CPU likewise.
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
#include "nested_tls.h"

namespace {

using mte::bench::Drain;
using mte::bench::Handshake;
using mte::bench::Inner;
using mte::bench::Layer;
using mte::bench::Median;
using mte::bench::NewLayer;
using mte::bench::ThreadCpuNs;

namespace fs = std::filesystem;

Inner g_inner = Inner::kPpsk;

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
          if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) mte::bench::DieSsl("outer SSL_read");
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
          mte::bench::DieSsl("outer SSL_write");
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

// The server side's work, in functions of their own so that an instruction count can be limited to
// them (bench/instructions.sh: valgrind --tool=callgrind --toggle-collect='*ServerSideWork*').
[[gnu::noinline]] void ServerSideWork(Side& server, const std::vector<unsigned char>& in,
                                      std::vector<unsigned char>& out) {
  server.Turn(in, out);
}
[[gnu::noinline]] void ServerSideWorkFree(Side& server) { server.Free(); }

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
    ServerSideWork(server, to_server, to_client);
    client.Turn(to_client, to_server);
    if (client.inner.done && server.inner.done && to_server.empty()) break;
  }
  if (!client.inner.done || !server.inner.done) mte::bench::DieSsl("nested handshake did not complete");
  if (check) {
    // The configuration really is what the benchmark claims.
    const bool device_cert = g_inner == Inner::kCert;
    if (std::strcmp(SSL_get_version(server.outer.ssl), "TLSv1.3") != 0 ||
        std::strcmp(SSL_get_version(server.inner.ssl), "TLSv1.2") != 0 ||
        std::strcmp(SSL_get_cipher_name(server.inner.ssl), mte::bench::InnerCipher(g_inner)) != 0) {
      mte::bench::DieSsl("unexpected negotiated versions or suites");
    }
    if (device_cert && (SSL_get0_peer_certificate(server.inner.ssl) == nullptr ||
                        SSL_get_verify_result(server.inner.ssl) != X509_V_OK)) {
      mte::bench::DieSsl("the device certificate was not verified");
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
  ServerSideWorkFree(server);
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
  if (cert) g_inner = Inner::kCert;
  mte::bench::RepArgs args;
  if (!mte::bench::ParseRepArgs(static_cast<int>(rest.size()), rest.data(),
                                "mte_bench_bare [--inner ppsk|cert]", args)) {
    return 2;
  }
  const int reps = args.reps, per_rep = args.per_rep, warmup = args.warmup;
  mte::bench::RandomBenchKpm();
  fs::path dir = fs::temp_directory_path() / ("mte-bench-pki." + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(dir, ec);
  mte::bench::CreateNestedPki(dir, g_inner);
  SSL_CTX* sctx_outer = mte::bench::OuterServerCtx(dir);
  SSL_CTX* sctx_inner = mte::bench::InnerServerCtx(g_inner, dir);
  SSL_CTX* cctx_outer = mte::bench::OuterClientCtx(dir);
  SSL_CTX* cctx_inner = mte::bench::InnerClientCtx(g_inner, dir);
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
