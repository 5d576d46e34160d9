// mte_bench_outbox: the MEF outbox drain benchmark's two halves (bench/outbox_drain.sh).
//
//   mte_bench_outbox fill --data DIR --count N --stakeholder NAME [--db FILE]
//       queues N credential deliveries the way the MEF does after N first enrolments: for each,
//       a Flow B entry of the stakeholder (store::Store::AddEnroleeEntry) and one
//       store::Store::CommitEnrolment with a random Ke, Km = HMAC-SHA-256(Ke, label || MAF-ID)
//       (crypto::DeriveKm), KmID = KeID and the outbox item mte::MafCredentialDelivery seals,
//       so every row is what the MEF writes; only the TLS handshake that would have produced Ke
//       is left out. The data directory gives the KEK, the MEF FQDN and the MAF-ID; --db writes
//       into another copy of the store (default DIR/mte.db).
//   mte_bench_outbox drain --data DIR --mef-pid PID --maf-pid PID [--timeout-s 300]
//       started with the MEF: polls DIR/mte.db every 5 ms until no outbox row is undelivered,
//       checks that the MAF holds one credential per delivered row, and prints the drain as
//       outbox_drain_* key=value lines: deliveries, seconds from this program's start (the MEF's)
//       to the first and to the last delivery, deliveries per second, and the CPU per delivery
//       of the MEF and of the MAF process (utime + stime from /proc/PID/stat).
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
#include "bench_util.h"
#include "crypto/aead.h"
#include "crypto/keys.h"
#include "crypto/random.h"
#include "mte/config.h"
#include "mte/enrolees.h"
#include "store/store.h"

namespace {

using namespace mte;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "mte_bench_outbox: %s\n", what.c_str());
  std::exit(1);
}

template <class T>
T Check(Result<T> r, const char* what) {
  if (!r) Die(std::string(what) + ": " + Describe(r.error()));
  return std::move(*r);
}

// --name value pairs.
std::string Arg(int argc, char** argv, const std::string& name, const std::string& fallback = "") {
  for (int i = 2; i + 1 < argc; i += 2) {
    if (argv[i] == "--" + name) return argv[i + 1];
  }
  if (fallback.empty()) Die("missing --" + name);
  return fallback;
}

int Fill(int argc, char** argv) {
  auto config = Check(LoadConfig(Arg(argc, argv, "data")), "config");
  const int count = std::atoi(Arg(argc, argv, "count").c_str());
  if (count <= 0) Die("--count must be positive");
  auto kek = Check(crypto::KeyEncryptionKey::LoadFile(config.kek_file()), "KEK");
  auto store =
      Check(store::OpenSqliteStore(Arg(argc, argv, "db", config.db_file().string())), "store");
  const std::string name = Arg(argc, argv, "stakeholder");
  auto stakeholder = Check(store->FindStakeholder(name), "stakeholder");
  if (!stakeholder) Die("no stakeholder named " + name);
  crypto::SystemRng rng;
  const auto t0 = Clock::now();
  for (int i = 0; i < count; ++i) {
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    auto entry = Check(store->AddEnroleeEntry(stakeholder->id, std::nullopt,
                                              "drain-" + std::to_string(i), "", now),
                       "add entry");
    Bytes relative(16), ke_bytes(32);
    rng.Fill(relative);
    rng.Fill(ke_bytes);
    SecretBytes ke(ke_bytes, SecretAccess::ForCrypto());
    const std::string ke_id = HexUpper(relative) + "@" + config.mef_fqdn;
    const int64_t generation = 1;
    const int64_t expires_at = now + config.enrolment_expiry_seconds;
    auto km = Check(crypto::DeriveKm(ke, config.maf_id), "Km");
    store::EnrolmentCommit commit;
    commit.enrolee_id = entry.id;
    commit.expected_generation = 0;
    commit.rspf = "PPSK";
    commit.ke_id = ke_id;
    commit.ke_sealed = Check(kek.Seal(ke, "ke|" + std::to_string(entry.id) + "|1", rng), "seal Ke");
    commit.ke_expires_at = expires_at;
    commit.credential_ids = {"11-" + ke_id};
    commit.outbox =
        Check(MafCredentialDelivery(kek, rng, ke_id, km, entry.id, generation, expires_at, now),
              "outbox item");
    commit.now = now;
    commit.audit = {0,
                    now,
                    "mef",
                    "enrolment.commit",
                    "enrolee " + std::to_string(entry.id) + " KeID " + ke_id,
                    "generation 1, outbox drain benchmark"};
    Check(store->CommitEnrolment(commit), "commit");
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("queued %d deliveries in %.1f s (%d entries + %d enrolment commits, durable)\n",
              count, s, count, count);
  return 0;
}

int64_t Count(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    n = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  return n;
}

int Drain(int argc, char** argv) {
  const auto t0 = Clock::now();
  const std::string data = Arg(argc, argv, "data");
  const int mef_pid = std::atoi(Arg(argc, argv, "mef-pid").c_str());
  const int maf_pid = std::atoi(Arg(argc, argv, "maf-pid").c_str());
  const int timeout_s = std::atoi(Arg(argc, argv, "timeout-s", "300").c_str());
  const long long mef0 = bench::ProcessTicks(mef_pid), maf0 = bench::ProcessTicks(maf_pid);
  if (mef0 < 0 || maf0 < 0) Die("no such process");
  sqlite3* db = nullptr;
  if (sqlite3_open_v2((data + "/mte.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) !=
      SQLITE_OK) {
    Die("cannot open " + data + "/mte.db");
  }
  sqlite3_busy_timeout(db, 1000);
  constexpr const char* kPending = "SELECT count(*) FROM outbox WHERE delivered_at = 0";
  const int64_t queued = Count(db, kPending);
  if (queued <= 0) Die("the outbox holds no undelivered row");
  double first_s = 0;
  const auto give_up = t0 + std::chrono::seconds(timeout_s);
  int64_t pending = queued;
  while (pending != 0) {
    if (Clock::now() > give_up) {
      Die("the outbox did not drain within " + std::to_string(timeout_s) + " s (" +
          std::to_string(pending) + " of " + std::to_string(queued) + " left)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    pending = Count(db, kPending);
    if (first_s == 0 && pending >= 0 && pending < queued) {
      first_s = std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  const double last_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const long long mef1 = bench::ProcessTicks(mef_pid), maf1 = bench::ProcessTicks(maf_pid);
  const int64_t at_maf = Count(db, "SELECT count(*) FROM maf_credentials");
  const int64_t delivered = Count(db, "SELECT count(*) FROM outbox WHERE delivered_at > 0");
  sqlite3_close(db);
  if (at_maf != delivered) {
    Die("the MAF holds " + std::to_string(at_maf) + " credentials for " +
        std::to_string(delivered) + " delivered rows");
  }
  const double tick_us = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  std::printf("outbox_drain_deliveries=%lld\n", static_cast<long long>(queued));
  std::printf("outbox_drain_first_s=%.3f\n", first_s);
  std::printf("outbox_drain_s=%.3f\n", last_s);
  std::printf("outbox_drain_per_s=%.0f\n", static_cast<double>(queued) / last_s);
  std::printf("outbox_drain_mef_cpu_us=%.0f\n", (mef1 - mef0) * tick_us / queued);
  std::printf("outbox_drain_maf_cpu_us=%.0f\n", (maf1 - maf0) * tick_us / queued);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "fill") return Fill(argc, argv);
  if (command == "drain") return Drain(argc, argv);
  std::fprintf(stderr,
               "usage: mte_bench_outbox fill --data DIR --count N --stakeholder NAME [--db FILE]\n"
               "       mte_bench_outbox drain --data DIR --mef-pid PID --maf-pid PID "
               "[--timeout-s S]\n");
  return 2;
}
