// The PostgreSQL implementation of store::Store (docs/architecture.md §5): a small pool of
// connections; each method borrows one and runs as one SERIALIZABLE transaction, retried whole on
// a serialization failure or a deadlock, so that several processes sharing the database see the
// same results as one SQLite file gives. The SQL mirrors sqlite_store.cc statement by statement.
#include <pqxx/binarystring>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/result>
#include <pqxx/subtransaction>
#include <pqxx/transaction>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/internal/postgres.h"
#include "store/internal/rules.h"
#include "store/store.h"

namespace mte::store {
namespace {

using internal::AsciiLower;
using internal::AuditSubject;
using internal::CheckDevice;
using internal::ConflictError;
using internal::IsCertificateKind;
using internal::MalformedError;
using internal::NotFoundError;
using internal::PostgresConnection;
using internal::PostgresError;
using internal::PostgresTarget;
using internal::Quoted;
using internal::StorageError;

// Enough for the MTE roles of one process (the portal's and the MEF's worker threads borrow one
// each for a few milliseconds); more threads wait for a free connection.
constexpr int kPoolSize = 4;
// A method's transaction runs at most this often; the retries wait 0..1, 0..2, ... 0..50 ms.
constexpr int kMaxAttempts = 10;
constexpr std::chrono::microseconds kFirstBackoff{1000};
constexpr std::chrono::microseconds kMaxBackoff{50'000};
// As the SQLite store's busy timeout: a lock held elsewhere fails the method after this long
// (SQLSTATE 55P03) instead of blocking it without end.
constexpr const char* kSetLockTimeout = "SET lock_timeout = '5s'";

// --- statement parameters -----------------------------------------------------------------------

// What exec_params sends for each argument type: text as text, blobs as binary (an embedded NUL
// survives), integers and booleans as their text form. Every other type is refused at compile
// time; in particular an `int` is ambiguous, so every integer is an int64_t at the call.
std::string Param(std::string_view value) { return std::string(value); }
pqxx::binarystring Param(ByteSpan value) { return {value.data(), value.size()}; }
int64_t Param(int64_t value) { return value; }
bool Param(bool value) { return value; }
std::nullptr_t Param(std::nullptr_t) { return nullptr; }

// The length of the well-formed UTF-8 sequence (RFC 3629 §4) at text[at], 0 if there is none.
size_t Utf8SequenceAt(std::string_view text, size_t at) {
  const auto octet = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = octet(at);
  if (lead < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80;   // the range of the second octet
  unsigned char high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;   // no overlong forms
    if (lead == 0xed) high = 0x9f;  // no surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (at + length > text.size() || octet(at + 1) < low || octet(at + 1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if ((octet(at + i) & 0xc0) != 0x80) return 0;
  }
  return length;
}

// Text a PostgreSQL database can hold as given: UTF-8 (what a UTF8 database demands) without
// NUL (libpq sends text parameters NUL-terminated, so a NUL would cut the value short).
bool IsStorableText(std::string_view text) {
  for (size_t at = 0; at < text.size();) {
    const size_t length = Utf8SequenceAt(text, at);
    if (length == 0 || text[at] == '\0') return false;
    at += length;
  }
  return true;
}

template <class T>
bool IsStorable(const T& value) {
  if constexpr (!std::is_same_v<T, std::nullptr_t> &&
                std::is_convertible_v<const T&, std::string_view>) {
    return IsStorableText(std::string_view(value));
  } else {
    return true;
  }
}

// At most `max` octets of `text`, cut at a character boundary, with every octet that is not part
// of a UTF-8 character and every NUL replaced by '?': for diagnostic text from elsewhere.
std::string StorableText(std::string_view text, size_t max) {
  std::string out;
  for (size_t at = 0; at < text.size();) {
    const size_t length = Utf8SequenceAt(text, at);
    if (length == 0 || text[at] == '\0') {
      if (out.size() + 1 > max) break;
      out += '?';
      ++at;
      continue;
    }
    if (out.size() + length > max) break;
    out.append(text.substr(at, length));
    at += length;
  }
  return out;
}

// One method's transaction, as its body sees it. `op` names the method in error details.
class Tx {
 public:
  Tx(pqxx::dbtransaction& txn, std::string_view op) : txn_(txn), op_(op) {}

  // Runs one parameterised statement ($1, $2, ... bound to `args` in order).
  template <class... Args>
  Result<pqxx::result> Exec(const char* sql, const Args&... args) {
    if (!(IsStorable(args) && ...)) {
      return Fail(MalformedError(std::string(op_) +
                                 ": text is not UTF-8 or contains a NUL character"));
    }
    return txn_.exec_params(sql, Param(args)...);
  }

  pqxx::dbtransaction& txn() { return txn_; }
  std::string_view op() const { return op_; }

 private:
  pqxx::dbtransaction& txn_;
  std::string_view op_;
};

// --- row readers --------------------------------------------------------------------------------

int64_t Int(const pqxx::field& field) { return field.as<int64_t>(); }

bool Bool(const pqxx::field& field) { return field.as<bool>(); }

std::string Text(const pqxx::field& field) {
  return field.is_null() ? std::string() : field.as<std::string>();
}

Bytes Blob(const pqxx::field& field) {
  if (field.is_null()) return {};
  const pqxx::binarystring bytes(field);
  return {bytes.data(), bytes.data() + bytes.size()};
}

// Columns: device_id, claim_hash, created_at.
DeviceRecord ReadDevice(const pqxx::row& row) {
  DeviceRecord device;
  device.device_id = Text(row[0]);
  device.claim_hash = Text(row[1]);
  device.created_at = Int(row[2]);
  return device;
}

constexpr const char* kSelectDeviceCas =
    "SELECT name, cert_pem, cert_sha256, ocsp_url, crl_file, max_chain_depth, ocsp_fail_open,"
    " created_at FROM device_cas ORDER BY name COLLATE \"C\"";

DeviceCaRecord ReadDeviceCa(const pqxx::row& row) {
  DeviceCaRecord ca;
  ca.name = Text(row[0]);
  ca.cert_pem = Text(row[1]);
  ca.cert_sha256 = Text(row[2]);
  ca.ocsp_url = Text(row[3]);
  ca.crl_file = Text(row[4]);
  ca.max_chain_depth = row[5].as<int>();  // CHECKed to 0..8
  ca.ocsp_fail_open = Bool(row[6]);
  ca.created_at = Int(row[7]);
  return ca;
}

// Columns: id, name, password_hash, created_at, is_admin (from `first`).
StakeholderRecord ReadStakeholder(const pqxx::row& row, int first = 0) {
  StakeholderRecord stakeholder;
  stakeholder.id = Int(row[first]);
  stakeholder.name = Text(row[first + 1]);
  stakeholder.password_hash = Text(row[first + 2]);
  stakeholder.created_at = Int(row[first + 3]);
  stakeholder.is_admin = Bool(row[first + 4]);
  return stakeholder;
}

// The enrolee queries share one column list, in the order ReadEnrolee expects.
#define MTE_SELECT_ENROLEE                                                                     \
  "SELECT e.id, e.stakeholder_id, s.name, e.device_id, e.label, e.state, e.generation, e.rspf," \
  " e.ke_id, e.ke_sealed, e.ke_expires_at, e.maf_delivery, e.created_at, e.updated_at,"         \
  " e.enrolled_at, e.device_info, coalesce((SELECT max(t.expires_at) FROM tokens t"             \
  " WHERE t.enrolee_id = e.id AND t.state = 'active'), 0)"                                     \
  " FROM enrolees e JOIN stakeholders s ON s.id = e.stakeholder_id"
constexpr const char* kSelectEnroleeById = MTE_SELECT_ENROLEE " WHERE e.id = $1";
constexpr const char* kSelectEnroleeByDevice = MTE_SELECT_ENROLEE " WHERE e.device_id = $1";
constexpr const char* kSelectAllEnrolees = MTE_SELECT_ENROLEE " ORDER BY e.id";
constexpr const char* kSelectEnroleesOfStakeholder =
    MTE_SELECT_ENROLEE " WHERE e.stakeholder_id = $1 ORDER BY e.id";
#undef MTE_SELECT_ENROLEE

Result<EnroleeRecord> ReadEnrolee(const pqxx::row& row) {
  EnroleeRecord enrolee;
  enrolee.id = Int(row[0]);
  enrolee.stakeholder_id = Int(row[1]);
  enrolee.stakeholder_name = Text(row[2]);
  enrolee.device_id = Text(row[3]);  // NULL for a Flow B entry without a device
  enrolee.label = Text(row[4]);
  MTE_TRY_ASSIGN(enrolee.state, internal::ParseEnroleeState(Text(row[5])));
  enrolee.generation = Int(row[6]);
  enrolee.rspf = Text(row[7]);
  enrolee.ke_id = Text(row[8]);
  enrolee.ke_sealed = Blob(row[9]);
  enrolee.ke_expires_at = Int(row[10]);
  MTE_TRY_ASSIGN(enrolee.maf_delivery, internal::ParseDeliveryStatus(Text(row[11])));
  enrolee.created_at = Int(row[12]);
  enrolee.updated_at = Int(row[13]);
  enrolee.enrolled_at = Int(row[14]);
  enrolee.device_info = Text(row[15]);
  enrolee.token_expires_at = Int(row[16]);
  return enrolee;
}

#define MTE_OUTBOX_COLUMNS                                                                  \
  "id, enrolee_id, generation, target, payload_sealed, attempts, next_attempt_at, delivered_at," \
  " last_error"
constexpr const char* kSelectOutbox = "SELECT " MTE_OUTBOX_COLUMNS " FROM outbox WHERE id = $1";
constexpr const char* kSelectDueOutbox =
    "SELECT " MTE_OUTBOX_COLUMNS
    " FROM outbox WHERE delivered_at = 0 AND next_attempt_at <= $1 ORDER BY id LIMIT $2";
// The row locks carry the claim: a row another claim has locked is skipped, and a row another
// claim has updated since this statement's snapshot is re-checked against the WHERE clause
// (PostgreSQL §13.2.1), so it is no longer due.
constexpr const char* kClaimDueOutbox =
    "UPDATE outbox SET next_attempt_at = $3 WHERE id IN (SELECT id FROM outbox"
    " WHERE delivered_at = 0 AND next_attempt_at <= $1 ORDER BY id LIMIT $2"
    " FOR UPDATE SKIP LOCKED) RETURNING " MTE_OUTBOX_COLUMNS;
#undef MTE_OUTBOX_COLUMNS

OutboxItem ReadOutbox(const pqxx::row& row) {
  OutboxItem item;
  item.id = Int(row[0]);
  item.enrolee_id = Int(row[1]);
  item.generation = Int(row[2]);
  item.target = Text(row[3]);
  item.payload_sealed = Blob(row[4]);
  item.attempts = internal::ClampAttempts(Int(row[5]));
  item.next_attempt_at = Int(row[6]);
  item.delivered_at = Int(row[7]);
  item.last_error = Text(row[8]);
  return item;
}

std::vector<OutboxItem> ReadOutboxItems(const pqxx::result& rows) {
  std::vector<OutboxItem> items;
  items.reserve(rows.size());
  for (const pqxx::row& row : rows) items.push_back(ReadOutbox(row));
  return items;
}

// KmIDs compare ignoring ASCII case: the expression of the unique index maf_credentials_by_km_id.
constexpr const char* kSelectMafCredentialByKmId =
    "SELECT km_id, km_sealed, enrolee_id, generation, expires_at, received_at"
    " FROM maf_credentials WHERE lower(km_id COLLATE \"C\") = lower($1::text COLLATE \"C\")";
constexpr const char* kSelectAllMafCredentials =
    "SELECT km_id, km_sealed, enrolee_id, generation, expires_at, received_at"
    " FROM maf_credentials ORDER BY id";

MafCredential ReadMafCredential(const pqxx::row& row) {
  MafCredential credential;
  credential.km_id = Text(row[0]);
  credential.km_sealed = Blob(row[1]);
  credential.enrolee_id = Int(row[2]);
  credential.generation = Int(row[3]);
  credential.expires_at = Int(row[4]);
  credential.received_at = Int(row[5]);
  return credential;
}

// Columns: id, stakeholder_id, name, created_at, last_used_at, expires_at.
ApiTokenRecord ReadApiToken(const pqxx::row& row) {
  ApiTokenRecord token;
  token.id = Int(row[0]);
  token.stakeholder_id = Int(row[1]);
  token.name = Text(row[2]);
  token.created_at = Int(row[3]);
  token.last_used_at = Int(row[4]);
  token.expires_at = Int(row[5]);
  return token;
}

// Columns: count, window_start, locked_until, last_failure, locks (from `first`).
FailureRecord ReadFailures(const pqxx::row& row, int first = 0) {
  FailureRecord r;
  r.count = internal::ClampAttempts(Int(row[first]));
  r.window_start = Int(row[first + 1]);
  r.locked_until = Int(row[first + 2]);
  r.last_failure = Int(row[first + 3]);
  r.locks = internal::ClampAttempts(Int(row[first + 4]));
  return r;
}

// superseded: a newer token exists for the same enrolee.
#define MTE_SELECT_TOKEN                                                                \
  "SELECT id, enrolee_id, state, created_at, expires_at, spent_at,"                     \
  " EXISTS (SELECT 1 FROM tokens AS newer"                                              \
  " WHERE newer.enrolee_id = tokens.enrolee_id AND newer.id > tokens.id) FROM tokens"
constexpr const char* kSelectTokenByHash = MTE_SELECT_TOKEN " WHERE token_hash = $1";
constexpr const char* kSelectTokenById = MTE_SELECT_TOKEN " WHERE id = $1";
#undef MTE_SELECT_TOKEN

Result<TokenRecord> ReadToken(const pqxx::row& row) {
  TokenRecord token;
  token.id = Int(row[0]);
  token.enrolee_id = Int(row[1]);
  MTE_TRY_ASSIGN(token.state, internal::ParseTokenState(Text(row[2])));
  token.created_at = Int(row[3]);
  token.expires_at = Int(row[4]);
  token.spent_at = Int(row[5]);
  token.superseded = Bool(row[6]);
  return token;
}

// --- the connection pool ------------------------------------------------------------------------

// Whether an idle connection is still a live session. An idle session has nothing to read (the
// store listens for no notifications): anything readable is the server's last words (FATAL, then
// end of file) or an end of file.
bool QuietWhileIdle(pqxx::connection& connection) {
  if (!connection.is_open()) return false;
  pollfd idle{connection.sock(), POLLIN, 0};
  return ::poll(&idle, 1, 0) == 0;
}

// Up to kPoolSize connections, opened on demand. A caller borrows one for one transaction; a
// connection that broke is closed instead of returned, and the next borrower opens a fresh one.
class Pool {
 public:
  class Lease {
   public:
    Lease(Pool& pool, std::unique_ptr<PostgresConnection> connection)
        : pool_(&pool), connection_(std::move(connection)) {}
    ~Lease() {
      if (pool_ != nullptr) pool_->Return(std::move(connection_));
    }
    Lease(Lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), connection_(std::move(other.connection_)) {}
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    pqxx::connection& get() { return connection_->get(); }
    // Closes the connection rather than give it back: it broke, or its state is unknown.
    void Discard() { connection_.reset(); }

   private:
    Pool* pool_;
    std::unique_ptr<PostgresConnection> connection_;
  };

  explicit Pool(PostgresTarget target) : target_(std::move(target)) {}

  // Waits for an idle connection or room for a new one; kStorage/kDatabase when a new one
  // cannot be opened.
  Result<Lease> Acquire() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return !idle_.empty() || open_ < kPoolSize; });
      if (idle_.empty()) break;
      std::unique_ptr<PostgresConnection> connection = std::move(idle_.back());
      idle_.pop_back();
      if (QuietWhileIdle(connection->get())) return Lease(*this, std::move(connection));
      // The server ended the session while it was idle (a restart, an administrator): close it
      // and look again. Found here, it costs no failed attempt (and libpqxx 6.4 leaks a result
      // when its first statement meets a closed session).
      --open_;
      lock.unlock();
      connection.reset();
      lock.lock();
    }
    ++open_;
    lock.unlock();
    auto opened = Open();
    if (!opened.has_value()) {
      lock.lock();
      --open_;
      cv_.notify_one();
      return Fail(std::move(opened).error());
    }
    return Lease(*this, std::move(*opened));
  }

  // Opens and sets up a connection outside the pool (for the migrations).
  Result<std::unique_ptr<PostgresConnection>> Open() {
    MTE_TRY_ASSIGN(auto connection, PostgresConnection::Open(target_));
    try {
      pqxx::nontransaction session(connection->get());
      session.exec(kSetLockTimeout);
      // Commits must be durable (PostgreSQL §20.5.1): a server, database or role configured with
      // synchronous_commit = off is overridden for this session; any other value flushes the
      // local WAL at commit.
      const pqxx::row sync = session.exec1("SELECT current_setting('synchronous_commit')");
      if (Text(sync[0]) == "off") session.exec("SET synchronous_commit = on");
    } catch (const std::exception& e) {
      return Fail(PostgresError("PostgreSQL: set up the connection to " + target_.where, e,
                                target_.secrets));
    }
    return connection;
  }

  const PostgresTarget& target() const { return target_; }

 private:
  void Return(std::unique_ptr<PostgresConnection> connection) {
    if (connection != nullptr && !connection->get().is_open()) connection.reset();
    std::lock_guard lock(mu_);
    if (connection != nullptr) {
      idle_.push_back(std::move(connection));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

  const PostgresTarget target_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<PostgresConnection>> idle_;  // guarded by mu_
  int open_ = 0;  // idle and borrowed connections; guarded by mu_
};

// Waits a random time below a bound that doubles with each attempt, so that transactions that
// conflicted do not meet again at once.
void Backoff(int attempt) {
  thread_local std::minstd_rand rng(std::random_device{}());
  const auto bound = std::min(kMaxBackoff, kFirstBackoff * (int64_t{1} << std::min(attempt, 6)));
  std::uniform_int_distribution<int64_t> pick(0, bound.count());
  std::this_thread::sleep_for(std::chrono::microseconds(pick(rng)));
}

// --- the store ----------------------------------------------------------------------------------

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(PostgresTarget target) : pool_(std::move(target)) {}

  Result<void> Migrate() {
    MTE_TRY_ASSIGN(auto connection, pool_.Open());
    return internal::ApplyPostgresMigrations(connection->get(),
                                             internal::BuiltInPostgresMigrations());
  }

  Result<void> ImportDevices(const std::vector<DeviceRecord>& devices,
                             const AuditEntry& audit) override;
  Result<std::optional<DeviceRecord>> FindDevice(std::string_view device_id) override;
  Result<std::vector<DeviceRecord>> ListDevices() override;
  Result<std::optional<DeviceRecord>> FindDeviceByCredential(CredentialKind kind,
                                                             std::string_view id) override;

  Result<void> AddDeviceCa(const DeviceCaRecord& ca, const AuditEntry& audit) override;
  Result<std::vector<DeviceCaRecord>> ListDeviceCas() override;
  Result<void> RemoveDeviceCa(std::string_view name, const AuditEntry& audit) override;

  Result<int64_t> AddStakeholder(std::string_view name, std::string_view password_hash, int64_t now,
                                 const AuditEntry& audit) override;
  Result<std::optional<StakeholderRecord>> FindStakeholder(std::string_view name) override;
  Result<std::vector<StakeholderRecord>> ListStakeholders() override;
  Result<void> SetStakeholderPassword(std::string_view name, std::string_view password_hash,
                                      const AuditEntry& audit) override;
  Result<void> RemoveStakeholder(std::string_view name, const AuditEntry& audit) override;
  Result<void> SetStakeholderAdmin(std::string_view name, bool is_admin,
                                   const AuditEntry& audit) override;
  Result<void> AddSession(ByteSpan token_hash, int64_t stakeholder_id, const SessionSpec& spec,
                          const AuditEntry& audit) override;
  Result<std::optional<StakeholderRecord>> FindSession(ByteSpan token_hash, int64_t now) override;
  Result<bool> DeleteSession(ByteSpan token_hash, const AuditEntry& audit) override;

  Result<ApiTokenRecord> AddApiToken(int64_t stakeholder_id, std::string_view name,
                                     ByteSpan token_hash, int64_t now, int64_t expires_at,
                                     const AuditEntry& audit) override;
  Result<std::vector<ApiTokenRecord>> ListApiTokens(int64_t stakeholder_id) override;
  Result<void> RevokeApiToken(int64_t stakeholder_id, int64_t token_id,
                              const AuditEntry& audit) override;
  Result<std::optional<StakeholderRecord>> FindApiToken(ByteSpan token_hash, int64_t now) override;

  Result<std::optional<TotpRecord>> FindTotp(int64_t stakeholder_id) override;
  Result<void> BeginTotp(int64_t stakeholder_id, ByteSpan secret_sealed, int64_t now,
                         const AuditEntry& audit) override;
  Result<void> ConfirmTotp(int64_t stakeholder_id, int64_t step,
                           const std::vector<Bytes>& code_hashes,
                           const AuditEntry& audit) override;
  Result<bool> UseTotpStep(int64_t stakeholder_id, int64_t step) override;
  Result<bool> UseRecoveryCode(int64_t stakeholder_id, ByteSpan code_hash,
                               const AuditEntry& audit) override;
  Result<void> ReplaceRecoveryCodes(int64_t stakeholder_id, const std::vector<Bytes>& code_hashes,
                                    const AuditEntry& audit) override;
  Result<bool> RemoveTotp(int64_t stakeholder_id, const AuditEntry& audit) override;

  Result<std::optional<FailureRecord>> FindFailures(std::string_view key) override;
  Result<void> UpdateFailures(std::string_view key,
                              const std::function<void(FailureRecord&)>& update, int64_t now,
                              int64_t stale_before) override;
  Result<int> ClearFailures(const std::vector<std::string>& keys,
                            const AuditEntry& audit) override;
  Result<std::vector<FailureKeyRecord>> ListFailures() override;

  Result<EnroleeRecord> AddEnrolee(int64_t stakeholder_id, std::string_view device_id,
                                   std::string_view label, int64_t now,
                                   const AuditEntry& audit) override;
  Result<std::optional<EnroleeRecord>> GetEnrolee(int64_t id) override;
  Result<std::optional<EnroleeRecord>> FindEnroleeByDevice(std::string_view device_id) override;
  Result<EnroleeRecord> AddEnroleeEntry(int64_t stakeholder_id,
                                        std::optional<std::string_view> device_id,
                                        std::string_view label, std::string_view device_info,
                                        int64_t now, const AuditEntry& audit) override;
  Result<std::vector<EnroleeRecord>> ListEnrolees(std::optional<int64_t> stakeholder_id) override;
  Result<EnroleeRecord> CommitEnrolment(const EnrolmentCommit& commit) override;
  Result<bool> RevokeEnrolee(int64_t enrolee_id, int64_t expected_generation,
                             const OutboxItem& retire, int64_t now,
                             const AuditEntry& audit) override;
  Result<void> DeleteEnrolee(int64_t enrolee_id, const AuditEntry& audit) override;

  Result<TokenRecord> IssueToken(int64_t enrolee_id, ByteSpan token_hash, int64_t now,
                                 int64_t expires_at, const AuditEntry& audit) override;
  Result<std::optional<TokenRecord>> FindToken(ByteSpan token_hash) override;

  Result<std::vector<OutboxItem>> DueOutbox(int64_t now, int limit) override;
  Result<std::vector<OutboxItem>> ClaimDueOutbox(int64_t now, int limit,
                                                 int64_t lease_until) override;
  Result<OutboxStatus> GetOutboxStatus() override;
  Result<void> MarkDelivered(const std::vector<int64_t>& outbox_ids, int64_t now) override;
  Result<void> MarkAttemptFailed(int64_t outbox_id, int64_t next_attempt_at,
                                 std::string_view error) override;
  Result<std::optional<OutboxItem>> GetOutboxItem(int64_t outbox_id) override;

  Result<bool> PutMafCredential(const MafCredential& credential, const AuditEntry& audit) override;
  Result<bool> RetireMafCredentials(int64_t enrolee_id, int64_t generation,
                                    const AuditEntry& audit) override;
  Result<std::vector<Result<bool>>> ApplyMafDeliveries(
      const std::vector<MafDelivery>& deliveries) override;
  Result<std::optional<MafCredential>> FindMafCredential(std::string_view km_id) override;
  Result<std::vector<MafCredential>> ListMafCredentials() override;

  Result<void> Audit(const AuditEntry& entry) override;
  Result<std::vector<AuditEntry>> ListAudit() override;

 private:
  // How a method's transaction runs.
  enum class Kind {
    kRead,          // SERIALIZABLE READ ONLY
    kWrite,         // SERIALIZABLE, durable commit
    kRelaxedWrite,  // SERIALIZABLE, commit not waiting for the WAL flush (see Write)
    kClaim,         // READ COMMITTED: one statement whose row locks decide (ClaimDueOutbox)
  };

  // Runs `body(Tx&)` as one transaction of `kind` on a borrowed connection and commits it, also
  // when the body returns an error: its writes are undone first (it runs inside a savepoint), and
  // the commit then checks that what it read was consistent, as SERIALIZABLE promises only for
  // committed transactions (PostgreSQL §13.2.3). The whole body runs again, on a fresh snapshot,
  // after a serialization failure or a deadlock (SQLSTATE 40001, 40P01) and after a connection
  // that broke before the commit (the server rolled that transaction back), at most kMaxAttempts
  // times. Every exception ends here: libpqxx's are mapped to Errors without secrets, unique
  // violations to kConflict and foreign key violations to kNotFound, as the SQLite store reports
  // what its checks find.
  template <class Fn>
  auto Run(std::string_view op, Kind kind, Fn&& body) -> decltype(body(std::declval<Tx&>())) {
    const std::vector<std::string>& secrets = pool_.target().secrets;
    std::optional<Error> last;
    for (int attempt = 1; attempt <= kMaxAttempts; ++attempt) {
      MTE_TRY_ASSIGN(auto lease, pool_.Acquire());
      try {
        switch (kind) {
          case Kind::kRead:
            return Attempt<pqxx::transaction<pqxx::serializable, pqxx::read_only>>(
                lease.get(), op, kind, body);
          case Kind::kWrite:
          case Kind::kRelaxedWrite:
            return Attempt<pqxx::transaction<pqxx::serializable>>(lease.get(), op, kind, body);
          case Kind::kClaim:
            return Attempt<pqxx::transaction<pqxx::read_committed>>(lease.get(), op, kind, body);
        }
        return Fail(ErrorKind::kInternal, Errc::kInvariant, std::string(op) + ": unknown kind");
      } catch (const pqxx::in_doubt_error& e) {
        lease.Discard();
        return Fail(PostgresError(op, e, secrets));
      } catch (const pqxx::broken_connection& e) {
        lease.Discard();
        last = PostgresError(op, e, secrets);
      } catch (const pqxx::serialization_failure& e) {
        last = PostgresError(op, e, secrets);
        Backoff(attempt);
      } catch (const pqxx::deadlock_detected& e) {
        last = PostgresError(op, e, secrets);
        Backoff(attempt);
      } catch (const pqxx::unique_violation& e) {
        return Fail(ConflictError(PostgresError(op, e, secrets).detail));
      } catch (const pqxx::foreign_key_violation& e) {
        return Fail(NotFoundError(PostgresError(op, e, secrets).detail));
      } catch (const std::exception& e) {
        if (!lease.get().is_open()) lease.Discard();
        return Fail(PostgresError(op, e, secrets));
      }
    }
    Error error = last.value_or(StorageError(std::string(op)));
    error.detail += " (gave up after " + std::to_string(kMaxAttempts) + " attempts)";
    return Fail(std::move(error));
  }

  template <class Txn, class Fn>
  static auto Attempt(pqxx::connection& connection, std::string_view op, Kind kind, Fn& body)
      -> decltype(body(std::declval<Tx&>())) {
    using R = decltype(body(std::declval<Tx&>()));
    Txn txn(connection);
    if (kind == Kind::kRelaxedWrite) txn.exec("SET LOCAL synchronous_commit = off");
    Tx tx(txn, op);
    if (kind == Kind::kRead) {
      R result = body(tx);  // nothing to undo
      txn.commit();
      return result;
    }
    // A statement error ends the whole transaction (and Run's retry decides), so a plain
    // savepoint serves; the commit releases it.
    txn.exec("SAVEPOINT mte_body");
    R result = body(tx);
    if (!result.has_value()) txn.exec("ROLLBACK TO SAVEPOINT mte_body");
    txn.commit();
    return result;
  }

  // A durable write. kRelaxed (MarkDelivered, the last-use marks of sessions and API tokens,
  // failure counts; as in the SQLite store) commits with synchronous_commit off for this
  // transaction only: atomic and ordered, but a crash of the server may lose the last of them
  // (PostgreSQL §30.4), never half of one.
  enum class Durability { kDurable, kRelaxed };

  template <class Fn>
  auto Write(std::string_view op, Fn&& body, Durability durability = Durability::kDurable)
      -> decltype(body(std::declval<Tx&>())) {
    return Run(op, durability == Durability::kRelaxed ? Kind::kRelaxedWrite : Kind::kWrite,
               std::forward<Fn>(body));
  }

  template <class Fn>
  auto Read(std::string_view op, Fn&& body) -> decltype(body(std::declval<Tx&>())) {
    return Run(op, Kind::kRead, std::forward<Fn>(body));
  }

  // The rows of one read-only statement, each through `reader`.
  template <class Row, class Reader, class... Args>
  Result<std::vector<Row>> ReadAll(std::string_view op, const char* sql, Reader&& reader,
                                   const Args&... args) {
    return Read(op, [&](Tx& tx) -> Result<std::vector<Row>> {
      MTE_TRY_ASSIGN(const pqxx::result rows, tx.Exec(sql, args...));
      std::vector<Row> out;
      out.reserve(rows.size());
      for (const pqxx::row& row : rows) out.push_back(reader(row));
      return out;
    });
  }

  template <class Row, class Reader, class... Args>
  Result<std::optional<Row>> FindOne(std::string_view op, const char* sql, Reader&& reader,
                                     const Args&... args) {
    return Read(op, [&](Tx& tx) -> Result<std::optional<Row>> {
      MTE_TRY_ASSIGN(const pqxx::result rows, tx.Exec(sql, args...));
      if (rows.empty()) return std::optional<Row>();
      return std::optional<Row>(reader(rows[0]));
    });
  }

  // A session's or API token's stakeholder by `select_sql` ($1 hash, $2 now; columns as
  // ReadStakeholder, then last_used_at), recording the use with `touch_sql` ($1 hash, $2 now) to
  // kLastUseResolutionSeconds.
  Result<std::optional<StakeholderRecord>> FindBearer(std::string_view op, const char* select_sql,
                                                      const char* touch_sql, ByteSpan token_hash,
                                                      int64_t now);

  // The following run inside the transaction of `tx`.
  static Result<bool> Exists(Tx& tx, const char* sql, int64_t key);
  static Result<std::optional<DeviceRecord>> LoadDevice(Tx& tx, std::string_view device_id);
  static Result<std::vector<std::string>> LoadCredentialIds(Tx& tx, int64_t enrolee_id);
  template <class Key>
  static Result<std::optional<EnroleeRecord>> LoadEnrolee(Tx& tx, const char* sql, const Key& key);
  static Result<EnroleeRecord> LoadEnroleeAfterWrite(Tx& tx, int64_t id, std::string_view what);
  static Result<void> PutRecoveryCodes(Tx& tx, int64_t stakeholder_id,
                                       const std::vector<Bytes>& code_hashes);
  Result<EnroleeRecord> InsertEnrolee(std::string_view op, int64_t stakeholder_id,
                                      std::optional<std::string_view> device_id,
                                      std::string_view label, std::string_view device_info,
                                      int64_t now, const AuditEntry& audit);
  static Result<int64_t> NewestMafGeneration(Tx& tx, int64_t enrolee_id);
  // The bodies of PutMafCredential and RetireMafCredentials.
  static Result<bool> PutMafIn(Tx& tx, const MafCredential& credential, const AuditEntry& audit);
  static Result<bool> RetireMafIn(Tx& tx, int64_t enrolee_id, int64_t generation,
                                  const AuditEntry& audit);
  // Appends `entry` when its action is set; "{id}" in its subject becomes `new_id`.
  static Result<void> AppendAudit(Tx& tx, const AuditEntry& entry, int64_t new_id = 0);

  Pool pool_;
  // This process's MAF deliveries are applied one transaction at a time: concurrent batches
  // (the MAF answers deliveries from several MEF processes at once) would abort each other as
  // SERIALIZABLE conflicts on maf_credentials until the retries gave up; each is one commit.
  std::mutex maf_apply_mu_;
};

// --- helpers inside a transaction ---------------------------------------------------------------

Result<bool> PostgresStore::Exists(Tx& tx, const char* sql, int64_t key) {
  MTE_TRY_ASSIGN(const pqxx::result rows, tx.Exec(sql, key));
  return !rows.empty();
}

Result<std::optional<DeviceRecord>> PostgresStore::LoadDevice(Tx& tx, std::string_view device_id) {
  MTE_TRY_ASSIGN(const pqxx::result found,
                 tx.Exec("SELECT device_id, claim_hash, created_at FROM devices"
                         " WHERE device_id = $1",
                         device_id));
  if (found.empty()) return std::optional<DeviceRecord>();
  DeviceRecord device = ReadDevice(found[0]);
  // Ordered as DeviceRecord::credentials promises: by kind in enum order, then by id (octets).
  MTE_TRY_ASSIGN(const pqxx::result credentials,
                 tx.Exec("SELECT kind, credential_id, secret_sealed FROM device_credentials"
                         " WHERE device_id = $1 ORDER BY CASE kind WHEN 'kpm' THEN 0"
                         " WHEN 'cert-sha256' THEN 1 ELSE 2 END, credential_id COLLATE \"C\"",
                         device_id));
  for (const pqxx::row& row : credentials) {
    const std::string kind_text = Text(row[0]);
    const std::optional<CredentialKind> kind = ParseCredentialKind(kind_text);
    if (!kind.has_value()) {
      return Fail(StorageError(std::string(tx.op()) + ": unknown credential kind " +
                               Quoted(kind_text)));
    }
    device.credentials.push_back({*kind, Text(row[1]), Blob(row[2])});
  }
  return std::optional<DeviceRecord>(std::move(device));
}

Result<std::vector<std::string>> PostgresStore::LoadCredentialIds(Tx& tx, int64_t enrolee_id) {
  MTE_TRY_ASSIGN(const pqxx::result rows,
                 tx.Exec("SELECT credential_id FROM enrolee_credential_ids"
                         " WHERE enrolee_id = $1 ORDER BY position",
                         enrolee_id));
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  for (const pqxx::row& row : rows) ids.push_back(Text(row[0]));
  return ids;
}

template <class Key>
Result<std::optional<EnroleeRecord>> PostgresStore::LoadEnrolee(Tx& tx, const char* sql,
                                                                const Key& key) {
  MTE_TRY_ASSIGN(const pqxx::result rows, tx.Exec(sql, key));
  if (rows.empty()) return std::optional<EnroleeRecord>();
  MTE_TRY_ASSIGN(EnroleeRecord enrolee, ReadEnrolee(rows[0]));
  MTE_TRY_ASSIGN(enrolee.credential_ids, LoadCredentialIds(tx, enrolee.id));
  return std::optional<EnroleeRecord>(std::move(enrolee));
}

Result<EnroleeRecord> PostgresStore::LoadEnroleeAfterWrite(Tx& tx, int64_t id,
                                                           std::string_view what) {
  MTE_TRY_ASSIGN(auto enrolee, LoadEnrolee(tx, kSelectEnroleeById, id));
  if (!enrolee.has_value()) {
    return Fail(StorageError(std::string(tx.op()) + ": enrolee " + std::to_string(id) +
                             " vanished " + std::string(what)));
  }
  return std::move(*enrolee);
}

Result<void> PostgresStore::AppendAudit(Tx& tx, const AuditEntry& entry, int64_t new_id) {
  if (entry.action.empty()) return {};
  MTE_TRY(tx.Exec("INSERT INTO audit (at, actor, action, subject, detail)"
                  " VALUES ($1, $2, $3, $4, $5)",
                  entry.at, entry.actor, entry.action, AuditSubject(entry, new_id),
                  entry.detail));
  return {};
}

// --- devices ------------------------------------------------------------------------------------

Result<void> PostgresStore::ImportDevices(const std::vector<DeviceRecord>& devices,
                                          const AuditEntry& audit) {
  constexpr std::string_view kOp = "import devices";
  for (const DeviceRecord& device : devices) {
    MTE_TRY(CheckDevice(kOp, device));
  }
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    // Rows inserted earlier in this transaction are visible to the lookups, so one check covers
    // duplicates within the batch and against the store.
    for (const DeviceRecord& device : devices) {
      MTE_TRY_ASSIGN(const pqxx::result duplicate,
                     tx.Exec("SELECT 1 FROM devices WHERE device_id = $1", device.device_id));
      if (!duplicate.empty()) {
        return Fail(ConflictError(std::string(kOp) + ": duplicate device_id " +
                                  Quoted(device.device_id)));
      }
      MTE_TRY(tx.Exec("INSERT INTO devices (device_id, claim_hash, created_at)"
                      " VALUES ($1, $2, $3)",
                      device.device_id, device.claim_hash, device.created_at));
      for (const DeviceCredential& credential : device.credentials) {
        const std::string_view kind = ToString(credential.kind);
        MTE_TRY_ASSIGN(const pqxx::result taken,
                       tx.Exec("SELECT 1 FROM device_credentials"
                               " WHERE kind = $1 AND credential_id = $2",
                               kind, credential.id));
        if (!taken.empty()) {
          return Fail(ConflictError(std::string(kOp) + ": duplicate " + std::string(kind) +
                                    " credential " + Quoted(credential.id)));
        }
        constexpr const char* kInsert =
            "INSERT INTO device_credentials (device_id, kind, credential_id, secret_sealed)"
            " VALUES ($1, $2, $3, $4)";
        if (credential.kind == CredentialKind::kKpm) {
          MTE_TRY(tx.Exec(kInsert, device.device_id, kind, credential.id,
                          ByteSpan(credential.secret_sealed)));
        } else {
          MTE_TRY(tx.Exec(kInsert, device.device_id, kind, credential.id, nullptr));
        }
      }
    }
    return AppendAudit(tx, audit);
  });
}

Result<std::optional<DeviceRecord>> PostgresStore::FindDevice(std::string_view device_id) {
  return Read("find device", [&](Tx& tx) { return LoadDevice(tx, device_id); });
}

Result<std::vector<DeviceRecord>> PostgresStore::ListDevices() {
  return Read("list devices", [&](Tx& tx) -> Result<std::vector<DeviceRecord>> {
    MTE_TRY_ASSIGN(const pqxx::result ids,
                   tx.Exec("SELECT device_id FROM devices ORDER BY device_id COLLATE \"C\""));
    std::vector<DeviceRecord> devices;
    devices.reserve(ids.size());
    for (const pqxx::row& row : ids) {
      MTE_TRY_ASSIGN(auto device, LoadDevice(tx, Text(row[0])));
      if (device) devices.push_back(std::move(*device));
    }
    return devices;
  });
}

Result<std::optional<DeviceRecord>> PostgresStore::FindDeviceByCredential(CredentialKind kind,
                                                                          std::string_view id) {
  // Certificate digests are stored lowercase; a KpmID is a TLS psk_identity and compares exactly.
  const std::string key = IsCertificateKind(kind) ? AsciiLower(id) : std::string(id);
  return Read("find device by credential", [&](Tx& tx) -> Result<std::optional<DeviceRecord>> {
    MTE_TRY_ASSIGN(const pqxx::result owner,
                   tx.Exec("SELECT device_id FROM device_credentials"
                           " WHERE kind = $1 AND credential_id = $2",
                           ToString(kind), key));
    if (owner.empty()) return std::optional<DeviceRecord>();
    return LoadDevice(tx, Text(owner[0][0]));
  });
}

// --- device CAs ---------------------------------------------------------------------------------

Result<void> PostgresStore::AddDeviceCa(const DeviceCaRecord& ca, const AuditEntry& audit) {
  constexpr std::string_view kOp = "add device CA";
  MTE_TRY(internal::CheckDeviceCa(kOp, ca));
  const std::string who = std::string(kOp) + " " + Quoted(ca.name);
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result found,
                   tx.Exec("SELECT name FROM device_cas WHERE name = $1 OR cert_sha256 = $2"
                           " ORDER BY (name = $1) DESC LIMIT 1",
                           ca.name, ca.cert_sha256));
    if (!found.empty()) {
      const std::string other = Text(found[0][0]);
      return Fail(ConflictError(other == ca.name ? who + ": the name exists"
                                                 : who + ": the same certificate is device CA " +
                                                       Quoted(other)));
    }
    MTE_TRY(tx.Exec("INSERT INTO device_cas (name, cert_pem, cert_sha256, ocsp_url, crl_file,"
                    " max_chain_depth, ocsp_fail_open, created_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    ca.name, ca.cert_pem, ca.cert_sha256, ca.ocsp_url, ca.crl_file,
                    int64_t{ca.max_chain_depth}, ca.ocsp_fail_open, ca.created_at));
    return AppendAudit(tx, audit);
  });
}

Result<std::vector<DeviceCaRecord>> PostgresStore::ListDeviceCas() {
  return ReadAll<DeviceCaRecord>("list device CAs", kSelectDeviceCas, ReadDeviceCa);
}

Result<void> PostgresStore::RemoveDeviceCa(std::string_view name, const AuditEntry& audit) {
  constexpr std::string_view kOp = "remove device CA";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result removed,
                   tx.Exec("DELETE FROM device_cas WHERE name = $1", name));
    if (removed.affected_rows() != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": no device CA named " +
                                Quoted(name.substr(0, 80))));
    }
    return AppendAudit(tx, audit);
  });
}

// --- stakeholders and sessions ------------------------------------------------------------------

Result<int64_t> PostgresStore::AddStakeholder(std::string_view name,
                                              std::string_view password_hash, int64_t now,
                                              const AuditEntry& audit) {
  constexpr std::string_view kOp = "add stakeholder";
  return Write(kOp, [&](Tx& tx) -> Result<int64_t> {
    MTE_TRY_ASSIGN(const pqxx::result found,
                   tx.Exec("SELECT 1 FROM stakeholders WHERE name = $1", name));
    if (!found.empty()) {
      return Fail(ConflictError(std::string(kOp) + ": name " + Quoted(name) + " exists"));
    }
    MTE_TRY_ASSIGN(const pqxx::result inserted,
                   tx.Exec("INSERT INTO stakeholders (name, password_hash, created_at)"
                           " VALUES ($1, $2, $3) RETURNING id",
                           name, password_hash, now));
    const int64_t id = Int(inserted.at(0)[0]);
    MTE_TRY(AppendAudit(tx, audit, id));
    return id;
  });
}

Result<std::optional<StakeholderRecord>> PostgresStore::FindStakeholder(std::string_view name) {
  return FindOne<StakeholderRecord>(
      "find stakeholder",
      "SELECT id, name, password_hash, created_at, is_admin FROM stakeholders WHERE name = $1",
      [](const pqxx::row& row) { return ReadStakeholder(row); }, name);
}

Result<std::vector<StakeholderRecord>> PostgresStore::ListStakeholders() {
  return ReadAll<StakeholderRecord>(
      "list stakeholders",
      "SELECT id, name, password_hash, created_at, is_admin FROM stakeholders ORDER BY id",
      [](const pqxx::row& row) { return ReadStakeholder(row); });
}

Result<void> PostgresStore::SetStakeholderPassword(std::string_view name,
                                                   std::string_view password_hash,
                                                   const AuditEntry& audit) {
  constexpr std::string_view kOp = "set stakeholder password";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result updated,
                   tx.Exec("UPDATE stakeholders SET password_hash = $2 WHERE name = $1"
                           " RETURNING id",
                           name, password_hash));
    if (updated.size() != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " + Quoted(name) +
                                " not found"));
    }
    MTE_TRY(tx.Exec("DELETE FROM sessions WHERE stakeholder_id = $1", Int(updated[0][0])));
    return AppendAudit(tx, audit);
  });
}

Result<void> PostgresStore::SetStakeholderAdmin(std::string_view name, bool is_admin,
                                                const AuditEntry& audit) {
  constexpr std::string_view kOp = "set stakeholder admin";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result updated,
                   tx.Exec("UPDATE stakeholders SET is_admin = $2 WHERE name = $1", name,
                           is_admin));
    if (updated.affected_rows() != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " + Quoted(name) +
                                " not found"));
    }
    return AppendAudit(tx, audit);
  });
}

Result<void> PostgresStore::RemoveStakeholder(std::string_view name, const AuditEntry& audit) {
  constexpr std::string_view kOp = "remove stakeholder";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result found,
                   tx.Exec("SELECT id FROM stakeholders WHERE name = $1", name));
    if (found.empty()) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " + Quoted(name) +
                                " not found"));
    }
    const int64_t id = Int(found[0][0]);
    MTE_TRY_ASSIGN(const pqxx::result count,
                   tx.Exec("SELECT count(*) FROM enrolees WHERE stakeholder_id = $1", id));
    const int64_t enrolees = Int(count.at(0)[0]);
    if (enrolees > 0) {
      return Fail(ConflictError(std::string(kOp) + ": stakeholder " + Quoted(name) + " has " +
                                std::to_string(enrolees) +
                                " enrolee(s); revoke and delete them first"));
    }
    // Sessions, API tokens and the second factor go with it (ON DELETE CASCADE).
    MTE_TRY(tx.Exec("DELETE FROM stakeholders WHERE id = $1", id));
    return AppendAudit(tx, audit);
  });
}

Result<void> PostgresStore::AddSession(ByteSpan token_hash, int64_t stakeholder_id,
                                       const SessionSpec& spec, const AuditEntry& audit) {
  constexpr std::string_view kOp = "add session";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(tx, "SELECT 1 FROM stakeholders WHERE id = $1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    MTE_TRY_ASSIGN(const pqxx::result found,
                   tx.Exec("SELECT 1 FROM sessions WHERE token_hash = $1", token_hash));
    if (!found.empty()) {
      // The token hash itself stays out of the detail.
      return Fail(ConflictError(std::string(kOp) + ": session token hash exists"));
    }
    const std::string_view kind = spec.kind == SessionKind::kBrowser ? "browser" : "bearer";
    MTE_TRY(tx.Exec("INSERT INTO sessions (token_hash, stakeholder_id, expires_at, kind,"
                    " created_at, last_used_at, idle_seconds)"
                    " VALUES ($1, $2, $3, $4, $5, $5, $6)",
                    token_hash, stakeholder_id, spec.expires_at, kind, spec.created_at,
                    spec.idle_seconds));
    return AppendAudit(tx, audit);
  });
}

Result<std::optional<StakeholderRecord>> PostgresStore::FindBearer(std::string_view op,
                                                                   const char* select_sql,
                                                                   const char* touch_sql,
                                                                   ByteSpan token_hash,
                                                                   int64_t now) {
  // One transaction reads and, at most once per kLastUseResolutionSeconds, records the use; the
  // mark is not worth a durable commit.
  return Write(
      op,
      [&](Tx& tx) -> Result<std::optional<StakeholderRecord>> {
        MTE_TRY_ASSIGN(const pqxx::result found, tx.Exec(select_sql, token_hash, now));
        if (found.empty()) return std::optional<StakeholderRecord>();
        if (now - Int(found[0][5]) >= kLastUseResolutionSeconds) {
          MTE_TRY(tx.Exec(touch_sql, token_hash, now));
        }
        return std::optional<StakeholderRecord>(ReadStakeholder(found[0]));
      },
      Durability::kRelaxed);
}

Result<std::optional<StakeholderRecord>> PostgresStore::FindSession(ByteSpan token_hash,
                                                                    int64_t now) {
  return FindBearer("find session",
                    "SELECT s.id, s.name, s.password_hash, s.created_at, s.is_admin,"
                    " x.last_used_at FROM sessions x JOIN stakeholders s"
                    " ON s.id = x.stakeholder_id WHERE x.token_hash = $1"
                    " AND x.expires_at > $2::bigint"
                    " AND (x.idle_seconds = 0 OR x.last_used_at + x.idle_seconds > $2::bigint)",
                    "UPDATE sessions SET last_used_at = $2"
                    " WHERE token_hash = $1 AND last_used_at < $2",
                    token_hash, now);
}

Result<bool> PostgresStore::DeleteSession(ByteSpan token_hash, const AuditEntry& audit) {
  constexpr std::string_view kOp = "delete session";
  return Write(kOp, [&](Tx& tx) -> Result<bool> {
    MTE_TRY_ASSIGN(const pqxx::result removed,
                   tx.Exec("DELETE FROM sessions WHERE token_hash = $1", token_hash));
    if (removed.affected_rows() == 0) return false;
    MTE_TRY(AppendAudit(tx, audit));
    return true;
  });
}

// --- personal API tokens ------------------------------------------------------------------------

Result<ApiTokenRecord> PostgresStore::AddApiToken(int64_t stakeholder_id, std::string_view name,
                                                  ByteSpan token_hash, int64_t now,
                                                  int64_t expires_at, const AuditEntry& audit) {
  constexpr std::string_view kOp = "add API token";
  return Write(kOp, [&](Tx& tx) -> Result<ApiTokenRecord> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(tx, "SELECT 1 FROM stakeholders WHERE id = $1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    MTE_TRY_ASSIGN(const pqxx::result found,
                   tx.Exec("SELECT 1 FROM api_tokens WHERE"
                           " (stakeholder_id = $1 AND name = $2) OR token_hash = $3",
                           stakeholder_id, name, token_hash));
    if (!found.empty()) {
      return Fail(ConflictError(std::string(kOp) + ": a token named " + Quoted(name) +
                                " exists"));
    }
    MTE_TRY_ASSIGN(const pqxx::result inserted,
                   tx.Exec("INSERT INTO api_tokens (stakeholder_id, name, token_hash,"
                           " created_at, expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                           stakeholder_id, name, token_hash, now, expires_at));
    ApiTokenRecord token;
    token.id = Int(inserted.at(0)[0]);
    token.stakeholder_id = stakeholder_id;
    token.name = std::string(name);
    token.created_at = now;
    token.expires_at = expires_at;
    MTE_TRY(AppendAudit(tx, audit, token.id));
    return token;
  });
}

Result<std::vector<ApiTokenRecord>> PostgresStore::ListApiTokens(int64_t stakeholder_id) {
  return ReadAll<ApiTokenRecord>("list API tokens",
                                 "SELECT id, stakeholder_id, name, created_at, last_used_at,"
                                 " expires_at FROM api_tokens WHERE stakeholder_id = $1"
                                 " ORDER BY id",
                                 ReadApiToken, stakeholder_id);
}

Result<void> PostgresStore::RevokeApiToken(int64_t stakeholder_id, int64_t token_id,
                                           const AuditEntry& audit) {
  constexpr std::string_view kOp = "revoke API token";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result removed,
                   tx.Exec("DELETE FROM api_tokens WHERE id = $1 AND stakeholder_id = $2",
                           token_id, stakeholder_id));
    if (removed.affected_rows() != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": token " + std::to_string(token_id) +
                                " not found"));
    }
    return AppendAudit(tx, audit);
  });
}

Result<std::optional<StakeholderRecord>> PostgresStore::FindApiToken(ByteSpan token_hash,
                                                                     int64_t now) {
  return FindBearer("find API token",
                    "SELECT s.id, s.name, s.password_hash, s.created_at, s.is_admin,"
                    " t.last_used_at FROM api_tokens t JOIN stakeholders s"
                    " ON s.id = t.stakeholder_id WHERE t.token_hash = $1"
                    " AND (t.expires_at = 0 OR t.expires_at > $2::bigint)",
                    "UPDATE api_tokens SET last_used_at = $2"
                    " WHERE token_hash = $1 AND last_used_at < $2",
                    token_hash, now);
}

// --- second factor ------------------------------------------------------------------------------

Result<std::optional<TotpRecord>> PostgresStore::FindTotp(int64_t stakeholder_id) {
  return FindOne<TotpRecord>(
      "find TOTP",
      "SELECT secret_sealed, confirmed, last_step, created_at,"
      " (SELECT count(*) FROM recovery_codes r WHERE r.stakeholder_id = t.stakeholder_id)"
      " FROM totp_secrets t WHERE stakeholder_id = $1",
      [](const pqxx::row& row) {
        TotpRecord totp;
        totp.secret_sealed = Blob(row[0]);
        totp.confirmed = Bool(row[1]);
        totp.last_step = Int(row[2]);
        totp.created_at = Int(row[3]);
        totp.recovery_codes_left = internal::ClampAttempts(Int(row[4]));
        return totp;
      },
      stakeholder_id);
}

Result<void> PostgresStore::BeginTotp(int64_t stakeholder_id, ByteSpan secret_sealed, int64_t now,
                                      const AuditEntry& audit) {
  constexpr std::string_view kOp = "begin TOTP";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(tx, "SELECT 1 FROM stakeholders WHERE id = $1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    MTE_TRY_ASSIGN(const bool confirmed,
                   Exists(tx, "SELECT 1 FROM totp_secrets WHERE stakeholder_id = $1 AND confirmed",
                          stakeholder_id));
    if (confirmed) {
      return Fail(ConflictError(std::string(kOp) + ": the account already has TOTP"));
    }
    MTE_TRY(tx.Exec("INSERT INTO totp_secrets (stakeholder_id, secret_sealed, confirmed,"
                    " last_step, created_at) VALUES ($1, $2, false, 0, $3)"
                    " ON CONFLICT (stakeholder_id) DO UPDATE SET"
                    " secret_sealed = excluded.secret_sealed, confirmed = false, last_step = 0,"
                    " created_at = excluded.created_at",
                    stakeholder_id, secret_sealed, now));
    return AppendAudit(tx, audit);
  });
}

Result<void> PostgresStore::ConfirmTotp(int64_t stakeholder_id, int64_t step,
                                        const std::vector<Bytes>& code_hashes,
                                        const AuditEntry& audit) {
  constexpr std::string_view kOp = "confirm TOTP";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result updated,
                   tx.Exec("UPDATE totp_secrets SET confirmed = true, last_step = $2"
                           " WHERE stakeholder_id = $1 AND NOT confirmed",
                           stakeholder_id, step));
    if (updated.affected_rows() != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": no TOTP setup to confirm"));
    }
    MTE_TRY(PutRecoveryCodes(tx, stakeholder_id, code_hashes));
    return AppendAudit(tx, audit);
  });
}

Result<void> PostgresStore::PutRecoveryCodes(Tx& tx, int64_t stakeholder_id,
                                             const std::vector<Bytes>& code_hashes) {
  MTE_TRY(tx.Exec("DELETE FROM recovery_codes WHERE stakeholder_id = $1", stakeholder_id));
  for (const Bytes& hash : code_hashes) {
    MTE_TRY(tx.Exec("INSERT INTO recovery_codes (stakeholder_id, code_hash) VALUES ($1, $2)",
                    stakeholder_id, ByteSpan(hash)));
  }
  return {};
}

Result<bool> PostgresStore::UseTotpStep(int64_t stakeholder_id, int64_t step) {
  return Write("use TOTP step", [&](Tx& tx) -> Result<bool> {
    MTE_TRY_ASSIGN(const pqxx::result updated,
                   tx.Exec("UPDATE totp_secrets SET last_step = $2"
                           " WHERE stakeholder_id = $1 AND confirmed AND last_step < $2",
                           stakeholder_id, step));
    return updated.affected_rows() == 1;
  });
}

Result<bool> PostgresStore::UseRecoveryCode(int64_t stakeholder_id, ByteSpan code_hash,
                                            const AuditEntry& audit) {
  return Write("use recovery code", [&](Tx& tx) -> Result<bool> {
    MTE_TRY_ASSIGN(const pqxx::result removed,
                   tx.Exec("DELETE FROM recovery_codes WHERE stakeholder_id = $1"
                           " AND code_hash = $2",
                           stakeholder_id, code_hash));
    if (removed.affected_rows() != 1) return false;
    MTE_TRY(AppendAudit(tx, audit));
    return true;
  });
}

Result<void> PostgresStore::ReplaceRecoveryCodes(int64_t stakeholder_id,
                                                 const std::vector<Bytes>& code_hashes,
                                                 const AuditEntry& audit) {
  constexpr std::string_view kOp = "replace recovery codes";
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const bool confirmed,
                   Exists(tx, "SELECT 1 FROM totp_secrets WHERE stakeholder_id = $1 AND confirmed",
                          stakeholder_id));
    if (!confirmed) return Fail(NotFoundError(std::string(kOp) + ": the account has no TOTP"));
    MTE_TRY(PutRecoveryCodes(tx, stakeholder_id, code_hashes));
    return AppendAudit(tx, audit);
  });
}

Result<bool> PostgresStore::RemoveTotp(int64_t stakeholder_id, const AuditEntry& audit) {
  return Write("remove TOTP", [&](Tx& tx) -> Result<bool> {
    // The recovery codes go with it (ON DELETE CASCADE).
    MTE_TRY_ASSIGN(const pqxx::result removed,
                   tx.Exec("DELETE FROM totp_secrets WHERE stakeholder_id = $1", stakeholder_id));
    if (removed.affected_rows() != 1) return false;
    MTE_TRY(AppendAudit(tx, audit));
    return true;
  });
}

// --- lockout counters ---------------------------------------------------------------------------

Result<std::optional<FailureRecord>> PostgresStore::FindFailures(std::string_view key) {
  return FindOne<FailureRecord>(
      "find failures",
      "SELECT count, window_start, locked_until, last_failure, locks FROM login_failures"
      " WHERE key = $1",
      [](const pqxx::row& row) { return ReadFailures(row); }, key);
}

Result<void> PostgresStore::UpdateFailures(std::string_view key,
                                           const std::function<void(FailureRecord&)>& update,
                                           int64_t now, int64_t stale_before) {
  constexpr std::string_view kOp = "update failures";
  MTE_TRY(internal::CheckFailureKey(kOp, key));
  return Write(
      kOp,
      [&](Tx& tx) -> Result<void> {
        MTE_TRY(tx.Exec("DELETE FROM login_failures WHERE last_failure < $1"
                        " AND locked_until <= $2 AND key <> $3",
                        stale_before, now, key));
        MTE_TRY_ASSIGN(const pqxx::result found,
                       tx.Exec("SELECT count, window_start, locked_until, last_failure, locks"
                               " FROM login_failures WHERE key = $1",
                               key));
        // A retried transaction applies `update` again, to the record as it then reads.
        FailureRecord record = found.empty() ? FailureRecord{} : ReadFailures(found[0]);
        update(record);
        MTE_TRY(tx.Exec("INSERT INTO login_failures (key, count, window_start, locked_until,"
                        " last_failure, locks) VALUES ($1, $2, $3, $4, $5, $6)"
                        " ON CONFLICT (key) DO UPDATE SET count = excluded.count,"
                        " window_start = excluded.window_start,"
                        " locked_until = excluded.locked_until,"
                        " last_failure = excluded.last_failure, locks = excluded.locks",
                        key, int64_t{record.count}, record.window_start, record.locked_until,
                        record.last_failure, int64_t{record.locks}));
        return {};
      },
      Durability::kRelaxed);
}

Result<int> PostgresStore::ClearFailures(const std::vector<std::string>& keys,
                                         const AuditEntry& audit) {
  return Write("clear failures", [&](Tx& tx) -> Result<int> {
    int removed = 0;
    for (const std::string& key : keys) {
      MTE_TRY_ASSIGN(const pqxx::result gone,
                     tx.Exec("DELETE FROM login_failures WHERE key = $1", key));
      removed += static_cast<int>(gone.affected_rows());
    }
    if (removed > 0) MTE_TRY(AppendAudit(tx, audit));
    return removed;
  });
}

Result<std::vector<FailureKeyRecord>> PostgresStore::ListFailures() {
  return ReadAll<FailureKeyRecord>(
      "list failures",
      "SELECT key, count, window_start, locked_until, last_failure, locks FROM login_failures"
      " ORDER BY key COLLATE \"C\"",
      [](const pqxx::row& row) { return FailureKeyRecord{Text(row[0]), ReadFailures(row, 1)}; });
}

// --- enrolees -----------------------------------------------------------------------------------

Result<EnroleeRecord> PostgresStore::AddEnrolee(int64_t stakeholder_id,
                                                std::string_view device_id, std::string_view label,
                                                int64_t now, const AuditEntry& audit) {
  return InsertEnrolee("add enrolee", stakeholder_id, device_id, label, "", now, audit);
}

Result<EnroleeRecord> PostgresStore::AddEnroleeEntry(int64_t stakeholder_id,
                                                     std::optional<std::string_view> device_id,
                                                     std::string_view label,
                                                     std::string_view device_info, int64_t now,
                                                     const AuditEntry& audit) {
  return InsertEnrolee("add enrolee entry", stakeholder_id, device_id, label, device_info, now,
                       audit);
}

Result<EnroleeRecord> PostgresStore::InsertEnrolee(std::string_view op, int64_t stakeholder_id,
                                                   std::optional<std::string_view> device_id,
                                                   std::string_view label,
                                                   std::string_view device_info, int64_t now,
                                                   const AuditEntry& audit) {
  return Write(op, [&](Tx& tx) -> Result<EnroleeRecord> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(tx, "SELECT 1 FROM stakeholders WHERE id = $1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(op) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    constexpr const char* kInsert =
        "INSERT INTO enrolees (stakeholder_id, device_id, label, device_info, state, generation,"
        " rspf, ke_id, ke_sealed, ke_expires_at, maf_delivery, created_at, updated_at,"
        " enrolled_at) VALUES ($1, $2, $3, $4, 'pending', 0, '', '', ''::bytea, 0, 'none', $5,"
        " $5, 0) RETURNING id";
    pqxx::result inserted;
    if (device_id.has_value()) {
      MTE_TRY_ASSIGN(const pqxx::result device,
                     tx.Exec("SELECT EXISTS (SELECT 1 FROM enrolees WHERE device_id = $1)"
                             " FROM devices WHERE device_id = $1",
                             *device_id));
      if (device.empty()) {
        return Fail(NotFoundError(std::string(op) + ": device_id " + Quoted(*device_id) +
                                  " is not in the manifest"));
      }
      if (Bool(device[0][0])) {
        return Fail(ConflictError(std::string(op) + ": device_id " + Quoted(*device_id) +
                                  " already has an enrolee"));
      }
      MTE_TRY_ASSIGN(inserted, tx.Exec(kInsert, stakeholder_id, *device_id, label, device_info,
                                       now));
    } else {
      MTE_TRY_ASSIGN(inserted,
                     tx.Exec(kInsert, stakeholder_id, nullptr, label, device_info, now));
    }
    const int64_t id = Int(inserted.at(0)[0]);
    MTE_TRY_ASSIGN(EnroleeRecord enrolee, LoadEnroleeAfterWrite(tx, id, "after insert"));
    MTE_TRY(AppendAudit(tx, audit, id));
    return enrolee;
  });
}

Result<std::optional<EnroleeRecord>> PostgresStore::GetEnrolee(int64_t id) {
  return Read("get enrolee", [&](Tx& tx) { return LoadEnrolee(tx, kSelectEnroleeById, id); });
}

Result<std::optional<EnroleeRecord>> PostgresStore::FindEnroleeByDevice(
    std::string_view device_id) {
  return Read("find enrolee by device",
              [&](Tx& tx) { return LoadEnrolee(tx, kSelectEnroleeByDevice, device_id); });
}

Result<std::vector<EnroleeRecord>> PostgresStore::ListEnrolees(
    std::optional<int64_t> stakeholder_id) {
  return Read("list enrolees", [&](Tx& tx) -> Result<std::vector<EnroleeRecord>> {
    pqxx::result list;
    pqxx::result ids;
    if (stakeholder_id.has_value()) {
      MTE_TRY_ASSIGN(list, tx.Exec(kSelectEnroleesOfStakeholder, *stakeholder_id));
      MTE_TRY_ASSIGN(ids, tx.Exec("SELECT c.enrolee_id, c.credential_id"
                                  " FROM enrolee_credential_ids c"
                                  " JOIN enrolees e ON e.id = c.enrolee_id"
                                  " WHERE e.stakeholder_id = $1"
                                  " ORDER BY c.enrolee_id, c.position",
                                  *stakeholder_id));
    } else {
      MTE_TRY_ASSIGN(list, tx.Exec(kSelectAllEnrolees));
      MTE_TRY_ASSIGN(ids, tx.Exec("SELECT enrolee_id, credential_id FROM enrolee_credential_ids"
                                  " ORDER BY enrolee_id, position"));
    }
    std::vector<EnroleeRecord> enrolees;
    enrolees.reserve(list.size());
    std::unordered_map<int64_t, size_t> index_of;
    for (const pqxx::row& row : list) {
      MTE_TRY_ASSIGN(EnroleeRecord enrolee, ReadEnrolee(row));
      index_of.emplace(enrolee.id, enrolees.size());
      enrolees.push_back(std::move(enrolee));
    }
    for (const pqxx::row& row : ids) {
      const auto it = index_of.find(Int(row[0]));
      if (it != index_of.end()) enrolees[it->second].credential_ids.push_back(Text(row[1]));
    }
    return enrolees;
  });
}

Result<EnroleeRecord> PostgresStore::CommitEnrolment(const EnrolmentCommit& commit) {
  constexpr std::string_view kOp = "commit enrolment";
  MTE_TRY(internal::CheckCommit(kOp, commit));
  const std::string subject = "enrolee " + std::to_string(commit.enrolee_id);
  const int64_t generation = commit.expected_generation + 1;
  const bool has_outbox = !commit.outbox.target.empty();
  return Write(kOp, [&](Tx& tx) -> Result<EnroleeRecord> {
    // The token first: a loser of a race for one token learns that the token is gone.
    if (commit.spend_token_id != 0) {
      // Single use: one conditional update decides which enrolment spends the token. A spent
      // token passes only for the device it bound, while no newer token exists for the entry.
      MTE_TRY_ASSIGN(const pqxx::result spent,
                     tx.Exec("UPDATE tokens SET spent_at = CASE state WHEN 'active'"
                             " THEN $3::bigint ELSE spent_at END, state = 'spent'"
                             " WHERE id = $1 AND enrolee_id = $2 AND expires_at > $3::bigint"
                             " AND (state = 'active' OR (state = 'spent'"
                             " AND NOT EXISTS (SELECT 1 FROM tokens AS newer"
                             " WHERE newer.enrolee_id = $2 AND newer.id > $1)"
                             " AND EXISTS (SELECT 1 FROM enrolees"
                             " WHERE id = $2 AND device_id = $4)))",
                             commit.spend_token_id, commit.enrolee_id, commit.now,
                             commit.bind_device_id));
      if (spent.affected_rows() != 1) {
        return Fail(Error{ErrorKind::kLocalUsage, Errc::kExpired,
                          std::string(kOp) + ": the Enrolment-Token is no longer valid"});
      }
    }
    MTE_TRY_ASSIGN(const pqxx::result current,
                   tx.Exec("SELECT generation, device_id FROM enrolees WHERE id = $1",
                           commit.enrolee_id));
    if (current.empty()) {
      return Fail(NotFoundError(std::string(kOp) + ": " + subject + " not found"));
    }
    const int64_t current_generation = Int(current[0][0]);
    if (current_generation != commit.expected_generation) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " is at generation " +
                                std::to_string(current_generation) + ", expected " +
                                std::to_string(commit.expected_generation)));
    }
    const bool has_device = !current[0][1].is_null();
    const std::string current_device = Text(current[0][1]);

    if (!commit.bind_device_id.empty()) {
      if (has_device && current_device != commit.bind_device_id) {
        return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                    std::string(kOp) + ": " + subject + " belongs to another device");
      }
      if (!has_device) {
        MTE_TRY_ASSIGN(const pqxx::result taken,
                       tx.Exec("SELECT 1 FROM enrolees WHERE device_id = $1",
                               commit.bind_device_id));
        if (!taken.empty()) {
          return Fail(ConflictError(std::string(kOp) + ": device " +
                                    Quoted(commit.bind_device_id) +
                                    " has another enrolee entry"));
        }
        MTE_TRY(tx.Exec("UPDATE enrolees SET device_id = $2 WHERE id = $1", commit.enrolee_id,
                        commit.bind_device_id));
      }
    }

    MTE_TRY_ASSIGN(const pqxx::result updated,
                   tx.Exec("UPDATE enrolees SET state = 'enrolled', generation = $2,"
                           " rspf = $3, ke_id = $4, ke_sealed = $5, ke_expires_at = $6,"
                           " maf_delivery = $9, updated_at = $7, enrolled_at = $7"
                           " WHERE id = $1 AND generation = $8",
                           commit.enrolee_id, generation, commit.rspf, commit.ke_id,
                           ByteSpan(commit.ke_sealed), commit.ke_expires_at, commit.now,
                           commit.expected_generation,
                           std::string_view(has_outbox ? "pending" : "none")));
    if (updated.affected_rows() != 1) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " changed concurrently"));
    }
    MTE_TRY(tx.Exec("DELETE FROM enrolee_credential_ids WHERE enrolee_id = $1",
                    commit.enrolee_id));
    int64_t position = 0;
    for (const std::string& credential_id : commit.credential_ids) {
      MTE_TRY(tx.Exec("INSERT INTO enrolee_credential_ids (enrolee_id, position, credential_id)"
                      " VALUES ($1, $2, $3)",
                      commit.enrolee_id, position++, credential_id));
    }
    MTE_TRY(AppendAudit(tx, commit.audit));
    // A fresh delivery: attempts, delivered_at and last_error of the given item are not copied.
    if (has_outbox) {
      MTE_TRY(tx.Exec("INSERT INTO outbox (enrolee_id, generation, target, payload_sealed,"
                      " attempts, next_attempt_at, delivered_at, last_error, created_at)"
                      " VALUES ($1, $2, $3, $4, 0, $5, 0, '', $6)",
                      commit.enrolee_id, generation, commit.outbox.target,
                      ByteSpan(commit.outbox.payload_sealed), commit.outbox.next_attempt_at,
                      commit.now));
    }
    return LoadEnroleeAfterWrite(tx, commit.enrolee_id, "during commit");
  });
}

Result<bool> PostgresStore::RevokeEnrolee(int64_t enrolee_id, int64_t expected_generation,
                                          const OutboxItem& retire, int64_t now,
                                          const AuditEntry& audit) {
  constexpr std::string_view kOp = "revoke enrolee";
  MTE_TRY(internal::CheckRetire(kOp, enrolee_id, expected_generation, retire));
  const std::string subject = "enrolee " + std::to_string(enrolee_id);
  const int64_t generation = expected_generation + 1;
  const bool has_outbox = !retire.target.empty();
  return Write(kOp, [&](Tx& tx) -> Result<bool> {
    MTE_TRY_ASSIGN(const pqxx::result current,
                   tx.Exec("SELECT generation, state FROM enrolees WHERE id = $1", enrolee_id));
    if (current.empty()) {
      return Fail(NotFoundError(std::string(kOp) + ": " + subject + " not found"));
    }
    if (Text(current[0][1]) == ToString(EnroleeState::kRevoked)) return false;
    const int64_t current_generation = Int(current[0][0]);
    if (current_generation != expected_generation) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " is at generation " +
                                std::to_string(current_generation) + ", expected " +
                                std::to_string(expected_generation)));
    }
    MTE_TRY_ASSIGN(const pqxx::result updated,
                   tx.Exec("UPDATE enrolees SET state = 'revoked', generation = $2,"
                           " ke_sealed = ''::bytea, ke_expires_at = $3,"
                           " maf_delivery = CASE WHEN $4::boolean THEN 'pending'"
                           " ELSE maf_delivery END, updated_at = $3"
                           " WHERE id = $1 AND generation = $5",
                           enrolee_id, generation, now, has_outbox, expected_generation));
    if (updated.affected_rows() != 1) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " changed concurrently"));
    }
    MTE_TRY(tx.Exec("UPDATE tokens SET state = 'revoked' WHERE enrolee_id = $1"
                    " AND state = 'active'",
                    enrolee_id));
    MTE_TRY(tx.Exec("DELETE FROM enrolee_credential_ids WHERE enrolee_id = $1", enrolee_id));
    if (has_outbox) {
      MTE_TRY(tx.Exec("INSERT INTO outbox (enrolee_id, generation, target, payload_sealed,"
                      " attempts, next_attempt_at, delivered_at, last_error, created_at)"
                      " VALUES ($1, $2, $3, $4, 0, $5, 0, '', $6)",
                      enrolee_id, generation, retire.target, ByteSpan(retire.payload_sealed),
                      retire.next_attempt_at, now));
    }
    MTE_TRY(AppendAudit(tx, audit));
    return true;
  });
}

Result<void> PostgresStore::DeleteEnrolee(int64_t enrolee_id, const AuditEntry& audit) {
  constexpr std::string_view kOp = "delete enrolee";
  const std::string subject = "enrolee " + std::to_string(enrolee_id);
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const pqxx::result current,
                   tx.Exec("SELECT state FROM enrolees WHERE id = $1", enrolee_id));
    if (current.empty()) {
      return Fail(NotFoundError(std::string(kOp) + ": " + subject + " not found"));
    }
    if (Text(current[0][0]) == ToString(EnroleeState::kEnrolled)) {
      return Fail(ConflictError(subject + " is enrolled; revoke it first"));
    }
    MTE_TRY_ASSIGN(const bool undelivered,
                   Exists(tx, "SELECT 1 FROM outbox WHERE enrolee_id = $1 AND delivered_at = 0",
                          enrolee_id));
    if (undelivered) {
      return Fail(ConflictError(subject +
                                " still has a delivery to the MAF pending; try again later"));
    }
    for (const char* sql : {"DELETE FROM tokens WHERE enrolee_id = $1",
                            "DELETE FROM outbox WHERE enrolee_id = $1",
                            "DELETE FROM enrolee_credential_ids WHERE enrolee_id = $1",
                            "DELETE FROM enrolees WHERE id = $1"}) {
      MTE_TRY(tx.Exec(sql, enrolee_id));
    }
    return AppendAudit(tx, audit);
  });
}

// --- Enrolment-Tokens ---------------------------------------------------------------------------

Result<TokenRecord> PostgresStore::IssueToken(int64_t enrolee_id, ByteSpan token_hash,
                                              int64_t now, int64_t expires_at,
                                              const AuditEntry& audit) {
  constexpr std::string_view kOp = "issue token";
  return Write(kOp, [&](Tx& tx) -> Result<TokenRecord> {
    MTE_TRY_ASSIGN(const bool found, Exists(tx, "SELECT 1 FROM enrolees WHERE id = $1", enrolee_id));
    if (!found) {
      return Fail(NotFoundError(std::string(kOp) + ": enrolee " + std::to_string(enrolee_id) +
                                " not found"));
    }
    MTE_TRY(tx.Exec("UPDATE tokens SET state = 'revoked' WHERE enrolee_id = $1"
                    " AND state = 'active'",
                    enrolee_id));
    // A revoked enrolee is re-armed for a fresh enrolment.
    MTE_TRY(tx.Exec("UPDATE enrolees SET state = 'pending', updated_at = $2"
                    " WHERE id = $1 AND state = 'revoked'",
                    enrolee_id, now));
    MTE_TRY_ASSIGN(const pqxx::result inserted,
                   tx.Exec("INSERT INTO tokens (enrolee_id, token_hash, state, created_at,"
                           " expires_at) VALUES ($1, $2, 'active', $3, $4) RETURNING id",
                           enrolee_id, token_hash, now, expires_at));
    const int64_t id = Int(inserted.at(0)[0]);
    MTE_TRY_ASSIGN(const pqxx::result selected, tx.Exec(kSelectTokenById, id));
    if (selected.empty()) {
      return Fail(StorageError(std::string(kOp) + ": token vanished after insert"));
    }
    MTE_TRY_ASSIGN(TokenRecord token, ReadToken(selected[0]));
    MTE_TRY(AppendAudit(tx, audit, id));
    return token;
  });
}

Result<std::optional<TokenRecord>> PostgresStore::FindToken(ByteSpan token_hash) {
  return Read("find token", [&](Tx& tx) -> Result<std::optional<TokenRecord>> {
    MTE_TRY_ASSIGN(const pqxx::result rows, tx.Exec(kSelectTokenByHash, token_hash));
    if (rows.empty()) return std::optional<TokenRecord>();
    MTE_TRY_ASSIGN(TokenRecord token, ReadToken(rows[0]));
    return std::optional<TokenRecord>(std::move(token));
  });
}

// --- outbox -------------------------------------------------------------------------------------

Result<std::vector<OutboxItem>> PostgresStore::DueOutbox(int64_t now, int limit) {
  if (limit <= 0) return std::vector<OutboxItem>();
  return Read("list due outbox", [&](Tx& tx) -> Result<std::vector<OutboxItem>> {
    MTE_TRY_ASSIGN(const pqxx::result rows, tx.Exec(kSelectDueOutbox, now, int64_t{limit}));
    return ReadOutboxItems(rows);
  });
}

Result<std::vector<OutboxItem>> PostgresStore::ClaimDueOutbox(int64_t now, int limit,
                                                              int64_t lease_until) {
  constexpr std::string_view kOp = "claim due outbox";
  MTE_TRY(internal::CheckLease(kOp, now, lease_until));
  if (limit <= 0) return std::vector<OutboxItem>();
  // READ COMMITTED, the level FOR UPDATE SKIP LOCKED is made for: the exclusion comes from the
  // row locks, while SERIALIZABLE would also make two claims that scanned the same undelivered
  // rows abort each other (each wrote rows the other read) for no gain.
  return Run(kOp, Kind::kClaim, [&](Tx& tx) -> Result<std::vector<OutboxItem>> {
    MTE_TRY_ASSIGN(const pqxx::result rows,
                   tx.Exec(kClaimDueOutbox, now, int64_t{limit}, lease_until));
    std::vector<OutboxItem> items = ReadOutboxItems(rows);
    // RETURNING gives the rows in no promised order.
    std::sort(items.begin(), items.end(),
              [](const OutboxItem& a, const OutboxItem& b) { return a.id < b.id; });
    return items;
  });
}

Result<OutboxStatus> PostgresStore::GetOutboxStatus() {
  return Read("outbox status", [&](Tx& tx) -> Result<OutboxStatus> {
    MTE_TRY_ASSIGN(const pqxx::result rows,
                   tx.Exec("SELECT count(*), coalesce(min(created_at), 0) FROM outbox"
                           " WHERE delivered_at = 0"));
    return OutboxStatus{Int(rows.at(0)[0]), Int(rows.at(0)[1])};
  });
}

Result<void> PostgresStore::MarkDelivered(const std::vector<int64_t>& outbox_ids, int64_t now) {
  constexpr std::string_view kOp = "mark outbox delivered";
  return Write(
      kOp,
      [&](Tx& tx) -> Result<void> {
        for (const int64_t outbox_id : outbox_ids) {
          MTE_TRY_ASSIGN(const pqxx::result found,
                         tx.Exec("SELECT enrolee_id, generation, delivered_at FROM outbox"
                                 " WHERE id = $1",
                                 outbox_id));
          if (found.empty()) {
            return Fail(NotFoundError(std::string(kOp) + ": outbox item " +
                                      std::to_string(outbox_id) + " not found"));
          }
          if (Int(found[0][2]) != 0) continue;  // already delivered: idempotent
          MTE_TRY(tx.Exec("UPDATE outbox SET delivered_at = $2 WHERE id = $1", outbox_id, now));
          // A delivery for an older generation says nothing about the current credential.
          MTE_TRY(tx.Exec("UPDATE enrolees SET maf_delivery = 'delivered', updated_at = $3"
                          " WHERE id = $1 AND generation = $2 AND maf_delivery <> 'delivered'",
                          Int(found[0][0]), Int(found[0][1]), now));
        }
        return {};
      },
      Durability::kRelaxed);
}

Result<void> PostgresStore::MarkAttemptFailed(int64_t outbox_id, int64_t next_attempt_at,
                                              std::string_view error) {
  constexpr std::string_view kOp = "mark outbox attempt failed";
  // The message may quote a peer's bytes: it is made storable rather than refused.
  const std::string bounded = StorableText(error, internal::kMaxLastErrorBytes);
  return Write(kOp, [&](Tx& tx) -> Result<void> {
    MTE_TRY_ASSIGN(const bool found, Exists(tx, "SELECT 1 FROM outbox WHERE id = $1", outbox_id));
    if (!found) {
      return Fail(NotFoundError(std::string(kOp) + ": outbox item " + std::to_string(outbox_id) +
                                " not found"));
    }
    // A delivered item stays delivered; a late failure report changes nothing.
    MTE_TRY(tx.Exec("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2,"
                    " last_error = $3 WHERE id = $1 AND delivered_at = 0",
                    outbox_id, next_attempt_at, bounded));
    return {};
  });
}

Result<std::optional<OutboxItem>> PostgresStore::GetOutboxItem(int64_t outbox_id) {
  return FindOne<OutboxItem>("get outbox item", kSelectOutbox, ReadOutbox, outbox_id);
}

// --- MAF key store ------------------------------------------------------------------------------

// The newest generation the MAF knows for an enrolee (stored or retired), 0 if none.
Result<int64_t> PostgresStore::NewestMafGeneration(Tx& tx, int64_t enrolee_id) {
  MTE_TRY_ASSIGN(const pqxx::result newest,
                 tx.Exec("SELECT coalesce(max(g), 0) FROM (SELECT generation AS g"
                         " FROM maf_credentials WHERE enrolee_id = $1 UNION ALL"
                         " SELECT generation FROM maf_retired WHERE enrolee_id = $1) AS known",
                         enrolee_id));
  return Int(newest.at(0)[0]);
}

Result<bool> PostgresStore::RetireMafCredentials(int64_t enrolee_id, int64_t generation,
                                                 const AuditEntry& audit) {
  return Write("retire maf credentials",
               [&](Tx& tx) { return RetireMafIn(tx, enrolee_id, generation, audit); });
}

Result<bool> PostgresStore::RetireMafIn(Tx& tx, int64_t enrolee_id, int64_t generation,
                                        const AuditEntry& audit) {
  MTE_TRY_ASSIGN(const int64_t newest, NewestMafGeneration(tx, enrolee_id));
  if (newest >= generation) return false;
  MTE_TRY(tx.Exec("DELETE FROM maf_credentials WHERE enrolee_id = $1", enrolee_id));
  MTE_TRY(tx.Exec("INSERT INTO maf_retired (enrolee_id, generation) VALUES ($1, $2)"
                  " ON CONFLICT (enrolee_id) DO UPDATE SET generation = excluded.generation",
                  enrolee_id, generation));
  MTE_TRY(AppendAudit(tx, audit));
  return true;
}

Result<bool> PostgresStore::PutMafCredential(const MafCredential& credential,
                                             const AuditEntry& audit) {
  return Write("put maf credential",
               [&](Tx& tx) { return PutMafIn(tx, credential, audit); });
}

Result<bool> PostgresStore::PutMafIn(Tx& tx, const MafCredential& credential,
                                     const AuditEntry& audit) {
  MTE_TRY_ASSIGN(const int64_t newest, NewestMafGeneration(tx, credential.enrolee_id));
  if (newest >= credential.generation) {
    return false;  // a repeat, or older than what is stored or retired
  }
  MTE_TRY(tx.Exec("DELETE FROM maf_credentials WHERE enrolee_id = $1", credential.enrolee_id));
  MTE_TRY_ASSIGN(const pqxx::result owner,
                 tx.Exec("SELECT enrolee_id FROM maf_credentials"
                         " WHERE lower(km_id COLLATE \"C\") = lower($1::text COLLATE \"C\")",
                         credential.km_id));
  if (!owner.empty()) {
    return Fail(ConflictError(std::string(tx.op()) + ": km_id " + Quoted(credential.km_id) +
                              " belongs to enrolee " + std::to_string(Int(owner[0][0]))));
  }
  MTE_TRY(tx.Exec("INSERT INTO maf_credentials (km_id, km_sealed, enrolee_id, generation,"
                  " expires_at, received_at) VALUES ($1, $2, $3, $4, $5, $6)",
                  credential.km_id, ByteSpan(credential.km_sealed), credential.enrolee_id,
                  credential.generation, credential.expires_at, credential.received_at));
  MTE_TRY(AppendAudit(tx, audit));
  return true;
}

Result<std::vector<Result<bool>>> PostgresStore::ApplyMafDeliveries(
    const std::vector<MafDelivery>& deliveries) {
  constexpr std::string_view kOp = "apply maf deliveries";
  std::lock_guard serialised(maf_apply_mu_);
  return Write(kOp, [&](Tx& tx) -> Result<std::vector<Result<bool>>> {
    std::vector<Result<bool>> results;
    results.reserve(deliveries.size());
    for (const MafDelivery& d : deliveries) {
      // Each delivery in its own savepoint: one that fails changes nothing, and the transaction
      // goes on with the next. A statement error of the server ends only the savepoint too;
      // a serialization failure or a lost connection still ends the whole transaction (Run).
      pqxx::subtransaction item(tx.txn(), "maf_delivery");
      // libpqxx 6.4 sends the SAVEPOINT with a subtransaction's first exec(), but not with its
      // first exec_params(): without this the statements would run outside the savepoint.
      item.exec("SELECT 1");
      Tx item_tx(item, kOp);
      Result<bool> applied = false;
      try {
        applied = d.retire ? RetireMafIn(item_tx, d.credential.enrolee_id,
                                         d.credential.generation, d.audit)
                           : PutMafIn(item_tx, d.credential, d.audit);
      } catch (const pqxx::unique_violation& e) {
        applied = Fail(ConflictError(PostgresError(kOp, e, pool_.target().secrets).detail));
      } catch (const pqxx::sql_error& e) {
        applied = Fail(PostgresError(kOp, e, pool_.target().secrets));
      }
      if (applied.has_value()) {
        item.commit();
      } else {
        item.abort();
      }
      results.push_back(std::move(applied));
    }
    return results;
  });
}

Result<std::optional<MafCredential>> PostgresStore::FindMafCredential(std::string_view km_id) {
  return FindOne<MafCredential>("find maf credential", kSelectMafCredentialByKmId,
                                ReadMafCredential, km_id);
}

Result<std::vector<MafCredential>> PostgresStore::ListMafCredentials() {
  return ReadAll<MafCredential>("list maf credentials", kSelectAllMafCredentials,
                                ReadMafCredential);
}

// --- audit --------------------------------------------------------------------------------------

Result<void> PostgresStore::Audit(const AuditEntry& entry) {
  constexpr std::string_view kOp = "append audit";
  if (entry.action.empty()) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant, std::string(kOp) + ": no action");
  }
  return Write(kOp, [&](Tx& tx) { return AppendAudit(tx, entry); });
}

Result<std::vector<AuditEntry>> PostgresStore::ListAudit() {
  return ReadAll<AuditEntry>("list audit",
                             "SELECT id, at, actor, action, subject, detail FROM audit"
                             " ORDER BY id",
                             [](const pqxx::row& row) {
                               AuditEntry entry;
                               entry.id = Int(row[0]);
                               entry.at = Int(row[1]);
                               entry.actor = Text(row[2]);
                               entry.action = Text(row[3]);
                               entry.subject = Text(row[4]);
                               entry.detail = Text(row[5]);
                               return entry;
                             });
}

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& uri) {
  MTE_TRY_ASSIGN(PostgresTarget target, internal::ParsePostgresUri(uri));
  auto store = std::make_unique<PostgresStore>(std::move(target));
  MTE_TRY(store->Migrate());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace mte::store
