// mte_bench_flowb: a Flow B load generator and its preparation subcommands.
//
//   mte_bench_flowb ports --data DIR
//       picks four free TCP ports on 127.0.0.1 and writes them into DIR/mte.json (mefPort, mafPort,
//       mafDeliveryPort, portalPort), so that split-role processes agree on them.
//   mte_bench_flowb manifest --out FILE --count N [--rspf ppsk|cert --device-ca DIR --cert-dir DIR]
//       writes a manufacturer manifest of N devices (for `mte admin device import`):
//       ppsk (default): random 32-octet Kpm, which the load generator reads back from it;
//       cert: a P-256 device certificate per device, issued by the device CA in DIR (ca.crt,
//       ca.key, as `mte admin pki init-device-ca` makes it) into --cert-dir/<deviceId>/, and a
//       manifest entry with its certSha256.
//   mte_bench_flowb run --data DIR --manifest FILE --stakeholder NAME --password-file FILE
//                       --mef-pid PID[,PID...] --other-pid PID --concurrency 4,8 --rounds R
//                       --per-round N [--rspf ppsk|cert --cert-dir DIR] [--db-pid PID,...]
//                       [--mef-ports PORT,...]
//       Several --mef-pid: several MEF processes, their CPU summed; --mef-ports: connect to these
//       MEF ports in turn instead of the bundle's MEF URI; --db-pid: the database server's
//       processes (PostgreSQL), whose CPU per enrolment is printed too. The store is the one
//       DIR/mte.json names ("store"), SQLite or PostgreSQL.
//       Preparation (not part of the enrolment figures): portal login, one Flow B entry and one
//       Enrolment-Token per enrolment via the portal REST API, from --prep-threads [4] threads;
//       the token issuances alone are timed and printed as <key>_token_issuance_per_s. Then,
//       per concurrency level and round: C threads run proto::EnrolmentClient::ViaToken (outer
//       TLS 1.3 with the MEF certificate, inner TLS 1.2 PSK-AES128-CBC-SHA256, or with --rspf
//       cert the mutual-certificate inner handshake with ECDHE-ECDSA-AES128-SHA256) through client::RunEnrolment over loopback; the round ends when
//       every enrolment has answered AND the MEF's outbox has delivered every Km to the MAF.
//       The MEF process's CPU (utime + stime from /proc/PID/stat) over that window, divided by
//       the enrolments, is the MEF CPU per enrolment. Figures are printed as flowb_* (ppsk) or
//       flowb_cert_* (cert) key=value lines.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
#include "bench_util.h"
#include "client/https_client.h"
#include "client/socket.h"
#include "crypto/device_cert.h"
#include "crypto/device_pki.h"
#include "crypto/tls_engine.h"
#include "proto/enrolment.h"
#include "proto/enrolment_client.h"
#include "proto/rspf/cert_device.h"
#include "proto/rspf/ppsk_device.h"
#include "store/store.h"

namespace {

using namespace mte;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "mte_bench_flowb: %s\n", what.c_str());
  std::exit(1);
}

// Whole file as a string (stdio: the iostream buffer paths trip GCC 12's -Wnull-dereference).
std::string ReadFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) Die("cannot read " + path);
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  std::fclose(f);
  return text;
}

void WriteFile(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(text.data(), 1, text.size(), f) != text.size()) {
    Die("cannot write " + path);
  }
  if (std::fclose(f) != 0) Die("cannot write " + path);
}

struct Args {
  std::vector<std::pair<std::string, std::string>> kv;
  // The value of --key, or nullptr when it is not given.
  const std::string* Find(const std::string& key) const {
    for (const auto& [k, v] : kv) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  std::string Get(const std::string& key, const std::string& fallback = "") const {
    if (const std::string* v = Find(key)) return *v;
    if (fallback.empty()) Die("missing --" + key);
    return fallback;
  }
  // The value of an optional --key; "" when it is not given.
  std::string Optional(const std::string& key) const {
    const std::string* v = Find(key);
    return v != nullptr ? *v : "";
  }
};

Args ParseArgs(int argc, char** argv, int first) {
  Args args;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || i + 1 >= argc) Die("bad argument '" + a + "'");
    args.kv.emplace_back(a.substr(2), argv[++i]);
  }
  return args;
}

// --- ports, manifest ---------------------------------------------------------------------------

int Ports(const Args& args) {
  std::string file = args.Get("data") + "/mte.json";
  auto config = nlohmann::json::parse(ReadFile(file), nullptr, false);
  if (!config.is_object()) Die(file + " is not a JSON object");
  std::vector<client::ListeningSocket> held;
  for (const char* key : {"mefPort", "mafPort", "mafDeliveryPort", "portalPort"}) {
    auto s = client::ListeningSocket::Bind({"127.0.0.1", 0});
    if (!s) Die("cannot bind a free port: " + s.error().detail);
    config[key] = s->port();
    held.push_back(std::move(*s));
  }
  WriteFile(file, config.dump(2) + "\n");
  return 0;
}

// The RSPF a run measures: --rspf ppsk (default) or cert.
bool CertRspf(const Args& args) {
  const std::string rspf = args.Get("rspf", "ppsk");
  if (rspf != "ppsk" && rspf != "cert") Die("--rspf must be ppsk or cert");
  return rspf == "cert";
}

// Where the certificate device `device_id` keeps device.crt and device.key.
std::string CertDir(const Args& args, const std::string& device_id) {
  return args.Get("cert-dir") + "/" + device_id;
}

int CertManifest(const Args& args, int count) {
  const auto now = std::chrono::system_clock::now();
  nlohmann::json list = nlohmann::json::array();
  for (int i = 0; i < count; ++i) {
    crypto::DeviceCertSpec spec;
    spec.device_id = "bench-cert-dev-" + std::to_string(i);
    const std::string dir = CertDir(args, spec.device_id);
    if (auto ok = crypto::IssueDeviceCert(args.Get("device-ca"), spec, dir, now); !ok) {
      Die(spec.device_id + ": " + ok.error().detail);
    }
    auto chain = crypto::CertificatesFromPem(ReadFile(dir + "/device.crt"));
    if (!chain) Die(spec.device_id + ": " + chain.error().detail);
    auto facts = crypto::DescribeCertificate(chain->front());
    if (!facts) Die(spec.device_id + ": " + facts.error().detail);
    list.push_back({{"deviceId", spec.device_id},
                    {"certSha256", facts->cert_sha256},
                    {"claimCode", "CLAIM-BENCH-CERT-" + std::to_string(i)}});
  }
  WriteFile(args.Get("out"), list.dump() + "\n");
  return 0;
}

int Manifest(const Args& args) {
  int count = std::atoi(args.Get("count").c_str());
  if (count <= 0 || count > 1000000) Die("--count must be 1..1000000");
  if (CertRspf(args)) return CertManifest(args, count);
  FILE* urandom = std::fopen("/dev/urandom", "rb");
  if (urandom == nullptr) Die("cannot open /dev/urandom");
  nlohmann::json list = nlohmann::json::array();
  for (int i = 0; i < count; ++i) {
    uint8_t kpm[32];
    if (std::fread(kpm, 1, sizeof kpm, urandom) != sizeof kpm) Die("short read from /dev/urandom");
    list.push_back({{"deviceId", "bench-dev-" + std::to_string(i)},
                    {"kpmId", "kpm-" + std::to_string(i) + "@maker.bench.test"},
                    {"kpmHex", HexLower(kpm)},
                    {"claimCode", "CLAIM-BENCH-" + std::to_string(i)}});
  }
  std::fclose(urandom);
  WriteFile(args.Get("out"), list.dump() + "\n");
  return 0;
}

// --- /proc CPU ----------------------------------------------------------------------------------

// utime + stime of a whole process (all threads, live and exited), in clock ticks.
long long ProcessTicks(int pid) {
  const long long ticks = bench::ProcessTicks(pid);
  if (ticks < 0) Die("cannot read /proc/" + std::to_string(pid) + "/stat");
  return ticks;
}

// utime + stime per thread of a process: {tid: ticks}.
std::map<int, long long> ThreadTicks(int pid) {
  std::map<int, long long> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    int tid = std::atoi(e->d_name);
    if (tid <= 0) continue;
    FILE* f = std::fopen((dir + "/" + e->d_name + "/stat").c_str(), "rb");
    if (f == nullptr) continue;  // the thread just exited
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    std::string stat(buf, n);
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    long long ticks = 0;
    for (int i = 3; i <= 15 && (fields >> field); ++i) {
      if (i == 14 || i == 15) ticks += std::atoll(field.c_str());
    }
    out[tid] = ticks;
  }
  closedir(d);
  return out;
}

// The MEF's threads by role, from their names (/proc/PID/task/TID/comm; src/base/thread_name.h):
// the main thread ("mte") and "mte-io" run the asio loop, where connections do their TLS and
// handler work; "mte-worker" is the worker pool (offloaded listeners only); "mte-outbox" delivers
// Km to the MAF.
struct ThreadSplit {
  double io_us = 0, pool_us = 0, outbox_us = 0;
};

std::string ThreadName(int pid, int tid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

ThreadSplit SplitThreads(int pid, const std::map<int, long long>& before,
                         const std::map<int, long long>& after, int enrolments) {
  ThreadSplit split;
  if (after.empty() || enrolments <= 0) return split;
  const double tick_us = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  for (const auto& [tid, ticks] : after) {
    auto it = before.find(tid);
    double us = (ticks - (it == before.end() ? 0 : it->second)) * tick_us / enrolments;
    const std::string name = ThreadName(pid, tid);
    if (name == "mte-outbox")
      split.outbox_us += us;
    else if (name == "mte-worker")
      split.pool_us += us;
    else
      split.io_us += us;
  }
  return split;
}

// --- portal REST (preparation) ------------------------------------------------------------------

struct Portal {
  client::Endpoint endpoint;
  std::shared_ptr<const crypto::TlsContext> tls;
  std::string bearer;

  nlohmann::json Call(const std::string& method, const std::string& target,
                      const nlohmann::json& body, int expect) const {
    proto::HttpRequest request;
    request.method = method;
    request.target = target;
    request.headers.Set("Host", "localhost");
    request.headers.Set("Content-Type", "application/json");
    if (!bearer.empty()) request.headers.Set("Authorization", "Bearer " + bearer);
    request.body = body.dump();
    request.keep_alive = false;
    for (int attempt = 0;; ++attempt) {
      auto engine = crypto::TlsEngine::Client(tls);
      if (!engine) Die("portal TLS: " + engine.error().detail);
      auto result = client::Exchange(endpoint, std::move(*engine), request);
      if (!result) {
        if (attempt < 3) continue;  // a transient connect failure under load
        Die(method + " " + target + ": " + Describe(result.error()));
      }
      if (result->response.status != expect) {
        Die(method + " " + target + ": HTTP " + std::to_string(result->response.status) + " " +
            result->response.body.substr(0, 300));
      }
      auto j = nlohmann::json::parse(result->response.body, nullptr, false);
      if (j.is_discarded()) Die(method + " " + target + ": response is not JSON");
      return j;
    }
  }
};

struct Job {
  proto::TokenBundle bundle;
  client::Endpoint mef;
  proto::PpskCredential credential;  // PPSK runs
  proto::CertCredential cert;        // certificate runs
};

// The inner session the device offers: TLS 1.2 with TS-0003's mandatory suite of its RSPF.
constexpr const char* kPskCipher = "PSK-AES128-CBC-SHA256";
constexpr const char* kCertCipher = "ECDHE-ECDSA-AES128-SHA256";

Result<std::unique_ptr<proto::DeviceRspf>> DeviceFor(Job& job, bool cert) {
  proto::RspfTlsOptions inner;
  inner.tls12 = true;
  inner.tls13 = false;
  inner.tls12_ciphers = cert ? kCertCipher : kPskCipher;
  if (cert) {
    MTE_TRY_ASSIGN(auto device, proto::CertDevice::Create(job.cert, inner));
    return std::unique_ptr<proto::DeviceRspf>(std::move(device));
  }
  MTE_TRY_ASSIGN(auto device, proto::PpskDevice::Create(std::move(job.credential), inner));
  return std::unique_ptr<proto::DeviceRspf>(std::move(device));
}

// --- measured phase -----------------------------------------------------------------------------

struct RoundResult {
  int concurrency = 0;
  int n = 0;
  int failures = 0;
  double wall_s = 0;        // first connection .. last answer
  double drained_s = 0;     // first connection .. every Km delivered to the MAF
  double mef_cpu_us = 0;    // per enrolment
  double other_cpu_us = 0;  // per enrolment (portal + MAF process)
  double db_cpu_us = 0;     // per enrolment (the database server's processes, --db-pid)
  ThreadSplit mef_threads;  // per enrolment
  std::vector<double> latency_ms;
};

// Undelivered outbox items in the MTE's store (SQLite or PostgreSQL); -1 when it cannot be read.
int64_t PendingOutbox(store::Store& store) {
  auto status = store.GetOutboxStatus();
  return status ? status->pending : -1;
}

// utime + stime of every process in `pids`, summed; -1 if one cannot be read.
long long ProcessTicks(const std::vector<int>& pids) {
  long long sum = 0;
  for (int pid : pids) {
    long long ticks = ProcessTicks(pid);
    if (ticks < 0) return -1;
    sum += ticks;
  }
  return sum;
}

std::once_flag g_print_once;

RoundResult RunRound(std::vector<Job>& jobs, size_t begin, size_t end, int concurrency,
                     const std::vector<int>& mef_pids, int other_pid,
                     const std::vector<int>& db_pids, store::Store& db, bool cert) {
  const int mef_pid = mef_pids.front();
  RoundResult r;
  r.concurrency = concurrency;
  r.n = static_cast<int>(end - begin);
  r.latency_ms.assign(end - begin, 0);
  std::atomic<size_t> next{begin};
  std::atomic<int> failures{0};
  std::mutex error_mu;
  std::string first_error;
  const auto threads0 = ThreadTicks(mef_pid);
  const long long ticks0_mef = ProcessTicks(mef_pids);
  const long long ticks0_other = ProcessTicks(other_pid);
  const long long ticks0_db = ProcessTicks(db_pids);
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&] {
      while (true) {
        size_t i = next.fetch_add(1);
        if (i >= end) return;
        Job& job = jobs[i];
        auto s0 = Clock::now();
        std::vector<std::unique_ptr<proto::DeviceRspf>> rspfs;
        auto device = DeviceFor(job, cert);
        if (!device) Die("device credential: " + Describe(device.error()));
        rspfs.push_back(std::move(*device));
        auto machine = proto::EnrolmentClient::ViaToken(std::move(job.bundle), std::move(rspfs));
        Result<proto::EnrolmentResult> result =
            machine
                ? client::RunEnrolment(job.mef, **machine, client::After(std::chrono::seconds(60)))
                : Result<proto::EnrolmentResult>(Fail(machine.error()));
        r.latency_ms[i - begin] =
            std::chrono::duration<double, std::milli>(Clock::now() - s0).count();
        if (!result) {
          failures.fetch_add(1);
          std::lock_guard lock(error_mu);
          if (first_error.empty()) first_error = Describe(result.error());
          continue;
        }
        std::call_once(g_print_once, [&] {
          std::printf("  first enrolment: RSPF %s, outer %s, inner %s %s, KeID %s, KmID %s\n",
                      result->rspf.c_str(), result->outer_tls_version.c_str(),
                      result->tls_version.c_str(), result->cipher.c_str(),
                      result->ke_id.c_str(), result->km_id.c_str());
        });
        if (result->cipher != (cert ? kCertCipher : kPskCipher) ||
            result->tls_version != "TLSv1.2" || result->outer_tls_version != "TLSv1.3" ||
            result->rspf != (cert ? proto::kRspfCert : proto::kRspfPpsk)) {
          Die("unexpected TLS or RSPF: " + result->rspf + ", outer " + result->outer_tls_version +
              ", inner " + result->tls_version + " " + result->cipher);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto t1 = Clock::now();
  // The enrolment is complete for the MTE once the MAF holds Km: wait for the outbox.
  const auto give_up = t1 + std::chrono::seconds(60);
  while (PendingOutbox(db) != 0) {
    if (Clock::now() > give_up) Die("the MEF outbox did not drain within 60 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto t2 = Clock::now();
  const long long ticks1_mef = ProcessTicks(mef_pids);
  const auto threads1 = ThreadTicks(mef_pid);
  const long long ticks1_other = ProcessTicks(other_pid);
  const long long ticks1_db = ProcessTicks(db_pids);
  const double tick_us = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  r.failures = failures.load();
  int ok = r.n - r.failures;
  r.wall_s = std::chrono::duration<double>(t1 - t0).count();
  r.drained_s = std::chrono::duration<double>(t2 - t0).count();
  r.mef_cpu_us = ok > 0 ? (ticks1_mef - ticks0_mef) * tick_us / ok : 0;
  r.other_cpu_us = ok > 0 ? (ticks1_other - ticks0_other) * tick_us / ok : 0;
  r.db_cpu_us = ok > 0 ? (ticks1_db - ticks0_db) * tick_us / ok : 0;
  r.mef_threads = SplitThreads(mef_pid, threads0, threads1, ok);
  if (!first_error.empty())
    std::printf("  FAILED enrolments: %d; first: %s\n", r.failures, first_error.c_str());
  return r;
}

using mte::bench::Median;
using mte::bench::Percentile;

int Run(const Args& args) {
  const std::string data = args.Get("data");
  // One MEF process, or several (comma-separated: their CPU is summed; the per-thread split is
  // the first one's).
  auto pid_list = [](const std::string& text) {
    std::vector<int> pids;
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (!item.empty()) pids.push_back(std::atoi(item.c_str()));
    }
    return pids;
  };
  const std::vector<int> mef_pids = pid_list(args.Get("mef-pid"));
  if (mef_pids.empty()) Die("bad --mef-pid");
  // Optional: the database server's processes (PostgreSQL), whose CPU is printed beside.
  const std::vector<int> db_pids = pid_list(args.Optional("db-pid"));
  // Optional: the MEF ports to connect to, in turn per enrolment, instead of the bundle's MEF
  // URI (several MEF processes without a load balancer in front).
  std::vector<uint16_t> mef_ports;
  for (int port : pid_list(args.Optional("mef-ports"))) {
    if (port < 1 || port > 65535) Die("bad --mef-ports");
    mef_ports.push_back(static_cast<uint16_t>(port));
  }
  const int other_pid = std::atoi(args.Get("other-pid").c_str());
  const int rounds = std::atoi(args.Get("rounds", "3").c_str());
  const int per_round = std::atoi(args.Get("per-round", "200").c_str());
  const int prep_threads = std::clamp(std::atoi(args.Get("prep-threads", "4").c_str()), 1, 64);
  const bool cert = CertRspf(args);
  const std::string key = cert ? "flowb_cert" : "flowb";
  std::vector<int> levels;
  {
    std::stringstream ss(args.Get("concurrency", "4,8"));
    std::string item;
    while (std::getline(ss, item, ','))
      levels.push_back(std::clamp(std::atoi(item.c_str()), 1, 256));
  }
  if (rounds < 1 || rounds > 50 || per_round < 1 || per_round > 100000 || levels.empty()) {
    Die("bad --rounds / --per-round / --concurrency");
  }
  const size_t total = levels.size() * static_cast<size_t>(rounds) * static_cast<size_t>(per_round);
  auto manifest = nlohmann::json::parse(ReadFile(args.Get("manifest")), nullptr, false);
  if (!manifest.is_array() || manifest.size() < total) {
    Die("the manifest needs at least " + std::to_string(total) + " devices");
  }
  auto config = nlohmann::json::parse(ReadFile(data + "/mte.json"), nullptr, false);
  std::string password = ReadFile(args.Get("password-file"));
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r'))
    password.pop_back();

  // ---- preparation (not measured)
  auto prep0 = Clock::now();
  Portal portal;
  portal.endpoint = {"127.0.0.1", config.at("portalPort").get<uint16_t>()};
  crypto::TlsClientOptions portal_tls;
  portal_tls.server_name = "localhost";
  portal_tls.trust_pem_file = data + "/pki/ca.crt";
  auto portal_ctx = crypto::TlsContext::Client(portal_tls);
  if (!portal_ctx) Die("portal TLS context: " + portal_ctx.error().detail);
  portal.tls = *portal_ctx;
  auto login = portal.Call("POST", "/api/v1/login",
                           {{"name", args.Get("stakeholder")}, {"password", password}}, 200);
  portal.bearer = login.at("token").get<std::string>();

  std::vector<Job> jobs(total);
  // Runs `one(i)` for i in 0..total on prep_threads threads.
  auto parallel = [&](const auto& one) {
    std::atomic<size_t> next{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < prep_threads; ++t) {
      workers.emplace_back([&] {
        for (size_t i; (i = next.fetch_add(1)) < total;) one(i);
      });
    }
    for (auto& t : workers) t.join();
  };
  std::vector<int64_t> entry_ids(total);
  parallel([&](size_t i) {
    auto entry = portal.Call(
        "POST", "/api/v1/enrolees",
        {{"label", "bench-" + std::to_string(i)}, {"deviceInfo", "Flow B benchmark device"}}, 201);
    entry_ids[i] = entry.at("id").get<int64_t>();
  });
  // Token issuance alone, timed: each is a durable commit of the portal (and an audit entry).
  const auto issue0 = Clock::now();
  std::vector<nlohmann::json> bundles(total);
  parallel([&](size_t i) {
    bundles[i] = portal.Call("POST", "/api/v1/enrolees/" + std::to_string(entry_ids[i]) + "/tokens",
                             nlohmann::json::object(), 201);
  });
  const double issue_s = std::chrono::duration<double>(Clock::now() - issue0).count();
  for (size_t i = 0; i < total; ++i) {
    const auto& bundle = bundles[i];
    Job& job = jobs[i];
    job.bundle.token = bundle.at("token").get<std::string>();
    job.bundle.mef_fqdn = bundle.at("mefFqdn").get<std::string>();
    for (const auto& pem : bundle.at("mefTrustAnchors"))
      job.bundle.mef_trust_pem += pem.get<std::string>();
    std::string uri = bundle.at("mefUri").get<std::string>();
    auto endpoint = client::ParseEndpoint(uri.substr(std::string("https://").size()));
    if (!endpoint) Die("bad mefUri " + uri);
    job.mef = *endpoint;
    if (!mef_ports.empty()) job.mef.port = mef_ports[i % mef_ports.size()];
    const auto& device = manifest[i];
    if (cert) {
      const std::string dir = CertDir(args, device.at("deviceId").get<std::string>());
      job.cert = {dir + "/device.crt", dir + "/device.key"};
      continue;
    }
    job.credential.kpm_id = device.at("kpmId").get<std::string>();
    auto kpm = HexDecode(device.at("kpmHex").get<std::string>());
    if (!kpm) Die("bad kpmHex in the manifest");
    job.credential.kpm = SecretBytes(*kpm, SecretAccess::ForCrypto());
  }
  std::printf(
      "prepared %zu Flow B entries and Enrolment-Tokens via the portal REST API in %.1f s "
      "(not measured)\n",
      total, std::chrono::duration<double>(Clock::now() - prep0).count());
  std::printf(
      "  of which %zu token issuances (POST /api/v1/enrolees/{id}/tokens, durable) from %d "
      "threads: %.1f s, %.0f tokens/s\n",
      total, prep_threads, issue_s, total / issue_s);
  std::printf("%s_token_issuance_per_s=%.1f\n", key.c_str(), total / issue_s);

  // The MTE's store, as mte.json names it ("store": a PostgreSQL URI; else DIR/mte.db).
  const std::string location = config.value("store", std::string());
  auto opened = store::OpenStore(location.empty() ? data + "/mte.db" : location);
  if (!opened) Die("cannot open the store: " + Describe(opened.error()));
  store::Store& db = **opened;
  if (PendingOutbox(db) != 0) Die("the outbox is not empty before the measured phase");

  // ---- measured phase
  size_t cursor = 0;
  std::vector<RoundResult> all;
  for (int level : levels) {
    for (int round = 0; round < rounds; ++round) {
      auto r = RunRound(jobs, cursor, cursor + per_round, level, mef_pids, other_pid, db_pids, db,
                        cert);
      cursor += per_round;
      std::printf(
          "  C=%d round %d: %d enrolments, %.0f enrolments/s (%.0f/s incl. Km delivered "
          "to the MAF), MEF CPU %.0f us/enrolment, portal+MAF process CPU %.0f "
          "us/enrolment, p50 %.1f ms, p99 %.1f ms\n",
          level, round + 1, r.n - r.failures, (r.n - r.failures) / r.wall_s,
          (r.n - r.failures) / r.drained_s, r.mef_cpu_us, r.other_cpu_us,
          Percentile(r.latency_ms, 50), Percentile(r.latency_ms, 99));
      std::fflush(stdout);
      all.push_back(std::move(r));
    }
  }

  int failures = 0;
  for (const auto& r : all) failures += r.failures;
  std::printf(
      "Flow B with the %s RSPF through mte serve (median of %d rounds x %d enrolments per "
      "concurrency):\n",
      cert ? "certificate" : "PPSK", rounds, per_round);
  for (int level : levels) {
    std::vector<double> rate, drained_rate, mef, other, db_cpu, latency, io, pool, outbox;
    for (const auto& r : all) {
      if (r.concurrency != level) continue;
      int ok = r.n - r.failures;
      rate.push_back(ok / r.wall_s);
      drained_rate.push_back(ok / r.drained_s);
      mef.push_back(r.mef_cpu_us);
      other.push_back(r.other_cpu_us);
      db_cpu.push_back(r.db_cpu_us);
      io.push_back(r.mef_threads.io_us);
      pool.push_back(r.mef_threads.pool_us);
      outbox.push_back(r.mef_threads.outbox_us);
      latency.insert(latency.end(), r.latency_ms.begin(), r.latency_ms.end());
    }
    std::printf(
        "  C=%d: %.0f enrolments/s (%.0f/s incl. MAF delivery), MEF CPU %.0f "
        "us/enrolment (%.0f enrolments/s per MEF core), portal+MAF process CPU %.0f "
        "us/enrolment, latency p50 %.1f ms p99 %.1f ms (%zu enrolments)\n",
        level, Median(rate), Median(drained_rate), Median(mef), 1e6 / Median(mef), Median(other),
        Percentile(latency, 50), Percentile(latency, 99), latency.size());
    std::printf(
        "        MEF CPU by thread: asio I/O threads (connections) %.0f us, worker pool %.0f us, "
        "outbox "
        "(MEF->MAF delivery) %.0f us per enrolment\n",
        Median(io), Median(pool), Median(outbox));
    std::printf("%s_c%d_enrolments_per_s=%.1f\n", key.c_str(), level, Median(rate));
    std::printf("%s_c%d_mef_cpu_us=%.1f\n", key.c_str(), level, Median(mef));
    std::printf("%s_c%d_other_cpu_us=%.1f\n", key.c_str(), level, Median(other));
    if (!db_pids.empty()) {
      std::printf("        database server CPU %.0f us per enrolment\n", Median(db_cpu));
      std::printf("%s_c%d_db_cpu_us=%.1f\n", key.c_str(), level, Median(db_cpu));
    }
    std::printf("%s_c%d_delivered_per_s=%.1f\n", key.c_str(), level, Median(drained_rate));
    std::printf("%s_c%d_p50_ms=%.2f\n", key.c_str(), level, Percentile(latency, 50));
    std::printf("%s_c%d_p99_ms=%.2f\n", key.c_str(), level, Percentile(latency, 99));
  }
  std::printf("%s_failures=%d\n", key.c_str(), failures);
  return failures == 0 ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Die("usage: mte_bench_flowb ports|manifest|run --key value ...");
  std::string command = argv[1];
  Args args = ParseArgs(argc, argv, 2);
  if (command == "ports") return Ports(args);
  if (command == "manifest") return Manifest(args);
  if (command == "run") return Run(args);
  Die("unknown command '" + command + "'");
}
