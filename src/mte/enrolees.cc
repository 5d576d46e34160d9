#include "mte/enrolees.h"

#include "crypto/keys.h"
#include "crypto/password.h"

namespace mte {
namespace {

std::string Time(int64_t t) {
  if (t == 0) return "";
  char buf[32];
  return std::string(FormatRfc3339(t, buf));
}

}  // namespace

Result<store::EnroleeRecord> ClaimDevice(store::Store& store,
                                         const store::StakeholderRecord& stakeholder,
                                         std::string_view device_id,
                                         const SecretString& claim_code, std::string_view label,
                                         int64_t now) {
  if (label.size() > kMaxLabelLength) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "label longer than 256 bytes");
  }
  if (claim_code.empty() || claim_code.size() > kMaxClaimCodeLength) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "claim code must be 1..128 bytes");
  }
  MTE_TRY(crypto::CheckIdentifier(device_id, "device ID"));
  MTE_TRY_ASSIGN(auto device, store.FindDevice(device_id));
  bool ok = device ? crypto::VerifyPassword(claim_code, device->claim_hash)
                   : crypto::VerifyAgainstNothing(claim_code);
  if (!device || !ok) {
    return Fail(ErrorKind::kPeerAuth, Errc::kForbidden, "device ID or claim code is wrong");
  }
  // The audit entry is written in the claim's own transaction; "{id}" is the new enrolee's id.
  return store.AddEnrolee(stakeholder.id, device_id, label, now,
                          {0, now, "stakeholder:" + stakeholder.name, "enrolee.add",
                           "enrolee {id} device " + std::string(device_id), ""});
}

nlohmann::json EnroleeJson(const store::EnroleeRecord& e) {
  return {
      {"id", e.id},
      {"deviceId", e.device_id},
      {"label", e.label},
      {"deviceInfo", e.device_info},
      {"stakeholder", e.stakeholder_name},
      {"state", std::string(store::ToString(e.state))},
      {"rspf", e.rspf},
      {"keId", e.ke_id},
      {"keExpiresAt", Time(e.ke_expires_at)},
      {"credentialIds", e.credential_ids},
      {"mafDelivery", std::string(store::ToString(e.maf_delivery))},
      {"generation", e.generation},
      {"createdAt", Time(e.created_at)},
      {"updatedAt", Time(e.updated_at)},
      {"enrolledAt", Time(e.enrolled_at)},
  };
}

}  // namespace mte
