#include "store/store.h"

namespace mte::store {

std::string_view ToString(EnroleeState state) {
  switch (state) {
    case EnroleeState::kPending:
      return "pending";
    case EnroleeState::kEnrolled:
      return "enrolled";
    case EnroleeState::kRevoked:
      return "revoked";
  }
  return "unknown";
}

std::string_view ToString(DeliveryStatus status) {
  switch (status) {
    case DeliveryStatus::kNone:
      return "none";
    case DeliveryStatus::kPending:
      return "pending";
    case DeliveryStatus::kDelivered:
      return "delivered";
  }
  return "unknown";
}

std::string_view ToString(TokenState state) {
  switch (state) {
    case TokenState::kActive:
      return "active";
    case TokenState::kSpent:
      return "spent";
    case TokenState::kRevoked:
      return "revoked";
  }
  return "unknown";
}

std::string_view ToString(CredentialKind kind) {
  switch (kind) {
    case CredentialKind::kKpm:
      return "kpm";
    case CredentialKind::kCertSha256:
      return "cert-sha256";
    case CredentialKind::kSpkiSha256:
      return "spki-sha256";
  }
  return "unknown";
}

std::optional<CredentialKind> ParseCredentialKind(std::string_view text) {
  for (const CredentialKind kind :
       {CredentialKind::kKpm, CredentialKind::kCertSha256, CredentialKind::kSpkiSha256}) {
    if (text == ToString(kind)) return kind;
  }
  return std::nullopt;
}

Result<std::unique_ptr<Store>> OpenStore(const std::string& location) {
  if (location.starts_with("postgresql://") || location.starts_with("postgres://")) {
    return OpenPostgresStore(location);
  }
  return OpenSqliteStore(location);
}

const DeviceCredential* DeviceRecord::Find(CredentialKind kind) const {
  for (const DeviceCredential& credential : credentials) {
    if (credential.kind == kind) return &credential;
  }
  return nullptr;
}

}  // namespace mte::store
