// Schema migrations for the SQLite store (docs/architecture.md §5). The migrations themselves are the files
// src/store/migrations/NNNN_<name>.sql, embedded at build time.
// Thread-safety: none; call with exclusive use of the connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"
#include "store/internal/migration.h"

namespace mte::store::internal {

// The first line of a migration that rebuilds a table (SQLite's procedure for schema changes
// that ALTER TABLE cannot make: create the new table, copy, drop the old one, rename the new one).
inline constexpr std::string_view kRebuildsTablesMarker = "-- mte: rebuilds tables";

// True when `migration` starts with kRebuildsTablesMarker.
bool RebuildsTables(const Migration& migration);

// The migrations built into this binary, oldest first.
std::span<const Migration> BuiltInMigrations();

// Brings the schema up to the last of `migrations` in one IMMEDIATE transaction, recording each
// applied version in schema_version. When a migration still to apply rebuilds tables, foreign
// key enforcement is turned off around the transaction (a dropped table would otherwise take
// the rows that refer to it along, or fail), and PRAGMA foreign_key_check must find nothing
// before the commit; the connection's foreign_keys setting is restored afterwards. Idempotent;
// safe when several processes open the same file at once (the second waits, then finds nothing
// to do). Fails with kStorage/kDatabase, leaving the
// schema unchanged, when a migration fails or the database is newer than `migrations`;
// kInternal/kInvariant when `migrations` is not numbered 1..N.
Result<void> ApplyMigrations(sqlite3* db, std::span<const Migration> migrations);

// For tests: applies the built-in migrations up to and including `version` (1..N), as a database
// written by an older build would be. Same contract as ApplyMigrations.
Result<void> ApplyMigrationsUpToForTest(sqlite3* db, int64_t version);

// The highest applied version, 0 for an empty database.
Result<int64_t> SchemaVersion(sqlite3* db);

}  // namespace mte::store::internal
