// Proof of control and the enrolee view shared by the portal REST API and `mte admin`
// (seed 8.y.3 steps 3-4).
// Blocking (Argon2id, database): worker threads only.
#pragma once

#include <nlohmann/json.hpp>

#include <string_view>

#include "base/clock.h"
#include "base/result.h"
#include "base/secret.h"
#include "crypto/aead.h"
#include "store/store.h"

namespace mte {

inline constexpr size_t kMaxLabelLength = 256;
inline constexpr size_t kMaxClaimCodeLength = 128;

// Adds the enrolee for `device_id` to the stakeholder after checking the claim code.
// An unknown device and a wrong claim code give the same error (kPeerAuth/kForbidden,
// "device ID or claim code is wrong"), so device IDs cannot be probed. kConflict if the device
// already has an enrolee entry; kMalformed for an oversized label or code.
Result<store::EnroleeRecord> ClaimDevice(store::Store& store,
                                         const store::StakeholderRecord& stakeholder,
                                         std::string_view device_id,
                                         const SecretString& claim_code, std::string_view label,
                                         int64_t now);

// The outbox item that delivers Km, under KmID `km_id`, of `enrolee_id` at `generation` to the MAF
// (docs/protocol.md §10.1): the credential body, compact JSON with its members in alphabetical
// order, sealed with aad "outbox|<enrolee id>|<generation>"; due at `now`.
Result<store::OutboxItem> MafCredentialDelivery(const crypto::KeyEncryptionKey& kek, Rng& rng,
                                                std::string_view km_id, const SecretBytes& km,
                                                int64_t enrolee_id, int64_t generation,
                                                int64_t expires_at, int64_t now);

// The outbox item that tells the MAF to retire every credential of `enrolee_id` older than
// `generation` (docs/protocol.md §10.1), sealed with aad "outbox|<enrolee id>|<generation>".
Result<store::OutboxItem> MafRetirement(const crypto::KeyEncryptionKey& kek, Rng& rng,
                                        int64_t enrolee_id, int64_t generation, int64_t now);

// Revokes the enrolee (docs/protocol.md §12, POST /api/v1/enrolees/{id}/revoke): its unused Enrolment-Tokens are
// revoked, its Ke is cleared, the MEF refuses its device until a new Enrolment-Token re-arms it,
// and the MAF retires its Km through the outbox (exactly once, surviving restarts). `actor` and
// `detail` go to the audit trail. Returns the record after the revocation and whether this call
// revoked it (false: it was already revoked). kNotFound for an unknown enrolee.
struct Revocation {
  store::EnroleeRecord enrolee;
  bool revoked_now = false;
};
Result<Revocation> RevokeEnrolee(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng,
                                 int64_t enrolee_id, int64_t now, std::string_view actor,
                                 std::string_view detail);

// "enrolee <id>[ device <device id>]", the audit subject of lifecycle entries.
std::string EnroleeSubject(const store::EnroleeRecord& enrolee);

// Deletes an entry that is not enrolled (store::Store::DeleteEnrolee), audited as
// enrolee.delete by `actor`. kNotFound, kConflict as the store says.
Result<void> DeleteEnrolee(store::Store& store, const store::EnroleeRecord& enrolee, int64_t now,
                           std::string_view actor);

// An audit entry as JSON: {"id","at" (RFC 3339),"actor","action","subject","detail"}.
nlohmann::json AuditEntryJson(const store::AuditEntry& entry);

// The public JSON view of an enrolee (no secrets).
nlohmann::json EnroleeJson(const store::EnroleeRecord& enrolee);

}  // namespace mte
