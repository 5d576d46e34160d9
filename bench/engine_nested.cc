// mte_bench_engine: the nested handshake of mte_bench_bare, driven through OpenMTE's own TLS code
// instead of the raw OpenSSL API: crypto::TlsContext / crypto::TlsEngine for every session and, on
// the server, proto::TlsStack carrying the inner session inside the outer one, exactly as the MEF
// does (apps/mte/main.cc builds the same two server contexts). The server also takes the two
// exporters the MEF takes: the outer channel binding and the inner EXPORTER-oneM2M-Bootstrap.
//
// Still one thread, memory only, no sockets, no HTTP, no database: the difference to
// mte_bench_bare is the engine's own overhead, and the difference to a Flow B enrolment through
// `mte serve` is everything else (sockets, HTTP, the store, the outbox, scheduling).
//
// Output: a summary and `engine_server_cpu_us=` / `engine_client_cpu_us=` lines.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "crypto/random.h"
#include "crypto/tls_engine.h"
#include "proto/enrolment.h"
#include "proto/tls_stack.h"

namespace {

using mte::bench::Median;
using mte::bench::ThreadCpuNs;

namespace fs = std::filesystem;
using mte::Bytes;
using mte::ByteSpan;
using mte::SecretBytes;
using mte::crypto::TlsContext;
using mte::crypto::TlsEngine;

constexpr const char* kFqdn = "mef.bench.test";
constexpr const char* kPskIdentity = "kpm-0@maker.bench.test";

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "mte_bench_engine: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
T Must(mte::Result<T> result, const char* what) {
  if (!result) Die(std::string(what) + ": " + mte::Describe(result.error()));
  return std::move(*result);
}

void Must(mte::Result<void> result, const char* what) {
  if (!result) Die(std::string(what) + ": " + mte::Describe(result.error()));
}

struct Contexts {
  std::shared_ptr<const TlsContext> server_outer, server_inner, client_outer, client_inner;
  SecretBytes kpm;
};

// CPU of each side of one nested handshake, in ns.
struct Cost {
  int64_t server = 0, client = 0;
};

Cost OneHandshake(const Contexts& ctx, bool check) {
  Cost cost;
  // --- server: as net/server.cc + mte/mef.cc do it
  int64_t t0 = ThreadCpuNs();
  auto lookup = [&ctx](std::string_view identity) -> std::optional<SecretBytes> {
    if (identity != kPskIdentity) return std::nullopt;
    return ctx.kpm.Clone();
  };
  mte::proto::TlsStack server(Must(TlsEngine::Server(ctx.server_outer, lookup), "server"));
  cost.server += ThreadCpuNs() - t0;

  // --- client: outer engine, then the inner one on top
  t0 = ThreadCpuNs();
  mte::proto::TlsStack client(Must(TlsEngine::Client(ctx.client_outer), "client"));
  Must(client.Advance(), "client hello");
  Bytes to_server = client.TakeCiphertext();
  cost.client += ThreadCpuNs() - t0;

  bool inner_pushed_client = false, inner_pushed_server = false;
  for (int round = 0; round < 32; ++round) {
    t0 = ThreadCpuNs();
    Must(server.FeedCiphertext(to_server), "server feed");
    if (!inner_pushed_server && server.TopHandshakeComplete()) {
      Bytes pending = server.TakePlaintext();
      if (!pending.empty()) {
        server.Push(Must(TlsEngine::Server(ctx.server_inner, lookup), "server inner"), pending);
        Must(server.Advance(), "server inner advance");
        inner_pushed_server = true;
      }
    }
    Bytes to_client = server.TakeCiphertext();
    cost.server += ThreadCpuNs() - t0;

    t0 = ThreadCpuNs();
    Must(client.FeedCiphertext(to_client), "client feed");
    if (!inner_pushed_client && client.TopHandshakeComplete()) {
      client.Push(Must(TlsEngine::Client(ctx.client_inner, ctx.kpm.Clone()), "client inner"));
      Must(client.Advance(), "client inner hello");
      inner_pushed_client = true;
    }
    to_server = client.TakeCiphertext();
    cost.client += ThreadCpuNs() - t0;
    if (inner_pushed_server && server.depth() == 2 && server.top().HandshakeComplete() &&
        client.depth() == 2 && client.top().HandshakeComplete() && to_server.empty()) {
      break;
    }
  }
  if (server.depth() != 2 || !server.top().HandshakeComplete()) {
    Die("nested handshake did not complete");
  }
  t0 = ThreadCpuNs();
  // The MEF's two exporters: the outer channel binding and the inner bootstrap export.
  auto binding = Must(server.layer(0).Export(mte::proto::kChannelBindingLabel,
                                             mte::proto::kChannelBindingLength, ByteSpan{}),
                      "channel binding");
  auto bootstrap = Must(server.top().Export(mte::crypto::kBootstrapExporterLabel,
                                            mte::crypto::kBootstrapExportLength),
                        "bootstrap export");
  if (check) {
    std::printf("negotiated: outer %s %s, inner %s %s (OpenMTE TlsEngine + TlsStack)\n",
                server.layer(0).version().c_str(), server.layer(0).cipher().c_str(),
                server.top().version().c_str(), server.top().cipher().c_str());
  }
  server = mte::proto::TlsStack();  // frees both server sessions
  cost.server += ThreadCpuNs() - t0;
  return cost;
}

}  // namespace

int main(int argc, char** argv) {
  mte::bench::RepArgs args;
  if (!mte::bench::ParseRepArgs(argc, argv, "mte_bench_engine", args)) return 2;
  const int reps = args.reps, per_rep = args.per_rep, warmup = args.warmup;
  fs::path dir = fs::temp_directory_path() / ("mte-bench-engine." + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::vector<mte::crypto::LeafSpec> leaves;
  leaves.push_back({"mef", kFqdn, {kFqdn}, {}, true, true});
  Must(mte::crypto::CreateDevPki(dir, "OpenMTE development CA", leaves,
                                 std::chrono::system_clock::now()),
       "CreateDevPki");

  Contexts ctx;
  mte::crypto::SystemRng rng;
  ctx.kpm = mte::crypto::RandomSecret(rng, 32);
  // apps/mte/main.cc: the MEF listener (PSK + certificate) and the RSPF context (PSK).
  mte::crypto::TlsServerOptions outer;
  outer.server_name = kFqdn;
  outer.psk = true;
  outer.cert_chain_pem_file = (dir / "mef.crt").string();
  outer.key_pem_file = (dir / "mef.key").string();
  ctx.server_outer = Must(TlsContext::Server(outer), "server outer context");
  mte::crypto::TlsServerOptions rspf;
  rspf.server_name = kFqdn;
  rspf.psk = true;
  ctx.server_inner = Must(TlsContext::Server(rspf), "server inner context");
  // The device as in the Flow B benchmark: inner TLS 1.2 PSK-AES128-CBC-SHA256 only.
  mte::crypto::TlsClientOptions client_outer;
  client_outer.server_name = kFqdn;
  client_outer.trust_pem_file = (dir / "ca.crt").string();
  client_outer.tls12 = false;  // the outer session of the Flow B benchmark is TLS 1.3
  ctx.client_outer = Must(TlsContext::Client(client_outer), "client outer context");
  mte::crypto::TlsClientOptions client_inner;
  client_inner.server_name = kFqdn;
  client_inner.psk_identity = kPskIdentity;
  client_inner.tls13 = false;
  client_inner.tls12_ciphers = "PSK-AES128-CBC-SHA256";
  ctx.client_inner = Must(TlsContext::Client(client_inner), "client inner context");
  fs::remove_all(dir, ec);

  OneHandshake(ctx, /*check=*/true);
  for (int i = 0; i < warmup; ++i) OneHandshake(ctx, false);
  std::vector<double> server_us, client_us;
  for (int r = 0; r < reps; ++r) {
    Cost total;
    for (int i = 0; i < per_rep; ++i) {
      Cost c = OneHandshake(ctx, false);
      total.server += c.server;
      total.client += c.client;
    }
    server_us.push_back(static_cast<double>(total.server) / 1e3 / per_rep);
    client_us.push_back(static_cast<double>(total.client) / 1e3 / per_rep);
    std::printf("  rep %d: %d nested handshakes, server %.0f us/hs, client %.0f us/hs\n", r + 1,
                per_rep, server_us.back(), client_us.back());
  }
  double s = Median(server_us), c = Median(client_us);
  std::printf("OpenMTE engine nested handshakes (median of %d x %d after %d warm-up):\n", reps,
              per_rep, warmup);
  std::printf("  server CPU %.0f us/handshake (incl. both exporters), client CPU %.0f us\n", s, c);
  std::printf("engine_server_cpu_us=%.1f\n", s);
  std::printf("engine_client_cpu_us=%.1f\n", c);
  return 0;
}
