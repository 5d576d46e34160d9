// The SQLite implementation of store::Store: one connection per Store, serialised by a mutex;
// other processes share the file through WAL and busy_timeout.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "store/internal/migrate.h"
#include "store/internal/rules.h"
#include "store/internal/sqlite.h"
#include "store/store.h"

namespace mte::store {
namespace {

using internal::DbError;
using internal::DbPtr;
using internal::Exec;
using internal::Statement;
using internal::Transaction;

using internal::AsciiLower;
using internal::AuditSubject;
using internal::CheckDevice;
using internal::ConflictError;
using internal::IsCertificateKind;
using internal::NotFoundError;
using internal::ParseDeliveryStatus;
using internal::ParseEnroleeState;
using internal::ParseTokenState;
using internal::Quoted;
using internal::StorageError;

constexpr int kBusyTimeoutMs = 5000;


// --- file permissions -------------------------------------------------------------------------

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

// Opens (creating when `create`) the file at `path` and removes group/other permissions, so the
// database and the -wal/-shm files SQLite derives from its mode are 0600. Creating the file here,
// instead of changing the process umask, keeps other threads' file creation unaffected.
Result<void> RestrictFileMode(const std::string& path, bool create) {
  int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  if (create) {
    flags |= O_CREAT;
  }
  const int fd =
      ::open(path.c_str(), flags, S_IRUSR | S_IWUSR);  // NOLINT(cppcoreguidelines-pro-type-vararg)
  if (fd < 0) {
    const int err = errno;
    if (!create && err == ENOENT) {
      return {};
    }
    return Fail(StorageError("open database file " + Quoted(path) + ": " + ErrnoText(err)));
  }
  Result<void> result;

  struct stat st {};

  if (::fstat(fd, &st) != 0) {
    result = Fail(StorageError("stat database file " + Quoted(path) + ": " + ErrnoText(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    result = Fail(StorageError("database file " + Quoted(path) + " is not a regular file"));
  } else if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0 && ::fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
    result = Fail(StorageError("chmod database file " + Quoted(path) + ": " + ErrnoText(errno)));
  }
  static_cast<void>(::close(fd));
  return result;
}


// --- row readers ------------------------------------------------------------------------------

constexpr const char* kSelectDeviceById =
    "SELECT device_id, claim_hash, created_at FROM devices WHERE device_id = ?1";
// Ordered as DeviceRecord::credentials promises: by kind in enum order, then by id.
constexpr const char* kSelectDeviceCredentials =
    "SELECT kind, credential_id, secret_sealed FROM device_credentials WHERE device_id = ?1"
    " ORDER BY CASE kind WHEN 'kpm' THEN 0 WHEN 'cert-sha256' THEN 1 ELSE 2 END, credential_id";

DeviceRecord ReadDevice(const Statement& row) {
  DeviceRecord device;
  device.device_id = row.Text(0);
  device.claim_hash = row.Text(1);
  device.created_at = row.Int64(2);
  return device;
}


constexpr const char* kSelectDeviceCas =
    "SELECT name, cert_pem, cert_sha256, ocsp_url, crl_file, max_chain_depth, ocsp_fail_open,"
    " created_at FROM device_cas ORDER BY name";

DeviceCaRecord ReadDeviceCa(const Statement& row) {
  DeviceCaRecord ca;
  ca.name = row.Text(0);
  ca.cert_pem = row.Text(1);
  ca.cert_sha256 = row.Text(2);
  ca.ocsp_url = row.Text(3);
  ca.crl_file = row.Text(4);
  // The column is CHECKed to 0..8.
  ca.max_chain_depth = static_cast<int>(row.Int64(5));
  ca.ocsp_fail_open = row.Int64(6) != 0;
  ca.created_at = row.Int64(7);
  return ca;
}

// Columns: id, name, password_hash, created_at, is_admin.
StakeholderRecord ReadStakeholder(const Statement& row) {
  StakeholderRecord stakeholder;
  stakeholder.id = row.Int64(0);
  stakeholder.name = row.Text(1);
  stakeholder.password_hash = row.Text(2);
  stakeholder.created_at = row.Int64(3);
  stakeholder.is_admin = row.Int64(4) != 0;
  return stakeholder;
}

// The enrolee queries share one column list, in the order ReadEnrolee expects.
#define MTE_SELECT_ENROLEE                                                                     \
  "SELECT e.id, e.stakeholder_id, s.name, e.device_id, e.label, e.state, e.generation, e.rspf," \
  " e.ke_id, e.ke_sealed, e.ke_expires_at, e.maf_delivery, e.created_at, e.updated_at,"         \
  " e.enrolled_at, e.device_info, coalesce((SELECT max(t.expires_at) FROM tokens t"             \
  " WHERE t.enrolee_id = e.id AND t.state = 'active'), 0)"                                     \
  " FROM enrolees e JOIN stakeholders s ON s.id = e.stakeholder_id"
constexpr const char* kSelectEnroleeById =
    MTE_SELECT_ENROLEE
    " WHERE e.id = ?1";
constexpr const char* kSelectEnroleeByDevice =
    MTE_SELECT_ENROLEE
    " WHERE e.device_id = ?1";
constexpr const char* kSelectAllEnrolees =
    MTE_SELECT_ENROLEE
    " ORDER BY e.id";
constexpr const char* kSelectEnroleesOfStakeholder =
    MTE_SELECT_ENROLEE
    " WHERE e.stakeholder_id = ?1 ORDER BY e.id";
#undef MTE_SELECT_ENROLEE

Result<EnroleeRecord> ReadEnrolee(const Statement& row) {
  EnroleeRecord enrolee;
  enrolee.id = row.Int64(0);
  enrolee.stakeholder_id = row.Int64(1);
  enrolee.stakeholder_name = row.Text(2);
  enrolee.device_id = row.IsNull(3) ? std::string() : row.Text(3);
  enrolee.label = row.Text(4);
  MTE_TRY_ASSIGN(enrolee.state, ParseEnroleeState(row.Text(5)));
  enrolee.generation = row.Int64(6);
  enrolee.rspf = row.Text(7);
  enrolee.ke_id = row.Text(8);
  enrolee.ke_sealed = row.Blob(9);
  enrolee.ke_expires_at = row.Int64(10);
  MTE_TRY_ASSIGN(enrolee.maf_delivery, ParseDeliveryStatus(row.Text(11)));
  enrolee.created_at = row.Int64(12);
  enrolee.updated_at = row.Int64(13);
  enrolee.enrolled_at = row.Int64(14);
  enrolee.device_info = row.Text(15);
  enrolee.token_expires_at = row.Int64(16);
  return enrolee;
}

constexpr const char* kSelectOutbox =
    "SELECT id, enrolee_id, generation, target, payload_sealed, attempts, next_attempt_at,"
    " delivered_at, last_error FROM outbox WHERE id = ?1";
constexpr const char* kSelectDueOutbox =
    "SELECT id, enrolee_id, generation, target, payload_sealed, attempts, next_attempt_at,"
    " delivered_at, last_error FROM outbox WHERE delivered_at = 0 AND next_attempt_at <= ?1"
    " ORDER BY id LIMIT ?2";

OutboxItem ReadOutbox(const Statement& row) {
  OutboxItem item;
  item.id = row.Int64(0);
  item.enrolee_id = row.Int64(1);
  item.generation = row.Int64(2);
  item.target = row.Text(3);
  item.payload_sealed = row.Blob(4);
  item.attempts = internal::ClampAttempts(row.Int64(5));
  item.next_attempt_at = row.Int64(6);
  item.delivered_at = row.Int64(7);
  item.last_error = row.Text(8);
  return item;
}

constexpr const char* kSelectMafCredentialByKmId =
    "SELECT km_id, km_sealed, enrolee_id, generation, expires_at, received_at"
    " FROM maf_credentials WHERE km_id = ?1";
constexpr const char* kSelectAllMafCredentials =
    "SELECT km_id, km_sealed, enrolee_id, generation, expires_at, received_at"
    " FROM maf_credentials ORDER BY id";

MafCredential ReadMafCredential(const Statement& row) {
  MafCredential credential;
  credential.km_id = row.Text(0);
  credential.km_sealed = row.Blob(1);
  credential.enrolee_id = row.Int64(2);
  credential.generation = row.Int64(3);
  credential.expires_at = row.Int64(4);
  credential.received_at = row.Int64(5);
  return credential;
}

// --- the store --------------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(DbPtr db) : db_(std::move(db)), statements_(db_.get()) {}

  Result<void> ImportDevices(const std::vector<DeviceRecord>& devices,
                             const AuditEntry& audit) override;
  Result<std::optional<DeviceRecord>> FindDevice(std::string_view device_id) override;
  Result<std::optional<DeviceRecord>> FindDeviceByCredential(CredentialKind kind,
                                                             std::string_view id) override;

  Result<void> AddDeviceCa(const DeviceCaRecord& ca, const AuditEntry& audit) override;
  Result<std::vector<DeviceCaRecord>> ListDeviceCas() override;
  Result<void> RemoveDeviceCa(std::string_view name, const AuditEntry& audit) override;

  Result<int64_t> AddStakeholder(std::string_view name, std::string_view password_hash, int64_t now,
                                 const AuditEntry& audit) override;
  Result<std::optional<StakeholderRecord>> FindStakeholder(std::string_view name) override;
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
  Result<std::vector<Result<bool>>> ApplyMafDeliveries(
      const std::vector<MafDelivery>& deliveries) override;
  Result<bool> RetireMafCredentials(int64_t enrolee_id, int64_t generation,
                                    const AuditEntry& audit) override;
  Result<int64_t> NewestMafGeneration(std::string_view op, int64_t enrolee_id);
  // The bodies of PutMafCredential and RetireMafCredentials, inside a write transaction.
  Result<bool> PutMafIn(std::string_view op, const MafCredential& credential,
                        const AuditEntry& audit);
  Result<bool> RetireMafIn(std::string_view op, int64_t enrolee_id, int64_t generation,
                           const AuditEntry& audit);
  Result<std::optional<MafCredential>> FindMafCredential(std::string_view km_id) override;
  Result<std::vector<MafCredential>> ListMafCredentials() override;

  Result<void> Audit(const AuditEntry& entry) override;
  Result<std::vector<AuditEntry>> ListAudit() override;

 private:
  sqlite3* db() const { return db_.get(); }

  // Every statement of the store comes from the cache; the caller holds mu_.
  Result<Statement> Prepare(std::string_view sql, std::string_view op) {
    return statements_.Prepare(sql, op);
  }

  // Runs `body` under the connection lock inside one transaction, committing only when it
  // succeeds. kImmediate for anything that writes; kDeferred gives multi-statement reads one
  // snapshot.
  template <class Fn>
  auto InTransaction(Transaction::Mode mode, std::string_view op, Fn&& body, bool relaxed = false)
      -> decltype(body()) {
    std::lock_guard lock(mu_);
    if (mode == Transaction::Mode::kImmediate) {
      MTE_TRY(SetSynchronous(relaxed ? Sync::kNormal : Sync::kFull, op));
    }
    MTE_TRY_ASSIGN(auto txn, Transaction::Begin(statements_, mode, op));
    auto result = body();
    if (!result.has_value()) {
      return result;  // `txn` rolls back
    }
    MTE_TRY(txn.Commit());
    return result;
  }

  // The connection's synchronous setting applies to the commits that follow and cannot change
  // inside a transaction, so each write sets the one it needs first and reads it back. A durable
  // write whose FULL cannot be set fails, and the setting stays unknown until one succeeds: no
  // durable commit is ever made unsynced. The caller holds mu_.
  enum class Sync { kUnknown, kNormal, kFull };
  Result<void> SetSynchronous(Sync wanted, std::string_view op) {
    if (sync_ == wanted) return {};
    sync_ = Sync::kUnknown;
    const std::string_view name = wanted == Sync::kFull ? "FULL" : "NORMAL";
    auto refused = [&](std::string_view why) {
      return Fail(StorageError(std::string(op) + ": the store could not set synchronous = " +
                               std::string(name) + " (" + std::string(why) +
                               "); the write is refused"));
    };
    if (!statements_.Run("PRAGMA synchronous = " + std::string(name), op)) {
      return refused(sqlite3_errmsg(db()));
    }
    MTE_TRY_ASSIGN(auto check, Prepare("PRAGMA synchronous", op));
    MTE_TRY_ASSIGN(const bool row, check.Step());
    const int64_t expected = wanted == Sync::kFull ? 2 : 1;  // FULL = 2, NORMAL = 1
    if (!row || check.Int64(0) != expected) return refused("it reads back otherwise");
    sync_ = wanted;
    return {};
  }

  // kDurable commits reach the disk before they return (synchronous = FULL). kRelaxed commits are
  // atomic and ordered but not synced (synchronous = NORMAL): a power cut may lose the last of
  // them, never half of one; the next durable commit syncs them too.
  enum class Durability { kDurable, kRelaxed };

  template <class Fn>
  auto Write(std::string_view op, Fn&& body, Durability durability = Durability::kDurable)
      -> decltype(body()) {
    return InTransaction(Transaction::Mode::kImmediate, op, std::forward<Fn>(body),
                         durability == Durability::kRelaxed);
  }

  template <class Fn>
  auto Read(std::string_view op, Fn&& body) -> decltype(body()) {
    return InTransaction(Transaction::Mode::kDeferred, op, std::forward<Fn>(body));
  }

  // A single-row lookup under the connection lock; a single statement needs no transaction.
  template <class Row, class Reader, class... Args>
  Result<std::optional<Row>> FindOne(std::string_view op, const char* sql, Reader&& reader,
                                     const Args&... args) {
    std::lock_guard lock(mu_);
    MTE_TRY_ASSIGN(auto stmt, Prepare(sql, op));
    MTE_TRY(stmt.BindAll(args...));
    MTE_TRY_ASSIGN(const bool row, stmt.Step());
    if (!row) {
      return std::optional<Row>();
    }
    return std::optional<Row>(reader(stmt));
  }

  // A session's or API token's stakeholder by `select_sql` (?1 hash, ?2 now; columns as
  // ReadStakeholder, then last_used_at), recording the use with `touch_sql` (?1 hash, ?2 now)
  // to kLastUseResolutionSeconds.
  Result<std::optional<StakeholderRecord>> FindBearer(std::string_view op, const char* select_sql,
                                                      const char* touch_sql, ByteSpan token_hash,
                                                      int64_t now);

  // The following run inside a transaction the caller holds.
  template <class Key>
  Result<bool> Exists(std::string_view op, const char* sql, const Key& key);
  // Replaces the recovery codes of a stakeholder (inside a write transaction).
  Result<void> PutRecoveryCodes(std::string_view op, int64_t stakeholder_id,
                                const std::vector<Bytes>& code_hashes);
  Result<EnroleeRecord> InsertEnrolee(std::string_view op, int64_t stakeholder_id,
                                      std::optional<std::string_view> device_id,
                                      std::string_view label, std::string_view device_info,
                                      int64_t now, const AuditEntry& audit);
  // Appends `entry` when its action is set; "{id}" in its subject becomes `new_id`.
  Result<void> AppendAudit(std::string_view op, const AuditEntry& entry, int64_t new_id = 0);
  template <class Key>
  Result<std::optional<EnroleeRecord>> LoadEnrolee(std::string_view op, const char* sql,
                                                   const Key& key);
  Result<std::vector<std::string>> LoadCredentialIds(std::string_view op, int64_t enrolee_id);
  Result<std::optional<DeviceRecord>> LoadDevice(std::string_view op, std::string_view device_id);
  Result<std::vector<DeviceRecord>> ListDevices() override;
  Result<std::vector<StakeholderRecord>> ListStakeholders() override;
  Result<void> SetStakeholderPassword(std::string_view name, std::string_view password_hash,
                                      const AuditEntry& audit) override;
  Result<void> RemoveStakeholder(std::string_view name, const AuditEntry& audit) override;
  Result<void> SetStakeholderAdmin(std::string_view name, bool is_admin,
                                   const AuditEntry& audit) override;
  Result<void> DeleteEnrolee(int64_t enrolee_id, const AuditEntry& audit) override;

  std::mutex mu_;
  DbPtr db_;
  internal::StatementCache statements_;  // after db_: destroyed (finalized) before the close
  Sync sync_ = Sync::kFull;              // as OpenSqliteStore leaves the connection
};

Result<std::optional<DeviceRecord>> SqliteStore::LoadDevice(std::string_view op,
                                                           std::string_view device_id) {
  MTE_TRY_ASSIGN(auto select, Prepare(kSelectDeviceById, op));
  MTE_TRY(select.BindAll(device_id));
  MTE_TRY_ASSIGN(const bool row, select.Step());
  if (!row) return std::optional<DeviceRecord>();
  DeviceRecord device = ReadDevice(select);
  MTE_TRY_ASSIGN(auto credentials, Prepare(kSelectDeviceCredentials, op));
  MTE_TRY(credentials.BindAll(device_id));
  while (true) {
    MTE_TRY_ASSIGN(const bool more, credentials.Step());
    if (!more) break;
    const std::string kind_text = credentials.Text(0);
    const std::optional<CredentialKind> kind = ParseCredentialKind(kind_text);
    if (!kind.has_value()) {
      return Fail(StorageError(std::string(op) + ": unknown credential kind " + Quoted(kind_text)));
    }
    DeviceCredential credential;
    credential.kind = *kind;
    credential.id = credentials.Text(1);
    if (!credentials.IsNull(2)) credential.secret_sealed = credentials.Blob(2);
    device.credentials.push_back(std::move(credential));
  }
  return std::optional<DeviceRecord>(std::move(device));
}

template <class Key>
Result<bool> SqliteStore::Exists(std::string_view op, const char* sql, const Key& key) {
  MTE_TRY_ASSIGN(auto stmt, Prepare(sql, op));
  MTE_TRY(stmt.BindAll(key));
  return stmt.Step();
}

Result<std::vector<std::string>> SqliteStore::LoadCredentialIds(std::string_view op,
                                                                int64_t enrolee_id) {
  MTE_TRY_ASSIGN(auto stmt, Prepare("SELECT credential_id FROM enrolee_credential_ids"
                                    " WHERE enrolee_id = ?1 ORDER BY position",
                                    op));
  MTE_TRY(stmt.BindAll(enrolee_id));
  std::vector<std::string> ids;
  while (true) {
    MTE_TRY_ASSIGN(const bool row, stmt.Step());
    if (!row) {
      break;
    }
    ids.push_back(stmt.Text(0));
  }
  return ids;
}

template <class Key>
Result<std::optional<EnroleeRecord>> SqliteStore::LoadEnrolee(std::string_view op, const char* sql,
                                                              const Key& key) {
  MTE_TRY_ASSIGN(auto stmt, Prepare(sql, op));
  MTE_TRY(stmt.BindAll(key));
  MTE_TRY_ASSIGN(const bool row, stmt.Step());
  if (!row) {
    return std::optional<EnroleeRecord>();
  }
  MTE_TRY_ASSIGN(EnroleeRecord enrolee, ReadEnrolee(stmt));
  MTE_TRY_ASSIGN(enrolee.credential_ids, LoadCredentialIds(op, enrolee.id));
  return std::optional<EnroleeRecord>(std::move(enrolee));
}

// --- devices ----------------------------------------------------------------------------------

Result<void> SqliteStore::ImportDevices(const std::vector<DeviceRecord>& devices,
                                        const AuditEntry& audit) {
  constexpr std::string_view kOp = "import devices";
  for (const DeviceRecord& device : devices) {
    MTE_TRY(CheckDevice(kOp, device));
  }
  return Write(kOp, [&]() -> Result<void> {
    // Rows inserted earlier in this transaction are visible to the lookups, so one check covers
    // duplicates within the batch and against the store.
    MTE_TRY_ASSIGN(auto find_device, Prepare("SELECT 1 FROM devices WHERE device_id = ?1", kOp));
    MTE_TRY_ASSIGN(auto find_credential, Prepare("SELECT 1 FROM device_credentials"
                                                 " WHERE kind = ?1 AND credential_id = ?2",
                                                 kOp));
    MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO devices (device_id, claim_hash, created_at)"
                                        " VALUES (?1, ?2, ?3)",
                                        kOp));
    MTE_TRY_ASSIGN(auto insert_credential,
                   Prepare("INSERT INTO device_credentials (device_id, kind, credential_id,"
                           " secret_sealed) VALUES (?1, ?2, ?3, ?4)",
                           kOp));
    for (const DeviceRecord& device : devices) {
      find_device.Reset();
      MTE_TRY(find_device.BindAll(device.device_id));
      MTE_TRY_ASSIGN(const bool duplicate, find_device.Step());
      if (duplicate) {
        return Fail(ConflictError(std::string(kOp) + ": duplicate device_id " +
                                  Quoted(device.device_id)));
      }
      insert.Reset();
      MTE_TRY(insert.BindAll(device.device_id, device.claim_hash, device.created_at));
      MTE_TRY(insert.Run());
      for (const DeviceCredential& credential : device.credentials) {
        const std::string_view kind = ToString(credential.kind);
        find_credential.Reset();
        MTE_TRY(find_credential.BindAll(kind, credential.id));
        MTE_TRY_ASSIGN(const bool taken, find_credential.Step());
        if (taken) {
          return Fail(ConflictError(std::string(kOp) + ": duplicate " + std::string(kind) +
                                    " credential " + Quoted(credential.id)));
        }
        insert_credential.Reset();
        MTE_TRY(insert_credential.BindAll(device.device_id, kind, credential.id));
        if (credential.kind == CredentialKind::kKpm) {
          MTE_TRY(insert_credential.Bind(4, ByteSpan(credential.secret_sealed)));
        } else {
          MTE_TRY(insert_credential.Bind(4, std::optional<int64_t>()));
        }
        MTE_TRY(insert_credential.Run());
      }
    }
    return AppendAudit(kOp, audit);
  });
}

Result<std::optional<DeviceRecord>> SqliteStore::FindDevice(std::string_view device_id) {
  constexpr std::string_view kOp = "find device";
  return Read(kOp, [&] { return LoadDevice(kOp, device_id); });
}

Result<std::vector<DeviceRecord>> SqliteStore::ListDevices() {
  constexpr std::string_view kOp = "list devices";
  return Read(kOp, [&]() -> Result<std::vector<DeviceRecord>> {
    std::vector<std::string> ids;
    {
      MTE_TRY_ASSIGN(auto all, Prepare("SELECT device_id FROM devices ORDER BY device_id", kOp));
      while (true) {
        MTE_TRY_ASSIGN(const bool row, all.Step());
        if (!row) break;
        ids.push_back(all.Text(0));
      }
    }
    std::vector<DeviceRecord> devices;
    for (const std::string& id : ids) {
      MTE_TRY_ASSIGN(auto device, LoadDevice(kOp, id));
      if (device) devices.push_back(std::move(*device));
    }
    return devices;
  });
}

Result<std::optional<DeviceRecord>> SqliteStore::FindDeviceByCredential(CredentialKind kind,
                                                                        std::string_view id) {
  constexpr std::string_view kOp = "find device by credential";
  // Certificate digests are stored lowercase; a KpmID is a TLS psk_identity and compares exactly.
  const std::string key = IsCertificateKind(kind) ? AsciiLower(id) : std::string(id);
  return Read(kOp, [&]() -> Result<std::optional<DeviceRecord>> {
    MTE_TRY_ASSIGN(auto owner, Prepare("SELECT device_id FROM device_credentials"
                                       " WHERE kind = ?1 AND credential_id = ?2",
                                       kOp));
    MTE_TRY(owner.BindAll(ToString(kind), key));
    MTE_TRY_ASSIGN(const bool row, owner.Step());
    if (!row) return std::optional<DeviceRecord>();
    const std::string device_id = owner.Text(0);
    owner.Reset();
    return LoadDevice(kOp, device_id);
  });
}

// --- device CAs -------------------------------------------------------------------------------

Result<void> SqliteStore::AddDeviceCa(const DeviceCaRecord& ca, const AuditEntry& audit) {
  constexpr std::string_view kOp = "add device CA";
  MTE_TRY(internal::CheckDeviceCa(kOp, ca));
  const std::string who = std::string(kOp) + " " + Quoted(ca.name);
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto find, Prepare("SELECT name FROM device_cas"
                                      " WHERE name = ?1 OR cert_sha256 = ?2"
                                      " ORDER BY name = ?1 DESC LIMIT 1",
                                      kOp));
    MTE_TRY(find.BindAll(ca.name, ca.cert_sha256));
    MTE_TRY_ASSIGN(const bool exists, find.Step());
    if (exists) {
      const std::string other = find.Text(0);
      return Fail(ConflictError(other == ca.name ? who + ": the name exists"
                                                 : who + ": the same certificate is device CA " +
                                                       Quoted(other)));
    }
    MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO device_cas (name, cert_pem, cert_sha256,"
                                        " ocsp_url, crl_file, max_chain_depth, ocsp_fail_open,"
                                        " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                        kOp));
    MTE_TRY(insert.BindAll(ca.name, ca.cert_pem, ca.cert_sha256, ca.ocsp_url, ca.crl_file,
                           static_cast<int64_t>(ca.max_chain_depth),
                           static_cast<int64_t>(ca.ocsp_fail_open ? 1 : 0), ca.created_at));
    MTE_TRY(insert.Run());
    return AppendAudit(kOp, audit);
  });
}

Result<std::vector<DeviceCaRecord>> SqliteStore::ListDeviceCas() {
  constexpr std::string_view kOp = "list device CAs";
  std::lock_guard lock(mu_);
  MTE_TRY_ASSIGN(auto stmt, Prepare(kSelectDeviceCas, kOp));
  std::vector<DeviceCaRecord> cas;
  while (true) {
    MTE_TRY_ASSIGN(const bool row, stmt.Step());
    if (!row) break;
    cas.push_back(ReadDeviceCa(stmt));
  }
  return cas;
}

Result<void> SqliteStore::RemoveDeviceCa(std::string_view name, const AuditEntry& audit) {
  constexpr std::string_view kOp = "remove device CA";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto remove, Prepare("DELETE FROM device_cas WHERE name = ?1", kOp));
    MTE_TRY(remove.BindAll(name));
    MTE_TRY(remove.Run());
    if (sqlite3_changes(db()) != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": no device CA named " +
                                Quoted(name.substr(0, 80))));
    }
    return AppendAudit(kOp, audit);
  });
}

// --- stakeholders and sessions ----------------------------------------------------------------

Result<int64_t> SqliteStore::AddStakeholder(std::string_view name, std::string_view password_hash,
                                            int64_t now, const AuditEntry& audit) {
  constexpr std::string_view kOp = "add stakeholder";
  return Write(kOp, [&]() -> Result<int64_t> {
    MTE_TRY_ASSIGN(auto find, Prepare("SELECT 1 FROM stakeholders WHERE name = ?1", kOp));
    MTE_TRY(find.BindAll(name));
    MTE_TRY_ASSIGN(const bool exists, find.Step());
    if (exists) {
      return Fail(ConflictError(std::string(kOp) + ": name " + Quoted(name) + " exists"));
    }
    MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO stakeholders (name, password_hash,"
                                        " created_at) VALUES (?1, ?2, ?3) RETURNING id",
                                        kOp));
    MTE_TRY(insert.BindAll(name, password_hash, now));
    MTE_TRY_ASSIGN(const bool row, insert.Step());
    if (!row) {
      return Fail(StorageError(std::string(kOp) + ": no id returned"));
    }
    const int64_t id = insert.Int64(0);
    MTE_TRY_ASSIGN(const bool more, insert.Step());  // finishes the statement
    static_cast<void>(more);
    MTE_TRY(AppendAudit(kOp, audit, id));
    return id;
  });
}

Result<std::optional<StakeholderRecord>> SqliteStore::FindStakeholder(std::string_view name) {
  return FindOne<StakeholderRecord>(
      "find stakeholder",
      "SELECT id, name, password_hash, created_at, is_admin FROM stakeholders WHERE name = ?1",
      ReadStakeholder, name);
}

Result<OutboxStatus> SqliteStore::GetOutboxStatus() {
  constexpr std::string_view kOp = "outbox status";
  return Read(kOp, [&]() -> Result<OutboxStatus> {
    MTE_TRY_ASSIGN(auto stmt, Prepare("SELECT count(*), coalesce(min(created_at), 0) FROM outbox"
                                      " WHERE delivered_at = 0",
                                      kOp));
    MTE_TRY_ASSIGN(const bool row, stmt.Step());
    if (!row) return Fail(StorageError(std::string(kOp) + ": no row"));
    return OutboxStatus{stmt.Int64(0), stmt.Int64(1)};
  });
}

Result<std::vector<StakeholderRecord>> SqliteStore::ListStakeholders() {
  constexpr std::string_view kOp = "list stakeholders";
  return Read(kOp, [&]() -> Result<std::vector<StakeholderRecord>> {
    MTE_TRY_ASSIGN(auto all, Prepare("SELECT id, name, password_hash, created_at, is_admin"
                                     " FROM stakeholders"
                                     " ORDER BY id",
                                     kOp));
    std::vector<StakeholderRecord> out;
    while (true) {
      MTE_TRY_ASSIGN(const bool row, all.Step());
      if (!row) break;
      out.push_back(ReadStakeholder(all));
    }
    return out;
  });
}

Result<void> SqliteStore::SetStakeholderPassword(std::string_view name,
                                                 std::string_view password_hash,
                                                 const AuditEntry& audit) {
  constexpr std::string_view kOp = "set stakeholder password";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto update,
                   Prepare("UPDATE stakeholders SET password_hash = ?2 WHERE name = ?1", kOp));
    MTE_TRY(update.BindAll(name, password_hash));
    MTE_TRY(update.Run());
    if (sqlite3_changes(db()) != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " + Quoted(name) +
                                " not found"));
    }
    MTE_TRY_ASSIGN(auto sessions,
                   Prepare("DELETE FROM sessions WHERE stakeholder_id ="
                           " (SELECT id FROM stakeholders WHERE name = ?1)",
                           kOp));
    MTE_TRY(sessions.BindAll(name));
    MTE_TRY(sessions.Run());
    return AppendAudit(kOp, audit);
  });
}

Result<void> SqliteStore::SetStakeholderAdmin(std::string_view name, bool is_admin,
                                              const AuditEntry& audit) {
  constexpr std::string_view kOp = "set stakeholder admin";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto update,
                   Prepare("UPDATE stakeholders SET is_admin = ?2 WHERE name = ?1", kOp));
    MTE_TRY(update.BindAll(name, int64_t{is_admin ? 1 : 0}));
    MTE_TRY(update.Run());
    if (sqlite3_changes(db()) != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " + Quoted(name) +
                                " not found"));
    }
    return AppendAudit(kOp, audit);
  });
}

Result<void> SqliteStore::RemoveStakeholder(std::string_view name, const AuditEntry& audit) {
  constexpr std::string_view kOp = "remove stakeholder";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto find, Prepare("SELECT id FROM stakeholders WHERE name = ?1", kOp));
    MTE_TRY(find.BindAll(name));
    MTE_TRY_ASSIGN(const bool found, find.Step());
    if (!found) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " + Quoted(name) +
                                " not found"));
    }
    const int64_t id = find.Int64(0);
    find.Reset();
    MTE_TRY_ASSIGN(auto count, Prepare("SELECT count(*) FROM enrolees WHERE stakeholder_id = ?1",
                                       kOp));
    MTE_TRY(count.BindAll(id));
    MTE_TRY_ASSIGN(const bool row, count.Step());
    const int64_t enrolees = row ? count.Int64(0) : 0;
    count.Reset();
    if (enrolees > 0) {
      return Fail(ConflictError(std::string(kOp) + ": stakeholder " + Quoted(name) + " has " +
                                std::to_string(enrolees) +
                                " enrolee(s); revoke and delete them first"));
    }
    MTE_TRY_ASSIGN(auto remove, Prepare("DELETE FROM stakeholders WHERE id = ?1", kOp));
    MTE_TRY(remove.BindAll(id));
    MTE_TRY(remove.Run());  // sessions go with it (ON DELETE CASCADE)
    return AppendAudit(kOp, audit);
  });
}

Result<void> SqliteStore::AddSession(ByteSpan token_hash, int64_t stakeholder_id,
                                     const SessionSpec& spec, const AuditEntry& audit) {
  constexpr std::string_view kOp = "add session";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(kOp, "SELECT 1 FROM stakeholders WHERE id = ?1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    MTE_TRY_ASSIGN(auto find, Prepare("SELECT 1 FROM sessions WHERE token_hash = ?1", kOp));
    MTE_TRY(find.BindAll(token_hash));
    MTE_TRY_ASSIGN(const bool exists, find.Step());
    if (exists) {
      // The token hash itself stays out of the detail.
      return Fail(ConflictError(std::string(kOp) + ": session token hash exists"));
    }
    MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO sessions (token_hash, stakeholder_id,"
                                        " expires_at, kind, created_at, last_used_at,"
                                        " idle_seconds) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                                        kOp));
    const char* kind = spec.kind == SessionKind::kBrowser ? "browser" : "bearer";
    MTE_TRY(insert.BindAll(token_hash, stakeholder_id, spec.expires_at, std::string_view(kind),
                           spec.created_at, spec.idle_seconds));
    MTE_TRY(insert.Run());
    return AppendAudit(kOp, audit);
  });
}

Result<std::optional<StakeholderRecord>> SqliteStore::FindBearer(std::string_view op,
                                                                 const char* select_sql,
                                                                 const char* touch_sql,
                                                                 ByteSpan token_hash,
                                                                 int64_t now) {
  struct Found {
    StakeholderRecord who;
    int64_t last_used_at;
  };
  MTE_TRY_ASSIGN(
      auto found,
      FindOne<Found>(
          op, select_sql,
          [](const Statement& row) { return Found{ReadStakeholder(row), row.Int64(5)}; },
          token_hash, now));
  if (!found) return std::optional<StakeholderRecord>();
  if (now - found->last_used_at >= kLastUseResolutionSeconds) {
    auto touched = Write(op, [&]() -> Result<void> {
      MTE_TRY_ASSIGN(auto touch, Prepare(touch_sql, op));
      MTE_TRY(touch.BindAll(token_hash, now));
      return touch.Run();
    }, Durability::kRelaxed);
    if (!touched) return Fail(touched.error());
  }
  return std::optional<StakeholderRecord>(std::move(found->who));
}

Result<std::optional<StakeholderRecord>> SqliteStore::FindSession(ByteSpan token_hash,
                                                                  int64_t now) {
  return FindBearer("find session",
                    "SELECT s.id, s.name, s.password_hash, s.created_at, s.is_admin,"
                    " x.last_used_at FROM sessions x JOIN stakeholders s"
                    " ON s.id = x.stakeholder_id WHERE x.token_hash = ?1 AND x.expires_at > ?2"
                    " AND (x.idle_seconds = 0 OR x.last_used_at + x.idle_seconds > ?2)",
                    "UPDATE sessions SET last_used_at = ?2"
                    " WHERE token_hash = ?1 AND last_used_at < ?2",
                    token_hash, now);
}

Result<bool> SqliteStore::DeleteSession(ByteSpan token_hash, const AuditEntry& audit) {
  constexpr std::string_view kOp = "delete session";
  return Write(kOp, [&]() -> Result<bool> {
    MTE_TRY_ASSIGN(auto remove, Prepare("DELETE FROM sessions WHERE token_hash = ?1", kOp));
    MTE_TRY(remove.BindAll(token_hash));
    MTE_TRY(remove.Run());
    if (sqlite3_changes(db()) == 0) return false;
    MTE_TRY(AppendAudit(kOp, audit));
    return true;
  });
}

namespace {

// Columns: id, stakeholder_id, name, created_at, last_used_at, expires_at.
ApiTokenRecord ReadApiToken(const Statement& row) {
  ApiTokenRecord token;
  token.id = row.Int64(0);
  token.stakeholder_id = row.Int64(1);
  token.name = row.Text(2);
  token.created_at = row.Int64(3);
  token.last_used_at = row.Int64(4);
  token.expires_at = row.Int64(5);
  return token;
}

}  // namespace

Result<ApiTokenRecord> SqliteStore::AddApiToken(int64_t stakeholder_id, std::string_view name,
                                                ByteSpan token_hash, int64_t now,
                                                int64_t expires_at, const AuditEntry& audit) {
  constexpr std::string_view kOp = "add API token";
  return Write(kOp, [&]() -> Result<ApiTokenRecord> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(kOp, "SELECT 1 FROM stakeholders WHERE id = ?1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    MTE_TRY_ASSIGN(auto find, Prepare("SELECT 1 FROM api_tokens WHERE"
                                      " (stakeholder_id = ?1 AND name = ?2) OR token_hash = ?3",
                                      kOp));
    MTE_TRY(find.BindAll(stakeholder_id, name, token_hash));
    MTE_TRY_ASSIGN(const bool exists, find.Step());
    if (exists) {
      return Fail(ConflictError(std::string(kOp) + ": a token named " + Quoted(name) +
                                " exists"));
    }
    MTE_TRY_ASSIGN(auto insert,
                   Prepare("INSERT INTO api_tokens (stakeholder_id, name, token_hash, created_at,"
                           " expires_at) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                           kOp));
    MTE_TRY(insert.BindAll(stakeholder_id, name, token_hash, now, expires_at));
    MTE_TRY_ASSIGN(const bool row, insert.Step());
    if (!row) return Fail(StorageError(std::string(kOp) + ": no id returned"));
    ApiTokenRecord token;
    token.id = insert.Int64(0);
    MTE_TRY_ASSIGN(const bool more, insert.Step());  // finishes the statement
    static_cast<void>(more);
    token.stakeholder_id = stakeholder_id;
    token.name = std::string(name);
    token.created_at = now;
    token.expires_at = expires_at;
    MTE_TRY(AppendAudit(kOp, audit, token.id));
    return token;
  });
}

Result<std::vector<ApiTokenRecord>> SqliteStore::ListApiTokens(int64_t stakeholder_id) {
  constexpr std::string_view kOp = "list API tokens";
  return Read(kOp, [&]() -> Result<std::vector<ApiTokenRecord>> {
    MTE_TRY_ASSIGN(auto all, Prepare("SELECT id, stakeholder_id, name, created_at, last_used_at,"
                                     " expires_at FROM api_tokens WHERE stakeholder_id = ?1"
                                     " ORDER BY id",
                                     kOp));
    MTE_TRY(all.BindAll(stakeholder_id));
    std::vector<ApiTokenRecord> out;
    while (true) {
      MTE_TRY_ASSIGN(const bool row, all.Step());
      if (!row) break;
      out.push_back(ReadApiToken(all));
    }
    return out;
  });
}

Result<void> SqliteStore::RevokeApiToken(int64_t stakeholder_id, int64_t token_id,
                                         const AuditEntry& audit) {
  constexpr std::string_view kOp = "revoke API token";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto remove,
                   Prepare("DELETE FROM api_tokens WHERE id = ?1 AND stakeholder_id = ?2", kOp));
    MTE_TRY(remove.BindAll(token_id, stakeholder_id));
    MTE_TRY(remove.Run());
    if (sqlite3_changes(db()) != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": token " + std::to_string(token_id) +
                                " not found"));
    }
    return AppendAudit(kOp, audit);
  });
}

Result<std::optional<StakeholderRecord>> SqliteStore::FindApiToken(ByteSpan token_hash,
                                                                   int64_t now) {
  return FindBearer("find API token",
                    "SELECT s.id, s.name, s.password_hash, s.created_at, s.is_admin,"
                    " t.last_used_at FROM api_tokens t JOIN stakeholders s"
                    " ON s.id = t.stakeholder_id"
                    " WHERE t.token_hash = ?1 AND (t.expires_at = 0 OR t.expires_at > ?2)",
                    "UPDATE api_tokens SET last_used_at = ?2"
                    " WHERE token_hash = ?1 AND last_used_at < ?2",
                    token_hash, now);
}

// --- lockout counters -------------------------------------------------------------------------

namespace {

// Columns: count, window_start, locked_until, last_failure, locks (from `first`).
FailureRecord ReadFailures(const Statement& row, int first = 0) {
  FailureRecord r;
  r.count = static_cast<int>(row.Int64(first));
  r.window_start = row.Int64(first + 1);
  r.locked_until = row.Int64(first + 2);
  r.last_failure = row.Int64(first + 3);
  r.locks = static_cast<int>(row.Int64(first + 4));
  return r;
}

}  // namespace

// --- second factor -----------------------------------------------------------------------------

Result<std::optional<TotpRecord>> SqliteStore::FindTotp(int64_t stakeholder_id) {
  return FindOne<TotpRecord>(
      "find TOTP",
      "SELECT secret_sealed, confirmed, last_step, created_at,"
      " (SELECT count(*) FROM recovery_codes r WHERE r.stakeholder_id = t.stakeholder_id)"
      " FROM totp_secrets t WHERE stakeholder_id = ?1",
      [](const Statement& row) {
        TotpRecord totp;
        totp.secret_sealed = row.Blob(0);
        totp.confirmed = row.Int64(1) != 0;
        totp.last_step = row.Int64(2);
        totp.created_at = row.Int64(3);
        totp.recovery_codes_left = static_cast<int>(row.Int64(4));
        return totp;
      },
      stakeholder_id);
}

Result<void> SqliteStore::BeginTotp(int64_t stakeholder_id, ByteSpan secret_sealed, int64_t now,
                                    const AuditEntry& audit) {
  constexpr std::string_view kOp = "begin TOTP";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(kOp, "SELECT 1 FROM stakeholders WHERE id = ?1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    MTE_TRY_ASSIGN(const bool confirmed,
                   Exists(kOp, "SELECT 1 FROM totp_secrets WHERE stakeholder_id = ?1 AND"
                               " confirmed = 1",
                          stakeholder_id));
    if (confirmed) {
      return Fail(ConflictError(std::string(kOp) + ": the account already has TOTP"));
    }
    MTE_TRY_ASSIGN(auto put, Prepare("INSERT OR REPLACE INTO totp_secrets (stakeholder_id,"
                                     " secret_sealed, confirmed, last_step, created_at)"
                                     " VALUES (?1, ?2, 0, 0, ?3)",
                                     kOp));
    MTE_TRY(put.BindAll(stakeholder_id, secret_sealed, now));
    MTE_TRY(put.Run());
    return AppendAudit(kOp, audit);
  });
}

Result<void> SqliteStore::ConfirmTotp(int64_t stakeholder_id, int64_t step,
                                      const std::vector<Bytes>& code_hashes,
                                      const AuditEntry& audit) {
  constexpr std::string_view kOp = "confirm TOTP";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto update, Prepare("UPDATE totp_secrets SET confirmed = 1, last_step = ?2"
                                        " WHERE stakeholder_id = ?1 AND confirmed = 0",
                                        kOp));
    MTE_TRY(update.BindAll(stakeholder_id, step));
    MTE_TRY(update.Run());
    if (sqlite3_changes(db()) != 1) {
      return Fail(NotFoundError(std::string(kOp) + ": no TOTP setup to confirm"));
    }
    MTE_TRY(PutRecoveryCodes(kOp, stakeholder_id, code_hashes));
    return AppendAudit(kOp, audit);
  });
}

Result<void> SqliteStore::PutRecoveryCodes(std::string_view op, int64_t stakeholder_id,
                                           const std::vector<Bytes>& code_hashes) {
  MTE_TRY_ASSIGN(auto clear, Prepare("DELETE FROM recovery_codes WHERE stakeholder_id = ?1", op));
  MTE_TRY(clear.BindAll(stakeholder_id));
  MTE_TRY(clear.Run());
  MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO recovery_codes (stakeholder_id, code_hash)"
                                      " VALUES (?1, ?2)",
                                      op));
  for (const auto& hash : code_hashes) {
    insert.Reset();
    MTE_TRY(insert.BindAll(stakeholder_id, ByteSpan(hash)));
    MTE_TRY(insert.Run());
  }
  return {};
}

Result<bool> SqliteStore::UseTotpStep(int64_t stakeholder_id, int64_t step) {
  constexpr std::string_view kOp = "use TOTP step";
  return Write(kOp, [&]() -> Result<bool> {
    MTE_TRY_ASSIGN(auto update, Prepare("UPDATE totp_secrets SET last_step = ?2"
                                        " WHERE stakeholder_id = ?1 AND confirmed = 1"
                                        " AND last_step < ?2",
                                        kOp));
    MTE_TRY(update.BindAll(stakeholder_id, step));
    MTE_TRY(update.Run());
    return sqlite3_changes(db()) == 1;
  });
}

Result<bool> SqliteStore::UseRecoveryCode(int64_t stakeholder_id, ByteSpan code_hash,
                                          const AuditEntry& audit) {
  constexpr std::string_view kOp = "use recovery code";
  return Write(kOp, [&]() -> Result<bool> {
    MTE_TRY_ASSIGN(auto remove, Prepare("DELETE FROM recovery_codes WHERE stakeholder_id = ?1"
                                        " AND code_hash = ?2",
                                        kOp));
    MTE_TRY(remove.BindAll(stakeholder_id, code_hash));
    MTE_TRY(remove.Run());
    if (sqlite3_changes(db()) != 1) return false;
    MTE_TRY(AppendAudit(kOp, audit));
    return true;
  });
}

Result<void> SqliteStore::ReplaceRecoveryCodes(int64_t stakeholder_id,
                                               const std::vector<Bytes>& code_hashes,
                                               const AuditEntry& audit) {
  constexpr std::string_view kOp = "replace recovery codes";
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(const bool confirmed,
                   Exists(kOp, "SELECT 1 FROM totp_secrets WHERE stakeholder_id = ?1 AND"
                               " confirmed = 1",
                          stakeholder_id));
    if (!confirmed) return Fail(NotFoundError(std::string(kOp) + ": the account has no TOTP"));
    MTE_TRY(PutRecoveryCodes(kOp, stakeholder_id, code_hashes));
    return AppendAudit(kOp, audit);
  });
}

Result<bool> SqliteStore::RemoveTotp(int64_t stakeholder_id, const AuditEntry& audit) {
  constexpr std::string_view kOp = "remove TOTP";
  return Write(kOp, [&]() -> Result<bool> {
    MTE_TRY_ASSIGN(auto remove,
                   Prepare("DELETE FROM totp_secrets WHERE stakeholder_id = ?1", kOp));
    MTE_TRY(remove.BindAll(stakeholder_id));
    MTE_TRY(remove.Run());
    if (sqlite3_changes(db()) != 1) return false;
    MTE_TRY(AppendAudit(kOp, audit));
    return true;
  });
}

Result<std::optional<FailureRecord>> SqliteStore::FindFailures(std::string_view key) {
  return FindOne<FailureRecord>(
      "find failures",
      "SELECT count, window_start, locked_until, last_failure, locks FROM login_failures"
      " WHERE key = ?1",
      [](const Statement& row) { return ReadFailures(row); }, key);
}

Result<void> SqliteStore::UpdateFailures(std::string_view key,
                                         const std::function<void(FailureRecord&)>& update,
                                         int64_t now, int64_t stale_before) {
  constexpr std::string_view kOp = "update failures";
  MTE_TRY(internal::CheckFailureKey(kOp, key));
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto prune, Prepare("DELETE FROM login_failures WHERE last_failure < ?1"
                                       " AND locked_until <= ?2 AND key <> ?3",
                                       kOp));
    MTE_TRY(prune.BindAll(stale_before, now, key));
    MTE_TRY(prune.Run());
    MTE_TRY_ASSIGN(auto find, Prepare("SELECT count, window_start, locked_until, last_failure,"
                                      " locks FROM login_failures WHERE key = ?1",
                                      kOp));
    MTE_TRY(find.BindAll(key));
    MTE_TRY_ASSIGN(const bool found, find.Step());
    FailureRecord record = found ? ReadFailures(find) : FailureRecord{};
    MTE_TRY_ASSIGN(const bool more, find.Step());  // finishes the statement
    static_cast<void>(more);
    update(record);
    MTE_TRY_ASSIGN(auto put, Prepare("INSERT OR REPLACE INTO login_failures (key, count,"
                                     " window_start, locked_until, last_failure, locks)"
                                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                     kOp));
    MTE_TRY(put.BindAll(key, int64_t{record.count}, record.window_start, record.locked_until,
                        record.last_failure, int64_t{record.locks}));
    return put.Run();
  }, Durability::kRelaxed);
}

Result<int> SqliteStore::ClearFailures(const std::vector<std::string>& keys,
                                       const AuditEntry& audit) {
  constexpr std::string_view kOp = "clear failures";
  return Write(kOp, [&]() -> Result<int> {
    MTE_TRY_ASSIGN(auto remove, Prepare("DELETE FROM login_failures WHERE key = ?1", kOp));
    int removed = 0;
    for (const auto& key : keys) {
      remove.Reset();
      MTE_TRY(remove.BindAll(std::string_view(key)));
      MTE_TRY(remove.Run());
      removed += sqlite3_changes(db());
    }
    if (removed > 0) MTE_TRY(AppendAudit(kOp, audit));
    return removed;
  });
}

Result<std::vector<FailureKeyRecord>> SqliteStore::ListFailures() {
  constexpr std::string_view kOp = "list failures";
  return Read(kOp, [&]() -> Result<std::vector<FailureKeyRecord>> {
    MTE_TRY_ASSIGN(auto all, Prepare("SELECT key, count, window_start, locked_until,"
                                     " last_failure, locks FROM login_failures ORDER BY key",
                                     kOp));
    std::vector<FailureKeyRecord> out;
    while (true) {
      MTE_TRY_ASSIGN(const bool row, all.Step());
      if (!row) break;
      out.push_back({all.Text(0), ReadFailures(all, 1)});
    }
    return out;
  });
}

// --- enrolees ---------------------------------------------------------------------------------

Result<EnroleeRecord> SqliteStore::AddEnrolee(int64_t stakeholder_id, std::string_view device_id,
                                              std::string_view label, int64_t now,
                                              const AuditEntry& audit) {
  return InsertEnrolee("add enrolee", stakeholder_id, device_id, label, "", now, audit);
}

Result<EnroleeRecord> SqliteStore::AddEnroleeEntry(int64_t stakeholder_id,
                                                   std::optional<std::string_view> device_id,
                                                   std::string_view label,
                                                   std::string_view device_info, int64_t now,
                                                   const AuditEntry& audit) {
  return InsertEnrolee("add enrolee entry", stakeholder_id, device_id, label, device_info, now,
                       audit);
}

Result<EnroleeRecord> SqliteStore::InsertEnrolee(std::string_view kOp, int64_t stakeholder_id,
                                                 std::optional<std::string_view> device_id,
                                                 std::string_view label,
                                                 std::string_view device_info, int64_t now,
                                                 const AuditEntry& audit) {
  return Write(kOp, [&]() -> Result<EnroleeRecord> {
    MTE_TRY_ASSIGN(const bool stakeholder,
                   Exists(kOp, "SELECT 1 FROM stakeholders WHERE id = ?1", stakeholder_id));
    if (!stakeholder) {
      return Fail(NotFoundError(std::string(kOp) + ": stakeholder " +
                                std::to_string(stakeholder_id) + " not found"));
    }
    if (device_id.has_value()) {
      MTE_TRY_ASSIGN(auto device,
                     Prepare("SELECT EXISTS (SELECT 1 FROM enrolees WHERE device_id = ?1)"
                             " FROM devices WHERE device_id = ?1",
                             kOp));
      MTE_TRY(device.BindAll(*device_id));
      MTE_TRY_ASSIGN(const bool in_manifest, device.Step());
      if (!in_manifest) {
        return Fail(NotFoundError(std::string(kOp) + ": device_id " + Quoted(*device_id) +
                                  " is not in the manifest"));
      }
      if (device.Int64(0) != 0) {
        return Fail(ConflictError(std::string(kOp) + ": device_id " + Quoted(*device_id) +
                                  " already has an enrolee"));
      }
    }
    MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO enrolees (stakeholder_id, device_id, label,"
                                        " device_info, state, generation, rspf, ke_id, ke_sealed,"
                                        " ke_expires_at, maf_delivery, created_at, updated_at,"
                                        " enrolled_at)"
                                        " VALUES (?1, ?2, ?3, ?4, 'pending', 0, '', '', x'', 0,"
                                        " 'none', ?5, ?5, 0) RETURNING id",
                                        kOp));
    MTE_TRY(insert.Bind(1, stakeholder_id));
    if (device_id.has_value()) {
      MTE_TRY(insert.Bind(2, *device_id));
    } else {
      MTE_TRY(insert.Bind(2, std::optional<int64_t>()));
    }
    MTE_TRY(insert.Bind(3, label));
    MTE_TRY(insert.Bind(4, device_info));
    MTE_TRY(insert.Bind(5, now));
    MTE_TRY_ASSIGN(const bool row, insert.Step());
    if (!row) {
      return Fail(StorageError(std::string(kOp) + ": no id returned"));
    }
    const int64_t id = insert.Int64(0);
    MTE_TRY_ASSIGN(const bool more, insert.Step());  // finishes the statement
    static_cast<void>(more);
    MTE_TRY_ASSIGN(auto enrolee, LoadEnrolee(kOp, kSelectEnroleeById, id));
    if (!enrolee.has_value()) {
      return Fail(StorageError(std::string(kOp) + ": enrolee " + std::to_string(id) +
                               " vanished after insert"));
    }
    MTE_TRY(AppendAudit(kOp, audit, id));
    return std::move(*enrolee);
  });
}

Result<std::optional<EnroleeRecord>> SqliteStore::GetEnrolee(int64_t id) {
  constexpr std::string_view kOp = "get enrolee";
  return Read(kOp, [&] { return LoadEnrolee(kOp, kSelectEnroleeById, id); });
}

Result<std::optional<EnroleeRecord>> SqliteStore::FindEnroleeByDevice(std::string_view device_id) {
  constexpr std::string_view kOp = "find enrolee by device";
  return Read(kOp, [&] { return LoadEnrolee(kOp, kSelectEnroleeByDevice, device_id); });
}

Result<std::vector<EnroleeRecord>> SqliteStore::ListEnrolees(
    std::optional<int64_t> stakeholder_id) {
  constexpr std::string_view kOp = "list enrolees";
  return Read(kOp, [&]() -> Result<std::vector<EnroleeRecord>> {
    MTE_TRY_ASSIGN(auto list, Prepare(stakeholder_id.has_value() ? kSelectEnroleesOfStakeholder
                                                                 : kSelectAllEnrolees,
                                      kOp));
    MTE_TRY_ASSIGN(auto ids,
                   Prepare(stakeholder_id.has_value() ? "SELECT c.enrolee_id, c.credential_id"
                                                        " FROM enrolee_credential_ids c"
                                                        " JOIN enrolees e ON e.id = c.enrolee_id"
                                                        " WHERE e.stakeholder_id = ?1"
                                                        " ORDER BY c.enrolee_id, c.position"
                                                      : "SELECT enrolee_id, credential_id"
                                                        " FROM enrolee_credential_ids"
                                                        " ORDER BY enrolee_id, position",
                           kOp));
    if (stakeholder_id.has_value()) {
      MTE_TRY(list.BindAll(*stakeholder_id));
      MTE_TRY(ids.BindAll(*stakeholder_id));
    }
    std::vector<EnroleeRecord> enrolees;
    std::unordered_map<int64_t, size_t> index_of;
    while (true) {
      MTE_TRY_ASSIGN(const bool row, list.Step());
      if (!row) {
        break;
      }
      MTE_TRY_ASSIGN(EnroleeRecord enrolee, ReadEnrolee(list));
      index_of.emplace(enrolee.id, enrolees.size());
      enrolees.push_back(std::move(enrolee));
    }
    while (true) {
      MTE_TRY_ASSIGN(const bool row, ids.Step());
      if (!row) {
        break;
      }
      const auto it = index_of.find(ids.Int64(0));
      if (it != index_of.end()) {
        enrolees[it->second].credential_ids.push_back(ids.Text(1));
      }
    }
    return enrolees;
  });
}

Result<EnroleeRecord> SqliteStore::CommitEnrolment(const EnrolmentCommit& commit) {
  constexpr std::string_view kOp = "commit enrolment";
  MTE_TRY(internal::CheckCommit(kOp, commit));
  const std::string subject = "enrolee " + std::to_string(commit.enrolee_id);
  const int64_t generation = commit.expected_generation + 1;
  const bool has_outbox = !commit.outbox.target.empty();
  return Write(kOp, [&]() -> Result<EnroleeRecord> {
    // The token first: a loser of a race for one token learns that the token is gone.
    if (commit.spend_token_id != 0) {
      // Single use: one conditional update decides which enrolment spends the token. A spent
      // token passes only for the device it bound, while no newer token exists for the entry.
      MTE_TRY_ASSIGN(auto spend,
                     Prepare("UPDATE tokens SET spent_at = CASE state WHEN 'active' THEN ?3"
                             " ELSE spent_at END, state = 'spent'"
                             " WHERE id = ?1 AND enrolee_id = ?2 AND expires_at > ?3"
                             " AND (state = 'active' OR (state = 'spent'"
                             " AND NOT EXISTS (SELECT 1 FROM tokens AS newer"
                             " WHERE newer.enrolee_id = ?2 AND newer.id > ?1)"
                             " AND EXISTS (SELECT 1 FROM enrolees"
                             " WHERE id = ?2 AND device_id = ?4)))",
                             kOp));
      MTE_TRY(spend.BindAll(commit.spend_token_id, commit.enrolee_id, commit.now,
                            commit.bind_device_id));
      MTE_TRY(spend.Run());
      if (sqlite3_changes(db()) != 1) {
        return Fail(Error{ErrorKind::kLocalUsage, Errc::kExpired,
                          std::string(kOp) + ": the Enrolment-Token is no longer valid"});
      }
    }
    MTE_TRY_ASSIGN(auto current,
                   Prepare("SELECT generation, device_id FROM enrolees WHERE id = ?1", kOp));
    MTE_TRY(current.BindAll(commit.enrolee_id));
    MTE_TRY_ASSIGN(const bool found, current.Step());
    if (!found) {
      return Fail(NotFoundError(std::string(kOp) + ": " + subject + " not found"));
    }
    if (current.Int64(0) != commit.expected_generation) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " is at generation " +
                                std::to_string(current.Int64(0)) + ", expected " +
                                std::to_string(commit.expected_generation)));
    }
    const bool has_device = !current.IsNull(1);
    const std::string current_device = has_device ? current.Text(1) : std::string();

    if (!commit.bind_device_id.empty()) {
      if (has_device && current_device != commit.bind_device_id) {
        return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                    std::string(kOp) + ": " + subject + " belongs to another device");
      }
      if (!has_device) {
        MTE_TRY_ASSIGN(const bool taken, Exists(kOp, "SELECT 1 FROM enrolees WHERE device_id = ?1",
                                                commit.bind_device_id));
        if (taken) {
          return Fail(ConflictError(std::string(kOp) + ": device " + Quoted(commit.bind_device_id) +
                                    " has another enrolee entry"));
        }
        MTE_TRY_ASSIGN(auto bind, Prepare("UPDATE enrolees SET device_id = ?2 WHERE id = ?1", kOp));
        MTE_TRY(bind.BindAll(commit.enrolee_id, commit.bind_device_id));
        MTE_TRY(bind.Run());
      }
    }

    MTE_TRY_ASSIGN(auto update, Prepare("UPDATE enrolees SET state = 'enrolled', generation = ?2,"
                                        " rspf = ?3, ke_id = ?4, ke_sealed = ?5,"
                                        " ke_expires_at = ?6, maf_delivery = ?9,"
                                        " updated_at = ?7, enrolled_at = ?7"
                                        " WHERE id = ?1 AND generation = ?8",
                                        kOp));
    MTE_TRY(update.BindAll(commit.enrolee_id, generation, commit.rspf, commit.ke_id,
                           ByteSpan(commit.ke_sealed), commit.ke_expires_at, commit.now,
                           commit.expected_generation,
                           std::string_view(has_outbox ? "pending" : "none")));
    MTE_TRY(update.Run());
    if (sqlite3_changes(db()) != 1) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " changed concurrently"));
    }

    MTE_TRY_ASSIGN(auto clear,
                   Prepare("DELETE FROM enrolee_credential_ids WHERE enrolee_id = ?1", kOp));
    MTE_TRY(clear.BindAll(commit.enrolee_id));
    MTE_TRY(clear.Run());
    MTE_TRY_ASSIGN(auto add_id, Prepare("INSERT INTO enrolee_credential_ids"
                                        " (enrolee_id, position, credential_id)"
                                        " VALUES (?1, ?2, ?3)",
                                        kOp));
    int64_t position = 0;
    for (const std::string& credential_id : commit.credential_ids) {
      add_id.Reset();
      MTE_TRY(add_id.BindAll(commit.enrolee_id, position++, credential_id));
      MTE_TRY(add_id.Run());
    }

    MTE_TRY(AppendAudit(kOp, commit.audit));

    // A fresh delivery: attempts, delivered_at and last_error of the given item are not copied.
    if (!has_outbox) {
      MTE_TRY_ASSIGN(auto enrolee, LoadEnrolee(kOp, kSelectEnroleeById, commit.enrolee_id));
      if (!enrolee.has_value()) {
        return Fail(StorageError(std::string(kOp) + ": " + subject + " vanished during commit"));
      }
      return std::move(*enrolee);
    }
    MTE_TRY_ASSIGN(auto outbox, Prepare("INSERT INTO outbox (enrolee_id, generation,"
                                        " target, payload_sealed, attempts,"
                                        " next_attempt_at, delivered_at, last_error, created_at)"
                                        " VALUES (?1, ?2, ?3, ?4, 0, ?5, 0, '', ?6)",
                                        kOp));
    MTE_TRY(outbox.BindAll(commit.enrolee_id, generation, commit.outbox.target,
                           ByteSpan(commit.outbox.payload_sealed), commit.outbox.next_attempt_at,
                           commit.now));
    MTE_TRY(outbox.Run());

    MTE_TRY_ASSIGN(auto enrolee, LoadEnrolee(kOp, kSelectEnroleeById, commit.enrolee_id));
    if (!enrolee.has_value()) {
      return Fail(StorageError(std::string(kOp) + ": " + subject + " vanished during commit"));
    }
    return std::move(*enrolee);
  });
}

Result<bool> SqliteStore::RevokeEnrolee(int64_t enrolee_id, int64_t expected_generation,
                                        const OutboxItem& retire, int64_t now,
                                        const AuditEntry& audit) {
  constexpr std::string_view kOp = "revoke enrolee";
  const std::string subject = "enrolee " + std::to_string(enrolee_id);
  MTE_TRY(internal::CheckRetire(kOp, enrolee_id, expected_generation, retire));
  const int64_t generation = expected_generation + 1;
  const bool has_outbox = !retire.target.empty();
  return Write(kOp, [&]() -> Result<bool> {
    MTE_TRY_ASSIGN(auto current,
                   Prepare("SELECT generation, state FROM enrolees WHERE id = ?1", kOp));
    MTE_TRY(current.BindAll(enrolee_id));
    MTE_TRY_ASSIGN(const bool found, current.Step());
    if (!found) {
      return Fail(NotFoundError(std::string(kOp) + ": " + subject + " not found"));
    }
    if (current.Text(1) == ToString(EnroleeState::kRevoked)) return false;
    if (current.Int64(0) != expected_generation) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " is at generation " +
                                std::to_string(current.Int64(0)) + ", expected " +
                                std::to_string(expected_generation)));
    }
    MTE_TRY_ASSIGN(auto update,
                   Prepare("UPDATE enrolees SET state = 'revoked', generation = ?2,"
                           " ke_sealed = x'', ke_expires_at = ?3,"
                           " maf_delivery = CASE WHEN ?4 THEN 'pending' ELSE maf_delivery END,"
                           " updated_at = ?3 WHERE id = ?1 AND generation = ?5",
                           kOp));
    MTE_TRY(update.BindAll(enrolee_id, generation, now, int64_t{has_outbox ? 1 : 0},
                           expected_generation));
    MTE_TRY(update.Run());
    if (sqlite3_changes(db()) != 1) {
      return Fail(ConflictError(std::string(kOp) + ": " + subject + " changed concurrently"));
    }
    MTE_TRY_ASSIGN(auto tokens, Prepare("UPDATE tokens SET state = 'revoked'"
                                        " WHERE enrolee_id = ?1 AND state = 'active'",
                                        kOp));
    MTE_TRY(tokens.BindAll(enrolee_id));
    MTE_TRY(tokens.Run());
    MTE_TRY_ASSIGN(auto ids, Prepare("DELETE FROM enrolee_credential_ids WHERE enrolee_id = ?1",
                                     kOp));
    MTE_TRY(ids.BindAll(enrolee_id));
    MTE_TRY(ids.Run());
    if (has_outbox) {
      MTE_TRY_ASSIGN(auto outbox, Prepare("INSERT INTO outbox (enrolee_id, generation,"
                                          " target, payload_sealed, attempts,"
                                          " next_attempt_at, delivered_at, last_error, created_at)"
                                          " VALUES (?1, ?2, ?3, ?4, 0, ?5, 0, '', ?6)",
                                          kOp));
      MTE_TRY(outbox.BindAll(enrolee_id, generation, retire.target,
                             ByteSpan(retire.payload_sealed), retire.next_attempt_at, now));
      MTE_TRY(outbox.Run());
    }
    MTE_TRY(AppendAudit(kOp, audit));
    return true;
  });
}

Result<void> SqliteStore::DeleteEnrolee(int64_t enrolee_id, const AuditEntry& audit) {
  constexpr std::string_view kOp = "delete enrolee";
  const std::string subject = "enrolee " + std::to_string(enrolee_id);
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(auto current, Prepare("SELECT state FROM enrolees WHERE id = ?1", kOp));
    MTE_TRY(current.BindAll(enrolee_id));
    MTE_TRY_ASSIGN(const bool found, current.Step());
    if (!found) return Fail(NotFoundError(std::string(kOp) + ": " + subject + " not found"));
    const bool enrolled = current.Text(0) == ToString(EnroleeState::kEnrolled);
    current.Reset();
    if (enrolled) {
      return Fail(ConflictError(subject + " is enrolled; revoke it first"));
    }
    MTE_TRY_ASSIGN(const bool undelivered,
                   Exists(kOp, "SELECT 1 FROM outbox WHERE enrolee_id = ?1 AND delivered_at = 0",
                          enrolee_id));
    if (undelivered) {
      return Fail(ConflictError(subject +
                                " still has a delivery to the MAF pending; try again later"));
    }
    for (const char* sql : {"DELETE FROM tokens WHERE enrolee_id = ?1",
                            "DELETE FROM outbox WHERE enrolee_id = ?1",
                            "DELETE FROM enrolee_credential_ids WHERE enrolee_id = ?1",
                            "DELETE FROM enrolees WHERE id = ?1"}) {
      MTE_TRY_ASSIGN(auto remove, Prepare(sql, kOp));
      MTE_TRY(remove.BindAll(enrolee_id));
      MTE_TRY(remove.Run());
    }
    return AppendAudit(kOp, audit);
  });
}

// --- Enrolment-Tokens -------------------------------------------------------------------------

namespace {


// superseded: a newer token exists for the same enrolee.
#define MTE_SELECT_TOKEN                                                                \
  "SELECT id, enrolee_id, state, created_at, expires_at, spent_at,"                     \
  " EXISTS (SELECT 1 FROM tokens AS newer"                                              \
  " WHERE newer.enrolee_id = tokens.enrolee_id AND newer.id > tokens.id) FROM tokens"
constexpr const char* kSelectTokenByHash = MTE_SELECT_TOKEN " WHERE token_hash = ?1";
constexpr const char* kSelectTokenById = MTE_SELECT_TOKEN " WHERE id = ?1";
#undef MTE_SELECT_TOKEN

Result<TokenRecord> ReadToken(const Statement& row) {
  TokenRecord token;
  token.id = row.Int64(0);
  token.enrolee_id = row.Int64(1);
  MTE_TRY_ASSIGN(token.state, ParseTokenState(row.Text(2)));
  token.created_at = row.Int64(3);
  token.expires_at = row.Int64(4);
  token.spent_at = row.Int64(5);
  token.superseded = row.Int64(6) != 0;
  return token;
}

}  // namespace

Result<TokenRecord> SqliteStore::IssueToken(int64_t enrolee_id, ByteSpan token_hash, int64_t now,
                                            int64_t expires_at, const AuditEntry& audit) {
  constexpr std::string_view kOp = "issue token";
  return Write(kOp, [&]() -> Result<TokenRecord> {
    MTE_TRY_ASSIGN(const bool found,
                   Exists(kOp, "SELECT 1 FROM enrolees WHERE id = ?1", enrolee_id));
    if (!found) {
      return Fail(NotFoundError(std::string(kOp) + ": enrolee " + std::to_string(enrolee_id) +
                                " not found"));
    }
    MTE_TRY_ASSIGN(auto revoke, Prepare("UPDATE tokens SET state = 'revoked'"
                                        " WHERE enrolee_id = ?1 AND state = 'active'",
                                        kOp));
    MTE_TRY(revoke.BindAll(enrolee_id));
    MTE_TRY(revoke.Run());
    // A revoked enrolee is re-armed for a fresh enrolment.
    MTE_TRY_ASSIGN(auto rearm, Prepare("UPDATE enrolees SET state = 'pending', updated_at = ?2"
                                       " WHERE id = ?1 AND state = 'revoked'",
                                       kOp));
    MTE_TRY(rearm.BindAll(enrolee_id, now));
    MTE_TRY(rearm.Run());
    MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO tokens (enrolee_id, token_hash,"
                                        " state, created_at, expires_at)"
                                        " VALUES (?1, ?2, 'active', ?3, ?4)"
                                        " RETURNING id",
                                        kOp));
    MTE_TRY(insert.BindAll(enrolee_id, token_hash, now, expires_at));
    MTE_TRY_ASSIGN(const bool row, insert.Step());
    if (!row) return Fail(StorageError(std::string(kOp) + ": no id returned"));
    const int64_t id = insert.Int64(0);
    MTE_TRY_ASSIGN(const bool more, insert.Step());
    static_cast<void>(more);
    MTE_TRY_ASSIGN(auto select, Prepare(kSelectTokenById, kOp));
    MTE_TRY(select.BindAll(id));
    MTE_TRY_ASSIGN(const bool again, select.Step());
    if (!again) return Fail(StorageError(std::string(kOp) + ": token vanished after insert"));
    MTE_TRY_ASSIGN(TokenRecord token, ReadToken(select));
    MTE_TRY(AppendAudit(kOp, audit, id));
    return token;
  });
}

Result<std::optional<TokenRecord>> SqliteStore::FindToken(ByteSpan token_hash) {
  constexpr std::string_view kOp = "find token";
  return Read(kOp, [&]() -> Result<std::optional<TokenRecord>> {
    MTE_TRY_ASSIGN(auto select, Prepare(kSelectTokenByHash, kOp));
    MTE_TRY(select.BindAll(token_hash));
    MTE_TRY_ASSIGN(const bool row, select.Step());
    if (!row) return std::optional<TokenRecord>();
    MTE_TRY_ASSIGN(auto token, ReadToken(select));
    return std::optional<TokenRecord>(std::move(token));
  });
}

// --- outbox -----------------------------------------------------------------------------------

Result<std::vector<OutboxItem>> SqliteStore::DueOutbox(int64_t now, int limit) {
  constexpr std::string_view kOp = "list due outbox";
  std::vector<OutboxItem> items;
  if (limit <= 0) {
    return items;
  }
  std::lock_guard lock(mu_);
  MTE_TRY_ASSIGN(auto stmt, Prepare(kSelectDueOutbox, kOp));
  MTE_TRY(stmt.BindAll(now, static_cast<int64_t>(limit)));
  while (true) {
    MTE_TRY_ASSIGN(const bool row, stmt.Step());
    if (!row) {
      break;
    }
    items.push_back(ReadOutbox(stmt));
  }
  return items;
}

Result<std::vector<OutboxItem>> SqliteStore::ClaimDueOutbox(int64_t now, int limit,
                                                            int64_t lease_until) {
  constexpr std::string_view kOp = "claim due outbox";
  MTE_TRY(internal::CheckLease(kOp, now, lease_until));
  if (limit <= 0) return std::vector<OutboxItem>();
  // One IMMEDIATE transaction: another connection's claim waits for this one's commit, then no
  // longer finds these items due.
  return Write(kOp, [&]() -> Result<std::vector<OutboxItem>> {
    MTE_TRY_ASSIGN(auto claim,
                   Prepare("UPDATE outbox SET next_attempt_at = ?3 WHERE id IN (SELECT id FROM"
                           " outbox WHERE delivered_at = 0 AND next_attempt_at <= ?1"
                           " ORDER BY id LIMIT ?2) RETURNING id, enrolee_id, generation, target,"
                           " payload_sealed, attempts, next_attempt_at, delivered_at, last_error",
                           kOp));
    MTE_TRY(claim.BindAll(now, static_cast<int64_t>(limit), lease_until));
    std::vector<OutboxItem> items;
    while (true) {
      MTE_TRY_ASSIGN(const bool row, claim.Step());
      if (!row) break;
      items.push_back(ReadOutbox(claim));
    }
    // RETURNING gives the rows in no promised order.
    std::sort(items.begin(), items.end(),
              [](const OutboxItem& a, const OutboxItem& b) { return a.id < b.id; });
    return items;
  });
}

Result<void> SqliteStore::MarkDelivered(const std::vector<int64_t>& outbox_ids, int64_t now) {
  constexpr std::string_view kOp = "mark outbox delivered";
  return Write(
      kOp,
      [&]() -> Result<void> {
        for (const int64_t outbox_id : outbox_ids) {
          MTE_TRY_ASSIGN(auto find,
                         Prepare("SELECT enrolee_id, generation, delivered_at FROM outbox"
                                 " WHERE id = ?1",
                                 kOp));
          MTE_TRY(find.BindAll(outbox_id));
          MTE_TRY_ASSIGN(const bool found, find.Step());
          if (!found) {
            return Fail(NotFoundError(std::string(kOp) + ": outbox item " +
                                      std::to_string(outbox_id) + " not found"));
          }
          const int64_t enrolee_id = find.Int64(0);
          const int64_t generation = find.Int64(1);
          if (find.Int64(2) != 0) {
            continue;  // already delivered: idempotent
          }
          MTE_TRY_ASSIGN(auto mark,
                         Prepare("UPDATE outbox SET delivered_at = ?2 WHERE id = ?1", kOp));
          MTE_TRY(mark.BindAll(outbox_id, now));
          MTE_TRY(mark.Run());
          // A delivery for an older generation says nothing about the current credential.
          MTE_TRY_ASSIGN(auto enrolee, Prepare("UPDATE enrolees SET maf_delivery = 'delivered',"
                                               " updated_at = ?3 WHERE id = ?1 AND generation = ?2"
                                               " AND maf_delivery <> 'delivered'",
                                               kOp));
          MTE_TRY(enrolee.BindAll(enrolee_id, generation, now));
          MTE_TRY(enrolee.Run());
        }
        return {};
      },
      Durability::kRelaxed);
}

Result<void> SqliteStore::MarkAttemptFailed(int64_t outbox_id, int64_t next_attempt_at,
                                            std::string_view error) {
  constexpr std::string_view kOp = "mark outbox attempt failed";
  const std::string_view bounded = error.substr(0, internal::kMaxLastErrorBytes);
  return Write(kOp, [&]() -> Result<void> {
    MTE_TRY_ASSIGN(const bool found, Exists(kOp, "SELECT 1 FROM outbox WHERE id = ?1", outbox_id));
    if (!found) {
      return Fail(NotFoundError(std::string(kOp) + ": outbox item " + std::to_string(outbox_id) +
                                " not found"));
    }
    // A delivered item stays delivered; a late failure report changes nothing.
    MTE_TRY_ASSIGN(auto update, Prepare("UPDATE outbox SET attempts = attempts + 1,"
                                        " next_attempt_at = ?2, last_error = ?3"
                                        " WHERE id = ?1 AND delivered_at = 0",
                                        kOp));
    MTE_TRY(update.BindAll(outbox_id, next_attempt_at, bounded));
    return update.Run();
  });
}

Result<std::optional<OutboxItem>> SqliteStore::GetOutboxItem(int64_t outbox_id) {
  return FindOne<OutboxItem>("get outbox item", kSelectOutbox, ReadOutbox, outbox_id);
}

// --- MAF key store ----------------------------------------------------------------------------

// The newest generation the MAF knows for an enrolee (stored or retired), 0 if none.
Result<int64_t> SqliteStore::NewestMafGeneration(std::string_view op, int64_t enrolee_id) {
  MTE_TRY_ASSIGN(auto newest,
                 Prepare("SELECT MAX(g) FROM (SELECT generation AS g FROM maf_credentials"
                         " WHERE enrolee_id = ?1 UNION ALL SELECT generation FROM"
                         " maf_retired WHERE enrolee_id = ?1)",
                         op));
  MTE_TRY(newest.BindAll(enrolee_id));
  MTE_TRY_ASSIGN(const bool row, newest.Step());
  return (row && !newest.IsNull(0)) ? newest.Int64(0) : int64_t{0};
}

Result<bool> SqliteStore::RetireMafCredentials(int64_t enrolee_id, int64_t generation,
                                               const AuditEntry& audit) {
  constexpr std::string_view kOp = "retire maf credentials";
  return Write(kOp,
               [&]() -> Result<bool> { return RetireMafIn(kOp, enrolee_id, generation, audit); });
}

Result<bool> SqliteStore::RetireMafIn(std::string_view op, int64_t enrolee_id, int64_t generation,
                                      const AuditEntry& audit) {
  MTE_TRY_ASSIGN(const int64_t newest, NewestMafGeneration(op, enrolee_id));
  if (newest >= generation) return false;
  MTE_TRY_ASSIGN(auto remove, Prepare("DELETE FROM maf_credentials WHERE enrolee_id = ?1", op));
  MTE_TRY(remove.BindAll(enrolee_id));
  MTE_TRY(remove.Run());
  MTE_TRY_ASSIGN(auto mark, Prepare("INSERT INTO maf_retired (enrolee_id, generation)"
                                    " VALUES (?1, ?2) ON CONFLICT (enrolee_id)"
                                    " DO UPDATE SET generation = excluded.generation",
                                    op));
  MTE_TRY(mark.BindAll(enrolee_id, generation));
  MTE_TRY(mark.Run());
  MTE_TRY(AppendAudit(op, audit));
  return true;
}

Result<bool> SqliteStore::PutMafCredential(const MafCredential& credential,
                                           const AuditEntry& audit) {
  constexpr std::string_view kOp = "put maf credential";
  return Write(kOp, [&]() -> Result<bool> { return PutMafIn(kOp, credential, audit); });
}

Result<bool> SqliteStore::PutMafIn(std::string_view op, const MafCredential& credential,
                                   const AuditEntry& audit) {
  MTE_TRY_ASSIGN(const int64_t newest, NewestMafGeneration(op, credential.enrolee_id));
  if (newest >= credential.generation) {
    return false;  // a repeat, or older than what is stored or retired
  }
  MTE_TRY_ASSIGN(auto remove, Prepare("DELETE FROM maf_credentials WHERE enrolee_id = ?1", op));
  MTE_TRY(remove.BindAll(credential.enrolee_id));
  MTE_TRY(remove.Run());

  MTE_TRY_ASSIGN(auto owner,
                 Prepare("SELECT enrolee_id FROM maf_credentials WHERE km_id = ?1", op));
  MTE_TRY(owner.BindAll(credential.km_id));
  MTE_TRY_ASSIGN(const bool taken, owner.Step());
  if (taken) {
    return Fail(ConflictError(std::string(op) + ": km_id " + Quoted(credential.km_id) +
                              " belongs to enrolee " + std::to_string(owner.Int64(0))));
  }
  MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO maf_credentials (km_id, km_sealed,"
                                      " enrolee_id, generation, expires_at,"
                                      " received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                      op));
  MTE_TRY(insert.BindAll(credential.km_id, ByteSpan(credential.km_sealed), credential.enrolee_id,
                         credential.generation, credential.expires_at, credential.received_at));
  MTE_TRY(insert.Run());
  MTE_TRY(AppendAudit(op, audit));
  return true;
}

Result<std::vector<Result<bool>>> SqliteStore::ApplyMafDeliveries(
    const std::vector<MafDelivery>& deliveries) {
  constexpr std::string_view kOp = "apply maf deliveries";
  return Write(kOp, [&]() -> Result<std::vector<Result<bool>>> {
    std::vector<Result<bool>> results;
    results.reserve(deliveries.size());
    for (const MafDelivery& d : deliveries) {
      MTE_TRY(statements_.Run("SAVEPOINT maf_delivery", kOp));
      Result<bool> applied =
          d.retire ? RetireMafIn(kOp, d.credential.enrolee_id, d.credential.generation, d.audit)
                   : PutMafIn(kOp, d.credential, d.audit);
      if (!applied) {
        // This item changes nothing; the transaction goes on with the next one.
        MTE_TRY(statements_.Run("ROLLBACK TO maf_delivery", kOp));
      }
      MTE_TRY(statements_.Run("RELEASE maf_delivery", kOp));
      results.push_back(std::move(applied));
    }
    return results;
  });
}

Result<std::optional<MafCredential>> SqliteStore::FindMafCredential(std::string_view km_id) {
  // km_id is declared COLLATE NOCASE, so the comparison ignores ASCII case.
  return FindOne<MafCredential>("find maf credential", kSelectMafCredentialByKmId,
                                ReadMafCredential, km_id);
}

Result<std::vector<MafCredential>> SqliteStore::ListMafCredentials() {
  constexpr std::string_view kOp = "list maf credentials";
  std::lock_guard lock(mu_);
  MTE_TRY_ASSIGN(auto stmt, Prepare(kSelectAllMafCredentials, kOp));
  std::vector<MafCredential> credentials;
  while (true) {
    MTE_TRY_ASSIGN(const bool row, stmt.Step());
    if (!row) {
      break;
    }
    credentials.push_back(ReadMafCredential(stmt));
  }
  return credentials;
}

// --- audit ------------------------------------------------------------------------------------

Result<void> SqliteStore::AppendAudit(std::string_view op, const AuditEntry& entry,
                                      int64_t new_id) {
  if (entry.action.empty()) return {};
  const std::string subject = AuditSubject(entry, new_id);
  MTE_TRY_ASSIGN(auto insert, Prepare("INSERT INTO audit (at, actor, action, subject,"
                                      " detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                                      op));
  MTE_TRY(insert.BindAll(entry.at, entry.actor, entry.action, subject, entry.detail));
  return insert.Run();
}

Result<void> SqliteStore::Audit(const AuditEntry& entry) {
  constexpr std::string_view kOp = "append audit";
  if (entry.action.empty()) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant, std::string(kOp) + ": no action");
  }
  return Write(kOp, [&]() -> Result<void> { return AppendAudit(kOp, entry); });
}

Result<std::vector<AuditEntry>> SqliteStore::ListAudit() {
  constexpr std::string_view kOp = "list audit";
  std::lock_guard lock(mu_);
  MTE_TRY_ASSIGN(auto stmt, Prepare("SELECT id, at, actor, action, subject, detail"
                                    " FROM audit ORDER BY id",
                                    kOp));
  std::vector<AuditEntry> entries;
  while (true) {
    MTE_TRY_ASSIGN(const bool row, stmt.Step());
    if (!row) {
      break;
    }
    AuditEntry entry;
    entry.id = stmt.Int64(0);
    entry.at = stmt.Int64(1);
    entry.actor = stmt.Text(2);
    entry.action = stmt.Text(3);
    entry.subject = stmt.Text(4);
    entry.detail = stmt.Text(5);
    entries.push_back(std::move(entry));
  }
  return entries;
}

// --- opening ----------------------------------------------------------------------------------

Result<std::string> PragmaText(sqlite3* db, const char* sql, std::string_view op) {
  MTE_TRY_ASSIGN(auto stmt, Statement::Prepare(db, sql, op));
  MTE_TRY_ASSIGN(const bool row, stmt.Step());
  return row ? stmt.Text(0) : std::string();
}

Result<void> Configure(sqlite3* db, bool in_memory) {
  constexpr std::string_view kOp = "configure database";
  static_cast<void>(sqlite3_extended_result_codes(db, 1));
  // Refuse SQL that could corrupt the file even if a statement were ever subverted.
  // NOLINTBEGIN(cppcoreguidelines-pro-type-vararg): sqlite3_db_config is variadic by design.
  const bool hardened =
      sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr) == SQLITE_OK &&
      sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr) == SQLITE_OK;
  // NOLINTEND(cppcoreguidelines-pro-type-vararg)
  if (!hardened) {
    return Fail(DbError(db, kOp));
  }
  // First, so that the statements below wait for other processes instead of failing.
  if (sqlite3_busy_timeout(db, kBusyTimeoutMs) != SQLITE_OK) {
    return Fail(DbError(db, kOp));
  }
  MTE_TRY_ASSIGN(const std::string mode, PragmaText(db, "PRAGMA journal_mode = WAL", kOp));
  if (mode != (in_memory ? "memory" : "wal")) {
    return Fail(
        StorageError(std::string(kOp) + ": journal_mode is " + Quoted(mode) + ", not 'wal'"));
  }
  MTE_TRY(Exec(db, "PRAGMA synchronous = FULL", kOp));
  MTE_TRY(Exec(db, "PRAGMA foreign_keys = ON", kOp));
  MTE_TRY(Exec(db, "PRAGMA secure_delete = ON", kOp));
  MTE_TRY_ASSIGN(const std::string foreign_keys, PragmaText(db, "PRAGMA foreign_keys", kOp));
  if (foreign_keys != "1") {
    return Fail(StorageError(std::string(kOp) + ": foreign keys are not supported"));
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  constexpr std::string_view kMemory = ":memory:";
  if (path.empty()) {
    // SQLite would silently open a private temporary database.
    return Fail(StorageError("open database: empty path"));
  }
  const bool in_memory = path == kMemory;
  if (!in_memory) {
    MTE_TRY(RestrictFileMode(path, /*create=*/true));
    // Left behind by an earlier run, possibly with a looser mode than the database.
    MTE_TRY(RestrictFileMode(path + "-wal", /*create=*/false));
    MTE_TRY(RestrictFileMode(path + "-shm", /*create=*/false));
  }

  sqlite3* raw = nullptr;
  // NOMUTEX: the store's own mutex serialises use of the connection.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                    SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return Fail(DbError(db.get(), "open database " + Quoted(path)));
  }
  MTE_TRY(Configure(db.get(), in_memory));
  MTE_TRY(internal::ApplyMigrations(db.get(), internal::BuiltInMigrations()));
  return std::unique_ptr<Store>(std::make_unique<SqliteStore>(std::move(db)));
}

}  // namespace mte::store
