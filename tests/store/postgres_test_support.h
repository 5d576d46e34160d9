// A fresh, empty PostgreSQL database for one test, on the server that
// tests/testlib/with_postgres.sh started (MTE_TEST_POSTGRES_URI), dropped when the test ends;
// and a raw connection to it that bypasses the store.
#pragma once

#include <libpq-fe.h>
#include <pqxx/pqxx>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace mte::store::test_support {

inline constexpr std::string_view kPostgresUriVariable = "MTE_TEST_POSTGRES_URI";

// libpq's URI percent-encoding (libpq §34.1.1.2) for a query parameter value.
inline std::string PercentEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : value) {
    const auto octet = static_cast<unsigned char>(c);
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
    if (plain) {
      out += c;
    } else {
      out += '%';
      out += kHex[octet >> 4];
      out += kHex[octet & 0x0f];
    }
  }
  return out;
}

class PostgresTestDatabase {
 public:
  // Creates the database; on failure ok() is false and error() says why.
  PostgresTestDatabase() {
    const char* admin = std::getenv(std::string(kPostgresUriVariable).c_str());
    if (admin == nullptr || *admin == '\0') {
      error_ = std::string(kPostgresUriVariable) +
               " is not set: the PostgreSQL tests need a server; run them under"
               " tests/testlib/with_postgres.sh (ctest runs them as store.postgres)";
      return;
    }
    admin_uri_ = admin;
    char* parse_error = nullptr;
    PQconninfoOption* options = PQconninfoParse(admin, &parse_error);
    if (parse_error != nullptr) PQfreemem(parse_error);
    if (options == nullptr) {
      error_ = std::string(kPostgresUriVariable) + " is not a libpq URI";
      return;
    }
    std::string query;
    for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      const std::string_view keyword = o->keyword;
      if (o->val == nullptr || keyword == "dbname") continue;
      query += query.empty() ? "?" : "&";
      query += std::string(keyword) + "=" + PercentEncode(o->val);
    }
    PQconninfoFree(options);
    static std::atomic<int> counter{0};
    name_ = "mte_test_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
    uri_ = "postgresql:///" + name_ + query;
    try {
      pqxx::connection connection(admin_uri_);
      pqxx::nontransaction admin_tx(connection);
      admin_tx.exec("CREATE DATABASE " + admin_tx.quote_name(name_));
      created_ = true;
    } catch (const std::exception& e) {
      error_ = "CREATE DATABASE " + name_ + ": " + e.what();
    }
  }

  ~PostgresTestDatabase() { Drop(); }

  PostgresTestDatabase(const PostgresTestDatabase&) = delete;
  PostgresTestDatabase& operator=(const PostgresTestDatabase&) = delete;

  bool ok() const { return created_; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  // postgresql:///<name>?host=...&port=...&user=...
  const std::string& uri() const { return uri_; }
  const std::string& admin_uri() const { return admin_uri_; }

  // A connection to the test database that bypasses the store.
  std::unique_ptr<pqxx::connection> Raw() const { return std::make_unique<pqxx::connection>(uri_); }

  // Runs SQL on a raw connection to the test database and returns the first column of the first
  // row as text ("" when there is none); throws on error.
  std::string Scalar(const std::string& sql) const {
    pqxx::connection connection(uri_);
    pqxx::nontransaction tx(connection);
    const pqxx::result rows = tx.exec(sql);
    if (rows.empty() || rows[0].empty() || rows[0][0].is_null()) return {};
    return rows[0][0].as<std::string>();
  }

  // Runs SQL on the server's own database (postgres), e.g. to end the test database's sessions.
  void Admin(const std::string& sql) const {
    pqxx::connection connection(admin_uri_);
    pqxx::nontransaction tx(connection);
    tx.exec(sql);
  }

  // Drops the database, ending every session on it first; a no-op once done.
  void Drop() {
    if (!created_) return;
    created_ = false;
    try {
      pqxx::connection connection(admin_uri_);
      pqxx::nontransaction admin_tx(connection);
      admin_tx.exec("DROP DATABASE IF EXISTS " + admin_tx.quote_name(name_) + " WITH (FORCE)");
    } catch (const std::exception&) {
      // The server goes away with the test run.
    }
  }

 private:
  std::string admin_uri_;
  std::string name_;
  std::string uri_;
  std::string error_;
  bool created_ = false;
};

}  // namespace mte::store::test_support
