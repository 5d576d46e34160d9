// Schema migration tests (docs/architecture.md §5): a version 1 database full of rows, written
// the way a build with only 0001_init.sql wrote it, migrated to the latest version (0002: device
// credentials, device CAs, the rebuild of `devices`; 0003: the rebuild of `enrolees` for the
// revoked state); an empty database migrated from scratch; and the runner's handling of
// migrations marked "-- mte: rebuilds tables".
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "store/internal/migrate.h"
#include "store/store.h"
#include "store/store_test_support.h"

namespace mte::store {
namespace {

using test_support::IsError;
using test_support::Ok;
using test_support::TempDir;

// The schema version every migration together reaches.
int64_t Latest() { return internal::BuiltInMigrations().back().version; }

// A raw connection, bypassing the store, with foreign keys enforced as the store does.
class Raw {
 public:
  explicit Raw(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      sqlite3_close(db_);
      db_ = nullptr;
      return;
    }
    sqlite3_busy_timeout(db_, 5000);
    Exec("PRAGMA foreign_keys = ON");
  }
  ~Raw() { sqlite3_close(db_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  sqlite3* get() const { return db_; }

  int Exec(const std::string& sql) {
    char* message = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
    last_error_ = message != nullptr ? message : "";
    sqlite3_free(message);
    return rc;
  }

  // Every row of `sql`, each as its columns joined by '|' (NULL as "NULL", blobs as hex).
  std::vector<std::string> Rows(const std::string& sql) {
    std::vector<std::string> rows;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return rows;
    }
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        if (i > 0) row += "|";
        switch (sqlite3_column_type(stmt, i)) {
          case SQLITE_NULL:
            row += "NULL";
            break;
          case SQLITE_BLOB: {
            const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(stmt, i));
            const auto size = static_cast<size_t>(sqlite3_column_bytes(stmt, i));
            row += "x'" + HexLower(ByteSpan(p, size)) + "'";
            break;
          }
          default:
            row += reinterpret_cast<const char*>(sqlite3_column_text(stmt, i));
        }
      }
      rows.push_back(std::move(row));
    }
    sqlite3_finalize(stmt);
    return rows;
  }

  std::string Scalar(const std::string& sql) {
    auto rows = Rows(sql);
    return rows.empty() ? std::string() : rows.front();
  }

  const std::string& last_error() const { return last_error_; }

 private:
  sqlite3* db_ = nullptr;
  std::string last_error_;
};

// Rows of every table that exists in both versions, in a fixed order.
const char* const kKeptTables[] = {
    "SELECT id, name, password_hash, created_at FROM stakeholders ORDER BY id",
    "SELECT token_hash, stakeholder_id, expires_at FROM sessions ORDER BY token_hash",
    "SELECT * FROM enrolees ORDER BY id",
    "SELECT * FROM enrolee_credential_ids ORDER BY enrolee_id, position",
    "SELECT id, enrolee_id, generation, target, payload_sealed, attempts, next_attempt_at,"
    " delivered_at, last_error FROM outbox ORDER BY id",
    "SELECT * FROM tokens ORDER BY id",
    "SELECT * FROM maf_credentials ORDER BY id",
    "SELECT * FROM maf_retired ORDER BY enrolee_id",
    "SELECT * FROM audit ORDER BY id",
    "SELECT device_id, claim_hash, created_at FROM devices ORDER BY device_id",
};

// A version 1 database in use: devices (Kpm blobs with NUL and 0xff octets), stakeholders,
// enrolees of both flows referencing devices, credential ids, tokens, outbox rows, MAF rows, audit.
constexpr const char* kVersion1Rows = R"sql(
INSERT INTO devices VALUES
  ('sensor-0001', 'kpm-0001@maker.example', x'01aabbccdd00ff00112233445566778899', '$argon2id$c1', 101),
  ('sensor-0002', 'KPM-0002@maker.example', x'01000000000000000000000000000000ff', '$argon2id$c2', 102),
  ('sensor-0003', 'kpm-0003', x'01ffeeddccbbaa99887766554433221100ffee', '$argon2id$c3', 103);
INSERT INTO stakeholders (name, password_hash, created_at) VALUES
  ('alice', '$argon2id$pa', 10), ('bob', '$argon2id$pb', 11);
INSERT INTO sessions VALUES (x'00112233', 1, 999);
INSERT INTO enrolees (stakeholder_id, device_id, label, device_info, state, generation, rspf,
                      ke_id, ke_sealed, ke_expires_at, maf_delivery, created_at, updated_at,
                      enrolled_at) VALUES
  (1, 'sensor-0001', 'kitchen', '', 'enrolled', 2, 'PPSK', 'AB@mef.example', x'01ab00cd', 500,
   'delivered', 20, 30, 30),
  (2, 'sensor-0002', 'garage', '', 'pending', 0, '', '', x'', 0, 'none', 21, 21, 0),
  (2, NULL, 'flow b entry', 'serial 42', 'pending', 0, '', '', x'', 0, 'none', 22, 22, 0);
INSERT INTO enrolee_credential_ids VALUES (1, 0, '1-PPSK.AB'), (1, 1, '2-AB');
INSERT INTO outbox (enrolee_id, generation, target, payload_sealed, attempts, next_attempt_at,
                    delivered_at, last_error) VALUES
  (1, 1, 'maf', x'01000102', 3, 40, 41, 'timeout'),
  (1, 2, 'maf', x'01000103', 0, 42, 0, '');
INSERT INTO tokens (enrolee_id, token_hash, state, created_at, expires_at, spent_at) VALUES
  (3, x'a5a5', 'active', 50, 5000, 0), (3, x'a6a6', 'revoked', 49, 5000, 0);
INSERT INTO maf_credentials (km_id, km_sealed, enrolee_id, generation, expires_at, received_at)
  VALUES ('AB@mef.example', x'01deadbeef', 1, 2, 600, 43);
INSERT INTO maf_retired VALUES (2, 1);
INSERT INTO audit (at, actor, action, subject, detail) VALUES
  (1, 'admin', 'device.import', '3 devices', ''), (2, 'admin', 'stakeholder.add', 'alice', '');
)sql";

TEST(StoreMigrationV2Test, Version1DatabaseKeepsEveryRowAndEveryKpmOctet) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("mte.db");
  std::vector<std::vector<std::string>> before;
  {
    Raw raw(path);
    ASSERT_NE(raw.get(), nullptr);
    ASSERT_TRUE(Ok(internal::ApplyMigrationsUpToForTest(raw.get(), 1)));
    auto version = internal::SchemaVersion(raw.get());
    ASSERT_TRUE(Ok(version));
    ASSERT_EQ(*version, 1);
    ASSERT_EQ(raw.Exec(kVersion1Rows), SQLITE_OK) << raw.last_error();
    for (const char* query : kKeptTables) before.push_back(raw.Rows(query));
    EXPECT_EQ(raw.Rows("SELECT device_id FROM enrolees WHERE device_id IS NOT NULL").size(), 2U);
  }

  // Opening the store applies 0002.
  auto opened = OpenSqliteStore(path);
  ASSERT_TRUE(Ok(opened));
  std::unique_ptr<Store> store = std::move(*opened);

  Raw raw(path);
  ASSERT_NE(raw.get(), nullptr);
  auto version = internal::SchemaVersion(raw.get());
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, Latest());
  EXPECT_EQ(raw.Scalar("SELECT name FROM schema_version WHERE version = 2"),
            "0002_device_credentials.sql");
  for (size_t i = 0; i < std::size(kKeptTables); ++i) {
    EXPECT_EQ(raw.Rows(kKeptTables[i]), before[i]) << kKeptTables[i];
  }
  // Every Kpm moved, octet for octet, with its KpmID (case kept).
  EXPECT_EQ(raw.Rows("SELECT device_id, kind, credential_id, secret_sealed FROM device_credentials"
                     " ORDER BY device_id"),
            (std::vector<std::string>{
                "sensor-0001|kpm|kpm-0001@maker.example|x'01aabbccdd00ff00112233445566778899'",
                "sensor-0002|kpm|KPM-0002@maker.example|x'01000000000000000000000000000000ff'",
                "sensor-0003|kpm|kpm-0003|x'01ffeeddccbbaa99887766554433221100ffee'",
            }));
  EXPECT_EQ(raw.Rows("SELECT name FROM pragma_table_info('devices') ORDER BY cid"),
            (std::vector<std::string>{"device_id", "claim_hash", "created_at"}));
  EXPECT_EQ(raw.Scalar("SELECT count(*) FROM device_cas"), "0");
  // 0004: the items written before it take their first attempt time as their creation time.
  EXPECT_EQ(raw.Rows("SELECT created_at FROM outbox ORDER BY id"),
            (std::vector<std::string>{"40", "42"}));
  EXPECT_TRUE(raw.Rows("PRAGMA foreign_key_check").empty());
  EXPECT_EQ(raw.Scalar("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.Scalar("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'devices_v2%'"), "0");

  // The enrolees still refer to the rebuilt table: the constraint holds in both directions.
  EXPECT_EQ(raw.Rows("SELECT \"table\" FROM pragma_foreign_key_list('enrolees')"
                     " WHERE \"from\" = 'device_id'"),
            (std::vector<std::string>{"devices"}));
  EXPECT_NE(raw.Exec("UPDATE enrolees SET device_id = 'sensor-9999' WHERE id = 2"), SQLITE_OK);
  EXPECT_NE(raw.Exec("DELETE FROM devices WHERE device_id = 'sensor-0001'"), SQLITE_OK);
  EXPECT_NE(raw.Exec("INSERT INTO device_credentials VALUES ('ghost', 'kpm', 'k', x'01')"),
            SQLITE_OK);

  // And the store reads the migrated rows through the new API.
  auto device = store->FindDeviceByKpmId("KPM-0002@maker.example");
  ASSERT_TRUE(Ok(device));
  ASSERT_TRUE(device->has_value());
  EXPECT_EQ((*device)->device_id, "sensor-0002");
  EXPECT_EQ((*device)->claim_hash, "$argon2id$c2");
  EXPECT_EQ((*device)->created_at, 102);
  ASSERT_NE((*device)->Find(CredentialKind::kKpm), nullptr);
  EXPECT_EQ(HexLower((*device)->Find(CredentialKind::kKpm)->secret_sealed),
            "01000000000000000000000000000000ff");
  auto enrolee = store->FindEnroleeByDevice("sensor-0001");
  ASSERT_TRUE(Ok(enrolee));
  ASSERT_TRUE(enrolee->has_value());
  EXPECT_EQ((*enrolee)->generation, 2);
  EXPECT_EQ((*enrolee)->credential_ids, (std::vector<std::string>{"1-PPSK.AB", "2-AB"}));
  auto token = store->FindToken(Bytes{0xa5, 0xa5});
  ASSERT_TRUE(Ok(token));
  ASSERT_TRUE(token->has_value());
  EXPECT_EQ((*token)->enrolee_id, 3);
  auto due = store->DueOutbox(100, 10);
  ASSERT_TRUE(Ok(due));
  ASSERT_EQ(due->size(), 1U);
  EXPECT_EQ((*due)[0].generation, 2);
  // New rows go in beside the migrated ones.
  DeviceRecord more;
  more.device_id = "sensor-0004";
  more.claim_hash = "$argon2id$c4";
  more.credentials = {{CredentialKind::kCertSha256, std::string(64, 'b'), {}}};
  EXPECT_TRUE(Ok(store->ImportDevices({more})));
  EXPECT_TRUE(IsError(store->ImportDevices({more}), ErrorKind::kLocalUsage, Errc::kConflict));

  // Reopening finds nothing left to do.
  store.reset();
  auto again = OpenSqliteStore(path);
  ASSERT_TRUE(Ok(again));
  EXPECT_EQ(raw.Scalar("SELECT count(*) FROM schema_version"), std::to_string(Latest()));
}

TEST(StoreMigrationV3Test, Version2DatabaseKeepsEveryEnroleeAndItsReferences) {
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("mte.db");
  std::vector<std::vector<std::string>> before;
  {
    Raw raw(path);
    ASSERT_NE(raw.get(), nullptr);
    ASSERT_TRUE(Ok(internal::ApplyMigrationsUpToForTest(raw.get(), 1)));
    ASSERT_EQ(raw.Exec(kVersion1Rows), SQLITE_OK) << raw.last_error();
    ASSERT_TRUE(Ok(internal::ApplyMigrationsUpToForTest(raw.get(), 2)));
    // The newest enrolee is gone: its id must not be handed out again.
    ASSERT_EQ(raw.Exec("DELETE FROM tokens WHERE enrolee_id = 3; DELETE FROM enrolees WHERE id = 3"),
              SQLITE_OK)
        << raw.last_error();
    for (const char* query : kKeptTables) before.push_back(raw.Rows(query));
  }
  auto opened = OpenSqliteStore(path);
  ASSERT_TRUE(Ok(opened));
  std::unique_ptr<Store> store = std::move(*opened);

  Raw raw(path);
  ASSERT_NE(raw.get(), nullptr);
  auto version = internal::SchemaVersion(raw.get());
  ASSERT_TRUE(Ok(version));
  EXPECT_GE(*version, 3);
  EXPECT_EQ(raw.Scalar("SELECT name FROM schema_version WHERE version = 3"),
            "0003_enrolee_revocation.sql");
  for (size_t i = 0; i < std::size(kKeptTables); ++i) {
    EXPECT_EQ(raw.Rows(kKeptTables[i]), before[i]) << kKeptTables[i];
  }
  EXPECT_TRUE(raw.Rows("PRAGMA foreign_key_check").empty());
  EXPECT_EQ(raw.Scalar("PRAGMA integrity_check"), "ok");
  EXPECT_EQ(raw.Scalar("SELECT count(*) FROM sqlite_schema WHERE name LIKE 'enrolees_v3%'"), "0");
  EXPECT_EQ(raw.Rows("SELECT name FROM pragma_index_list('enrolees') WHERE origin = 'c'"),
            (std::vector<std::string>{"enrolees_by_stakeholder"}));
  // The tables that refer to enrolees still do, and the constraints hold.
  for (const char* table : {"tokens", "outbox", "enrolee_credential_ids"}) {
    EXPECT_EQ(raw.Rows(std::string("SELECT \"table\" FROM pragma_foreign_key_list('") + table +
                       "') WHERE \"from\" = 'enrolee_id'"),
              (std::vector<std::string>{"enrolees"}))
        << table;
  }
  EXPECT_NE(raw.Exec("INSERT INTO tokens (enrolee_id, token_hash, state, created_at, expires_at,"
                     " spent_at) VALUES (99, x'b0', 'active', 1, 2, 0)"),
            SQLITE_OK);
  EXPECT_NE(raw.Exec("DELETE FROM enrolees WHERE id = 1"), SQLITE_OK);  // outbox rows refer to it
  // The new state is allowed, and nothing else is.
  EXPECT_EQ(raw.Exec("UPDATE enrolees SET state = 'revoked' WHERE id = 2"), SQLITE_OK);
  EXPECT_NE(raw.Exec("UPDATE enrolees SET state = 'lost' WHERE id = 2"), SQLITE_OK);
  auto revoked = store->GetEnrolee(2);
  ASSERT_TRUE(Ok(revoked));
  ASSERT_TRUE(revoked->has_value());
  EXPECT_EQ((*revoked)->state, EnroleeState::kRevoked);
  // Ids continue after the highest ever handed out (3), not after the highest left (2).
  auto entry = store->AddEnroleeEntry(1, std::nullopt, "new", "", 60);
  ASSERT_TRUE(Ok(entry));
  EXPECT_EQ(entry->id, 4);
}

TEST(StoreMigrationV2Test, EmptyDatabaseMigratesFromScratch) {
  sqlite3* handle = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &handle), SQLITE_OK);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(handle, &sqlite3_close);
  ASSERT_EQ(sqlite3_exec(db.get(), "PRAGMA foreign_keys = ON", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_TRUE(Ok(internal::ApplyMigrations(db.get(), internal::BuiltInMigrations())));
  auto version = internal::SchemaVersion(db.get());
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, Latest());
  sqlite3_stmt* stmt = nullptr;
  // Foreign key enforcement is back on after the rebuild.
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "PRAGMA foreign_keys", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 1);
  sqlite3_finalize(stmt);
  for (const char* table : {"devices", "device_credentials", "device_cas", "enrolees"}) {
    const std::string sql = std::string("SELECT count(*) FROM ") + table;
    EXPECT_EQ(sqlite3_exec(db.get(), sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << table;
  }

  // A file store from scratch works end to end.
  TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto store = OpenSqliteStore(dir.File("fresh.db"));
  ASSERT_TRUE(Ok(store));
  DeviceRecord device;
  device.device_id = "d";
  device.claim_hash = "h";
  device.credentials = {{CredentialKind::kKpm, "k", Bytes{1, 0, 2}}};
  EXPECT_TRUE(Ok((*store)->ImportDevices({device})));
}

TEST(StoreMigrationRunnerTest, RecognisesTheRebuildMarker) {
  EXPECT_TRUE(internal::RebuildsTables({2, "0002_x.sql", "-- mte: rebuilds tables\nSELECT 1;"}));
  EXPECT_FALSE(internal::RebuildsTables({2, "0002_x.sql", "SELECT 1;"}));
  EXPECT_FALSE(internal::RebuildsTables({2, "0002_x.sql", "-- mte: rebuilds tablesX\n"}));
  EXPECT_FALSE(internal::RebuildsTables({2, "0002_x.sql", "\n-- mte: rebuilds tables\n"}));
  const auto builtin = internal::BuiltInMigrations();
  ASSERT_GE(builtin.size(), 2U);
  EXPECT_FALSE(internal::RebuildsTables(builtin[0]));
  EXPECT_TRUE(internal::RebuildsTables(builtin[1]));
  EXPECT_TRUE(internal::RebuildsTables(builtin[2]));
  EXPECT_FALSE(internal::RebuildsTables(builtin[3]));
}

TEST(StoreMigrationRunnerTest, RebuildThatBreaksAReferenceIsRolledBack) {
  sqlite3* handle = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &handle), SQLITE_OK);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(handle, &sqlite3_close);
  ASSERT_EQ(sqlite3_exec(db.get(), "PRAGMA foreign_keys = ON", nullptr, nullptr, nullptr),
            SQLITE_OK);
  const internal::Migration migrations[] = {
      {1, "0001_a.sql",
       "CREATE TABLE p (id INTEGER PRIMARY KEY);"
       "CREATE TABLE c (p_id INTEGER REFERENCES p (id));"
       "INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (1), (2);"},
      // Rebuilds p but loses a row that c refers to.
      {2, "0002_b.sql",
       "-- mte: rebuilds tables\n"
       "CREATE TABLE p_new (id INTEGER PRIMARY KEY);"
       "INSERT INTO p_new SELECT id FROM p WHERE id = 1;"
       "DROP TABLE p; ALTER TABLE p_new RENAME TO p;"},
  };
  ASSERT_TRUE(Ok(internal::ApplyMigrations(db.get(), std::span(migrations).first(1))));
  EXPECT_TRUE(IsError(internal::ApplyMigrations(db.get(), migrations), ErrorKind::kStorage,
                      Errc::kDatabase, "foreign key check failed"));
  auto version = internal::SchemaVersion(db.get());
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, 1);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "SELECT count(*) FROM p", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 2);
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "PRAGMA foreign_keys", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 1);
  sqlite3_finalize(stmt);
}

TEST(StoreMigrationRunnerTest, UpToForTestRefusesUnknownVersions) {
  sqlite3* handle = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &handle), SQLITE_OK);
  std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(handle, &sqlite3_close);
  EXPECT_TRUE(IsError(internal::ApplyMigrationsUpToForTest(db.get(), 0), ErrorKind::kInternal,
                      Errc::kInvariant));
  EXPECT_TRUE(IsError(internal::ApplyMigrationsUpToForTest(db.get(), 999), ErrorKind::kInternal,
                      Errc::kInvariant));
}

}  // namespace
}  // namespace mte::store
