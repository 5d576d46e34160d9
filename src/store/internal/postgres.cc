#include "store/internal/postgres.h"

#include <libpq-fe.h>
#include <pqxx/except>
#include <pqxx/transaction>

#include <memory>
#include <string>
#include <utility>

#include "store/internal/postgres_migrations.inc.h"

namespace mte::store::internal {
namespace {

constexpr std::string_view kPostgres = "PostgreSQL";
// libpq waits for a connection without limit unless told otherwise (libpq §34.1.2).
constexpr std::string_view kDefaultConnectTimeoutSeconds = "10";

Error StorageError(std::string detail) {
  return Error{ErrorKind::kStorage, Errc::kDatabase, std::move(detail)};
}

struct ConninfoFree {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};

// A value in libpq's keyword=value syntax: single-quoted, with \ and ' escaped (libpq §34.1.1).
std::string QuoteConninfoValue(std::string_view value) {
  std::string out = "'";
  for (const char c : value) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

// The first line of `text`, without trailing white space.
std::string FirstLine(std::string_view text) {
  std::string line(text.substr(0, text.find('\n')));
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
    line.pop_back();
  }
  return line;
}

// A server message's first line without its severity ("ERROR:  ", "FATAL:  ").
std::string PrimaryMessage(std::string_view text) {
  std::string line = FirstLine(text);
  for (const std::string_view severity : {"ERROR:  ", "FATAL:  ", "PANIC:  "}) {
    if (line.starts_with(severity)) return line.substr(severity.size());
  }
  return line;
}

// libpq's connection failures span lines ("...failed: No such file or directory\n\tIs the server
// running locally..."); they are folded into one.
std::string OneLine(std::string_view text) {
  std::string out;
  bool space = false;
  for (const char c : text) {
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

std::string Scrub(std::string text, const std::vector<std::string>& secrets) {
  constexpr std::string_view kRedacted = "<redacted>";
  for (const std::string& secret : secrets) {
    if (secret.empty()) continue;
    for (size_t at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + kRedacted.size())) {
      text.replace(at, secret.size(), kRedacted);
    }
  }
  return text;
}

Result<PostgresTarget> ParsePostgresUri(const std::string& uri) {
  constexpr std::string_view kOp = "PostgreSQL: open database";
  if (!uri.starts_with("postgresql://") && !uri.starts_with("postgres://")) {
    return Fail(StorageError(std::string(kOp) +
                             ": the location is not a postgresql:// or postgres:// URI"));
  }
  char* raw_error = nullptr;
  std::unique_ptr<PQconninfoOption, ConninfoFree> options(
      PQconninfoParse(uri.c_str(), &raw_error));
  if (raw_error != nullptr) {
    // libpq's message quotes the offending part of the URI, which may be the password.
    PQfreemem(raw_error);
  }
  if (options == nullptr) {
    return Fail(StorageError(std::string(kOp) +
                             ": the URI is not a valid libpq connection URI (check its syntax and"
                             " that reserved characters in it are percent-encoded)"));
  }
  PostgresTarget target;
  std::string host;
  std::string hostaddr;
  std::string port;
  std::string dbname;
  std::string user;
  bool has_timeout = false;
  for (const PQconninfoOption* option = options.get(); option->keyword != nullptr; ++option) {
    if (option->val == nullptr) continue;
    const std::string_view keyword = option->keyword;
    const std::string_view value = option->val;
    if (!target.conninfo.empty()) target.conninfo += ' ';
    target.conninfo += keyword;
    target.conninfo += '=';
    target.conninfo += QuoteConninfoValue(value);
    if (keyword == "password" || keyword == "sslpassword") target.secrets.emplace_back(value);
    if (keyword == "host") host = value;
    if (keyword == "hostaddr") hostaddr = value;
    if (keyword == "port") port = value;
    if (keyword == "dbname") dbname = value;
    if (keyword == "user") user = value;
    if (keyword == "connect_timeout") has_timeout = true;
  }
  if (!has_timeout) {
    if (!target.conninfo.empty()) target.conninfo += ' ';
    target.conninfo += "connect_timeout=";
    target.conninfo += kDefaultConnectTimeoutSeconds;
  }
  target.where = (!host.empty() ? host : !hostaddr.empty() ? hostaddr : "<default host>") + ":" +
                 (!port.empty() ? port : "<default port>") + "/" +
                 (!dbname.empty() ? dbname : !user.empty() ? user : "<default database>");
  target.where = Scrub(target.where, target.secrets);
  return target;
}

Result<std::unique_ptr<PostgresConnection>> PostgresConnection::Open(
    const PostgresTarget& target) {
  try {
    return std::unique_ptr<PostgresConnection>(new PostgresConnection(target.conninfo));
  } catch (const std::exception& e) {
    return Fail(StorageError(std::string(kPostgres) + ": could not connect to " + target.where +
                             ": " + Scrub(OneLine(e.what()), target.secrets)));
  }
}

std::string SqlState(const std::exception& error) {
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&error)) return sql->sqlstate();
  // libpqxx 6 keeps no SQLSTATE on these; each stands for exactly one.
  if (dynamic_cast<const pqxx::serialization_failure*>(&error) != nullptr) return "40001";
  if (dynamic_cast<const pqxx::deadlock_detected*>(&error) != nullptr) return "40P01";
  if (dynamic_cast<const pqxx::statement_completion_unknown*>(&error) != nullptr) return "40003";
  return {};
}

Error PostgresError(std::string_view op, const std::exception& error,
                    const std::vector<std::string>& secrets) {
  std::string reason;
  const std::string state = SqlState(error);
  if (dynamic_cast<const pqxx::in_doubt_error*>(&error) != nullptr) {
    reason = "the connection was lost during COMMIT; whether the transaction committed is unknown";
  } else if (dynamic_cast<const pqxx::broken_connection*>(&error) != nullptr) {
    reason = "the connection to the server is lost: " + OneLine(error.what());
  } else if (state.starts_with("22")) {
    // Data exceptions quote the value they refused ("invalid input syntax ...: \"...\"").
    reason = "the server refused a value (SQLSTATE " + state + ")";
  } else if (!state.empty()) {
    reason = PrimaryMessage(error.what()) + " (SQLSTATE " + state + ")";
  } else {
    reason = FirstLine(error.what());
  }
  std::string detail(op);
  detail += ": ";
  detail += kPostgres;
  detail += ": ";
  detail += Scrub(std::move(reason), secrets);
  return StorageError(std::move(detail));
}

std::span<const Migration> BuiltInPostgresMigrations() { return kPostgresMigrations; }

Result<int64_t> PostgresSchemaVersion(pqxx::connection& connection) {
  constexpr std::string_view kOp = "read schema version";
  try {
    pqxx::work tx(connection);
    const pqxx::row exists = tx.exec1("SELECT to_regclass('schema_version') IS NOT NULL");
    if (!exists[0].as<bool>()) return int64_t{0};
    const pqxx::row version = tx.exec1("SELECT COALESCE(MAX(version), 0) FROM schema_version");
    return version[0].as<int64_t>();
  } catch (const std::exception& e) {
    return Fail(PostgresError(kOp, e));
  }
}

Result<void> ApplyPostgresMigrations(pqxx::connection& connection,
                                     std::span<const Migration> migrations) {
  constexpr std::string_view kOp = "apply schema migrations";
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int64_t>(i) + 1) {
      return Fail(ErrorKind::kInternal, Errc::kInvariant,
                  std::string(kOp) + ": migration " + std::string(migrations[i].name) +
                      " is out of sequence");
    }
  }
  const auto latest = static_cast<int64_t>(migrations.size());
  std::string op(kOp);
  try {
    // READ COMMITTED, not SERIALIZABLE: a snapshot taken before the lock was granted would hide
    // what the process that held it committed.
    pqxx::work tx(connection);
    // Held until this transaction ends (PostgreSQL §9.27.10): a second process opening the
    // database waits here, then finds the schema current.
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version BIGINT NOT NULL PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " applied_at BIGINT NOT NULL)");
    const int64_t current =
        tx.exec1("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0].as<int64_t>();
    if (current > latest) {
      return Fail(StorageError(std::string(kOp) + ": database schema version " +
                               std::to_string(current) + " is newer than this build supports (" +
                               std::to_string(latest) + ")"));
    }
    for (const Migration& migration : migrations.subspan(static_cast<size_t>(current))) {
      op = std::string(kOp) + ": " + std::string(migration.name);
      tx.exec(migration.sql);
      tx.exec_params(
          "INSERT INTO schema_version (version, name, applied_at)"
          " VALUES ($1, $2, CAST(extract(epoch FROM now()) AS BIGINT))",
          migration.version, std::string(migration.name));
    }
    op = kOp;
    tx.commit();
    return {};
  } catch (const std::exception& e) {
    return Fail(PostgresError(op, e));
  }
}

}  // namespace mte::store::internal
