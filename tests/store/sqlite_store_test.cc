// Conformance tests for store::Store, run on SQLite ":memory:", a SQLite file and PostgreSQL, plus
// SQLite file-only tests (file modes, synchronous, locks, migrations) and the crash safety test
// on a SQLite file and on PostgreSQL.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "store/internal/migrate.h"
#include "store/store.h"
#include "store/store_test_support.h"

namespace mte::store {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// --- helpers ----------------------------------------------------------------------------------

using test_support::Backend;
using test_support::BackendTest;
using test_support::BackendName;
using test_support::IsError;
using test_support::MakeCredential;
using test_support::MakeDevice;
using test_support::Ok;
using test_support::SomeBytes;
using test_support::TempDir;

// A second, raw connection to a database file, bypassing the store.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      sqlite3_close(db_);
      db_ = nullptr;
    } else {
      sqlite3_busy_timeout(db_, 5000);
    }
  }

  ~RawDb() { sqlite3_close(db_); }

  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  bool ok() const { return db_ != nullptr; }

  // The sqlite result code; the message is kept in last_error().
  int Exec(const std::string& sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    last_error_ = message != nullptr ? message : "";
    sqlite3_free(message);
    return rc;
  }

  // The first column of the first row, as text ("" when there is none).
  std::string Scalar(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    return out;
  }

  const std::string& last_error() const { return last_error_; }

  sqlite3* get() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  std::string last_error_;
};

std::string KeIdFor(int64_t enrolee_id, int64_t generation) {
  return "KE" + std::to_string(enrolee_id) + "G" + std::to_string(generation) + "@mef.example";
}

std::vector<std::string> CredentialIdsFor(int64_t enrolee_id, int64_t generation) {
  return {"1-PPSK" + std::to_string(enrolee_id) + "." + std::to_string(generation),
          "2-" + std::to_string(enrolee_id)};
}

Bytes PayloadFor(int64_t enrolee_id, int64_t generation) {
  return SomeBytes("payload|" + std::to_string(enrolee_id) + "|" + std::to_string(generation));
}

EnrolmentCommit MakeCommit(int64_t enrolee_id, int64_t expected_generation, int64_t now) {
  const int64_t generation = expected_generation + 1;
  EnrolmentCommit commit;
  commit.enrolee_id = enrolee_id;
  commit.expected_generation = expected_generation;
  commit.rspf = "PPSK";
  commit.ke_id = KeIdFor(enrolee_id, generation);
  commit.ke_sealed = SomeBytes(commit.ke_id);
  commit.ke_expires_at = now + 3600;
  commit.credential_ids = CredentialIdsFor(enrolee_id, generation);
  commit.outbox.enrolee_id = enrolee_id;
  commit.outbox.generation = generation;
  commit.outbox.target = "maf";
  commit.outbox.payload_sealed = PayloadFor(enrolee_id, generation);
  commit.outbox.next_attempt_at = now;
  commit.now = now;
  return commit;
}

void ExpectSameEnrolee(const EnroleeRecord& a, const EnroleeRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.stakeholder_id, b.stakeholder_id);
  EXPECT_EQ(a.stakeholder_name, b.stakeholder_name);
  EXPECT_EQ(a.device_id, b.device_id);
  EXPECT_EQ(a.label, b.label);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.generation, b.generation);
  EXPECT_EQ(a.rspf, b.rspf);
  EXPECT_EQ(a.ke_id, b.ke_id);
  EXPECT_EQ(a.ke_sealed, b.ke_sealed);
  EXPECT_EQ(a.ke_expires_at, b.ke_expires_at);
  EXPECT_EQ(a.credential_ids, b.credential_ids);
  EXPECT_EQ(a.maf_delivery, b.maf_delivery);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.enrolled_at, b.enrolled_at);
}

// --- the conformance suite --------------------------------------------------------------------

class StoreTest : public BackendTest {
 protected:

  int64_t AddStakeholder(const std::string& name) {
    auto id = store().AddStakeholder(name, "$argon2id$" + name, 10);
    EXPECT_TRUE(Ok(id));
    return id.has_value() ? *id : -1;
  }

  // Imports device n and adds an enrolee for it.
  EnroleeRecord AddEnrolee(int64_t stakeholder_id, int n, int64_t now = 20) {
    EXPECT_TRUE(Ok(store().ImportDevices({MakeDevice(n)})));
    auto enrolee = store().AddEnrolee(stakeholder_id, MakeDevice(n).device_id,
                                      "label " + std::to_string(n), now);
    EXPECT_TRUE(Ok(enrolee));
    return enrolee.has_value() ? *enrolee : EnroleeRecord{};
  }

  std::vector<OutboxItem> AllUndelivered() {
    auto items = store().DueOutbox(std::numeric_limits<int64_t>::max(), INT_MAX);
    EXPECT_TRUE(Ok(items));
    return items.has_value() ? *items : std::vector<OutboxItem>{};
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, test_support::AllBackends(), BackendName);

TEST(StoreEnumTest, ToStringNamesEveryValue) {
  EXPECT_EQ(ToString(EnroleeState::kPending), "pending");
  EXPECT_EQ(ToString(EnroleeState::kEnrolled), "enrolled");
  EXPECT_EQ(ToString(DeliveryStatus::kNone), "none");
  EXPECT_EQ(ToString(DeliveryStatus::kPending), "pending");
  EXPECT_EQ(ToString(DeliveryStatus::kDelivered), "delivered");
}

// devices

TEST_P(StoreTest, ImportsAndFindsDevices) {
  ASSERT_TRUE(Ok(store().ImportDevices({MakeDevice(1), MakeDevice(2), MakeDevice(3)})));
  for (int n = 1; n <= 3; ++n) {
    const DeviceRecord want = MakeDevice(n);
    auto by_id = store().FindDevice(want.device_id);
    ASSERT_TRUE(Ok(by_id));
    ASSERT_TRUE(by_id->has_value());
    EXPECT_EQ((*by_id)->device_id, want.device_id);
    ASSERT_EQ((*by_id)->credentials.size(), 1U);
    EXPECT_EQ((*by_id)->credentials[0].kind, CredentialKind::kKpm);
    EXPECT_EQ((*by_id)->credentials[0].id, want.credentials[0].id);
    EXPECT_EQ((*by_id)->credentials[0].secret_sealed, want.credentials[0].secret_sealed);
    EXPECT_EQ((*by_id)->claim_hash, want.claim_hash);
    EXPECT_EQ((*by_id)->created_at, want.created_at);

    auto by_kpm = store().FindDeviceByKpmId(want.credentials[0].id);
    ASSERT_TRUE(Ok(by_kpm));
    ASSERT_TRUE(by_kpm->has_value());
    EXPECT_EQ((*by_kpm)->device_id, want.device_id);
  }
  auto missing = store().FindDevice("dev-404");
  ASSERT_TRUE(Ok(missing));
  EXPECT_FALSE(missing->has_value());
  auto missing_kpm = store().FindDeviceByKpmId("kpm-404");
  ASSERT_TRUE(Ok(missing_kpm));
  EXPECT_FALSE(missing_kpm->has_value());
}

TEST_P(StoreTest, ImportOfEmptyBatchSucceeds) {
  EXPECT_TRUE(Ok(store().ImportDevices({})));
}

TEST_P(StoreTest, ImportWithDuplicateDeviceIdInBatchImportsNothing) {
  DeviceRecord duplicate = MakeDevice(2);
  duplicate.credentials[0].id = "kpm-other";
  EXPECT_TRUE(
      IsError(store().ImportDevices({MakeDevice(1), MakeDevice(2), duplicate, MakeDevice(3)}),
              ErrorKind::kLocalUsage, Errc::kConflict, "'dev-2'"));
  for (int n = 1; n <= 3; ++n) {
    auto found = store().FindDevice(MakeDevice(n).device_id);
    ASSERT_TRUE(Ok(found));
    EXPECT_FALSE(found->has_value()) << n;
  }
}

TEST_P(StoreTest, ImportWithDuplicateKpmIdInBatchImportsNothing) {
  DeviceRecord duplicate = MakeDevice(9);
  duplicate.credentials[0].id = MakeDevice(1).credentials[0].id;
  EXPECT_TRUE(IsError(store().ImportDevices({MakeDevice(1), duplicate}), ErrorKind::kLocalUsage,
                      Errc::kConflict, "'kpm-1'"));
  auto found = store().FindDeviceByKpmId("kpm-1");
  ASSERT_TRUE(Ok(found));
  EXPECT_FALSE(found->has_value());
}

TEST_P(StoreTest, ImportWithDuplicateAgainstStoreImportsNothing) {
  ASSERT_TRUE(Ok(store().ImportDevices({MakeDevice(1)})));
  EXPECT_TRUE(IsError(store().ImportDevices({MakeDevice(2), MakeDevice(1), MakeDevice(3)}),
                      ErrorKind::kLocalUsage, Errc::kConflict, "'dev-1'"));
  for (int n : {2, 3}) {
    auto found = store().FindDevice(MakeDevice(n).device_id);
    ASSERT_TRUE(Ok(found));
    EXPECT_FALSE(found->has_value()) << n;
  }
  auto original = store().FindDevice("dev-1");
  ASSERT_TRUE(Ok(original));
  EXPECT_TRUE(original->has_value());
}

// stakeholders and sessions

TEST_P(StoreTest, AddsAndFindsStakeholders) {
  auto alice = store().AddStakeholder("alice", "$argon2id$a", 100);
  auto bob = store().AddStakeholder("bob", "$argon2id$b", 101);
  ASSERT_TRUE(Ok(alice));
  ASSERT_TRUE(Ok(bob));
  EXPECT_NE(*alice, *bob);

  auto found = store().FindStakeholder("alice");
  ASSERT_TRUE(Ok(found));
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, *alice);
  EXPECT_EQ((*found)->name, "alice");
  EXPECT_EQ((*found)->password_hash, "$argon2id$a");
  EXPECT_EQ((*found)->created_at, 100);

  auto nobody = store().FindStakeholder("carol");
  ASSERT_TRUE(Ok(nobody));
  EXPECT_FALSE(nobody->has_value());
}

TEST_P(StoreTest, DuplicateStakeholderIsAConflict) {
  ASSERT_TRUE(Ok(store().AddStakeholder("alice", "$argon2id$a", 100)));
  EXPECT_TRUE(IsError(store().AddStakeholder("alice", "$argon2id$other", 200),
                      ErrorKind::kLocalUsage, Errc::kConflict, "'alice'"));
  auto found = store().FindStakeholder("alice");
  ASSERT_TRUE(Ok(found));
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->password_hash, "$argon2id$a");
}

SessionSpec BearerUntil(int64_t expires_at) {
  return {SessionKind::kBearer, 0, expires_at, 0};
}

TEST_P(StoreTest, SessionsExpire) {
  const int64_t alice = AddStakeholder("alice");
  const Bytes token = SomeBytes("token-hash");
  ASSERT_TRUE(Ok(store().AddSession(token, alice, BearerUntil(500))));

  auto live = store().FindSession(token, 499);
  ASSERT_TRUE(Ok(live));
  ASSERT_TRUE(live->has_value());
  EXPECT_EQ((*live)->id, alice);
  EXPECT_EQ((*live)->name, "alice");

  for (int64_t now : {500, 501, 100000}) {
    auto expired = store().FindSession(token, now);
    ASSERT_TRUE(Ok(expired));
    EXPECT_FALSE(expired->has_value()) << now;
  }
  auto unknown = store().FindSession(SomeBytes("other"), 10);
  ASSERT_TRUE(Ok(unknown));
  EXPECT_FALSE(unknown->has_value());
}

TEST_P(StoreTest, SessionErrors) {
  const int64_t alice = AddStakeholder("alice");
  const Bytes token = SomeBytes("token-hash");
  EXPECT_TRUE(IsError(store().AddSession(token, alice + 100, BearerUntil(500)), ErrorKind::kLocalUsage,
                      Errc::kNotFound, std::to_string(alice + 100)));
  ASSERT_TRUE(Ok(store().AddSession(token, alice, BearerUntil(500))));
  EXPECT_TRUE(
      IsError(store().AddSession(token, alice, BearerUntil(900)), ErrorKind::kLocalUsage, Errc::kConflict));
  // The first session's expiry is unchanged.
  auto after = store().FindSession(token, 600);
  ASSERT_TRUE(Ok(after));
  EXPECT_FALSE(after->has_value());
}

TEST_P(StoreTest, BrowserSessionsEndWhenIdleAndAtTheirAbsoluteExpiry) {
  const int64_t alice = AddStakeholder("alice");
  const Bytes token = SomeBytes("browser");
  ASSERT_TRUE(Ok(store().AddSession(token, alice, {SessionKind::kBrowser, 1000, 5000, 100})));
  // Each use within the idle time keeps it alive, past the first idle deadline.
  for (int64_t now : {1050, 1099, 1180, 1270}) {
    auto live = store().FindSession(token, now);
    ASSERT_TRUE(Ok(live));
    EXPECT_TRUE(live->has_value()) << now;
  }
  // 100 s after the last recorded use it is gone, and later uses do not bring it back.
  for (int64_t now : {1370, 1371, 1400}) {
    auto idle = store().FindSession(token, now);
    ASSERT_TRUE(Ok(idle));
    EXPECT_FALSE(idle->has_value()) << now;
  }
  // Used all the time, it still ends at its absolute expiry.
  const Bytes busy = SomeBytes("busy");
  ASSERT_TRUE(Ok(store().AddSession(busy, alice, {SessionKind::kBrowser, 1000, 1200, 100})));
  for (int64_t now = 1000; now < 1200; now += 20) {
    auto live = store().FindSession(busy, now);
    ASSERT_TRUE(Ok(live));
    EXPECT_TRUE(live->has_value()) << now;
  }
  auto ended = store().FindSession(busy, 1200);
  ASSERT_TRUE(Ok(ended));
  EXPECT_FALSE(ended->has_value());
}

TEST_P(StoreTest, DeleteSessionEndsItOnce) {
  const int64_t alice = AddStakeholder("alice");
  const Bytes token = SomeBytes("logout");
  ASSERT_TRUE(Ok(store().AddSession(token, alice, BearerUntil(5000))));
  auto first = store().DeleteSession(token, {0, 10, "stakeholder:alice", "portal.logout", "s", ""});
  ASSERT_TRUE(Ok(first));
  EXPECT_TRUE(*first);
  auto gone = store().FindSession(token, 20);
  ASSERT_TRUE(Ok(gone));
  EXPECT_FALSE(gone->has_value());
  auto again = store().DeleteSession(token, {0, 11, "stakeholder:alice", "portal.logout", "s", ""});
  ASSERT_TRUE(Ok(again));
  EXPECT_FALSE(*again);
  auto audit = store().ListAudit();
  ASSERT_TRUE(Ok(audit));
  int logouts = 0;
  for (const auto& a : *audit) logouts += a.action == "portal.logout";
  EXPECT_EQ(logouts, 1);
}

// A 32-octet stand-in for a token's SHA-256, distinct per seed.
Bytes TokenHash(std::string_view seed) {
  Bytes out(32, 0x5a);
  for (size_t i = 0; i < seed.size() && i < out.size(); ++i) out[i] ^= static_cast<uint8_t>(seed[i]);
  return out;
}

TEST_P(StoreTest, ApiTokensAreNamedListedUsedAndRevoked) {
  const int64_t alice = AddStakeholder("alice");
  const int64_t bob = AddStakeholder("bob");
  auto ci = store().AddApiToken(alice, "ci", TokenHash("ci-token"), 100, 0);
  ASSERT_TRUE(Ok(ci));
  EXPECT_EQ(ci->name, "ci");
  auto short_lived = store().AddApiToken(alice, "short", TokenHash("short-token"), 100, 200);
  ASSERT_TRUE(Ok(short_lived));
  // Names are per stakeholder; hashes are unique everywhere.
  EXPECT_TRUE(IsError(store().AddApiToken(alice, "ci", TokenHash("other"), 101, 0),
                      ErrorKind::kLocalUsage, Errc::kConflict));
  EXPECT_TRUE(Ok(store().AddApiToken(bob, "ci", TokenHash("bob-ci"), 101, 0)));
  EXPECT_TRUE(IsError(store().AddApiToken(bob, "again", TokenHash("ci-token"), 101, 0),
                      ErrorKind::kLocalUsage, Errc::kConflict));

  auto who = store().FindApiToken(TokenHash("ci-token"), 1000);
  ASSERT_TRUE(Ok(who));
  ASSERT_TRUE(who->has_value());
  EXPECT_EQ((*who)->id, alice);
  auto expired = store().FindApiToken(TokenHash("short-token"), 200);
  ASSERT_TRUE(Ok(expired));
  EXPECT_FALSE(expired->has_value());

  auto list = store().ListApiTokens(alice);
  ASSERT_TRUE(Ok(list));
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "ci");
  EXPECT_EQ((*list)[0].last_used_at, 1000);
  EXPECT_EQ((*list)[1].last_used_at, 0);

  // Bob cannot revoke Alice's token; Alice can, once.
  EXPECT_TRUE(IsError(store().RevokeApiToken(bob, ci->id), ErrorKind::kLocalUsage,
                      Errc::kNotFound));
  ASSERT_TRUE(Ok(store().RevokeApiToken(alice, ci->id)));
  EXPECT_TRUE(IsError(store().RevokeApiToken(alice, ci->id), ErrorKind::kLocalUsage,
                      Errc::kNotFound));
  auto revoked = store().FindApiToken(TokenHash("ci-token"), 1001);
  ASSERT_TRUE(Ok(revoked));
  EXPECT_FALSE(revoked->has_value());
}

TEST_P(StoreTest, TotpIsConfirmedOnceAndEachStepAcceptedOnce) {
  const int64_t alice = AddStakeholder("alice");
  const Bytes sealed(49, 0x11);
  EXPECT_TRUE(IsError(store().BeginTotp(9999, sealed, 100), ErrorKind::kLocalUsage,
                      Errc::kNotFound));
  EXPECT_TRUE(IsError(store().ConfirmTotp(alice, 5, {}), ErrorKind::kLocalUsage,
                      Errc::kNotFound));
  ASSERT_TRUE(Ok(store().BeginTotp(alice, sealed, 100)));
  ASSERT_TRUE(Ok(store().BeginTotp(alice, Bytes(49, 0x22), 101)));  // replaces, unconfirmed
  auto pending = store().FindTotp(alice);
  ASSERT_TRUE(Ok(pending));
  ASSERT_TRUE(pending->has_value());
  EXPECT_FALSE((*pending)->confirmed);
  EXPECT_EQ((*pending)->secret_sealed, Bytes(49, 0x22));
  EXPECT_FALSE(*store().UseTotpStep(alice, 10)) << "an unconfirmed secret accepts nothing";

  const std::vector<Bytes> codes = {TokenHash("r1"), TokenHash("r2"), TokenHash("r3")};
  ASSERT_TRUE(Ok(store().ConfirmTotp(alice, 50, codes)));
  EXPECT_TRUE(IsError(store().BeginTotp(alice, sealed, 102), ErrorKind::kLocalUsage,
                      Errc::kConflict));
  auto on = store().FindTotp(alice);
  ASSERT_TRUE(Ok(on));
  EXPECT_TRUE((*on)->confirmed);
  EXPECT_EQ((*on)->last_step, 50);
  EXPECT_EQ((*on)->recovery_codes_left, 3);

  EXPECT_FALSE(*store().UseTotpStep(alice, 50)) << "the confirming step";
  EXPECT_FALSE(*store().UseTotpStep(alice, 49));
  EXPECT_TRUE(*store().UseTotpStep(alice, 51));
  EXPECT_FALSE(*store().UseTotpStep(alice, 51));

  EXPECT_TRUE(*store().UseRecoveryCode(alice, TokenHash("r2")));
  EXPECT_FALSE(*store().UseRecoveryCode(alice, TokenHash("r2")));
  EXPECT_FALSE(*store().UseRecoveryCode(alice, TokenHash("nope")));
  EXPECT_EQ((*store().FindTotp(alice))->recovery_codes_left, 2);
  ASSERT_TRUE(Ok(store().ReplaceRecoveryCodes(alice, {TokenHash("n1")})));
  EXPECT_FALSE(*store().UseRecoveryCode(alice, TokenHash("r1")));
  EXPECT_EQ((*store().FindTotp(alice))->recovery_codes_left, 1);

  EXPECT_TRUE(*store().RemoveTotp(alice));
  EXPECT_FALSE(*store().RemoveTotp(alice));
  EXPECT_FALSE(store().FindTotp(alice)->has_value());
  EXPECT_TRUE(IsError(store().ReplaceRecoveryCodes(alice, {TokenHash("n2")}),
                      ErrorKind::kLocalUsage, Errc::kNotFound));
}

TEST_P(StoreTest, RemovingAStakeholderRemovesItsTotp) {
  const int64_t bob = AddStakeholder("bob");
  ASSERT_TRUE(Ok(store().BeginTotp(bob, Bytes(49, 1), 100)));
  ASSERT_TRUE(Ok(store().ConfirmTotp(bob, 7, {TokenHash("c")})));
  ASSERT_TRUE(Ok(store().RemoveStakeholder("bob")));
  const int64_t again = AddStakeholder("bob");
  EXPECT_FALSE(store().FindTotp(again)->has_value());
  EXPECT_FALSE(store().FindTotp(bob)->has_value());
}

// enrolees

TEST_P(StoreTest, AddsAndReadsEnrolee) {
  const int64_t alice = AddStakeholder("alice");
  ASSERT_TRUE(Ok(store().ImportDevices({MakeDevice(1)})));
  auto added = store().AddEnrolee(alice, "dev-1", "boiler", 77);
  ASSERT_TRUE(Ok(added));
  EXPECT_GT(added->id, 0);
  EXPECT_EQ(added->stakeholder_id, alice);
  EXPECT_EQ(added->stakeholder_name, "alice");
  EXPECT_EQ(added->device_id, "dev-1");
  EXPECT_EQ(added->label, "boiler");
  EXPECT_EQ(added->state, EnroleeState::kPending);
  EXPECT_EQ(added->generation, 0);
  EXPECT_EQ(added->rspf, "");
  EXPECT_EQ(added->ke_id, "");
  EXPECT_THAT(added->ke_sealed, IsEmpty());
  EXPECT_EQ(added->ke_expires_at, 0);
  EXPECT_THAT(added->credential_ids, IsEmpty());
  EXPECT_EQ(added->maf_delivery, DeliveryStatus::kNone);
  EXPECT_EQ(added->created_at, 77);
  EXPECT_EQ(added->updated_at, 77);
  EXPECT_EQ(added->enrolled_at, 0);

  auto by_id = store().GetEnrolee(added->id);
  ASSERT_TRUE(Ok(by_id));
  ASSERT_TRUE(by_id->has_value());
  ExpectSameEnrolee(**by_id, *added);

  auto by_device = store().FindEnroleeByDevice("dev-1");
  ASSERT_TRUE(Ok(by_device));
  ASSERT_TRUE(by_device->has_value());
  ExpectSameEnrolee(**by_device, *added);

  auto missing = store().GetEnrolee(added->id + 1);
  ASSERT_TRUE(Ok(missing));
  EXPECT_FALSE(missing->has_value());
  auto missing_device = store().FindEnroleeByDevice("dev-2");
  ASSERT_TRUE(Ok(missing_device));
  EXPECT_FALSE(missing_device->has_value());
}

TEST_P(StoreTest, AddEnroleeErrors) {
  const int64_t alice = AddStakeholder("alice");
  const int64_t bob = AddStakeholder("bob");
  ASSERT_TRUE(Ok(store().ImportDevices({MakeDevice(1)})));

  EXPECT_TRUE(IsError(store().AddEnrolee(alice, "dev-unknown", "x", 1), ErrorKind::kLocalUsage,
                      Errc::kNotFound, "'dev-unknown'"));
  EXPECT_TRUE(IsError(store().AddEnrolee(bob + 50, "dev-1", "x", 1), ErrorKind::kLocalUsage,
                      Errc::kNotFound, std::to_string(bob + 50)));
  ASSERT_TRUE(Ok(store().AddEnrolee(alice, "dev-1", "first", 1)));
  EXPECT_TRUE(IsError(store().AddEnrolee(alice, "dev-1", "again", 2), ErrorKind::kLocalUsage,
                      Errc::kConflict, "'dev-1'"));
  EXPECT_TRUE(IsError(store().AddEnrolee(bob, "dev-1", "stolen", 3), ErrorKind::kLocalUsage,
                      Errc::kConflict, "'dev-1'"));

  auto all = store().ListEnrolees(std::nullopt);
  ASSERT_TRUE(Ok(all));
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ((*all)[0].label, "first");
  EXPECT_EQ((*all)[0].stakeholder_id, alice);
}

TEST_P(StoreTest, ListEnroleesFiltersByStakeholderInIdOrder) {
  const int64_t alice = AddStakeholder("alice");
  const int64_t bob = AddStakeholder("bob");
  const EnroleeRecord a1 = AddEnrolee(alice, 1);
  const EnroleeRecord b1 = AddEnrolee(bob, 2);
  const EnroleeRecord a2 = AddEnrolee(alice, 3);
  const EnroleeRecord b2 = AddEnrolee(bob, 4);
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(a2.id, 0, 30))));
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(b1.id, 0, 30))));

  auto all = store().ListEnrolees(std::nullopt);
  ASSERT_TRUE(Ok(all));
  ASSERT_EQ(all->size(), 4U);
  EXPECT_EQ((*all)[0].id, a1.id);
  EXPECT_EQ((*all)[1].id, b1.id);
  EXPECT_EQ((*all)[2].id, a2.id);
  EXPECT_EQ((*all)[3].id, b2.id);
  EXPECT_EQ((*all)[1].stakeholder_name, "bob");
  EXPECT_EQ((*all)[1].credential_ids, CredentialIdsFor(b1.id, 1));
  EXPECT_EQ((*all)[2].credential_ids, CredentialIdsFor(a2.id, 1));
  EXPECT_THAT((*all)[0].credential_ids, IsEmpty());

  auto of_alice = store().ListEnrolees(alice);
  ASSERT_TRUE(Ok(of_alice));
  ASSERT_EQ(of_alice->size(), 2U);
  EXPECT_EQ((*of_alice)[0].id, a1.id);
  EXPECT_EQ((*of_alice)[1].id, a2.id);
  EXPECT_EQ((*of_alice)[1].credential_ids, CredentialIdsFor(a2.id, 1));
  for (const EnroleeRecord& e : *of_alice) {
    EXPECT_EQ(e.stakeholder_name, "alice");
  }

  auto of_bob = store().ListEnrolees(bob);
  ASSERT_TRUE(Ok(of_bob));
  ASSERT_EQ(of_bob->size(), 2U);
  EXPECT_EQ((*of_bob)[0].id, b1.id);
  EXPECT_EQ((*of_bob)[0].credential_ids, CredentialIdsFor(b1.id, 1));
  EXPECT_EQ((*of_bob)[1].id, b2.id);

  auto of_nobody = store().ListEnrolees(bob + 100);
  ASSERT_TRUE(Ok(of_nobody));
  EXPECT_THAT(*of_nobody, IsEmpty());
}

// enrolment

TEST_P(StoreTest, CommitEnrolmentWritesStateGenerationAndOutboxTogether) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord pending = AddEnrolee(alice, 1, 20);
  EnrolmentCommit commit = MakeCommit(pending.id, 0, 50);
  commit.outbox.next_attempt_at = 55;

  auto enrolled = store().CommitEnrolment(commit);
  ASSERT_TRUE(Ok(enrolled));
  EXPECT_EQ(enrolled->state, EnroleeState::kEnrolled);
  EXPECT_EQ(enrolled->generation, 1);
  EXPECT_EQ(enrolled->rspf, "PPSK");
  EXPECT_EQ(enrolled->ke_id, KeIdFor(pending.id, 1));
  EXPECT_EQ(enrolled->ke_sealed, commit.ke_sealed);
  EXPECT_EQ(enrolled->ke_expires_at, 50 + 3600);
  EXPECT_EQ(enrolled->credential_ids, CredentialIdsFor(pending.id, 1));
  EXPECT_EQ(enrolled->maf_delivery, DeliveryStatus::kPending);
  EXPECT_EQ(enrolled->created_at, 20);
  EXPECT_EQ(enrolled->updated_at, 50);
  EXPECT_EQ(enrolled->enrolled_at, 50);
  EXPECT_EQ(enrolled->label, pending.label);

  auto stored = store().GetEnrolee(pending.id);
  ASSERT_TRUE(Ok(stored));
  ASSERT_TRUE(stored->has_value());
  ExpectSameEnrolee(**stored, *enrolled);

  auto not_yet = store().DueOutbox(54, 10);
  ASSERT_TRUE(Ok(not_yet));
  EXPECT_THAT(*not_yet, IsEmpty());
  auto due = store().DueOutbox(55, 10);
  ASSERT_TRUE(Ok(due));
  ASSERT_EQ(due->size(), 1U);
  const OutboxItem& item = (*due)[0];
  EXPECT_GT(item.id, 0);
  EXPECT_EQ(item.enrolee_id, pending.id);
  EXPECT_EQ(item.generation, 1);
  EXPECT_EQ(item.target, "maf");
  EXPECT_EQ(item.payload_sealed, PayloadFor(pending.id, 1));
  EXPECT_EQ(item.attempts, 0);
  EXPECT_EQ(item.next_attempt_at, 55);
  EXPECT_EQ(item.delivered_at, 0);
  EXPECT_EQ(item.last_error, "");

  auto by_id = store().GetOutboxItem(item.id);
  ASSERT_TRUE(Ok(by_id));
  ASSERT_TRUE(by_id->has_value());
  EXPECT_EQ((*by_id)->payload_sealed, item.payload_sealed);
}

TEST_P(StoreTest, ReEnrolmentBumpsGenerationAndReplacesCredentialIds) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord pending = AddEnrolee(alice, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(pending.id, 0, 50))));
  auto second = store().CommitEnrolment(MakeCommit(pending.id, 1, 60));
  ASSERT_TRUE(Ok(second));
  EXPECT_EQ(second->generation, 2);
  EXPECT_EQ(second->ke_id, KeIdFor(pending.id, 2));
  EXPECT_EQ(second->credential_ids, CredentialIdsFor(pending.id, 2));
  EXPECT_EQ(second->enrolled_at, 60);

  const auto items = AllUndelivered();
  ASSERT_EQ(items.size(), 2U);
  EXPECT_EQ(items[0].generation, 1);
  EXPECT_EQ(items[1].generation, 2);
}

TEST_P(StoreTest, StaleGenerationIsAConflictAndChangesNothing) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord pending = AddEnrolee(alice, 1);
  auto first = store().CommitEnrolment(MakeCommit(pending.id, 0, 50));
  ASSERT_TRUE(Ok(first));

  // A concurrent enrolment that read generation 0 loses.
  EnrolmentCommit stale = MakeCommit(pending.id, 0, 70);
  stale.ke_id = "LOSER@mef.example";
  EXPECT_TRUE(IsError(store().CommitEnrolment(stale), ErrorKind::kLocalUsage, Errc::kConflict,
                      "enrolee " + std::to_string(pending.id)));
  // So does one from the future.
  EXPECT_TRUE(IsError(store().CommitEnrolment(MakeCommit(pending.id, 5, 70)),
                      ErrorKind::kLocalUsage, Errc::kConflict));

  auto stored = store().GetEnrolee(pending.id);
  ASSERT_TRUE(Ok(stored));
  ASSERT_TRUE(stored->has_value());
  ExpectSameEnrolee(**stored, *first);
  const auto items = AllUndelivered();
  ASSERT_EQ(items.size(), 1U);
  EXPECT_EQ(items[0].generation, 1);
}

TEST_P(StoreTest, CommitEnrolmentErrorsChangeNothing) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord pending = AddEnrolee(alice, 1);
  EXPECT_TRUE(IsError(store().CommitEnrolment(MakeCommit(pending.id + 7, 0, 50)),
                      ErrorKind::kLocalUsage, Errc::kNotFound, std::to_string(pending.id + 7)));

  EnrolmentCommit wrong_generation = MakeCommit(pending.id, 0, 50);
  wrong_generation.outbox.generation = 3;
  EXPECT_TRUE(
      IsError(store().CommitEnrolment(wrong_generation), ErrorKind::kLocalUsage, Errc::kInvariant));
  EnrolmentCommit wrong_enrolee = MakeCommit(pending.id, 0, 50);
  wrong_enrolee.outbox.enrolee_id = pending.id + 1;
  EXPECT_TRUE(
      IsError(store().CommitEnrolment(wrong_enrolee), ErrorKind::kLocalUsage, Errc::kInvariant));

  auto stored = store().GetEnrolee(pending.id);
  ASSERT_TRUE(Ok(stored));
  ASSERT_TRUE(stored->has_value());
  ExpectSameEnrolee(**stored, pending);
  EXPECT_THAT(AllUndelivered(), IsEmpty());
}

TEST_P(StoreTest, ConcurrentCommitsOnOneStoreHaveExactlyOneWinner) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord pending = AddEnrolee(alice, 1);
  constexpr int kThreads = 8;
  std::atomic<int> won{0};
  std::atomic<int> conflicts{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      EnrolmentCommit commit = MakeCommit(pending.id, 0, 100 + t);
      auto result = store().CommitEnrolment(commit);
      if (result.has_value()) {
        ++won;
      } else if (result.error().code == Errc::kConflict) {
        ++conflicts;
      } else {
        ++other;
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(conflicts.load(), kThreads - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(AllUndelivered().size(), 1U);
}

// outbox

TEST_P(StoreTest, DueOutboxIsOldestFirstAndBounded) {
  const int64_t alice = AddStakeholder("alice");
  std::vector<int64_t> ids;
  for (int n = 1; n <= 4; ++n) {
    const EnroleeRecord enrolee = AddEnrolee(alice, n);
    EnrolmentCommit commit = MakeCommit(enrolee.id, 0, 50);
    // Later items become due earlier: order must still follow age.
    commit.outbox.next_attempt_at = 100 - n;
    ASSERT_TRUE(Ok(store().CommitEnrolment(commit)));
    ids.push_back(enrolee.id);
  }
  auto two = store().DueOutbox(100, 2);
  ASSERT_TRUE(Ok(two));
  ASSERT_EQ(two->size(), 2U);
  EXPECT_EQ((*two)[0].enrolee_id, ids[0]);
  EXPECT_EQ((*two)[1].enrolee_id, ids[1]);
  EXPECT_LT((*two)[0].id, (*two)[1].id);

  auto some = store().DueOutbox(97, 10);  // items due at 99, 98, 97, 96
  ASSERT_TRUE(Ok(some));
  ASSERT_EQ(some->size(), 2U);
  EXPECT_EQ((*some)[0].enrolee_id, ids[2]);
  EXPECT_EQ((*some)[1].enrolee_id, ids[3]);

  auto none = store().DueOutbox(100, 0);
  ASSERT_TRUE(Ok(none));
  EXPECT_THAT(*none, IsEmpty());
}

TEST_P(StoreTest, FailedAttemptsReschedule) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord enrolee = AddEnrolee(alice, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(enrolee.id, 0, 50))));
  const int64_t id = AllUndelivered().at(0).id;

  ASSERT_TRUE(Ok(store().MarkAttemptFailed(id, 200, "connection refused")));
  auto not_due = store().DueOutbox(199, 10);
  ASSERT_TRUE(Ok(not_due));
  EXPECT_THAT(*not_due, IsEmpty());
  auto due = store().DueOutbox(200, 10);
  ASSERT_TRUE(Ok(due));
  ASSERT_EQ(due->size(), 1U);
  EXPECT_EQ((*due)[0].attempts, 1);
  EXPECT_EQ((*due)[0].next_attempt_at, 200);
  EXPECT_EQ((*due)[0].last_error, "connection refused");

  ASSERT_TRUE(Ok(store().MarkAttemptFailed(id, 400, std::string(5000, 'x'))));
  auto item = store().GetOutboxItem(id);
  ASSERT_TRUE(Ok(item));
  ASSERT_TRUE(item->has_value());
  EXPECT_EQ((*item)->attempts, 2);
  EXPECT_EQ((*item)->next_attempt_at, 400);
  EXPECT_EQ((*item)->last_error, std::string(1024, 'x'));
  EXPECT_EQ((*item)->delivered_at, 0);

  auto enrolled = store().GetEnrolee(enrolee.id);
  ASSERT_TRUE(Ok(enrolled));
  EXPECT_EQ((*enrolled)->maf_delivery, DeliveryStatus::kPending);

  EXPECT_TRUE(IsError(store().MarkAttemptFailed(id + 99, 1, "x"), ErrorKind::kLocalUsage,
                      Errc::kNotFound, std::to_string(id + 99)));
}

TEST_P(StoreTest, MarkDeliveredIsIdempotent) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord enrolee = AddEnrolee(alice, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(enrolee.id, 0, 50))));
  const int64_t id = AllUndelivered().at(0).id;

  ASSERT_TRUE(Ok(store().MarkDelivered({id}, 300)));
  EXPECT_THAT(AllUndelivered(), IsEmpty());
  auto item = store().GetOutboxItem(id);
  ASSERT_TRUE(Ok(item));
  EXPECT_EQ((*item)->delivered_at, 300);
  auto delivered = store().GetEnrolee(enrolee.id);
  ASSERT_TRUE(Ok(delivered));
  EXPECT_EQ((*delivered)->maf_delivery, DeliveryStatus::kDelivered);
  EXPECT_EQ((*delivered)->updated_at, 300);

  ASSERT_TRUE(Ok(store().MarkDelivered({id}, 400)));
  item = store().GetOutboxItem(id);
  ASSERT_TRUE(Ok(item));
  EXPECT_EQ((*item)->delivered_at, 300);
  auto again = store().GetEnrolee(enrolee.id);
  ASSERT_TRUE(Ok(again));
  ExpectSameEnrolee(**again, **delivered);

  // A late failure report does not resurrect a delivered item.
  ASSERT_TRUE(Ok(store().MarkAttemptFailed(id, 500, "late")));
  item = store().GetOutboxItem(id);
  ASSERT_TRUE(Ok(item));
  EXPECT_EQ((*item)->delivered_at, 300);
  EXPECT_EQ((*item)->attempts, 0);
  EXPECT_THAT(AllUndelivered(), IsEmpty());

  EXPECT_TRUE(IsError(store().MarkDelivered({id + 99}, 1), ErrorKind::kLocalUsage, Errc::kNotFound,
                      std::to_string(id + 99)));
  auto missing = store().GetOutboxItem(id + 99);
  ASSERT_TRUE(Ok(missing));
  EXPECT_FALSE(missing->has_value());
}

TEST_P(StoreTest, MarkDeliveredMarksABatchOrNothing) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord first = AddEnrolee(alice, 1);
  const EnroleeRecord second = AddEnrolee(alice, 2);
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(first.id, 0, 50))));
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(second.id, 0, 60))));
  const auto items = AllUndelivered();
  ASSERT_EQ(items.size(), 2U);

  // One unknown id: nothing of the batch is marked.
  EXPECT_TRUE(IsError(store().MarkDelivered({items[0].id, items[1].id + 99}, 70),
                      ErrorKind::kLocalUsage, Errc::kNotFound, std::to_string(items[1].id + 99)));
  EXPECT_EQ(AllUndelivered().size(), 2U);

  ASSERT_TRUE(Ok(store().MarkDelivered({items[0].id, items[1].id}, 80)));
  EXPECT_THAT(AllUndelivered(), IsEmpty());
  for (const int64_t id : {first.id, second.id}) {
    auto enrolee = store().GetEnrolee(id);
    ASSERT_TRUE(Ok(enrolee));
    EXPECT_EQ((*enrolee)->maf_delivery, DeliveryStatus::kDelivered);
  }
  // An empty batch is a no-op.
  EXPECT_TRUE(Ok(store().MarkDelivered({}, 90)));
}

TEST_P(StoreTest, DeliveryOfOlderGenerationLeavesCurrentPending) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord enrolee = AddEnrolee(alice, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(enrolee.id, 0, 50))));
  ASSERT_TRUE(Ok(store().CommitEnrolment(MakeCommit(enrolee.id, 1, 60))));
  const auto items = AllUndelivered();
  ASSERT_EQ(items.size(), 2U);
  ASSERT_EQ(items[0].generation, 1);

  ASSERT_TRUE(Ok(store().MarkDelivered({items[0].id}, 70)));
  auto after_old = store().GetEnrolee(enrolee.id);
  ASSERT_TRUE(Ok(after_old));
  EXPECT_EQ((*after_old)->maf_delivery, DeliveryStatus::kPending);
  EXPECT_EQ((*after_old)->updated_at, 60);

  ASSERT_TRUE(Ok(store().MarkDelivered({items[1].id}, 80)));
  auto after_current = store().GetEnrolee(enrolee.id);
  ASSERT_TRUE(Ok(after_current));
  EXPECT_EQ((*after_current)->maf_delivery, DeliveryStatus::kDelivered);
}

// Commits `count` enrolments of one enrolee, each with its outbox item due at `due`; returns the
// items' ids, oldest first.
std::vector<int64_t> CommitOutboxItems(Store& store, int64_t enrolee_id, int count, int64_t due) {
  for (int g = 0; g < count; ++g) {
    EnrolmentCommit commit = MakeCommit(enrolee_id, g, 50 + g);
    commit.outbox.next_attempt_at = due;
    EXPECT_TRUE(Ok(store.CommitEnrolment(commit)));
  }
  auto items = store.DueOutbox(std::numeric_limits<int64_t>::max(), INT_MAX);
  EXPECT_TRUE(Ok(items));
  std::vector<int64_t> ids;
  if (items.has_value()) {
    for (const OutboxItem& item : *items) ids.push_back(item.id);
  }
  return ids;
}

TEST_P(StoreTest, ClaimDueOutboxLeasesTheOldestDueItems) {
  const int64_t alice = AddStakeholder("alice");
  std::vector<int64_t> enrolees;
  for (int n = 1; n <= 4; ++n) {
    const EnroleeRecord enrolee = AddEnrolee(alice, n);
    EnrolmentCommit commit = MakeCommit(enrolee.id, 0, 50);
    commit.outbox.next_attempt_at = n == 3 ? 150 : 100 - n;  // the third is not due at 100
    ASSERT_TRUE(Ok(store().CommitEnrolment(commit)));
    enrolees.push_back(enrolee.id);
  }
  auto first = store().ClaimDueOutbox(100, 2, 400);
  ASSERT_TRUE(Ok(first));
  ASSERT_EQ(first->size(), 2U);
  EXPECT_EQ((*first)[0].enrolee_id, enrolees[0]);
  EXPECT_EQ((*first)[1].enrolee_id, enrolees[1]);
  for (const OutboxItem& item : *first) {
    EXPECT_EQ(item.next_attempt_at, 400) << "returned as leased";
    EXPECT_EQ(item.attempts, 0);
    EXPECT_EQ(item.delivered_at, 0);
    EXPECT_EQ(item.payload_sealed, PayloadFor(item.enrolee_id, 1));
    auto stored = store().GetOutboxItem(item.id);
    ASSERT_TRUE(Ok(stored));
    EXPECT_EQ((*stored)->next_attempt_at, 400);
  }
  // Leased items are no longer due; the next claim takes the rest that is due.
  auto due = store().DueOutbox(100, 10);
  ASSERT_TRUE(Ok(due));
  ASSERT_EQ(due->size(), 1U);
  EXPECT_EQ((*due)[0].enrolee_id, enrolees[3]);
  auto second = store().ClaimDueOutbox(100, 10, 400);
  ASSERT_TRUE(Ok(second));
  ASSERT_EQ(second->size(), 1U);
  EXPECT_EQ((*second)[0].enrolee_id, enrolees[3]);
  auto none = store().ClaimDueOutbox(100, 10, 400);
  ASSERT_TRUE(Ok(none));
  EXPECT_THAT(*none, IsEmpty());

  auto zero = store().ClaimDueOutbox(1000, 0, 2000);
  ASSERT_TRUE(Ok(zero));
  EXPECT_THAT(*zero, IsEmpty());
  EXPECT_TRUE(IsError(store().ClaimDueOutbox(1000, 10, 1000), ErrorKind::kLocalUsage,
                      Errc::kInvariant));
  auto unchanged = store().DueOutbox(999, 10);
  ASSERT_TRUE(Ok(unchanged));
  EXPECT_EQ(unchanged->size(), 4U) << "a refused claim leases nothing";
}

TEST_P(StoreTest, AnExpiredLeaseMakesTheItemDueAgain) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord enrolee = AddEnrolee(alice, 1);
  const std::vector<int64_t> ids = CommitOutboxItems(store(), enrolee.id, 1, 100);
  ASSERT_EQ(ids.size(), 1U);
  auto claimed = store().ClaimDueOutbox(100, 5, 160);
  ASSERT_TRUE(Ok(claimed));
  ASSERT_EQ(claimed->size(), 1U);
  // The claimant died: nobody marks it. Until the lease ends nobody else takes it.
  auto during = store().ClaimDueOutbox(159, 5, 220);
  ASSERT_TRUE(Ok(during));
  EXPECT_THAT(*during, IsEmpty());
  auto after = store().ClaimDueOutbox(160, 5, 220);
  ASSERT_TRUE(Ok(after));
  ASSERT_EQ(after->size(), 1U);
  EXPECT_EQ((*after)[0].id, ids[0]);
  EXPECT_EQ((*after)[0].next_attempt_at, 220);
  // A failed attempt reported by the new claimant reschedules it as usual.
  ASSERT_TRUE(Ok(store().MarkAttemptFailed(ids[0], 300, "refused")));
  auto item = store().GetOutboxItem(ids[0]);
  ASSERT_TRUE(Ok(item));
  EXPECT_EQ((*item)->attempts, 1);
  EXPECT_EQ((*item)->next_attempt_at, 300);
}

TEST_P(StoreTest, ADeliveredItemIsNeverClaimed) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord enrolee = AddEnrolee(alice, 1);
  const std::vector<int64_t> ids = CommitOutboxItems(store(), enrolee.id, 2, 100);
  ASSERT_EQ(ids.size(), 2U);
  auto claimed = store().ClaimDueOutbox(100, 5, 160);
  ASSERT_TRUE(Ok(claimed));
  ASSERT_EQ(claimed->size(), 2U);
  ASSERT_TRUE(Ok(store().MarkDelivered({ids[0]}, 120)));
  auto later = store().ClaimDueOutbox(std::numeric_limits<int64_t>::max() - 1, 5,
                                      std::numeric_limits<int64_t>::max());
  ASSERT_TRUE(Ok(later));
  ASSERT_EQ(later->size(), 1U);
  EXPECT_EQ((*later)[0].id, ids[1]);
  auto item = store().GetOutboxItem(ids[0]);
  ASSERT_TRUE(Ok(item));
  EXPECT_EQ((*item)->delivered_at, 120);
  EXPECT_EQ((*item)->next_attempt_at, 160) << "a delivered item is not leased again";
}

// Two stores (or, on ":memory:", two threads of one) stand for two outbox workers of two
// processes: the items each is given never overlap, and together they are every due item.
TEST_P(StoreTest, ConcurrentClaimsNeverTakeTheSameItem) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord enrolee = AddEnrolee(alice, 1);
  constexpr int kItems = 60;
  const std::vector<int64_t> ids = CommitOutboxItems(store(), enrolee.id, kItems, 100);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kItems));
  std::unique_ptr<Store> second = Shareable() ? OpenAnother() : nullptr;
  Store& other = second != nullptr ? *second : store();

  constexpr int kThreads = 6;
  std::vector<std::vector<int64_t>> taken(kThreads);
  std::atomic<int> errors{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Store& s = t % 2 == 0 ? store() : other;
      while (!go.load()) std::this_thread::yield();
      while (true) {
        auto claimed = s.ClaimDueOutbox(100, 2, 1000);
        if (!claimed.has_value()) {
          ++errors;
          return;
        }
        if (claimed->empty()) return;
        for (const OutboxItem& item : *claimed) taken[static_cast<size_t>(t)].push_back(item.id);
      }
    });
  }
  go = true;
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  std::map<int64_t, int> times;
  for (const auto& list : taken) {
    for (const int64_t id : list) ++times[id];
  }
  EXPECT_EQ(times.size(), ids.size()) << "every due item was claimed";
  for (const auto& [id, count] : times) EXPECT_EQ(count, 1) << "outbox item " << id;
}

// Concurrent failure reports on one key (the portal's lockout, from two processes) all count.
TEST_P(StoreTest, ConcurrentFailureUpdatesOfOneKeyAllCount) {
  std::unique_ptr<Store> second = Shareable() ? OpenAnother() : nullptr;
  Store& other = second != nullptr ? *second : store();
  constexpr int kThreads = 4;
  constexpr int kEach = 5;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Store& s = t % 2 == 0 ? store() : other;
      for (int i = 0; i < kEach; ++i) {
        auto updated = s.UpdateFailures(
            "account:alice", [](FailureRecord& r) { ++r.count; }, 100, 0);
        if (!updated.has_value()) ++errors;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  auto record = store().FindFailures("account:alice");
  ASSERT_TRUE(Ok(record));
  ASSERT_TRUE(record->has_value());
  EXPECT_EQ((*record)->count, kThreads * kEach);
}

// A write the database refuses reports no value it was given: no hash, no blob, no row.
TEST_P(StoreTest, RefusedWritesQuoteNoValues) {
  const int64_t alice = AddStakeholder("alice");
  const EnroleeRecord enrolee = AddEnrolee(alice, 1);
  const Bytes hash(32, 0xc4);
  ASSERT_TRUE(Ok(store().IssueToken(enrolee.id, hash, 10, 100)));
  const EnroleeRecord other = AddEnrolee(alice, 2);
  auto duplicate = store().IssueToken(other.id, hash, 11, 100);
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_THAT(duplicate.error().detail, ::testing::Not(HasSubstr("c4c4")));
  EXPECT_THAT(duplicate.error().detail, ::testing::Not(HasSubstr("C4C4")));
  auto short_hash = store().AddApiToken(alice, "ci", Bytes(31, 0xd7), 12, 0);
  ASSERT_FALSE(short_hash.has_value());
  EXPECT_EQ(short_hash.error().kind, ErrorKind::kStorage);
  EXPECT_THAT(short_hash.error().detail, ::testing::Not(HasSubstr("d7d7")));
  EXPECT_THAT(short_hash.error().detail, ::testing::Not(HasSubstr("Failing row")));
  auto tokens = store().ListApiTokens(alice);
  ASSERT_TRUE(Ok(tokens));
  EXPECT_THAT(*tokens, IsEmpty());
}

// MAF key store

TEST_P(StoreTest, PutMafCredentialIsIdempotentPerGeneration) {
  const MafCredential first = MakeCredential("AAAA@mef.example", 7, 1);
  auto stored = store().PutMafCredential(first);
  ASSERT_TRUE(Ok(stored));
  EXPECT_TRUE(*stored);

  MafCredential repeat = MakeCredential("BBBB@mef.example", 7, 1);
  auto repeated = store().PutMafCredential(repeat);
  ASSERT_TRUE(Ok(repeated));
  EXPECT_FALSE(*repeated);

  auto all = store().ListMafCredentials();
  ASSERT_TRUE(Ok(all));
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ((*all)[0].km_id, "AAAA@mef.example");
  EXPECT_EQ((*all)[0].km_sealed, first.km_sealed);
  EXPECT_EQ((*all)[0].enrolee_id, 7);
  EXPECT_EQ((*all)[0].generation, 1);
  EXPECT_EQ((*all)[0].expires_at, first.expires_at);
  EXPECT_EQ((*all)[0].received_at, first.received_at);
  auto repeat_lookup = store().FindMafCredential("BBBB@mef.example");
  ASSERT_TRUE(Ok(repeat_lookup));
  EXPECT_FALSE(repeat_lookup->has_value());
}

TEST_P(StoreTest, NewerMafCredentialReplacesOlderAndOlderIsIgnored) {
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("OTHER@mef.example", 8, 1))));
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("G1@mef.example", 7, 1))));
  auto newer = store().PutMafCredential(MakeCredential("G3@mef.example", 7, 3));
  ASSERT_TRUE(Ok(newer));
  EXPECT_TRUE(*newer);

  auto old = store().FindMafCredential("G1@mef.example");
  ASSERT_TRUE(Ok(old));
  EXPECT_FALSE(old->has_value());

  auto older = store().PutMafCredential(MakeCredential("G2@mef.example", 7, 2));
  ASSERT_TRUE(Ok(older));
  EXPECT_FALSE(*older);

  auto all = store().ListMafCredentials();
  ASSERT_TRUE(Ok(all));
  ASSERT_EQ(all->size(), 2U);
  EXPECT_EQ((*all)[0].km_id, "OTHER@mef.example");
  EXPECT_EQ((*all)[1].km_id, "G3@mef.example");
  EXPECT_EQ((*all)[1].generation, 3);
}

TEST_P(StoreTest, MafKmIdOfAnotherEnroleeIsAConflict) {
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("SAME@mef.example", 7, 1))));
  EXPECT_TRUE(IsError(store().PutMafCredential(MakeCredential("same@MEF.example", 8, 1)),
                      ErrorKind::kLocalUsage, Errc::kConflict, "same@MEF.example"));
  auto all = store().ListMafCredentials();
  ASSERT_TRUE(Ok(all));
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ((*all)[0].enrolee_id, 7);
}

TEST_P(StoreTest, FindMafCredentialIgnoresCase) {
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("0A1B2C3D@mef.example", 7, 1))));
  for (const char* query :
       {"0A1B2C3D@mef.example", "0a1b2c3d@MEF.EXAMPLE", "0a1B2c3D@Mef.Example"}) {
    auto found = store().FindMafCredential(query);
    ASSERT_TRUE(Ok(found));
    ASSERT_TRUE(found->has_value()) << query;
    EXPECT_EQ((*found)->km_id, "0A1B2C3D@mef.example");  // stored as given
    EXPECT_EQ((*found)->enrolee_id, 7);
  }
  auto missing = store().FindMafCredential("0A1B2C3E@mef.example");
  ASSERT_TRUE(Ok(missing));
  EXPECT_FALSE(missing->has_value());
}

// audit

TEST_P(StoreTest, AuditAppendsInOrder) {
  ASSERT_TRUE(Ok(store().Audit({0, 10, "admin", "device.import", "3 devices", ""})));
  ASSERT_TRUE(Ok(store().Audit({0, 11, "stakeholder:alice", "enrolee.add", "enrolee 1", "x"})));
  ASSERT_TRUE(Ok(store().Audit({0, 12, "mef", "enrolment.commit", "enrolee 1", "gen 1"})));
  auto entries = store().ListAudit();
  ASSERT_TRUE(Ok(entries));
  ASSERT_EQ(entries->size(), 3U);
  EXPECT_LT((*entries)[0].id, (*entries)[1].id);
  EXPECT_LT((*entries)[1].id, (*entries)[2].id);
  EXPECT_EQ((*entries)[1].at, 11);
  EXPECT_EQ((*entries)[1].actor, "stakeholder:alice");
  EXPECT_EQ((*entries)[1].action, "enrolee.add");
  EXPECT_EQ((*entries)[1].subject, "enrolee 1");
  EXPECT_EQ((*entries)[1].detail, "x");
  EXPECT_EQ((*entries)[2].detail, "gen 1");
}

// A state change and its audit entry share one transaction: both or neither.
TEST_P(StoreTest, AuditEntriesAreWrittenWithTheirChangeOnly) {
  const int64_t alice = AddStakeholder("alice");
  ASSERT_TRUE(Ok(store().ImportDevices({MakeDevice(1)}, {0, 20, "admin", "device.import", "1", ""})));
  const AuditEntry claim{0, 21, "stakeholder:alice", "enrolee.add", "enrolee {id} device d", ""};
  auto enrolee = store().AddEnrolee(alice, MakeDevice(1).device_id, "l", 21, claim);
  ASSERT_TRUE(Ok(enrolee));
  // A refused change writes no audit entry.
  EXPECT_TRUE(IsError(store().AddEnrolee(alice, MakeDevice(1).device_id, "l", 22, claim),
                      ErrorKind::kLocalUsage, Errc::kConflict));
  EXPECT_TRUE(IsError(store().ImportDevices({MakeDevice(1)}, {0, 23, "admin", "device.import",
                                                               "again", ""}),
                      ErrorKind::kLocalUsage, Errc::kConflict));
  // An idempotent repeat writes none either.
  const AuditEntry receive{0, 24, "maf", "credential.receive", "KmID AAAA@mef.example", ""};
  auto stored = store().PutMafCredential(MakeCredential("AAAA@mef.example", enrolee->id, 1),
                                         receive);
  ASSERT_TRUE(Ok(stored));
  EXPECT_TRUE(*stored);
  stored = store().PutMafCredential(MakeCredential("AAAA@mef.example", enrolee->id, 1), receive);
  ASSERT_TRUE(Ok(stored));
  EXPECT_FALSE(*stored);
  auto token = store().IssueToken(enrolee->id, Bytes(32, 0x11), 25, 99,
                                  {0, 25, "stakeholder:alice", "token.issue", "token {id}", ""});
  ASSERT_TRUE(Ok(token));

  auto entries = store().ListAudit();
  ASSERT_TRUE(Ok(entries));
  ASSERT_EQ(entries->size(), 4U);
  EXPECT_EQ((*entries)[0].action, "device.import");
  EXPECT_EQ((*entries)[1].action, "enrolee.add");
  EXPECT_EQ((*entries)[1].subject, "enrolee " + std::to_string(enrolee->id) + " device d");
  EXPECT_EQ((*entries)[2].action, "credential.receive");
  EXPECT_EQ((*entries)[3].subject, "token " + std::to_string(token->id));
  // An entry without an action is refused by Audit() itself.
  EXPECT_TRUE(IsError(store().Audit({0, 26, "admin", "", "x", ""}), ErrorKind::kInternal,
                      Errc::kInvariant));
}

TEST_P(StoreTest, StoredTextIsNotSqlEvenWhenItLooksLikeIt) {
  const std::string hostile = "x'); DROP TABLE audit; --";
  ASSERT_TRUE(Ok(store().AddStakeholder(hostile, "h", 1)));
  ASSERT_TRUE(Ok(store().Audit({0, 1, hostile, hostile, hostile, hostile})));
  auto found = store().FindStakeholder(hostile);
  ASSERT_TRUE(Ok(found));
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->name, hostile);
  auto entries = store().ListAudit();
  ASSERT_TRUE(Ok(entries));
  ASSERT_EQ(entries->size(), 1U);
  EXPECT_EQ((*entries)[0].actor, hostile);
}

// --- file-only tests --------------------------------------------------------------------------

class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    path_ = dir_.File("mte.db");
  }

  std::unique_ptr<Store> Open() {
    auto opened = OpenSqliteStore(path_);
    EXPECT_TRUE(Ok(opened));
    return opened.has_value() ? std::move(*opened) : nullptr;
  }

  TempDir dir_;
  std::string path_;
};

// SQLite's authorizer, installed on every connection this process opens, stands for a
// `PRAGMA synchronous = ...` that does not take: a durable write must then fail, not commit
// unsynced.
std::atomic<bool> deny_synchronous{false};

int DenySettingSynchronous(void*, int action, const char* pragma, const char* value, const char*,
                           const char*) {
  const bool setting = action == SQLITE_PRAGMA && pragma != nullptr &&
                       std::string_view(pragma) == "synchronous" && value != nullptr;
  return setting && deny_synchronous.load() ? SQLITE_DENY : SQLITE_OK;
}

int InstallSynchronousGuard(sqlite3* db, char**, const sqlite3_api_routines*) {
  return sqlite3_set_authorizer(db, DenySettingSynchronous, nullptr);
}

TEST_F(FileStoreTest, ADurableWriteFailsWhenSynchronousFullCannotBeSet) {
  using Entry = void (*)();
  ASSERT_EQ(sqlite3_auto_extension(reinterpret_cast<Entry>(InstallSynchronousGuard)), SQLITE_OK);
  auto store = Open();
  ASSERT_TRUE(sqlite3_cancel_auto_extension(reinterpret_cast<Entry>(InstallSynchronousGuard)));
  ASSERT_NE(store, nullptr);
  // A relaxed write leaves the connection at synchronous = NORMAL.
  ASSERT_TRUE(Ok(store->UpdateFailures("login:198.51.100.7", [](FailureRecord& r) { ++r.count; },
                                       100, 0)));
  deny_synchronous = true;
  auto refused = store->AddStakeholder("alice", "h", 1);
  deny_synchronous = false;
  ASSERT_FALSE(refused.has_value()) << "a durable commit was made without synchronous = FULL";
  EXPECT_EQ(refused.error().kind, ErrorKind::kStorage);
  EXPECT_THAT(refused.error().detail,
              HasSubstr("could not set synchronous = FULL (not authorized)"));
  auto nobody = store->FindStakeholder("alice");
  ASSERT_TRUE(Ok(nobody));
  EXPECT_FALSE(nobody->has_value()) << "the refused write changed the store";
  // Once FULL can be set again, durable writes work.
  EXPECT_TRUE(Ok(store->AddStakeholder("alice", "h", 1)));
}

TEST_P(StoreTest, TwoStoresOnOneDatabaseSeeEachOthersWrites) {
  if (!Shareable()) GTEST_SKIP() << "needs a database a second store can open";
  auto serve = OpenAnother();
  auto admin = OpenAnother();
  ASSERT_NE(serve, nullptr);
  ASSERT_NE(admin, nullptr);

  ASSERT_TRUE(Ok(admin->ImportDevices({MakeDevice(1)})));
  auto alice = admin->AddStakeholder("alice", "h", 1);
  ASSERT_TRUE(Ok(alice));

  auto device = serve->FindDevice("dev-1");
  ASSERT_TRUE(Ok(device));
  EXPECT_TRUE(device->has_value());
  auto enrolee = serve->AddEnrolee(*alice, "dev-1", "boiler", 5);
  ASSERT_TRUE(Ok(enrolee));
  ASSERT_TRUE(Ok(serve->CommitEnrolment(MakeCommit(enrolee->id, 0, 6))));

  auto seen = admin->ListEnrolees(*alice);
  ASSERT_TRUE(Ok(seen));
  ASSERT_EQ(seen->size(), 1U);
  EXPECT_EQ((*seen)[0].generation, 1);
  EXPECT_EQ((*seen)[0].credential_ids, CredentialIdsFor(enrolee->id, 1));

  // Both race the same re-enrolment: exactly one wins.
  std::atomic<int> won{0};
  std::atomic<int> conflicts{0};
  auto race = [&](Store& store, int64_t now) {
    auto result = store.CommitEnrolment(MakeCommit(enrolee->id, 1, now));
    if (result.has_value()) {
      ++won;
    } else if (result.error().code == Errc::kConflict) {
      ++conflicts;
    }
  };
  std::thread a(race, std::ref(*serve), 10);
  std::thread b(race, std::ref(*admin), 11);
  a.join();
  b.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(conflicts.load(), 1);
  auto after = serve->GetEnrolee(enrolee->id);
  ASSERT_TRUE(Ok(after));
  EXPECT_EQ((*after)->generation, 2);

  ASSERT_TRUE(Ok(serve->Audit({0, 1, "mef", "enrolment.commit", "enrolee 1", ""})));
  auto audit = admin->ListAudit();
  ASSERT_TRUE(Ok(audit));
  EXPECT_EQ(audit->size(), 1U);
}

TEST_F(FileStoreTest, WriterWaitsForAnotherConnectionsLock) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RawDb other(path_);
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other.Exec("BEGIN IMMEDIATE"), SQLITE_OK) << other.last_error();
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    static_cast<void>(other.Exec("COMMIT"));
  });
  const auto start = std::chrono::steady_clock::now();
  const auto result = store->Audit({0, 1, "admin", "test", "", ""});
  const auto waited = std::chrono::steady_clock::now() - start;
  release.join();
  EXPECT_TRUE(Ok(result));
  EXPECT_GE(waited, std::chrono::milliseconds(250));
}

TEST_F(FileStoreTest, AuditIsAppendOnlyForEveryConnection) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Ok(store->Audit({0, 1, "admin", "device.import", "dev-1", "original"})));

  RawDb raw(path_);
  ASSERT_TRUE(raw.ok());
  EXPECT_NE(raw.Exec("UPDATE audit SET detail = 'forged'"), SQLITE_OK);
  EXPECT_THAT(raw.last_error(), HasSubstr("append-only"));
  EXPECT_NE(raw.Exec("DELETE FROM audit"), SQLITE_OK);
  EXPECT_THAT(raw.last_error(), HasSubstr("append-only"));

  auto entries = store->ListAudit();
  ASSERT_TRUE(Ok(entries));
  ASSERT_EQ(entries->size(), 1U);
  EXPECT_EQ((*entries)[0].detail, "original");
}

TEST_F(FileStoreTest, CommitEnrolmentRollsBackWhenALaterStepFails) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto alice = store->AddStakeholder("alice", "h", 1);
  ASSERT_TRUE(Ok(alice));
  ASSERT_TRUE(Ok(store->ImportDevices({MakeDevice(1)})));
  auto pending = store->AddEnrolee(*alice, "dev-1", "boiler", 5);
  ASSERT_TRUE(Ok(pending));

  // Make the last write of the transaction (the outbox row) fail.
  RawDb raw(path_);
  ASSERT_TRUE(raw.ok());
  ASSERT_EQ(raw.Exec("CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox"
                     " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"),
            SQLITE_OK)
      << raw.last_error();

  EXPECT_TRUE(IsError(store->CommitEnrolment(MakeCommit(pending->id, 0, 50)), ErrorKind::kStorage,
                      Errc::kDatabase, "injected failure"));
  auto after = store->GetEnrolee(pending->id);
  ASSERT_TRUE(Ok(after));
  ASSERT_TRUE(after->has_value());
  ExpectSameEnrolee(**after, *pending);

  ASSERT_EQ(raw.Exec("DROP TRIGGER fail_outbox"), SQLITE_OK) << raw.last_error();
  auto retried = store->CommitEnrolment(MakeCommit(pending->id, 0, 60));
  ASSERT_TRUE(Ok(retried));
  EXPECT_EQ(retried->generation, 1);
}

TEST_F(FileStoreTest, FilesAreOwnerOnly) {
  const mode_t old_umask = ::umask(0);  // without the store's care files would be 0644
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(Ok(store->Audit({0, 1, "admin", "test", "", ""})));
    for (const std::string& file : {path_, path_ + "-wal", path_ + "-shm"}) {
      struct stat st {};

      ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
      EXPECT_EQ(st.st_mode & 07777, 0600U) << file;
    }
  }
  ::umask(old_umask);
}

TEST_F(FileStoreTest, LooseModesOfAnExistingDatabaseAreTightened) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
  }
  ASSERT_EQ(::chmod(path_.c_str(), 0644), 0);
  auto store = Open();
  ASSERT_NE(store, nullptr);

  struct stat st {};

  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600U);
}

TEST_F(FileStoreTest, OpenFailsCleanly) {
  EXPECT_TRUE(IsError(OpenSqliteStore(""), ErrorKind::kStorage, Errc::kDatabase));
  EXPECT_TRUE(IsError(OpenSqliteStore(dir_.File("no/such/dir/mte.db")), ErrorKind::kStorage,
                      Errc::kDatabase, "no/such/dir"));
  ASSERT_EQ(::mkdir(dir_.File("a-directory").c_str(), 0700), 0);
  EXPECT_TRUE(
      IsError(OpenSqliteStore(dir_.File("a-directory")), ErrorKind::kStorage, Errc::kDatabase));
  ASSERT_EQ(::symlink(path_.c_str(), dir_.File("link.db").c_str()), 0);
  EXPECT_TRUE(IsError(OpenSqliteStore(dir_.File("link.db")), ErrorKind::kStorage, Errc::kDatabase));
}

// migrations

TEST_F(FileStoreTest, MigrationsApplyOnceFromAnEmptyDatabase) {
  const auto migrations = internal::BuiltInMigrations();
  ASSERT_FALSE(migrations.empty());
  EXPECT_EQ(migrations[0].name, "0001_init.sql");
  for (int open = 0; open < 3; ++open) {
    auto store = Open();
    ASSERT_NE(store, nullptr);
  }
  RawDb raw(path_);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw.Scalar("SELECT count(*) FROM schema_version"), std::to_string(migrations.size()));
  EXPECT_EQ(raw.Scalar("SELECT max(version) FROM schema_version"),
            std::to_string(migrations.size()));
  EXPECT_EQ(raw.Scalar("SELECT name FROM schema_version WHERE version = 1"), "0001_init.sql");
  auto version = internal::SchemaVersion(raw.get());
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, static_cast<int64_t>(migrations.size()));
  EXPECT_EQ(raw.Scalar("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.Scalar("PRAGMA integrity_check"), "ok");
}

TEST_F(FileStoreTest, NewerSchemaIsRefused) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
  }
  RawDb raw(path_);
  ASSERT_TRUE(raw.ok());
  ASSERT_EQ(raw.Exec("INSERT INTO schema_version VALUES (999, '0999_future.sql', 0)"), SQLITE_OK);
  EXPECT_TRUE(IsError(OpenSqliteStore(path_), ErrorKind::kStorage, Errc::kDatabase, "999"));
}

TEST(StoreMigrationTest, FailingMigrationLeavesSchemaUnchanged) {
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &raw), SQLITE_OK);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);

  const internal::Migration good[] = {{1, "0001_a.sql", "CREATE TABLE a (x INTEGER);"}};
  const internal::Migration bad[] = {
      {1, "0001_a.sql", "CREATE TABLE a (x INTEGER);"},
      {2, "0002_b.sql", "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);"},
  };
  EXPECT_TRUE(IsError(internal::ApplyMigrations(db.get(), bad), ErrorKind::kStorage,
                      Errc::kDatabase, "0002_b.sql"));
  auto version = internal::SchemaVersion(db.get());
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, 0);
  // Not even the first migration's table survived.
  EXPECT_EQ(sqlite3_exec(db.get(), "SELECT * FROM a", nullptr, nullptr, nullptr), SQLITE_ERROR);

  ASSERT_TRUE(Ok(internal::ApplyMigrations(db.get(), good)));
  ASSERT_TRUE(Ok(internal::ApplyMigrations(db.get(), good)));  // idempotent
  version = internal::SchemaVersion(db.get());
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, 1);

  const internal::Migration gap[] = {{1, "0001_a.sql", ""}, {3, "0003_c.sql", ""}};
  EXPECT_TRUE(IsError(internal::ApplyMigrations(db.get(), gap), ErrorKind::kInternal,
                      Errc::kInvariant, "0003_c.sql"));
}

// crash safety

constexpr int kCrashEnrolees = 200;
constexpr auto kChildBudget = std::chrono::seconds(2);

struct CommitReport {
  int64_t enrolee_id;
  int64_t generation;
};

// Runs in the forked child: re-enrols the enrolees round-robin and reports each commit that
// returned success. Never returns.
[[noreturn]] void CommitUntilKilled(const std::string& location, const std::vector<int64_t>& ids,
                                    int report_fd) {
  auto opened = OpenStore(location);
  if (!opened.has_value()) {
    ::_exit(2);
  }
  Store& store = **opened;
  const auto deadline = std::chrono::steady_clock::now() + kChildBudget;
  for (size_t i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
    const int64_t id = ids[i % ids.size()];
    auto current = store.GetEnrolee(id);
    if (!current.has_value() || !current->has_value()) {
      ::_exit(3);
    }
    const int64_t now = 1000 + static_cast<int64_t>(i);
    auto committed = store.CommitEnrolment(MakeCommit(id, (*current)->generation, now));
    if (!committed.has_value()) {
      ::_exit(4);
    }
    const CommitReport report{id, committed->generation};
    // At most PIPE_BUF bytes: the write is atomic, so a kill never leaves half a report.
    if (::write(report_fd, &report, sizeof(report)) != static_cast<ssize_t>(sizeof(report))) {
      ::_exit(5);
    }
  }
  ::_exit(0);
}

void Drain(int fd, std::string& buffer, int timeout_ms) {
  pollfd pfd{fd, POLLIN, 0};
  if (::poll(&pfd, 1, timeout_ms) <= 0) {
    return;
  }
  std::array<char, 4096> chunk{};
  const ssize_t n = ::read(fd, chunk.data(), chunk.size());
  if (n > 0) {
    buffer.append(chunk.data(), static_cast<size_t>(n));
  }
}

// Kills a writer (a child process) at random moments, five times, and checks after each kill that
// every commit it was told of is there and no commit is there in part. `location` names an empty
// database; `after_kill` runs before the store is reopened.
void KillWritersAndCheck(const std::string& location, const std::function<void()>& after_kill) {
  auto open = [&]() -> std::unique_ptr<Store> {
    auto opened = OpenStore(location);
    EXPECT_TRUE(Ok(opened));
    return opened.has_value() ? std::move(*opened) : nullptr;
  };
  std::vector<int64_t> ids;
  {
    auto store = open();
    ASSERT_NE(store, nullptr);
    auto alice = store->AddStakeholder("alice", "h", 1);
    ASSERT_TRUE(Ok(alice));
    std::vector<DeviceRecord> devices;
    for (int n = 0; n < kCrashEnrolees; ++n) {
      devices.push_back(MakeDevice(n));
    }
    ASSERT_TRUE(Ok(store->ImportDevices(devices)));
    for (const DeviceRecord& device : devices) {
      auto enrolee = store->AddEnrolee(*alice, device.device_id, "crash", 1);
      ASSERT_TRUE(Ok(enrolee));
      ids.push_back(enrolee->id);
    }
  }  // closed before forking: the child opens its own connection

  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> kill_after_ms(20, 900);
  std::map<int64_t, int64_t> reported;  // enrolee id -> highest generation a commit returned
  constexpr int kKills = 5;
  for (int round = 0; round < kKills; ++round) {
    std::array<int, 2> fds{};
    ASSERT_EQ(::pipe(fds.data()), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      CommitUntilKilled(location, ids, fds[1]);
    }
    ::close(fds[1]);

    std::string buffer;
    const auto kill_at =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kill_after_ms(rng));
    while (std::chrono::steady_clock::now() < kill_at) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          kill_at - std::chrono::steady_clock::now());
      Drain(fds[0], buffer, static_cast<int>(std::max<int64_t>(1, left.count())));
    }
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    // Killed, or finished its time budget: never a failed store call.
    EXPECT_TRUE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                (WIFEXITED(status) && WEXITSTATUS(status) == 0))
        << "child status " << status;
    while (true) {
      const size_t before = buffer.size();
      Drain(fds[0], buffer, 0);
      if (buffer.size() == before) {
        break;
      }
    }
    ::close(fds[0]);
    ASSERT_EQ(buffer.size() % sizeof(CommitReport), 0U);
    for (size_t off = 0; off < buffer.size(); off += sizeof(CommitReport)) {
      CommitReport report{};
      std::memcpy(&report, buffer.data() + off, sizeof(report));
      int64_t& highest = reported[report.enrolee_id];
      highest = std::max(highest, report.generation);
    }

    // Reopen after the crash and check every invariant of the enrolment transaction.
    after_kill();
    auto store = open();
    ASSERT_NE(store, nullptr);
    auto enrolees = store->ListEnrolees(std::nullopt);
    ASSERT_TRUE(Ok(enrolees));
    ASSERT_EQ(enrolees->size(), ids.size());
    auto items = store->DueOutbox(std::numeric_limits<int64_t>::max(), INT_MAX);
    ASSERT_TRUE(Ok(items));

    std::map<int64_t, std::vector<const OutboxItem*>> by_enrolee;
    for (const OutboxItem& item : *items) {
      by_enrolee[item.enrolee_id].push_back(&item);
    }
    std::map<int64_t, int64_t> generation_of;
    for (const EnroleeRecord& e : *enrolees) {
      generation_of[e.id] = e.generation;
      const auto& outbox = by_enrolee[e.id];
      // Committed means durable: nothing the child was told succeeded has been lost.
      EXPECT_GE(e.generation, reported[e.id]) << "enrolee " << e.id;
      if (e.generation == 0) {
        EXPECT_EQ(e.state, EnroleeState::kPending) << "enrolee " << e.id;
        EXPECT_EQ(e.maf_delivery, DeliveryStatus::kNone) << "enrolee " << e.id;
        EXPECT_THAT(e.credential_ids, IsEmpty()) << "enrolee " << e.id;
        EXPECT_THAT(outbox, IsEmpty()) << "enrolee " << e.id;
        continue;
      }
      EXPECT_EQ(e.state, EnroleeState::kEnrolled) << "enrolee " << e.id;
      EXPECT_EQ(e.maf_delivery, DeliveryStatus::kPending) << "enrolee " << e.id;
      EXPECT_EQ(e.ke_id, KeIdFor(e.id, e.generation)) << "enrolee " << e.id;
      EXPECT_EQ(e.ke_sealed, SomeBytes(KeIdFor(e.id, e.generation))) << "enrolee " << e.id;
      EXPECT_EQ(e.credential_ids, CredentialIdsFor(e.id, e.generation)) << "enrolee " << e.id;
      // Exactly one outbox item per generation 1..current, each with its own payload.
      ASSERT_EQ(outbox.size(), static_cast<size_t>(e.generation)) << "enrolee " << e.id;
      for (size_t g = 0; g < outbox.size(); ++g) {
        EXPECT_EQ(outbox[g]->generation, static_cast<int64_t>(g) + 1) << "enrolee " << e.id;
        EXPECT_EQ(outbox[g]->payload_sealed, PayloadFor(e.id, outbox[g]->generation));
      }
    }
    for (const OutboxItem& item : *items) {
      ASSERT_TRUE(generation_of.count(item.enrolee_id) == 1) << "outbox item " << item.id;
      EXPECT_LE(item.generation, generation_of[item.enrolee_id]) << "outbox item " << item.id;
    }
    if (::testing::Test::HasFailure()) {
      break;
    }
  }
  int64_t commits = 0;
  for (const auto& [id, generation] : reported) {
    commits += generation;
  }
  ::testing::Test::RecordProperty("commits", std::to_string(commits));
  EXPECT_GT(commits, 0) << "the child never committed: the test proved nothing";
}

TEST_F(FileStoreTest, KilledWriterLeavesNoPartialTransaction) {
  KillWritersAndCheck(path_, [&] {
    RawDb raw(path_);
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ(raw.Scalar("PRAGMA integrity_check"), "ok");
  });
}

// The same against PostgreSQL: the server rolls back the transaction of a client that died.
TEST(PostgresStoreCrashTest, KilledWriterLeavesNoPartialTransaction) {
  test_support::PostgresTestDatabase database;
  ASSERT_TRUE(database.ok()) << database.error();
  KillWritersAndCheck(database.uri(), [] {});
}

}  // namespace
}  // namespace mte::store
