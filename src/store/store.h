// The MTE database behind one interface (docs/architecture.md §5), with two implementations:
// SQLite (one file, the default) and PostgreSQL (a server several MTE processes share). The same
// conformance tests run against both.
//
// The store holds only sealed secrets (AES-256-GCM blobs made by crypto::KeyEncryptionKey) and
// hashes (Argon2id PHC strings, SHA-256 of random tokens); it never sees a plaintext secret.
// Timestamps are Unix seconds. Every method is one transaction: it commits completely or changes
// nothing. Blocking (short reads; a commit waits for one fdatasync, or for the server's): not for
// threads that must never wait on the disk or the network.
// Thread-safety: a Store may be used from several threads at once (implementations serialise, or
// give each call a connection of its own). Several processes may open the same database (mte
// serve + mte admin; several mte serve on one PostgreSQL database).
// Text is UTF-8 without NUL characters: PostgreSQL cannot hold a NUL in text, so that store refuses
// such text (kLocalUsage/kMalformed) rather than cut it short; blobs (Bytes) may hold any octet.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::store {

// A device's bootstrap credential for one RSPF (TS-0003 §8.3.2.1 PPSK, §8.3.2.2 certificate).
// kKpm: a pre-provisioned PSK, identified by its KpmID. kCertSha256: a device certificate,
// identified by the SHA-256 of its DER encoding. kSpkiSha256: a device key, identified by the
// SHA-256 of its DER SubjectPublicKeyInfo (an RFC 6920 style digest), whatever certificate
// carries it.
enum class CredentialKind { kKpm, kCertSha256, kSpkiSha256 };
std::string_view ToString(CredentialKind kind);  // "kpm", "cert-sha256", "spki-sha256"
// The inverse of ToString; nullopt for any other text (case-sensitive).
std::optional<CredentialKind> ParseCredentialKind(std::string_view text);

struct DeviceCredential {
  CredentialKind kind = CredentialKind::kKpm;
  std::string id;        // KpmID; for certificates the lowercase hex SHA-256 (64 characters)
  Bytes secret_sealed;   // Kpm sealed with aad "kpm|<device_id>"; empty for the certificate kinds
};

// One manifest entry of a device maker (docs/protocol.md §16).
struct DeviceRecord {
  std::string device_id;
  std::string claim_hash;   // Argon2id PHC string of the claim code
  int64_t created_at = 0;
  std::vector<DeviceCredential> credentials;  // at least one; ordered by kind then id

  // The first credential of that kind, or nullptr.
  const DeviceCredential* Find(CredentialKind kind) const;
};

// A device maker's CA that the MEF trusts for the certificate RSPF (TS-0003 §8.3.2.2).
struct DeviceCaRecord {
  std::string name;            // unique, 1..64 of [A-Za-z0-9._-]
  std::string cert_pem;        // one CA certificate
  std::string cert_sha256;     // lowercase hex of the DER (for listing)
  std::string ocsp_url;        // operator-configured responder, used when a device certificate
                               // has no AIA OCSP URL; "" = none
  std::string crl_file;        // absolute path of a CRL file, "" = none
  int max_chain_depth = 2;     // intermediates allowed between device certificate and this CA
                               // (0..8)
  bool ocsp_fail_open = false; // accept when no revocation status can be had (an audited
                               // operator choice)
  int64_t created_at = 0;
};

// The limits the store enforces on a DeviceCaRecord.
inline constexpr size_t kMaxDeviceCaNameLength = 64;
inline constexpr int kMaxDeviceCaChainDepth = 8;

// A portal session: a bearer login (POST /api/v1/login) or a browser sign-in (cookie).
enum class SessionKind { kBearer, kBrowser };

struct SessionSpec {
  SessionKind kind = SessionKind::kBearer;
  int64_t created_at = 0;
  int64_t expires_at = 0;    // absolute expiry, Unix seconds
  int64_t idle_seconds = 0;  // also ends this long after its last use; 0 = no idle expiry
};

// How often a session's or API token's last use is written back: at most once per this many
// seconds of use, so a busy script does not turn every request into a database write.
inline constexpr int64_t kLastUseResolutionSeconds = 15;

// A personal API token (named, long-lived bearer credential); only its SHA-256 is stored.
struct ApiTokenRecord {
  int64_t id = 0;
  int64_t stakeholder_id = 0;
  std::string name;
  int64_t created_at = 0;
  int64_t last_used_at = 0;  // 0 = never used
  int64_t expires_at = 0;    // 0 = never expires
};

// One key's failure count for lockout (mte/lockout.h): the portal's login and claim failures are
// kept in the store, so that every portal process counts them together, a restart does not
// forget them and an operator can clear them (`mte admin lockout clear`).
struct FailureRecord {
  int count = 0;              // failures counted towards the next lock
  int64_t window_start = 0;   // start of the counting window (policies with a window)
  int64_t locked_until = 0;   // Unix seconds; 0 = never locked
  int64_t last_failure = 0;
  int locks = 0;              // locks so far (for the growing duration)
};

struct FailureKeyRecord {
  std::string key;  // e.g. "account:alice", "address:192.0.2.7"
  FailureRecord record;
};

// A stakeholder's TOTP second factor (RFC 6238).
struct TotpRecord {
  Bytes secret_sealed;  // the KEK-sealed secret, associated data "totp|<stakeholder id>"
  bool confirmed = false;  // the first code from the app has been given; asked for at sign-in
  int64_t last_step = 0;   // the highest time step accepted; codes of it or earlier are refused
  int64_t created_at = 0;
  int recovery_codes_left = 0;
};

struct StakeholderRecord {
  int64_t id = 0;
  std::string name;
  std::string password_hash;  // Argon2id PHC string
  int64_t created_at = 0;
  bool is_admin = false;  // sees every stakeholder's enrolees and the whole audit log
};

enum class EnroleeState { kPending, kEnrolled, kRevoked };
std::string_view ToString(EnroleeState state);

enum class DeliveryStatus { kNone, kPending, kDelivered };
std::string_view ToString(DeliveryStatus status);

struct EnroleeRecord {
  int64_t id = 0;
  int64_t stakeholder_id = 0;
  std::string stakeholder_name;
  std::string device_id;    // "" for a Flow B entry whose device is not known yet
  std::string label;
  std::string device_info;  // identifying information given by the stakeholder (Flow B)
  EnroleeState state = EnroleeState::kPending;
  int64_t generation = 0;  // bumps on every (re-)enrolment and every revocation
  std::string rspf;        // "PPSK" once enrolled
  std::string ke_id;
  Bytes ke_sealed;         // Ke sealed with aad "ke|<enrolee id>|<generation>"
  int64_t ke_expires_at = 0;
  std::vector<std::string> credential_ids;  // TS-0003 §10.4 "<typeID>-<value>"
  DeliveryStatus maf_delivery = DeliveryStatus::kNone;
  int64_t created_at = 0;
  int64_t updated_at = 0;
  int64_t enrolled_at = 0;  // 0 = never
  int64_t token_expires_at = 0;  // expiry of its active Enrolment-Token; 0 = none active
};

// The undelivered part of the outbox, for health reports.
struct OutboxStatus {
  int64_t pending = 0;              // items not yet delivered
  int64_t oldest_created_at = 0;    // Unix seconds the oldest of them was written; 0 if none
};

// The AAD an outbox payload is sealed with: "outbox|<enrolee id>|<generation>"
// (docs/protocol.md §14.1).
inline std::string OutboxAad(int64_t enrolee_id, int64_t generation) {
  return "outbox|" + std::to_string(enrolee_id) + "|" + std::to_string(generation);
}

// A message to deliver to an enrolment target (the MAF), written in the enrolment transaction.
struct OutboxItem {
  int64_t id = 0;
  int64_t enrolee_id = 0;
  int64_t generation = 0;
  std::string target;       // "maf"
  Bytes payload_sealed;     // sealed JSON, aad "outbox|<enrolee id>|<generation>"
  int attempts = 0;
  int64_t next_attempt_at = 0;
  int64_t delivered_at = 0;  // 0 = not yet
  std::string last_error;
};

struct AuditEntry {
  int64_t id = 0;
  int64_t at = 0;
  std::string actor;    // "admin", "stakeholder:<name>", "mef", "maf"
  std::string action;   // "device.import", "enrolee.add", "enrolment.commit", ...
  std::string subject;  // identifiers only, never secrets
  std::string detail;
};

enum class TokenState { kActive, kSpent, kRevoked };
std::string_view ToString(TokenState state);

// An Enrolment-Token (seed 8.y.4 step 7); only its SHA-256 is stored.
struct TokenRecord {
  int64_t id = 0;
  int64_t enrolee_id = 0;
  TokenState state = TokenState::kActive;
  int64_t created_at = 0;
  int64_t expires_at = 0;
  int64_t spent_at = 0;
  bool superseded = false;  // a newer token has been issued for the same enrolee
};

// Everything an enrolment records, in one transaction (seed 8.y.3 step 7, 8.y.4 step 18).
struct EnrolmentCommit {
  int64_t enrolee_id = 0;
  int64_t expected_generation = 0;  // optimistic check: fails with kConflict if it moved
  std::string rspf;
  std::string ke_id;
  Bytes ke_sealed;
  int64_t ke_expires_at = 0;
  std::vector<std::string> credential_ids;
  OutboxItem outbox;  // id ignored; generation/enrolee_id must match the commit; an empty
                      // target means no delivery (the enrolee asked for no MAF enrolment)
  // Flow B: the token that started this enrolment is spent by this commit, atomically. A token
  // that is already spent may be presented again by the device it enrolled (its answer may have
  // been lost), while it is the enrolee's newest token: the commit then re-enrols that device and
  // keeps the first spent_at. The commit fails with kExpired if the token is revoked, has expired
  // at `now`, or is spent and either superseded by a newer token or bound to another device.
  int64_t spend_token_id = 0;  // 0 = none
  // Flow B: the device authenticated by the inner RSPF. Recorded on an entry without a device;
  // kForbidden if the entry names another device; kConflict if the device has another entry.
  std::string bind_device_id;
  int64_t now = 0;
  // Written in the same transaction when audit.action is non-empty (docs/conventions.md §3).
  AuditEntry audit;
};

// A credential received by the MAF (seed step 7/18).
struct MafCredential {
  std::string km_id;
  Bytes km_sealed;          // Km sealed with aad "km|<km_id>"
  int64_t enrolee_id = 0;
  int64_t generation = 0;
  int64_t expires_at = 0;
  int64_t received_at = 0;
};

// One delivery to the MAF (docs/protocol.md §10.1): a credential, or with `retire` the retirement
// of the enrolee's credentials below `credential.generation` (then only credential.enrolee_id
// and credential.generation count). `audit` is written when it changes something.
struct MafDelivery {
  bool retire = false;
  MafCredential credential;
  AuditEntry audit;
};

// Every method that changes state takes an optional audit entry (docs/conventions.md §3), written in the
// same transaction when its action is non-empty, and only when the method changed something
// (not for an idempotent repeat). In its subject, "{id}" stands for the id of the row the method
// creates (the enrolee of AddEnrolee/AddEnroleeEntry, the token of IssueToken).
class Store {
 public:
  virtual ~Store() = default;

  // --- devices (manufacturer manifest) ---
  // All or nothing: a duplicate device_id or a duplicate (kind, id) credential (within the batch
  // or against the store) fails with kLocalUsage/kConflict naming the identifier; a device
  // without credentials, a kKpm credential without a sealed secret or a certificate credential
  // with one, or a certificate id that is not 64 lowercase hex characters fails with
  // kLocalUsage/kMalformed. Nothing is imported then.
  virtual Result<void> ImportDevices(const std::vector<DeviceRecord>& devices,
                                     const AuditEntry& audit = {}) = 0;
  virtual Result<std::optional<DeviceRecord>> FindDevice(std::string_view device_id) = 0;
  // Every device of the manifest with its credentials, ordered by device_id.
  virtual Result<std::vector<DeviceRecord>> ListDevices() = 0;
  // The device holding the credential (kind, id). A KpmID matches case-sensitively; a
  // certificate id is lowercased before the lookup (the store holds it lowercase).
  virtual Result<std::optional<DeviceRecord>> FindDeviceByCredential(CredentialKind kind,
                                                                     std::string_view id) = 0;
  // The device whose PPSK credential has this KpmID (TS-0003 §8.3.2.1).
  Result<std::optional<DeviceRecord>> FindDeviceByKpmId(std::string_view kpm_id) {
    return FindDeviceByCredential(CredentialKind::kKpm, kpm_id);
  }

  // --- device CAs (TS-0003 §8.3.2.2) ---
  // kLocalUsage/kMalformed for a name outside 1..64 of [A-Za-z0-9._-], an empty certificate, a
  // cert_sha256 that is not 64 lowercase hex characters, a max_chain_depth outside 0..8 or a
  // crl_file that is not absolute; kLocalUsage/kConflict for an existing name or the same
  // certificate (cert_sha256) under another name. The store does not parse the certificate.
  virtual Result<void> AddDeviceCa(const DeviceCaRecord& ca, const AuditEntry& audit = {}) = 0;
  // Ordered by name.
  virtual Result<std::vector<DeviceCaRecord>> ListDeviceCas() = 0;
  // kLocalUsage/kNotFound for an unknown name.
  virtual Result<void> RemoveDeviceCa(std::string_view name, const AuditEntry& audit = {}) = 0;

  // --- stakeholders and portal sessions ---
  // kConflict if the name exists.
  virtual Result<int64_t> AddStakeholder(std::string_view name, std::string_view password_hash,
                                         int64_t now, const AuditEntry& audit = {}) = 0;
  virtual Result<std::optional<StakeholderRecord>> FindStakeholder(std::string_view name) = 0;
  // Every stakeholder, ordered by id.
  virtual Result<std::vector<StakeholderRecord>> ListStakeholders() = 0;
  // Replaces the password hash and ends every session of the account. kNotFound for an unknown
  // name.
  virtual Result<void> SetStakeholderPassword(std::string_view name,
                                              std::string_view password_hash,
                                              const AuditEntry& audit = {}) = 0;
  // Removes an account that has no enrolees, with its sessions. kNotFound for an unknown name;
  // kConflict while it has enrolees.
  virtual Result<void> RemoveStakeholder(std::string_view name, const AuditEntry& audit = {}) = 0;
  // Makes an account an administrator or not. kNotFound for an unknown name.
  virtual Result<void> SetStakeholderAdmin(std::string_view name, bool is_admin,
                                           const AuditEntry& audit = {}) = 0;
  // kConflict if the hash exists; kNotFound for an unknown stakeholder.
  virtual Result<void> AddSession(ByteSpan token_hash, int64_t stakeholder_id,
                                  const SessionSpec& spec, const AuditEntry& audit = {}) = 0;
  // The stakeholder of a session that has neither expired nor been idle too long, or nullopt.
  // Records the use (to kLastUseResolutionSeconds).
  virtual Result<std::optional<StakeholderRecord>> FindSession(ByteSpan token_hash,
                                                               int64_t now) = 0;
  // Ends a session (logout); `audit` is appended only when there was one. Returns whether
  // there was.
  virtual Result<bool> DeleteSession(ByteSpan token_hash, const AuditEntry& audit = {}) = 0;

  // --- personal API tokens ---
  // kConflict if the stakeholder has a token of that name (or the hash exists).
  virtual Result<ApiTokenRecord> AddApiToken(int64_t stakeholder_id, std::string_view name,
                                             ByteSpan token_hash, int64_t now,
                                             int64_t expires_at,
                                             const AuditEntry& audit = {}) = 0;
  // The stakeholder's tokens, ordered by id.
  virtual Result<std::vector<ApiTokenRecord>> ListApiTokens(int64_t stakeholder_id) = 0;
  // kNotFound unless the stakeholder has a token with that id.
  virtual Result<void> RevokeApiToken(int64_t stakeholder_id, int64_t token_id,
                                      const AuditEntry& audit = {}) = 0;
  // The stakeholder of an unexpired token, or nullopt. Records the use (to
  // kLastUseResolutionSeconds).
  virtual Result<std::optional<StakeholderRecord>> FindApiToken(ByteSpan token_hash,
                                                                int64_t now) = 0;

  // --- second factor (TOTP and recovery codes) ---
  virtual Result<std::optional<TotpRecord>> FindTotp(int64_t stakeholder_id) = 0;
  // Stores a new unconfirmed secret, replacing an unconfirmed one. kNotFound for an unknown
  // stakeholder; kConflict while the account has a confirmed secret.
  virtual Result<void> BeginTotp(int64_t stakeholder_id, ByteSpan secret_sealed, int64_t now,
                                 const AuditEntry& audit = {}) = 0;
  // Confirms the unconfirmed secret with its first accepted time step and sets the recovery
  // codes (SHA-256 hashes). kNotFound without an unconfirmed secret.
  virtual Result<void> ConfirmTotp(int64_t stakeholder_id, int64_t step,
                                   const std::vector<Bytes>& code_hashes,
                                   const AuditEntry& audit = {}) = 0;
  // Accepts a time step of a confirmed secret at most once: true (and recorded) if `step` is
  // above every step accepted before, false otherwise (a replayed or older code).
  virtual Result<bool> UseTotpStep(int64_t stakeholder_id, int64_t step) = 0;
  // Uses up the recovery code with that hash: true if the account had it. `audit` is appended
  // only then.
  virtual Result<bool> UseRecoveryCode(int64_t stakeholder_id, ByteSpan code_hash,
                                       const AuditEntry& audit = {}) = 0;
  // Replaces every recovery code. kNotFound without a confirmed secret.
  virtual Result<void> ReplaceRecoveryCodes(int64_t stakeholder_id,
                                            const std::vector<Bytes>& code_hashes,
                                            const AuditEntry& audit = {}) = 0;
  // Removes the secret and the recovery codes; whether there was a secret. `audit` is appended
  // only then.
  virtual Result<bool> RemoveTotp(int64_t stakeholder_id, const AuditEntry& audit = {}) = 0;

  // --- lockout counters ---
  // The key's record, if it has one.
  virtual Result<std::optional<FailureRecord>> FindFailures(std::string_view key) = 0;
  // In one transaction: applies `update` to the key's record (a zero record if it has none) and
  // stores the result; and drops the records of every key that is not locked at `now` and has
  // not failed since `stale_before`. `update` may run more than once (a transaction retried after
  // a conflict runs it again on the record as then read), so it must only change the record.
  virtual Result<void> UpdateFailures(std::string_view key,
                                      const std::function<void(FailureRecord&)>& update,
                                      int64_t now, int64_t stale_before) = 0;
  // Deletes the records of `keys` (absent ones are skipped); how many there were. The audit
  // entry is appended only when one was deleted.
  virtual Result<int> ClearFailures(const std::vector<std::string>& keys,
                                    const AuditEntry& audit = {}) = 0;
  // Every key's record, ordered by key.
  virtual Result<std::vector<FailureKeyRecord>> ListFailures() = 0;

  // --- enrolees (the MTE Enrolee Database) ---
  // kNotFound if the device is not in the manifest; kConflict if it already has an enrolee entry.
  virtual Result<EnroleeRecord> AddEnrolee(int64_t stakeholder_id, std::string_view device_id,
                                           std::string_view label, int64_t now,
                                           const AuditEntry& audit = {}) = 0;
  virtual Result<std::optional<EnroleeRecord>> GetEnrolee(int64_t id) = 0;
  virtual Result<std::optional<EnroleeRecord>> FindEnroleeByDevice(std::string_view device_id) = 0;
  // A Flow B entry (seed 8.y.4 step 6): no claim; `device_id` optional (kNotFound if given and
  // not in the manifest, kConflict if it already has an entry).
  virtual Result<EnroleeRecord> AddEnroleeEntry(int64_t stakeholder_id,
                                                std::optional<std::string_view> device_id,
                                                std::string_view label,
                                                std::string_view device_info, int64_t now,
                                                const AuditEntry& audit = {}) = 0;
  // All enrolees, or only those of one stakeholder; ordered by id.
  virtual Result<std::vector<EnroleeRecord>> ListEnrolees(
      std::optional<int64_t> stakeholder_id) = 0;

  // Records an enrolment and its outbox item atomically; sets state=enrolled,
  // generation=expected_generation+1, maf_delivery=pending. kConflict if the generation moved
  // (a concurrent enrolment won); kNotFound if the enrolee does not exist.
  virtual Result<EnroleeRecord> CommitEnrolment(const EnrolmentCommit& commit) = 0;

  // Revokes an enrolee: state=revoked, its Ke cleared (ke_sealed empty, ke_expires_at=now) and
  // its credential IDs removed, its active tokens revoked, generation bumped to `expected_generation`+1 and, when `retire` has a
  // target, that outbox item recorded at the new generation (it tells the target to retire every
  // older credential; maf_delivery becomes pending). Returns false and changes nothing (no audit)
  // when the enrolee is already revoked. kConflict if the generation moved (an enrolment
  // committed meanwhile); kNotFound for an unknown enrolee; kLocalUsage/kMalformed if `retire`
  // does not carry the enrolee id and the new generation.
  virtual Result<bool> RevokeEnrolee(int64_t enrolee_id, int64_t expected_generation,
                                     const OutboxItem& retire, int64_t now,
                                     const AuditEntry& audit = {}) = 0;

  // Deletes an enrolee entry that is not enrolled (pending or revoked) with its tokens, its
  // credential IDs and its delivered outbox items; its device can be claimed again. kNotFound for
  // an unknown enrolee; kConflict while it is enrolled or an outbox item of it is undelivered
  // (a revocation's retirement must reach the MAF first).
  virtual Result<void> DeleteEnrolee(int64_t enrolee_id, const AuditEntry& audit = {}) = 0;

  // --- Enrolment-Tokens ---
  // Revokes the enrolee's active tokens and stores a new one; a revoked enrolee becomes pending
  // again (re-armed for a fresh enrolment). kNotFound for an unknown enrolee.
  virtual Result<TokenRecord> IssueToken(int64_t enrolee_id, ByteSpan token_hash, int64_t now,
                                         int64_t expires_at, const AuditEntry& audit = {}) = 0;
  virtual Result<std::optional<TokenRecord>> FindToken(ByteSpan token_hash) = 0;

  // --- outbox ---
  // Undelivered items with next_attempt_at <= now, oldest first (by id), at most `limit` (none
  // for limit <= 0). Reads only: two processes calling it at once get the same items.
  virtual Result<std::vector<OutboxItem>> DueOutbox(int64_t now, int limit) = 0;
  // Claims due items for delivery by one of several processes sharing the outbox: atomically
  // takes up to `limit` undelivered items with next_attempt_at <= now, oldest first (by id), sets
  // their next_attempt_at to `lease_until` and returns them as they now are (next_attempt_at ==
  // lease_until; attempts and last_error unchanged). Until the lease ends no other call claims
  // them, and an item whose claimant died before MarkDelivered or MarkAttemptFailed becomes due
  // again when it does. Items claimed at the same time by two calls (two processes or two
  // threads) are disjoint; a delivered item is never claimed. limit <= 0 claims nothing.
  // kLocalUsage/kInvariant unless lease_until > now.
  virtual Result<std::vector<OutboxItem>> ClaimDueOutbox(int64_t now, int limit,
                                                         int64_t lease_until) = 0;
  virtual Result<OutboxStatus> GetOutboxStatus() = 0;
  // Marks the items delivered, all in one transaction; also sets each enrolee's maf_delivery to
  // delivered when the item's generation is the enrolee's current one. Idempotent. An unknown id
  // (kNotFound) marks nothing. The mark need not survive a power cut (no fsync of its own; the
  // next durable commit carries it): a lost mark only repeats a delivery, which the receiving end
  // treats as idempotent.
  virtual Result<void> MarkDelivered(const std::vector<int64_t>& outbox_ids, int64_t now) = 0;
  virtual Result<void> MarkAttemptFailed(int64_t outbox_id, int64_t next_attempt_at,
                                         std::string_view error) = 0;
  virtual Result<std::optional<OutboxItem>> GetOutboxItem(int64_t outbox_id) = 0;

  // --- MAF key store ---
  // Stores a delivered credential. Idempotent per (enrolee_id, generation): a repeat returns
  // false and changes nothing. A newer generation for the same enrolee replaces (deletes) the
  // older credentials; an older one than stored is ignored (returns false).
  virtual Result<bool> PutMafCredential(const MafCredential& credential,
                                        const AuditEntry& audit = {}) = 0;
  // Removes the enrolee's credentials older than `generation` without storing a new one, and
  // remembers `generation` so that a late delivery of an older one is ignored. Returns false for a
  // repeat (nothing newer than what is known). Idempotent.
  virtual Result<bool> RetireMafCredentials(int64_t enrolee_id, int64_t generation,
                                            const AuditEntry& audit = {}) = 0;
  // Applies deliveries in order in ONE transaction, so one durable commit for all of them: each as
  // PutMafCredential or RetireMafCredentials would, inside its own savepoint, so that an item that
  // fails (a KmID held by another enrolee) changes nothing and the others still apply. Fails as a
  // whole only when the transaction does; otherwise one result per delivery, as the single
  // method would have returned it.
  virtual Result<std::vector<Result<bool>>> ApplyMafDeliveries(
      const std::vector<MafDelivery>& deliveries) = 0;
  // Case-insensitive on km_id.
  virtual Result<std::optional<MafCredential>> FindMafCredential(std::string_view km_id) = 0;
  virtual Result<std::vector<MafCredential>> ListMafCredentials() = 0;

  // --- audit (append-only) ---
  virtual Result<void> Audit(const AuditEntry& entry) = 0;
  virtual Result<std::vector<AuditEntry>> ListAudit() = 0;
};

// Opens (creating if needed) a SQLite database in WAL mode with synchronous=FULL and applies the
// schema migrations. `path` may be ":memory:". kStorage/kDatabase on failure.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

// Opens a PostgreSQL database that the operator created (empty, or migrated by this code) and
// applies the schema migrations, serialised between processes by an advisory lock. `uri` is a
// libpq connection URI, postgresql://[user[:password]@][host][:port][/dbname][?param=value&...]
// (libpq §34.1.1: host, port, dbname, user, password, sslmode, host=/dir for a Unix socket, ...);
// connect_timeout is 10 s unless the URI sets it. The store keeps a small pool of connections,
// runs every method as a SERIALIZABLE transaction that it retries on serialization failures and
// deadlocks, replaces a connection that broke (a server restart) on its next use, and commits
// durably (a session whose synchronous_commit is off is set to on). kStorage/kDatabase on failure, for a URI that is
// not a postgresql:// or postgres:// URI, and for a database whose schema is newer than this
// build. Error details never contain the password.
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& uri);

// Opens the store at `location`: a PostgreSQL database when it starts with "postgresql://" or
// "postgres://" (OpenPostgresStore), otherwise a SQLite file or ":memory:" (OpenSqliteStore).
Result<std::unique_ptr<Store>> OpenStore(const std::string& location);

}  // namespace mte::store
