// RAII wrappers for the sqlite3 C API, private to the store. Every SQL text is a compile-time
// constant; values reach SQLite only through bound parameters.
// Thread-safety: none; the owning store serialises all use of a connection.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::store::internal {

struct DbClose {
  void operator()(sqlite3* db) const { static_cast<void>(sqlite3_close_v2(db)); }
};

using DbPtr = std::unique_ptr<sqlite3, DbClose>;

struct StmtFinalize {
  void operator()(sqlite3_stmt* stmt) const { static_cast<void>(sqlite3_finalize(stmt)); }
};

using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

// kStorage/kDatabase with detail "<op>: <sqlite errmsg>".
Error DbError(sqlite3* db, std::string_view op);

// Runs SQL without parameters (PRAGMAs, BEGIN/COMMIT, migration scripts).
Result<void> Exec(sqlite3* db, const char* sql, std::string_view op);

class StatementCache;

// A prepared statement. `op` names the store operation in error details and must outlive the
// statement (a string literal). A statement from a StatementCache goes back to it, reset and with
// its parameters unbound, when it is destroyed.
class Statement {
 public:
  static Result<Statement> Prepare(sqlite3* db, std::string_view sql, std::string_view op);

  ~Statement();
  Statement(Statement&& other) noexcept = default;
  Statement& operator=(Statement&& other) noexcept = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based. Text and blobs are copied into the statement.
  Result<void> Bind(int index, int64_t value);
  Result<void> Bind(int index, std::string_view value);
  Result<void> Bind(int index, ByteSpan value);
  Result<void> Bind(int index, std::optional<int64_t> value);  // nullopt binds NULL

  // Binds the arguments to parameters 1..N in order.
  template <class... Args>
  Result<void> BindAll(const Args&... args) {
    int index = 0;
    Result<void> result;
    // Stops at the first failure.
    static_cast<void>(((result = Bind(++index, args), result.has_value()) && ...));
    return result;
  }

  // Makes the statement ready to run again, with all parameters unbound.
  void Reset();

  // true: a row is available; false: the statement is done.
  Result<bool> Step();
  // Steps a statement that returns no rows.
  Result<void> Run();

  int64_t Int64(int column) const;
  std::string Text(int column) const;
  Bytes Blob(int column) const;
  bool IsNull(int column) const;

 private:
  friend class StatementCache;

  Statement(sqlite3* db, StmtPtr stmt, std::string_view op, StatementCache* cache)
      : db_(db), stmt_(std::move(stmt)), op_(op), cache_(cache) {}

  Result<void> Check(int rc);

  sqlite3* db_;
  StmtPtr stmt_;
  std::string_view op_;
  StatementCache* cache_;  // null: finalized on destruction
};

// Prepared statements of one connection, kept for reuse: preparing (parsing and planning the SQL)
// costs more than running the small statements of the store. A statement that is in use when the
// same SQL is asked for again is prepared a second time and finalized after use.
// Thread-safety: none, like the connection. Destroy the cache before closing the connection.
class StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  Result<Statement> Prepare(std::string_view sql, std::string_view op);

  // Runs a statement that returns no rows (BEGIN, COMMIT, ROLLBACK).
  Result<void> Run(std::string_view sql, std::string_view op);

  sqlite3* db() const { return db_; }

 private:
  friend class Statement;
  void Return(StmtPtr stmt);

  sqlite3* db_;
  // Keyed by the statement's own SQL text (sqlite3_sql), which lives as long as the statement.
  std::unordered_map<std::string_view, StmtPtr> idle_;
};

// A transaction that rolls back unless committed. kImmediate takes the write lock at BEGIN
// (waiting up to busy_timeout), so a write never fails half-way on a lock upgrade.
class Transaction {
 public:
  enum class Mode { kDeferred, kImmediate };

  static Result<Transaction> Begin(sqlite3* db, Mode mode, std::string_view op);
  // The same, with BEGIN/COMMIT/ROLLBACK taken from `cache`.
  static Result<Transaction> Begin(StatementCache& cache, Mode mode, std::string_view op);
  ~Transaction();
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Result<void> Commit();

 private:
  Transaction(sqlite3* db, StatementCache* cache, std::string_view op)
      : db_(db), cache_(cache), op_(op) {}

  Result<void> RunControl(const char* sql);

  sqlite3* db_;
  StatementCache* cache_;  // null: BEGIN/COMMIT/ROLLBACK through sqlite3_exec
  std::string_view op_;
  bool open_ = true;
};

}  // namespace mte::store::internal
