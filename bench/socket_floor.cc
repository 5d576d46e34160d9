// mte_bench_floor: (a3) the socket floor of a Flow B enrolment. The nested handshake of
// mte_bench_bare (nested_tls.h: the same suites, groups, certificates, PSK) served over loopback
// TCP by a minimal blocking server with no HTTP, JSON or store, in a process of its own, driven
// by client threads with the same rounds and concurrency levels as the Flow B load of `make bench`
// (b). The server's CPU per handshake is read the way (b) reads the MEF's: utime + stime of the
// server process from /proc/PID/stat over each round, divided by the handshakes of the round.
//
// One connection, as the MEF serves a Flow B enrolment without its HTTP and store:
//   TCP accept; outer TLS 1.3 handshake (MEF certificate, X25519);
//   inner TLS 1.2 handshake carried as outer application data (PSK-AES128-CBC-SHA256, or with
//   --inner cert the mutual-certificate ECDHE-ECDSA-AES128-SHA256 one);
//   the MEF's two exporters: the outer channel binding (RFC 9266, 32 octets) and the inner
//   EXPORTER-oneM2M-Bootstrap (TS-0003 §10.3.1, 48 octets);
//   one inner request and answer (the Enrolment Exchange's round trip, 256 and 512 octets);
//   the server's close_notify, close.
// The server: a fixed pool of threads, each blocking in accept() and then serving the accepted
// connection with blocking socket I/O (no event loop, no thread creation per connection). With
// --pin 1 (default on 2 or more CPUs) it runs on CPU 0 and the clients on the others, as (b) pins
// the MEF.
//
// usage: mte_bench_floor [--inner ppsk|cert] [--concurrency 4,8] [--rounds 3] [--per-round 450]
//                        [--warmup 50] [--server-threads 32] [--pin 1]
// Output: one line per round, a summary per concurrency, and key=value lines
// floor[_cert]_c<C>_server_cpu_us=, _hs_per_s=, _p50_ms=, _p99_ms=.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "crypto/keys.h"
#include "nested_tls.h"
#include "proto/enrolment.h"

namespace {

namespace fs = std::filesystem;
using mte::bench::Drain;
using mte::bench::Inner;
using mte::bench::Layer;
using mte::bench::Median;
using mte::bench::NewLayer;
using mte::bench::Percentile;
using Clock = std::chrono::steady_clock;

constexpr size_t kRequestSize = 256;
constexpr size_t kAnswerSize = 512;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "mte_bench_floor: %s\n", what.c_str());
  std::exit(1);
}

// The CPUs to run on: {0} or every other one.
void PinTo(bool cpu0) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  for (long cpu = cpu0 ? 0 : 1; cpu < (cpu0 ? 1 : n); ++cpu) CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) Die("sched_setaffinity");
}

// --- one nested connection over a blocking socket -----------------------------------------------

// The outer session on a socket, the inner one over memory BIOs pumped through the outer's
// application data.
class Nested {
 public:
  Nested(SSL_CTX* outer_ctx, SSL_CTX* inner_ctx, int fd, bool server)
      : server_(server), outer_(SSL_new(outer_ctx)), inner_ctx_(inner_ctx) {
    if (outer_ == nullptr) Die("SSL_new");
    SSL_set_fd(outer_, fd);
    if (!server) {
      SSL_set_tlsext_host_name(outer_, mte::bench::kBenchFqdn);
      SSL_set1_host(outer_, mte::bench::kBenchFqdn);
    }
  }
  ~Nested() {
    if (inner_.ssl != nullptr) SSL_free(inner_.ssl);
    SSL_free(outer_);
  }
  Nested(const Nested&) = delete;
  Nested& operator=(const Nested&) = delete;

  // The whole connection of one side; false on any failure.
  bool Run() {
    if ((server_ ? SSL_accept(outer_) : SSL_connect(outer_)) != 1) return false;
    NewLayer(inner_, inner_ctx_, server_);
    while (!inner_.done) {
      int rc = SSL_do_handshake(inner_.ssl);
      if (rc == 1) {
        inner_.done = true;
      } else {
        int err = SSL_get_error(inner_.ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return false;
      }
      if (!Flush()) return false;
      if (!inner_.done && !Feed()) return false;
    }
    if (!Exporters()) return false;
    unsigned char message[kAnswerSize];
    RAND_bytes(message, sizeof message);
    if (server_) {
      if (!ReadInner(kRequestSize) || !WriteInner(message, kAnswerSize)) return false;
      SSL_shutdown(outer_);
      return true;
    }
    return WriteInner(message, kRequestSize) && ReadInner(kAnswerSize);
  }

 private:
  // Outer application data in, into the inner session's BIO.
  bool Feed() {
    unsigned char buf[16384];
    size_t n = 0;
    if (SSL_read_ex(outer_, buf, sizeof buf, &n) != 1) return false;
    return BIO_write(inner_.rbio, buf, static_cast<int>(n)) == static_cast<int>(n);
  }
  // The inner session's output out, as outer application data.
  bool Flush() {
    scratch_.clear();
    Drain(inner_.wbio, scratch_);
    size_t written = 0;
    return scratch_.empty() || (SSL_write_ex(outer_, scratch_.data(), scratch_.size(), &written) == 1 &&
                                written == scratch_.size());
  }
  bool Exporters() {
    unsigned char binding[mte::proto::kChannelBindingLength];
    unsigned char bootstrap[mte::crypto::kBootstrapExportLength];
    const std::string_view cb = mte::proto::kChannelBindingLabel;
    const std::string_view ke = mte::crypto::kBootstrapExporterLabel;
    return SSL_export_keying_material(outer_, binding, sizeof binding, cb.data(), cb.size(),
                                      nullptr, 0, 1) == 1 &&
           SSL_export_keying_material(inner_.ssl, bootstrap, sizeof bootstrap, ke.data(),
                                      ke.size(), nullptr, 0, 0) == 1;
  }
  bool WriteInner(const unsigned char* data, size_t size) {
    size_t written = 0;
    return SSL_write_ex(inner_.ssl, data, size, &written) == 1 && written == size && Flush();
  }
  bool ReadInner(size_t want) {
    unsigned char buf[kAnswerSize];
    size_t got = 0;
    while (got < want) {
      size_t n = 0;
      if (SSL_read_ex(inner_.ssl, buf, std::min(sizeof buf, want - got), &n) == 1) {
        got += n;
        continue;
      }
      if (SSL_get_error(inner_.ssl, 0) != SSL_ERROR_WANT_READ || !Feed()) return false;
    }
    return true;
  }

  bool server_;
  SSL* outer_;
  SSL_CTX* inner_ctx_;
  Layer inner_;
  std::vector<unsigned char> scratch_;
};

void NoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// --- the server process -------------------------------------------------------------------------

[[noreturn]] void Serve(int listener, int control, const fs::path& pki, Inner inner, int threads,
                        bool pin) {
  if (pin) PinTo(true);
  SSL_CTX* outer = mte::bench::OuterServerCtx(pki);
  SSL_CTX* inner_ctx = mte::bench::InnerServerCtx(inner, pki);
  for (int t = 0; t < threads; ++t) {
    std::thread([=] {
      while (true) {
        int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) continue;
        NoDelay(fd);
        Nested(outer, inner_ctx, fd, /*server=*/true).Run();
        ::close(fd);
      }
    }).detach();
  }
  // Until the parent closes the control pipe (or dies).
  char byte;
  while (::read(control, &byte, 1) < 0 && errno == EINTR) {
  }
  std::_Exit(0);
}

// --- the load -------------------------------------------------------------------------------------

int Connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) Die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("connect");
  NoDelay(fd);
  return fd;
}

struct Round {
  int concurrency = 0;
  int n = 0;
  double wall_s = 0;
  double server_cpu_us = 0;
  std::vector<double> latency_ms;
};

Round RunRound(SSL_CTX* outer, SSL_CTX* inner, uint16_t port, int concurrency, int n,
               int server_pid) {
  Round r;
  r.concurrency = concurrency;
  r.n = n;
  r.latency_ms.assign(static_cast<size_t>(n), 0);
  std::atomic<int> next{0}, failures{0};
  const long long ticks0 = mte::bench::ProcessTicks(server_pid);
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < n;) {
        const auto s0 = Clock::now();
        int fd = Connect(port);
        if (!Nested(outer, inner, fd, /*server=*/false).Run()) failures.fetch_add(1);
        ::close(fd);
        r.latency_ms[static_cast<size_t>(i)] =
            std::chrono::duration<double, std::milli>(Clock::now() - s0).count();
      }
    });
  }
  for (auto& t : threads) t.join();
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const long long ticks1 = mte::bench::ProcessTicks(server_pid);
  if (failures.load() != 0) Die(std::to_string(failures.load()) + " nested connections failed");
  r.server_cpu_us = (ticks1 - ticks0) * (1e6 / static_cast<double>(sysconf(_SC_CLK_TCK))) / n;
  return r;
}

int IntOption(const std::string& text, int lo, int hi, const char* name) {
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi) {
    Die(std::string("--") + name + " must be " + std::to_string(lo) + ".." + std::to_string(hi));
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  Inner inner = Inner::kPpsk;
  std::string levels_text = "4,8";
  int rounds = 3, per_round = 450, warmup = 50, server_threads = 32;
  bool pin = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) Die("option " + a + " needs a value");
    const std::string v = argv[i + 1];
    if (a == "--inner" && (v == "ppsk" || v == "cert")) {
      inner = v == "cert" ? Inner::kCert : Inner::kPpsk;
    } else if (a == "--concurrency") {
      levels_text = v;
    } else if (a == "--rounds") {
      rounds = IntOption(v, 1, 50, "rounds");
    } else if (a == "--per-round") {
      per_round = IntOption(v, 1, 100000, "per-round");
    } else if (a == "--warmup") {
      warmup = IntOption(v, 0, 100000, "warmup");
    } else if (a == "--server-threads") {
      server_threads = IntOption(v, 1, 1024, "server-threads");
    } else if (a == "--pin") {
      pin = IntOption(v, 0, 1, "pin") == 1 && sysconf(_SC_NPROCESSORS_ONLN) >= 2;
    } else {
      Die("usage: mte_bench_floor [--inner ppsk|cert] [--concurrency 4,8] [--rounds N] "
          "[--per-round N] [--warmup N] [--server-threads N] [--pin 0|1]");
    }
  }
  std::vector<int> levels;
  {
    std::stringstream ss(levels_text);
    std::string item;
    while (std::getline(ss, item, ',')) levels.push_back(IntOption(item, 1, 256, "concurrency"));
  }
  if (levels.empty()) Die("--concurrency is empty");
  if (*std::max_element(levels.begin(), levels.end()) > server_threads) {
    Die("--server-threads must be at least the highest concurrency");
  }

  mte::bench::RandomBenchKpm();  // before fork: both processes hold the same Kpm
  const fs::path pki = fs::temp_directory_path() / ("mte-bench-floor." + std::to_string(getpid()));
  std::error_code ec;
  fs::create_directories(pki, ec);
  mte::bench::CreateNestedPki(pki, inner);

  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof addr;
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1024) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Die("cannot listen on 127.0.0.1");
  }
  const uint16_t port = ntohs(addr.sin_port);
  int control[2];
  if (::pipe(control) != 0) Die("pipe");
  std::fflush(stdout);
  const pid_t server = ::fork();
  if (server < 0) Die("fork");
  if (server == 0) {
    ::close(control[1]);
    Serve(listener, control[0], pki, inner, server_threads, pin);
  }
  ::close(control[0]);
  ::close(listener);
  if (pin) PinTo(false);
  SSL_CTX* outer = mte::bench::OuterClientCtx(pki);
  SSL_CTX* inner_ctx = mte::bench::InnerClientCtx(inner, pki);
  const std::string key = inner == Inner::kCert ? "floor_cert" : "floor";
  std::printf("socket floor: server pid %d on 127.0.0.1:%u, %d blocking threads%s; %s inner\n",
              static_cast<int>(server), port, server_threads,
              pin ? " pinned to CPU 0, clients on the other CPUs" : "",
              mte::bench::InnerCipher(inner));
  if (warmup > 0) RunRound(outer, inner_ctx, port, levels.back(), warmup, server);

  std::vector<Round> all;
  for (int level : levels) {
    for (int round = 0; round < rounds; ++round) {
      Round r = RunRound(outer, inner_ctx, port, level, per_round, server);
      std::printf("  C=%d round %d: %d nested connections, %.0f/s, server CPU %.0f us each, "
                  "p50 %.2f ms, p99 %.2f ms\n",
                  level, round + 1, r.n, r.n / r.wall_s, r.server_cpu_us,
                  Percentile(r.latency_ms, 50), Percentile(r.latency_ms, 99));
      std::fflush(stdout);
      all.push_back(std::move(r));
    }
  }
  ::close(control[1]);  // the server exits
  int status = 0;
  ::waitpid(server, &status, 0);
  fs::remove_all(pki, ec);
  SSL_CTX_free(outer);
  SSL_CTX_free(inner_ctx);

  std::printf("socket floor (median of %d rounds x %d connections per concurrency):\n", rounds,
              per_round);
  for (int level : levels) {
    std::vector<double> cpu, rate, latency;
    for (const Round& r : all) {
      if (r.concurrency != level) continue;
      cpu.push_back(r.server_cpu_us);
      rate.push_back(r.n / r.wall_s);
      latency.insert(latency.end(), r.latency_ms.begin(), r.latency_ms.end());
    }
    std::printf("  C=%d: server CPU %.0f us per nested connection (%.0f per server core), "
                "%.0f/s measured, p50 %.2f ms, p99 %.2f ms\n",
                level, Median(cpu), 1e6 / Median(cpu), Median(rate), Percentile(latency, 50),
                Percentile(latency, 99));
    std::printf("%s_c%d_server_cpu_us=%.1f\n", key.c_str(), level, Median(cpu));
    std::printf("%s_c%d_hs_per_s=%.1f\n", key.c_str(), level, Median(rate));
    std::printf("%s_c%d_p50_ms=%.2f\n", key.c_str(), level, Percentile(latency, 50));
    std::printf("%s_c%d_p99_ms=%.2f\n", key.c_str(), level, Percentile(latency, 99));
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
