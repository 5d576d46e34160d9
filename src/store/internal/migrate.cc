#include "store/internal/migrate.h"

#include <string>

#include "store/internal/migrations.inc.h"
#include "store/internal/sqlite.h"

namespace mte::store::internal {
namespace {

constexpr std::string_view kOp = "apply schema migrations";

constexpr const char* kCreateVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER NOT NULL PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at INTEGER NOT NULL"
    ") STRICT";

Result<int64_t> ReadVersion(sqlite3* db, std::string_view op) {
  MTE_TRY_ASSIGN(auto stmt, Statement::Prepare(
                                db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", op));
  MTE_TRY_ASSIGN(const bool row, stmt.Step());
  if (!row) {
    return 0;
  }
  return stmt.Int64(0);
}

Result<bool> ForeignKeysOn(sqlite3* db, std::string_view op) {
  MTE_TRY_ASSIGN(auto stmt, Statement::Prepare(db, "PRAGMA foreign_keys", op));
  MTE_TRY_ASSIGN(const bool row, stmt.Step());
  return row && stmt.Int64(0) != 0;
}

// Fails when PRAGMA foreign_key_check reports any row: a rebuild lost or broke a reference.
Result<void> CheckForeignKeys(sqlite3* db, std::string_view op) {
  MTE_TRY_ASSIGN(auto stmt, Statement::Prepare(db, "PRAGMA foreign_key_check", op));
  MTE_TRY_ASSIGN(const bool row, stmt.Step());
  if (row) {
    return Fail(ErrorKind::kStorage, Errc::kDatabase,
                std::string(op) + ": foreign key check failed: a row of " + stmt.Text(0) +
                    " refers to a missing row of " + stmt.Text(2));
  }
  return {};
}

// Restores foreign key enforcement, outside any transaction, when it was turned off.
struct ForeignKeysRestore {
  sqlite3* db = nullptr;
  ~ForeignKeysRestore() {
    if (db != nullptr) static_cast<void>(Exec(db, "PRAGMA foreign_keys = ON", kOp));
  }
};

}  // namespace

bool RebuildsTables(const Migration& migration) {
  const std::string_view sql = migration.sql;
  return sql.substr(0, kRebuildsTablesMarker.size()) == kRebuildsTablesMarker &&
         (sql.size() == kRebuildsTablesMarker.size() ||
          sql[kRebuildsTablesMarker.size()] == '\n');
}

std::span<const Migration> BuiltInMigrations() {
  return kMigrations;
}

Result<int64_t> SchemaVersion(sqlite3* db) {
  MTE_TRY_ASSIGN(auto stmt, Statement::Prepare(db,
                                               "SELECT count(*) FROM sqlite_schema"
                                               " WHERE type = 'table' AND name = 'schema_version'",
                                               "read schema version"));
  MTE_TRY_ASSIGN(const bool row, stmt.Step());
  if (!row || stmt.Int64(0) == 0) {
    return 0;
  }
  return ReadVersion(db, "read schema version");
}

Result<void> ApplyMigrations(sqlite3* db, std::span<const Migration> migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int64_t>(i) + 1) {
      return Fail(ErrorKind::kInternal, Errc::kInvariant,
                  std::string(kOp) + ": migration " + std::string(migrations[i].name) +
                      " is out of sequence");
    }
  }
  const auto latest = static_cast<int64_t>(migrations.size());

  // PRAGMA foreign_keys is a no-op inside a transaction, so whether a rebuild is pending is
  // decided before BEGIN, on a version read outside it. Another process can only have applied
  // more since, so the pending migrations inside the transaction are a subset of these.
  MTE_TRY_ASSIGN(const int64_t seen, SchemaVersion(db));
  bool rebuild = false;
  for (const Migration& migration : migrations) {
    if (migration.version > seen && RebuildsTables(migration)) rebuild = true;
  }
  ForeignKeysRestore restore;
  if (rebuild) {
    MTE_TRY_ASSIGN(const bool on, ForeignKeysOn(db, kOp));
    if (on) {
      MTE_TRY(Exec(db, "PRAGMA foreign_keys = OFF", kOp));
      restore.db = db;
    }
  }

  MTE_TRY_ASSIGN(auto txn, Transaction::Begin(db, Transaction::Mode::kImmediate, kOp));
  MTE_TRY(Exec(db, kCreateVersionTable, kOp));
  MTE_TRY_ASSIGN(const int64_t current, ReadVersion(db, kOp));
  if (current > latest) {
    return Fail(ErrorKind::kStorage, Errc::kDatabase,
                std::string(kOp) + ": database schema version " + std::to_string(current) +
                    " is newer than this build supports (" + std::to_string(latest) + ")");
  }
  for (const Migration& migration : migrations.subspan(static_cast<size_t>(current))) {
    const std::string op = std::string(kOp) + ": " + std::string(migration.name);
    MTE_TRY(Exec(db, migration.sql, op));
    MTE_TRY_ASSIGN(auto insert, Statement::Prepare(db,
                                                   "INSERT INTO schema_version (version, name,"
                                                   " applied_at) VALUES (?1, ?2,"
                                                   " CAST(strftime('%s', 'now') AS INTEGER))",
                                                   kOp));
    MTE_TRY(insert.BindAll(migration.version, migration.name));
    MTE_TRY(insert.Run());
  }
  if (rebuild) {
    // The last step of SQLite's table rebuild procedure: the copy kept every reference intact.
    MTE_TRY(CheckForeignKeys(db, kOp));
  }
  return txn.Commit();
}

Result<void> ApplyMigrationsUpToForTest(sqlite3* db, int64_t version) {
  const std::span<const Migration> all = BuiltInMigrations();
  if (version < 1 || version > static_cast<int64_t>(all.size())) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                std::string(kOp) + ": no migration " + std::to_string(version));
  }
  return ApplyMigrations(db, all.first(static_cast<size_t>(version)));
}

}  // namespace mte::store::internal
