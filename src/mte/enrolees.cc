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

namespace {

// The outbox item for the MAF that carries `payload` (JSON, wiped here) for `enrolee_id` at
// `generation`, sealed with aad "outbox|<enrolee id>|<generation>", due at `now`.
Result<store::OutboxItem> SealedMafItem(const crypto::KeyEncryptionKey& kek, Rng& rng,
                                        nlohmann::json& payload, int64_t enrolee_id,
                                        int64_t generation, int64_t now) {
  std::string text = payload.dump();
  SecretBytes plain(AsBytes(text), SecretAccess::ForCrypto());
  SecureWipe(text.data(), text.size());
  if (auto km = payload.find("km"); km != payload.end() && km->is_string()) {
    SecureWipe(km->get_ptr<std::string*>()->data(), km->get_ptr<std::string*>()->size());
  }
  store::OutboxItem item;
  item.enrolee_id = enrolee_id;
  item.generation = generation;
  item.target = "maf";
  MTE_TRY_ASSIGN(item.payload_sealed,
                 kek.Seal(plain, store::OutboxAad(enrolee_id, generation), rng));
  item.next_attempt_at = now;
  return item;
}

}  // namespace

Result<store::OutboxItem> MafCredentialDelivery(const crypto::KeyEncryptionKey& kek, Rng& rng,
                                                std::string_view km_id, const SecretBytes& km,
                                                int64_t enrolee_id, int64_t generation,
                                                int64_t expires_at, int64_t now) {
  nlohmann::json payload = {
      {"kmId", std::string(km_id)},
      {"km", HexLower(km.Expose(SecretAccess::ForCrypto()))},
      {"enroleeId", enrolee_id},
      {"generation", generation},
      {"expiresAt", expires_at},
  };
  return SealedMafItem(kek, rng, payload, enrolee_id, generation, now);
}

Result<store::OutboxItem> MafRetirement(const crypto::KeyEncryptionKey& kek, Rng& rng,
                                        int64_t enrolee_id, int64_t generation, int64_t now) {
  nlohmann::json payload = {{"retire", true}, {"enroleeId", enrolee_id}, {"generation", generation}};
  return SealedMafItem(kek, rng, payload, enrolee_id, generation, now);
}

Result<Revocation> RevokeEnrolee(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng,
                                 int64_t enrolee_id, int64_t now, std::string_view actor,
                                 std::string_view detail) {
  // An enrolment may commit between the read and the revocation (the store refuses then with
  // kConflict): read again and retry a few times.
  for (int attempt = 0;; ++attempt) {
    MTE_TRY_ASSIGN(auto enrolee, store.GetEnrolee(enrolee_id));
    if (!enrolee) {
      return Fail(ErrorKind::kLocalUsage, Errc::kNotFound,
                  "enrolee " + std::to_string(enrolee_id) + " not found");
    }
    if (enrolee->state == store::EnroleeState::kRevoked) return Revocation{*enrolee, false};
    const int64_t generation = enrolee->generation + 1;
    // Nothing can be at the MAF before the first enrolment.
    store::OutboxItem retire;
    if (enrolee->generation > 0) {
      MTE_TRY_ASSIGN(retire, MafRetirement(kek, rng, enrolee_id, generation, now));
    }
    auto revoked = store.RevokeEnrolee(
        enrolee_id, enrolee->generation, retire, now,
        {0, now, std::string(actor), "enrolee.revoke", EnroleeSubject(*enrolee),
         "generation " + std::to_string(generation) +
             (retire.target.empty() ? ", nothing at the MAF" : ", MAF retirement queued") +
             (detail.empty() ? "" : ", " + std::string(detail))});
    if (!revoked) {
      if (revoked.error().code == Errc::kConflict && attempt < 3) continue;
      return Fail(revoked.error());
    }
    MTE_TRY_ASSIGN(auto after, store.GetEnrolee(enrolee_id));
    if (!after) {
      return Fail(ErrorKind::kStorage, Errc::kDatabase,
                  "enrolee " + std::to_string(enrolee_id) + " vanished during its revocation");
    }
    return Revocation{*after, *revoked};
  }
}

std::string EnroleeSubject(const store::EnroleeRecord& enrolee) {
  return "enrolee " + std::to_string(enrolee.id) +
         (enrolee.device_id.empty() ? "" : " device " + enrolee.device_id);
}

Result<void> DeleteEnrolee(store::Store& store, const store::EnroleeRecord& enrolee, int64_t now,
                           std::string_view actor) {
  return store.DeleteEnrolee(enrolee.id, {0, now, std::string(actor), "enrolee.delete",
                                          EnroleeSubject(enrolee),
                                          "was " + std::string(store::ToString(enrolee.state))});
}

nlohmann::json AuditEntryJson(const store::AuditEntry& entry) {
  return {{"id", entry.id},         {"at", Time(entry.at)},          {"actor", entry.actor},
          {"action", entry.action}, {"subject", entry.subject}, {"detail", entry.detail}};
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
      {"tokenExpiresAt", Time(e.token_expires_at)},
  };
}

}  // namespace mte
