// What both store implementations check and decide the same way before and after they talk to
// their database (docs/architecture.md §5): argument checks, the error kinds of store.h, how
// stored enum text is read back, and the audit subject's "{id}".
// Thread-safety: free functions without state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "store/store.h"

namespace mte::store::internal {

// An outbox error message is operator text from a failed delivery; rows stay bounded.
inline constexpr size_t kMaxLastErrorBytes = 1024;
inline constexpr size_t kMaxFailureKeyLength = 300;

Error StorageError(std::string detail);   // kStorage/kDatabase
Error ConflictError(std::string detail);  // kLocalUsage/kConflict
Error NotFoundError(std::string detail);  // kLocalUsage/kNotFound
Error MalformedError(std::string detail); // kLocalUsage/kMalformed

// 'text', for identifiers in error details.
std::string Quoted(std::string_view text);

bool IsLowerHexSha256(std::string_view text);
std::string AsciiLower(std::string_view text);
inline bool IsCertificateKind(CredentialKind kind) { return kind != CredentialKind::kKpm; }

// ImportDevices' check of one manifest device, before anything is written.
Result<void> CheckDevice(std::string_view op, const DeviceRecord& device);
// AddDeviceCa's checks of the record.
Result<void> CheckDeviceCa(std::string_view op, const DeviceCaRecord& ca);
// UpdateFailures' check of the key.
Result<void> CheckFailureKey(std::string_view op, std::string_view key);
// CommitEnrolment's checks of the commit (kLocalUsage/kInvariant).
Result<void> CheckCommit(std::string_view op, const EnrolmentCommit& commit);
// RevokeEnrolee's check of the retirement item (kLocalUsage/kMalformed).
Result<void> CheckRetire(std::string_view op, int64_t enrolee_id, int64_t expected_generation,
                         const OutboxItem& retire);
// ClaimDueOutbox's check of the lease (kLocalUsage/kInvariant).
Result<void> CheckLease(std::string_view op, int64_t now, int64_t lease_until);

// Stored text back to the enums; kStorage/kDatabase for anything else.
Result<EnroleeState> ParseEnroleeState(std::string_view text);
Result<DeliveryStatus> ParseDeliveryStatus(std::string_view text);
Result<TokenState> ParseTokenState(std::string_view text);

// A stored attempt count as an int: the column is ours, but a database is still input.
int ClampAttempts(int64_t attempts);

// The subject an audit entry is stored with: its first "{id}" replaced by `new_id`.
std::string AuditSubject(const AuditEntry& entry, int64_t new_id);

}  // namespace mte::store::internal
