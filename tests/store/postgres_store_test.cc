// Tests of the PostgreSQL store beyond the conformance suite (docs/architecture.md §5): its schema
// migrations, the URI and the secrecy of its errors, connections that break or a database that
// goes away, the append-only audit and the rollback of a failed commit seen from a second
// connection, and text PostgreSQL cannot hold. Each test gets a fresh database on the server of
// tests/testlib/with_postgres.sh.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "store/internal/postgres.h"
#include "store/postgres_test_support.h"
#include "store/store.h"
#include "store/store_test_support.h"

namespace mte::store {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using test_support::IsError;
using test_support::MakeDevice;
using test_support::Ok;
using test_support::PostgresTestDatabase;
using test_support::SomeBytes;

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(database_.ok()) << database_.error(); }

  std::unique_ptr<Store> Open() {
    auto opened = OpenPostgresStore(database_.uri());
    EXPECT_TRUE(Ok(opened));
    return opened.has_value() ? std::move(*opened) : nullptr;
  }

  // The test database's URI with `suffix` appended to its query (which is never empty).
  std::string UriWith(const std::string& suffix) const { return database_.uri() + suffix; }

  PostgresTestDatabase database_;
};

// --- migrations ---------------------------------------------------------------------------------

TEST_F(PostgresStoreTest, AnEmptyDatabaseGetsTheWholeSchema) {
  const auto migrations = internal::BuiltInPostgresMigrations();
  ASSERT_FALSE(migrations.empty());
  EXPECT_EQ(migrations[0].name, "0001_init.sql");
  EXPECT_EQ(database_.Scalar("SELECT to_regclass('schema_version') IS NULL"), "t");
  ASSERT_NE(Open(), nullptr);
  EXPECT_EQ(database_.Scalar("SELECT count(*) FROM schema_version"),
            std::to_string(migrations.size()));
  EXPECT_EQ(database_.Scalar("SELECT max(version) FROM schema_version"),
            std::to_string(migrations.size()));
  EXPECT_EQ(database_.Scalar("SELECT name FROM schema_version WHERE version = 1"),
            "0001_init.sql");
  // Every table the SQLite schema has, and no other.
  EXPECT_EQ(database_.Scalar("SELECT string_agg(tablename, ',' ORDER BY tablename)"
                             " FROM pg_tables WHERE schemaname = 'public'"),
            "api_tokens,audit,device_cas,device_credentials,devices,enrolee_credential_ids,"
            "enrolees,login_failures,maf_credentials,maf_retired,outbox,recovery_codes,"
            "schema_version,sessions,stakeholders,tokens,totp_secrets");
  auto raw = database_.Raw();
  auto version = internal::PostgresSchemaVersion(*raw);
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, static_cast<int64_t>(migrations.size()));
}

TEST_F(PostgresStoreTest, ReopeningIsANoOp) {
  ASSERT_NE(Open(), nullptr);
  const std::string before =
      database_.Scalar("SELECT string_agg(version || ':' || name || ':' || applied_at, ',')"
                       " FROM schema_version");
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(Ok(store->AddStakeholder("alice", "h", 1)));
  }
  for (int open = 0; open < 2; ++open) ASSERT_NE(Open(), nullptr);
  EXPECT_EQ(database_.Scalar("SELECT string_agg(version || ':' || name || ':' || applied_at, ',')"
                             " FROM schema_version"),
            before);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto alice = store->FindStakeholder("alice");
  ASSERT_TRUE(Ok(alice));
  EXPECT_TRUE(alice->has_value()) << "reopening kept the data";
}

TEST_F(PostgresStoreTest, ANewerSchemaIsRefused) {
  ASSERT_NE(Open(), nullptr);
  database_.Scalar("INSERT INTO schema_version VALUES (999, '0999_future.sql', 0)");
  EXPECT_TRUE(IsError(OpenPostgresStore(database_.uri()), ErrorKind::kStorage, Errc::kDatabase,
                      "database schema version 999 is newer than this build supports (" +
                          std::to_string(internal::BuiltInPostgresMigrations().size()) + ")"));
}

TEST_F(PostgresStoreTest, StoresOpeningOneEmptyDatabaseAtOnceAllSucceed) {
  constexpr int kOpeners = 4;
  std::atomic<bool> go{false};
  std::atomic<int> opened{0};
  std::vector<std::string> errors(kOpeners);
  std::vector<std::thread> threads;
  for (int t = 0; t < kOpeners; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      auto store = OpenPostgresStore(database_.uri());
      if (store.has_value()) {
        ++opened;
      } else {
        errors[static_cast<size_t>(t)] = store.error().detail;
      }
    });
  }
  go = true;
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(opened.load(), kOpeners) << errors[0] << errors[1] << errors[2] << errors[3];
  EXPECT_EQ(database_.Scalar("SELECT count(*) FROM schema_version"),
            std::to_string(internal::BuiltInPostgresMigrations().size()));
}

TEST_F(PostgresStoreTest, AFailingMigrationLeavesTheSchemaUnchanged) {
  auto raw = database_.Raw();
  const internal::Migration good[] = {{1, "0001_a.sql", "CREATE TABLE a (x BIGINT);"}};
  const internal::Migration bad[] = {
      {1, "0001_a.sql", "CREATE TABLE a (x BIGINT);"},
      {2, "0002_b.sql", "CREATE TABLE b (x BIGINT); INSERT INTO nowhere VALUES (1);"},
  };
  EXPECT_TRUE(IsError(internal::ApplyPostgresMigrations(*raw, bad), ErrorKind::kStorage,
                      Errc::kDatabase, "0002_b.sql"));
  auto version = internal::PostgresSchemaVersion(*raw);
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, 0);
  EXPECT_EQ(database_.Scalar("SELECT to_regclass('a') IS NULL"), "t")
      << "not even the first migration's table survived";

  ASSERT_TRUE(Ok(internal::ApplyPostgresMigrations(*raw, good)));
  ASSERT_TRUE(Ok(internal::ApplyPostgresMigrations(*raw, good)));  // idempotent
  version = internal::PostgresSchemaVersion(*raw);
  ASSERT_TRUE(Ok(version));
  EXPECT_EQ(*version, 1);

  const internal::Migration gap[] = {{1, "0001_a.sql", ""}, {3, "0003_c.sql", ""}};
  EXPECT_TRUE(IsError(internal::ApplyPostgresMigrations(*raw, gap), ErrorKind::kInternal,
                      Errc::kInvariant, "0003_c.sql"));
}

// --- the URI and secrets in errors --------------------------------------------------------------

TEST_F(PostgresStoreTest, OpenStoreTakesEitherSchemeAndAnythingElseIsSqlite) {
  auto long_scheme = OpenStore(database_.uri());
  ASSERT_TRUE(Ok(long_scheme));
  std::string short_uri = database_.uri();
  short_uri.replace(0, std::string("postgresql").size(), "postgres");
  auto short_scheme = OpenStore(short_uri);
  ASSERT_TRUE(Ok(short_scheme));
  ASSERT_TRUE(Ok((*long_scheme)->AddStakeholder("alice", "h", 1)));
  auto seen = (*short_scheme)->FindStakeholder("alice");
  ASSERT_TRUE(Ok(seen));
  EXPECT_TRUE(seen->has_value()) << "both name the same database";
  EXPECT_TRUE(Ok(OpenStore(":memory:")));
  EXPECT_TRUE(IsError(OpenPostgresStore("host=/tmp dbname=x"), ErrorKind::kStorage,
                      Errc::kDatabase, "not a postgresql:// or postgres:// URI"));
}

TEST_F(PostgresStoreTest, ErrorsNeverShowThePassword) {
  const std::string password = "s3cr3t-Pa55";
  // libpq's own parse error would quote the malformed part, here the password.
  auto malformed = OpenPostgresStore("postgresql://mte:" + password + "%zz@localhost/mte");
  ASSERT_FALSE(malformed.has_value());
  EXPECT_EQ(malformed.error().kind, ErrorKind::kStorage);
  EXPECT_THAT(malformed.error().detail, HasSubstr("not a valid libpq connection URI"));
  EXPECT_THAT(malformed.error().detail, Not(HasSubstr(password)));

  // No server on that port: libpq's message names the socket, never the password.
  auto refused = OpenPostgresStore(UriWith("&password=" + password + "&port=1"));
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind, ErrorKind::kStorage);
  EXPECT_THAT(refused.error().detail, HasSubstr("could not connect to "));
  EXPECT_THAT(refused.error().detail, HasSubstr(":1/" + database_.name()));
  EXPECT_THAT(refused.error().detail, Not(HasSubstr(password)));

  // A database that does not exist, with the password also given in the URI's user part.
  std::string missing = database_.uri();
  missing.replace(missing.find(database_.name()), database_.name().size(), "no_such_db");
  missing.replace(0, std::string("postgresql://").size(),
                  "postgresql://postgres:" + password + "@");
  auto absent = OpenPostgresStore(missing);
  ASSERT_FALSE(absent.has_value());
  EXPECT_EQ(absent.error().kind, ErrorKind::kStorage);
  EXPECT_THAT(absent.error().detail, HasSubstr("no_such_db"));
  EXPECT_THAT(absent.error().detail, Not(HasSubstr(password)));

  // The password is accepted (the test server trusts every local connection) and stays out of
  // the errors of a store that works.
  auto store = OpenPostgresStore(UriWith("&password=" + password));
  ASSERT_TRUE(Ok(store));
  ASSERT_TRUE(Ok((*store)->AddStakeholder("alice", "h", 1)));
  auto duplicate = (*store)->AddStakeholder("alice", "h", 2);
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_THAT(duplicate.error().detail, Not(HasSubstr(password)));
}

// --- broken connections -------------------------------------------------------------------------

TEST_F(PostgresStoreTest, ABrokenConnectionIsReplacedOnItsNextUse) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Ok(store->AddStakeholder("alice", "h", 1)));
  // As a server restart would: every session on the database ends (waiting until they have).
  database_.Admin("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                  " WHERE datname = '" + database_.name() + "'");
  for (int call = 0; call < 6; ++call) {
    auto found = store->FindStakeholder("alice");
    ASSERT_TRUE(Ok(found)) << "call " << call;
    EXPECT_TRUE(found->has_value());
  }
  EXPECT_TRUE(Ok(store->AddStakeholder("bob", "h", 2)));
}

TEST_F(PostgresStoreTest, ADatabaseThatIsGoneGivesAStorageErrorNotACrash) {
  const std::string password = "another-s3cret";
  auto opened = OpenPostgresStore(UriWith("&password=" + password));
  ASSERT_TRUE(Ok(opened));
  std::unique_ptr<Store> store = std::move(*opened);
  ASSERT_TRUE(Ok(store->AddStakeholder("alice", "h", 1)));
  database_.Drop();  // ends its sessions, then removes it
  auto read = store->FindStakeholder("alice");
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().kind, ErrorKind::kStorage);
  EXPECT_EQ(read.error().code, Errc::kDatabase);
  EXPECT_THAT(read.error().detail, HasSubstr("could not connect to"));
  EXPECT_THAT(read.error().detail, Not(HasSubstr(password)));
  auto write = store->AddStakeholder("bob", "h", 2);
  ASSERT_FALSE(write.has_value());
  EXPECT_EQ(write.error().kind, ErrorKind::kStorage);
}

// --- seen from a second connection --------------------------------------------------------------

TEST_F(PostgresStoreTest, AuditIsAppendOnlyForEveryConnection) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Ok(store->Audit({0, 1, "admin", "device.import", "dev-1", "original"})));
  for (const char* sql : {"UPDATE audit SET detail = 'forged'", "DELETE FROM audit",
                          "TRUNCATE audit"}) {
    try {
      database_.Scalar(sql);
      ADD_FAILURE() << sql << " succeeded";
    } catch (const pqxx::sql_error& e) {
      EXPECT_THAT(e.what(), HasSubstr("append-only")) << sql;
    }
  }
  auto entries = store->ListAudit();
  ASSERT_TRUE(Ok(entries));
  ASSERT_EQ(entries->size(), 1U);
  EXPECT_EQ((*entries)[0].detail, "original");
}

TEST_F(PostgresStoreTest, CommitEnrolmentRollsBackWhenALaterStepFails) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto alice = store->AddStakeholder("alice", "h", 1);
  ASSERT_TRUE(Ok(alice));
  ASSERT_TRUE(Ok(store->ImportDevices({MakeDevice(1)})));
  auto pending = store->AddEnrolee(*alice, "dev-1", "boiler", 5);
  ASSERT_TRUE(Ok(pending));

  // Make the outbox row, the last write of the transaction, fail.
  database_.Scalar(
      "CREATE FUNCTION fail_outbox() RETURNS trigger LANGUAGE plpgsql AS"
      " $$ BEGIN RAISE EXCEPTION 'injected failure'; END; $$;"
      " CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox"
      " FOR EACH ROW EXECUTE FUNCTION fail_outbox()");
  EnrolmentCommit commit;
  commit.enrolee_id = pending->id;
  commit.rspf = "PPSK";
  commit.ke_id = "KE@mef.example";
  commit.ke_sealed = SomeBytes("ke");
  commit.credential_ids = {"1-x"};
  commit.outbox = {0, pending->id, 1, "maf", SomeBytes("payload"), 0, 50, 0, ""};
  commit.now = 50;
  commit.audit = {0, 50, "mef", "enrolment.commit", "enrolee {id}", ""};
  EXPECT_TRUE(IsError(store->CommitEnrolment(commit), ErrorKind::kStorage, Errc::kDatabase,
                      "injected failure"));
  auto after = store->GetEnrolee(pending->id);
  ASSERT_TRUE(Ok(after));
  ASSERT_TRUE(after->has_value());
  EXPECT_EQ((*after)->generation, 0);
  EXPECT_EQ((*after)->state, EnroleeState::kPending);
  EXPECT_TRUE((*after)->credential_ids.empty());
  auto audit = store->ListAudit();
  ASSERT_TRUE(Ok(audit));
  EXPECT_TRUE(audit->empty()) << "the audit entry went with the rest";

  database_.Scalar("DROP TRIGGER fail_outbox ON outbox");
  auto retried = store->CommitEnrolment(commit);
  ASSERT_TRUE(Ok(retried));
  EXPECT_EQ(retried->generation, 1);
}

// --- claims ---------------------------------------------------------------------------------------

// Another process's claim, still in its transaction, holds the row lock of the oldest item: a
// claim here takes the others at once, neither waiting for that lock nor taking that item.
TEST_F(PostgresStoreTest, AClaimSkipsTheItemsAnotherClaimHoldsWithoutWaiting) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto alice = store->AddStakeholder("alice", "h", 1);
  ASSERT_TRUE(Ok(alice));
  ASSERT_TRUE(Ok(store->ImportDevices({MakeDevice(1)})));
  auto enrolee = store->AddEnrolee(*alice, "dev-1", "boiler", 5);
  ASSERT_TRUE(Ok(enrolee));
  for (int64_t g = 0; g < 3; ++g) {
    EnrolmentCommit commit;
    commit.enrolee_id = enrolee->id;
    commit.expected_generation = g;
    commit.outbox = {0, enrolee->id, g + 1, "maf", SomeBytes("payload"), 0, 100, 0, ""};
    commit.now = 50;
    ASSERT_TRUE(Ok(store->CommitEnrolment(commit)));
  }
  auto due = store->DueOutbox(100, 10);
  ASSERT_TRUE(Ok(due));
  ASSERT_EQ(due->size(), 3U);

  auto raw = database_.Raw();
  pqxx::work other(*raw);
  other.exec("SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE");
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    other.abort();
  });
  const auto start = std::chrono::steady_clock::now();
  auto claimed = store->ClaimDueOutbox(100, 10, 500);
  const auto waited = std::chrono::steady_clock::now() - start;
  release.join();
  ASSERT_TRUE(Ok(claimed));
  ASSERT_EQ(claimed->size(), 2U);
  EXPECT_EQ((*claimed)[0].id, (*due)[1].id);
  EXPECT_EQ((*claimed)[1].id, (*due)[2].id);
  EXPECT_LT(waited, std::chrono::milliseconds(1000)) << "the claim waited for the held row";
}

// --- text PostgreSQL cannot hold ----------------------------------------------------------------

TEST_F(PostgresStoreTest, TextWithANulOrThatIsNotUtf8IsRefusedNotCutShort) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Ok(store->ImportDevices({MakeDevice(1)})));
  // libpq would send "kpm-1" and find device 1.
  EXPECT_TRUE(IsError(store->FindDeviceByKpmId(std::string("kpm-1\0x", 7)),
                      ErrorKind::kLocalUsage, Errc::kMalformed, "NUL"));
  EXPECT_TRUE(IsError(store->AddStakeholder(std::string("eve\0admin", 9), "h", 1),
                      ErrorKind::kLocalUsage, Errc::kMalformed));
  EXPECT_TRUE(IsError(store->AddStakeholder("caf\xc3", "h", 1), ErrorKind::kLocalUsage,
                      Errc::kMalformed, "UTF-8"));
  EXPECT_TRUE(Ok(store->AddStakeholder("caf\xc3\xa9", "h", 1)));
  auto all = store->ListStakeholders();
  ASSERT_TRUE(Ok(all));
  ASSERT_EQ(all->size(), 1U);
  EXPECT_EQ((*all)[0].name, "caf\xc3\xa9");
}

TEST_F(PostgresStoreTest, AnOutboxErrorMessageIsStoredEvenWhenItIsNotText) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto alice = store->AddStakeholder("alice", "h", 1);
  ASSERT_TRUE(Ok(alice));
  ASSERT_TRUE(Ok(store->ImportDevices({MakeDevice(1)})));
  auto pending = store->AddEnrolee(*alice, "dev-1", "boiler", 5);
  ASSERT_TRUE(Ok(pending));
  EnrolmentCommit commit;
  commit.enrolee_id = pending->id;
  commit.outbox = {0, pending->id, 1, "maf", SomeBytes("payload"), 0, 50, 0, ""};
  commit.now = 50;
  ASSERT_TRUE(Ok(store->CommitEnrolment(commit)));
  auto due = store->DueOutbox(50, 1);
  ASSERT_TRUE(Ok(due));
  ASSERT_EQ(due->size(), 1U);
  // A peer's bytes in the message: a NUL, an invalid octet, and a character cut by the bound.
  std::string message = std::string("bad\0peer\xff", 9) + std::string(1100, 'x');
  message.replace(1023, 2, "\xc3\xa9");
  ASSERT_TRUE(Ok(store->MarkAttemptFailed((*due)[0].id, 60, message)));
  auto item = store->GetOutboxItem((*due)[0].id);
  ASSERT_TRUE(Ok(item));
  EXPECT_EQ((*item)->attempts, 1);
  EXPECT_EQ((*item)->last_error.substr(0, 9), "bad?peer?");
  EXPECT_EQ((*item)->last_error.size(), 1023U) << "cut before the character that does not fit";
}

}  // namespace
}  // namespace mte::store
