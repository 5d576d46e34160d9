#include "store/internal/sqlite.h"

#include <string>
#include <utility>

namespace mte::store::internal {
namespace {

// SQLite copies text and blobs bound with this destructor value before bind returns.
sqlite3_destructor_type Transient() {
  return SQLITE_TRANSIENT;  // NOLINT(cppcoreguidelines-pro-type-cstyle-cast): sqlite3.h macro
}

// Non-null and empty: a null data pointer would bind SQL NULL instead of an empty value.
constexpr std::string_view kEmpty = "";

}  // namespace

Error DbError(sqlite3* db, std::string_view op) {
  std::string detail(op);
  detail += ": ";
  detail += db != nullptr ? sqlite3_errmsg(db) : "out of memory";
  return Error{ErrorKind::kStorage, Errc::kDatabase, std::move(detail)};
}

Result<void> Exec(sqlite3* db, const char* sql, std::string_view op) {
  if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Fail(DbError(db, op));
  }
  return {};
}

namespace {

Result<StmtPtr> PrepareOne(sqlite3* db, std::string_view sql, std::string_view op,
                           unsigned int flags) {
  sqlite3_stmt* raw = nullptr;
  const char* tail = nullptr;
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), flags, &raw, &tail) !=
      SQLITE_OK) {
    return Fail(DbError(db, op));
  }
  StmtPtr stmt(raw);
  // One statement per Prepare: a trailing second statement would silently never run.
  if (stmt == nullptr || tail != sql.data() + sql.size()) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                std::string(op) + ": SQL must be exactly one statement");
  }
  return stmt;
}

}  // namespace

Result<Statement> Statement::Prepare(sqlite3* db, std::string_view sql, std::string_view op) {
  MTE_TRY_ASSIGN(auto stmt, PrepareOne(db, sql, op, 0));
  return Statement(db, std::move(stmt), op, nullptr);
}

Statement::~Statement() {
  if (cache_ != nullptr && stmt_ != nullptr) {
    cache_->Return(std::move(stmt_));
  }
}

Result<Statement> StatementCache::Prepare(std::string_view sql, std::string_view op) {
  if (auto node = idle_.extract(sql); !node.empty()) {
    return Statement(db_, std::move(node.mapped()), op, this);
  }
  MTE_TRY_ASSIGN(auto stmt, PrepareOne(db_, sql, op, SQLITE_PREPARE_PERSISTENT));
  return Statement(db_, std::move(stmt), op, this);
}

Result<void> StatementCache::Run(std::string_view sql, std::string_view op) {
  MTE_TRY_ASSIGN(auto stmt, Prepare(sql, op));
  return stmt.Run();
}

void StatementCache::Return(StmtPtr stmt) {
  // sqlite3_reset repeats the last step's error, which Step() has already reported. Resetting
  // also ends the statement's hold on the read snapshot.
  static_cast<void>(sqlite3_reset(stmt.get()));
  static_cast<void>(sqlite3_clear_bindings(stmt.get()));
  const std::string_view key = sqlite3_sql(stmt.get());
  // Already present: the same SQL was in use twice at once; this copy is finalized.
  idle_.try_emplace(key, std::move(stmt));
}

Result<void> Statement::Check(int rc) {
  if (rc != SQLITE_OK) {
    return Fail(DbError(db_, op_));
  }
  return {};
}

Result<void> Statement::Bind(int index, int64_t value) {
  return Check(sqlite3_bind_int64(stmt_.get(), index, value));
}

Result<void> Statement::Bind(int index, std::string_view value) {
  const char* data = value.empty() ? kEmpty.data() : value.data();
  return Check(
      sqlite3_bind_text64(stmt_.get(), index, data, value.size(), Transient(), SQLITE_UTF8));
}

Result<void> Statement::Bind(int index, ByteSpan value) {
  if (value.empty()) {
    return Check(sqlite3_bind_zeroblob(stmt_.get(), index, 0));
  }
  return Check(sqlite3_bind_blob64(stmt_.get(), index, value.data(), value.size(), Transient()));
}

Result<void> Statement::Bind(int index, std::optional<int64_t> value) {
  if (!value.has_value()) {
    return Check(sqlite3_bind_null(stmt_.get(), index));
  }
  return Bind(index, *value);
}

void Statement::Reset() {
  // sqlite3_reset repeats the last step's error, which Step() has already reported.
  static_cast<void>(sqlite3_reset(stmt_.get()));
  static_cast<void>(sqlite3_clear_bindings(stmt_.get()));
}

Result<bool> Statement::Step() {
  const int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  return Fail(DbError(db_, op_));
}

Result<void> Statement::Run() {
  MTE_TRY_ASSIGN(const bool row, Step());
  if (row) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                std::string(op_) + ": statement unexpectedly returned a row");
  }
  return {};
}

int64_t Statement::Int64(int column) const { return sqlite3_column_int64(stmt_.get(), column); }

bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

std::string Statement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_.get(), column);
  const int size = sqlite3_column_bytes(stmt_.get(), column);
  if (text == nullptr || size <= 0) {
    return {};
  }
  // SQLite returns UTF-8 as unsigned char.
  return {
      reinterpret_cast<const char*>(text),  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast)
      static_cast<size_t>(size)};
}

Bytes Statement::Blob(int column) const {
  const auto* data = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_.get(), column));
  const int size = sqlite3_column_bytes(stmt_.get(), column);
  if (data == nullptr || size <= 0) {
    return {};
  }
  const ByteSpan bytes(data, static_cast<size_t>(size));
  return {bytes.begin(), bytes.end()};
}

Result<Transaction> Transaction::Begin(sqlite3* db, Mode mode, std::string_view op) {
  const char* sql = nullptr;
  switch (mode) {
    case Mode::kDeferred:
      sql = "BEGIN DEFERRED";
      break;
    case Mode::kImmediate:
      sql = "BEGIN IMMEDIATE";
      break;
  }
  MTE_TRY(Exec(db, sql, op));
  return Transaction(db, nullptr, op);
}

Result<Transaction> Transaction::Begin(StatementCache& cache, Mode mode, std::string_view op) {
  Transaction txn(cache.db(), &cache, op);
  txn.open_ = false;
  switch (mode) {
    case Mode::kDeferred:
      MTE_TRY(txn.RunControl("BEGIN DEFERRED"));
      break;
    case Mode::kImmediate:
      MTE_TRY(txn.RunControl("BEGIN IMMEDIATE"));
      break;
  }
  txn.open_ = true;
  return txn;
}

Result<void> Transaction::RunControl(const char* sql) {
  if (cache_ != nullptr) {
    return cache_->Run(sql, op_);
  }
  return Exec(db_, sql, op_);
}

Transaction::Transaction(Transaction&& other) noexcept
    : db_(other.db_),
      cache_(other.cache_),
      op_(other.op_),
      open_(std::exchange(other.open_, false)) {}

Transaction::~Transaction() {
  // A failed statement may already have rolled SQLite back; then there is nothing left to undo.
  if (open_ && sqlite3_get_autocommit(db_) == 0) {
    static_cast<void>(RunControl("ROLLBACK"));
  }
}

Result<void> Transaction::Commit() {
  MTE_TRY(RunControl("COMMIT"));  // on failure the destructor rolls back
  open_ = false;
  return {};
}

}  // namespace mte::store::internal
