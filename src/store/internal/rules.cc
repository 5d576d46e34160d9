#include "store/internal/rules.h"

#include <limits>
#include <utility>

namespace mte::store::internal {

Error StorageError(std::string detail) {
  return Error{ErrorKind::kStorage, Errc::kDatabase, std::move(detail)};
}

Error ConflictError(std::string detail) {
  return Error{ErrorKind::kLocalUsage, Errc::kConflict, std::move(detail)};
}

Error NotFoundError(std::string detail) {
  return Error{ErrorKind::kLocalUsage, Errc::kNotFound, std::move(detail)};
}

Error MalformedError(std::string detail) {
  return Error{ErrorKind::kLocalUsage, Errc::kMalformed, std::move(detail)};
}

std::string Quoted(std::string_view text) {
  std::string out = "'";
  out += text;
  out += "'";
  return out;
}

bool IsLowerHexSha256(std::string_view text) {
  constexpr size_t kSha256HexLength = 64;
  if (text.size() != kSha256HexLength) return false;
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

namespace {

// A device CA name: 1..64 of [A-Za-z0-9._-], so that it can appear in logs and file names as is.
bool IsDeviceCaName(std::string_view name) {
  if (name.empty() || name.size() > kMaxDeviceCaNameLength) return false;
  for (const char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Result<void> CheckDevice(std::string_view op, const DeviceRecord& device) {
  const std::string who = std::string(op) + ": device_id " + Quoted(device.device_id);
  if (device.credentials.empty()) {
    return Fail(MalformedError(who + " has no credentials"));
  }
  for (const DeviceCredential& credential : device.credentials) {
    const std::string what = who + ": " + std::string(ToString(credential.kind)) + " credential";
    if (credential.kind == CredentialKind::kKpm) {
      if (credential.id.empty()) return Fail(MalformedError(what + " has an empty KpmID"));
      if (credential.secret_sealed.empty()) {
        return Fail(MalformedError(what + " " + Quoted(credential.id) + " has no sealed Kpm"));
      }
    } else {
      if (!IsLowerHexSha256(credential.id)) {
        return Fail(MalformedError(what + " " + Quoted(credential.id.substr(0, 80)) +
                                   " is not 64 lowercase hex characters"));
      }
      if (!credential.secret_sealed.empty()) {
        return Fail(MalformedError(what + " " + Quoted(credential.id) + " carries a secret"));
      }
    }
  }
  return {};
}

Result<void> CheckDeviceCa(std::string_view op, const DeviceCaRecord& ca) {
  if (!IsDeviceCaName(ca.name)) {
    return Fail(MalformedError(std::string(op) + ": name " + Quoted(ca.name.substr(0, 80)) +
                               " is not 1.." + std::to_string(kMaxDeviceCaNameLength) +
                               " of [A-Za-z0-9._-]"));
  }
  const std::string who = std::string(op) + " " + Quoted(ca.name);
  if (ca.cert_pem.empty()) return Fail(MalformedError(who + ": no certificate"));
  if (!IsLowerHexSha256(ca.cert_sha256)) {
    return Fail(MalformedError(who + ": cert_sha256 is not 64 lowercase hex characters"));
  }
  if (ca.max_chain_depth < 0 || ca.max_chain_depth > kMaxDeviceCaChainDepth) {
    return Fail(MalformedError(who + ": max_chain_depth must be 0.." +
                               std::to_string(kMaxDeviceCaChainDepth)));
  }
  if (!ca.crl_file.empty() && ca.crl_file.front() != '/') {
    return Fail(MalformedError(who + ": crl_file must be an absolute path"));
  }
  return {};
}

Result<void> CheckFailureKey(std::string_view op, std::string_view key) {
  if (key.empty() || key.size() > kMaxFailureKeyLength) {
    return Fail(MalformedError(std::string(op) + ": key must be 1.." +
                               std::to_string(kMaxFailureKeyLength) + " bytes"));
  }
  return {};
}

Result<void> CheckCommit(std::string_view op, const EnrolmentCommit& commit) {
  const std::string subject = "enrolee " + std::to_string(commit.enrolee_id);
  if (commit.expected_generation < 0 ||
      commit.expected_generation == std::numeric_limits<int64_t>::max()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kInvariant,
                std::string(op) + ": " + subject + ": invalid expected_generation");
  }
  const int64_t generation = commit.expected_generation + 1;
  if (!commit.outbox.target.empty() &&
      (commit.outbox.enrolee_id != commit.enrolee_id || commit.outbox.generation != generation)) {
    return Fail(ErrorKind::kLocalUsage, Errc::kInvariant,
                std::string(op) + ": " + subject +
                    ": outbox item must carry the enrolee id and generation " +
                    std::to_string(generation));
  }
  return {};
}

Result<void> CheckRetire(std::string_view op, int64_t enrolee_id, int64_t expected_generation,
                         const OutboxItem& retire) {
  const int64_t generation = expected_generation + 1;
  if (!retire.target.empty() &&
      (retire.enrolee_id != enrolee_id || retire.generation != generation)) {
    return Fail(MalformedError(std::string(op) + ": enrolee " + std::to_string(enrolee_id) +
                               ": outbox item must carry the enrolee id and generation " +
                               std::to_string(generation)));
  }
  return {};
}

Result<void> CheckLease(std::string_view op, int64_t now, int64_t lease_until) {
  if (lease_until <= now) {
    return Fail(ErrorKind::kLocalUsage, Errc::kInvariant,
                std::string(op) + ": the lease must end after now");
  }
  return {};
}

Result<EnroleeState> ParseEnroleeState(std::string_view text) {
  for (const EnroleeState state :
       {EnroleeState::kPending, EnroleeState::kEnrolled, EnroleeState::kRevoked}) {
    if (text == ToString(state)) return state;
  }
  return Fail(StorageError("read enrolee: unknown state " + Quoted(text)));
}

Result<DeliveryStatus> ParseDeliveryStatus(std::string_view text) {
  for (const DeliveryStatus status :
       {DeliveryStatus::kNone, DeliveryStatus::kPending, DeliveryStatus::kDelivered}) {
    if (text == ToString(status)) return status;
  }
  return Fail(StorageError("read enrolee: unknown maf_delivery " + Quoted(text)));
}

Result<TokenState> ParseTokenState(std::string_view text) {
  for (const TokenState state : {TokenState::kActive, TokenState::kSpent, TokenState::kRevoked}) {
    if (text == ToString(state)) return state;
  }
  return Fail(StorageError("read token: unknown state " + Quoted(text)));
}

int ClampAttempts(int64_t attempts) {
  return attempts < 0                                 ? 0
         : attempts > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max()
                                                      : static_cast<int>(attempts);
}

std::string AuditSubject(const AuditEntry& entry, int64_t new_id) {
  std::string subject = entry.subject;
  constexpr std::string_view kPlaceholder = "{id}";
  if (auto at = subject.find(kPlaceholder); at != std::string::npos) {
    subject.replace(at, kPlaceholder.size(), std::to_string(new_id));
  }
  return subject;
}

}  // namespace mte::store::internal
