// libpq/libpqxx plumbing private to the PostgreSQL store (docs/architecture.md §5): parsing the
// connection URI, connecting, turning libpqxx exceptions into Errors without secrets, and the
// schema migrations of src/store/migrations/postgresql/NNNN_<name>.sql, embedded at build time.
// Every SQL text is a compile-time constant; values reach the server only as statement
// parameters.
// Thread-safety: a Connection is used by one thread at a time (the store's pool hands it out).
#pragma once

#include <pqxx/connection>
#include <pqxx/errorhandler>

#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "store/internal/migration.h"

namespace mte::store::internal {

// A connection URI taken apart by libpq (PQconninfoParse).
struct PostgresTarget {
  std::string conninfo;  // keyword=value form of every option the URI set, plus connect_timeout
  std::string where;     // "<host>:<port>/<dbname>" for error details; never a secret
  std::vector<std::string> secrets;  // the password and sslpassword the URI gives, if any:
                                     // scrubbed from every message we pass on
};

// Accepts only "postgresql://" and "postgres://" URIs that libpq can parse. kStorage/kDatabase
// otherwise, with a detail of our own: libpq's parse errors quote the URI, password included.
Result<PostgresTarget> ParsePostgresUri(const std::string& uri);

// One server connection whose notices (NOTICE, WARNING) are dropped instead of printed.
class PostgresConnection {
 public:
  // kStorage/kDatabase "PostgreSQL: could not connect to <where>: <libpq's reason>".
  static Result<std::unique_ptr<PostgresConnection>> Open(const PostgresTarget& target);

  pqxx::connection& get() { return connection_; }

 private:
  explicit PostgresConnection(const std::string& conninfo)
      : connection_(conninfo), quiet_(connection_) {}

  pqxx::connection connection_;
  pqxx::quiet_errorhandler quiet_;  // after connection_: unregisters itself before it closes
};

// The SQLSTATE of `error` when it is a statement's error from the server; "" otherwise.
std::string SqlState(const std::exception& error);

// kStorage/kDatabase "<op>: PostgreSQL: <reason>": the reason is the first line of the server's
// message without its DETAIL, HINT and CONTEXT lines (they quote rows and parameter values), our
// own text for data exceptions (SQLSTATE class 22, whose messages quote values), and never
// contains one of `secrets`.
Error PostgresError(std::string_view op, const std::exception& error,
                    const std::vector<std::string>& secrets = {});

// `text` with every occurrence of each of `secrets` replaced by "<redacted>".
std::string Scrub(std::string text, const std::vector<std::string>& secrets);

// The migrations built into this binary, oldest first.
std::span<const Migration> BuiltInPostgresMigrations();

// Brings the schema up to the last of `migrations` in one READ COMMITTED transaction that first
// takes a transaction-level advisory lock, so that processes opening one database at once apply
// the migrations one after the other (the later ones find nothing to do; READ COMMITTED lets a
// later one see what an earlier one committed while it waited). Records each applied version in
// schema_version. Fails with kStorage/kDatabase, leaving the schema unchanged, when a migration
// fails or the database is newer than `migrations`; kInternal/kInvariant when `migrations` is not
// numbered 1..N.
Result<void> ApplyPostgresMigrations(pqxx::connection& connection,
                                     std::span<const Migration> migrations);

// The highest applied version, 0 for a database without schema_version.
Result<int64_t> PostgresSchemaVersion(pqxx::connection& connection);

// The advisory lock key ApplyPostgresMigrations takes (pg_advisory_xact_lock).
inline constexpr int64_t kMigrationLockKey = 0x6f6d74652d736368;  // "omte-sch"

}  // namespace mte::store::internal
