#include "mte/mef.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/failpoint.h"
#include "crypto/keys.h"
#include "proto/onem2m.h"

namespace mte {
namespace {

using proto::Rsc;

// TS-0004 credIDTypeID 11: KmID (symmetric key to authenticate to a MAF), TS-0003 §10.4.
constexpr std::string_view kCredIdTypeKmId = "11";
// TS-0004 m2m:suid 21: RSPF-provisioned symmetric key shared with a MAF.
constexpr int kSuidMaf = 21;

std::string Rfc3339(int64_t t) {
  char buf[32];
  return std::string(FormatRfc3339(t, buf));
}

// Table 8.3.2.1-1 indications; absent members default as documented in docs/protocol.md.
struct EnrolmentIndications {
  bool maf_enrolment = true;
  bool certificate_enrolment = false;
  bool remote_management = false;
};

Result<EnrolmentIndications> ParseIndications(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "request body is not valid JSON");
  }
  if (!j.is_object()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "request body must be a JSON object");
  }
  EnrolmentIndications ind;
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool* field = nullptr;
    if (it.key() == "mafEnrolment") field = &ind.maf_enrolment;
    if (it.key() == "certificateEnrolment") field = &ind.certificate_enrolment;
    if (it.key() == "remoteManagement") field = &ind.remote_management;
    if (field == nullptr) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                  "unknown member '" + it.key().substr(0, 64) + "' in enrolment request");
    }
    if (!it.value().is_boolean()) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                  "member '" + it.key() + "' must be a boolean");
    }
    *field = it.value().get<bool>();
  }
  return ind;
}

}  // namespace

Mef::Mef(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
         MefSettings settings)
    : store_(store), kek_(kek), rng_(rng), clock_(clock), settings_(std::move(settings)) {}

std::optional<SecretBytes> Mef::LookupKpm(std::string_view kpm_id) {
  if (!crypto::CheckIdentifier(kpm_id, "KpmID")) {
    spdlog::info("mef: handshake with a malformed PSK identity");
    return std::nullopt;
  }
  auto device = store_.FindDeviceByKpmId(kpm_id);
  if (!device) {
    spdlog::error("mef: device lookup failed: {}", Describe(device.error()));
    return std::nullopt;
  }
  if (!device->has_value()) {
    spdlog::info("mef: handshake with unknown KpmID '{}'", kpm_id);
    return std::nullopt;
  }
  auto kpm = kek_.Open((*device)->kpm_sealed, "kpm|" + (*device)->device_id);
  if (!kpm) {
    spdlog::error("mef: cannot open Kpm of device '{}': {}", (*device)->device_id,
                  Describe(kpm.error()));
    return std::nullopt;
  }
  return std::move(*kpm);
}

proto::HttpResponse Mef::Handle(const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
  std::string request_id = proto::RequestIdOf(request);
  if (request.target != "/enrolment") {
    return proto::MakeErrorResponse(Rsc::kNotFound, "no such resource: use POST /enrolment",
                                    request_id);
  }
  if (request.method != "POST") {
    auto response = proto::MakeErrorResponse(Rsc::kOperationNotAllowed,
                                             "only POST is allowed on /enrolment", request_id);
    response.headers.Set("Allow", "POST");
    return response;
  }
  auto result = Enrol(request, tls, request_id);
  if (result) return std::move(*result);
  const Error& error = result.error();
  spdlog::info("mef: enrolment refused for KpmID '{}': {}", tls.psk_identity(), Describe(error));
  if (error.kind == ErrorKind::kStorage || error.kind == ErrorKind::kInternal ||
      error.kind == ErrorKind::kCrypto) {
    return proto::MakeErrorResponse(Rsc::kInternalServerError, "internal error", request_id);
  }
  return proto::MakeErrorResponse(proto::RscFor(error), error.detail, request_id);
}

Result<proto::HttpResponse> Mef::Enrol(const proto::HttpRequest& request,
                                       const crypto::TlsEngine& tls,
                                       const std::string& request_id) {
  if (!proto::IsJsonContentType(request)) {
    return proto::MakeErrorResponse(Rsc::kUnsupportedMediaType,
                                    "Content-Type must be application/json", request_id);
  }
  MTE_TRY_ASSIGN(EnrolmentIndications ind, ParseIndications(request.body));
  const std::string& kpm_id = tls.psk_identity();
  MTE_TRY_ASSIGN(auto device, store_.FindDeviceByKpmId(kpm_id));
  if (!device) {
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "unknown bootstrap credential");
  }
  MTE_TRY_ASSIGN(auto enrolee, store_.FindEnroleeByDevice(device->device_id));
  if (!enrolee) {
    // Seed 8.y.3 pre-condition: no enrolment without a stakeholder's proof of control.
    return Fail(ErrorKind::kPeerAuth, Errc::kNotClaimed,
                "device '" + device->device_id +
                    "' has not been claimed by a stakeholder (no proof of control)");
  }

  // TS-0003 §10.3.1: Enrolment Key Generation from the mutually authenticated session.
  MTE_TRY_ASSIGN(SecretBytes exported,
                 tls.Export(crypto::kBootstrapExporterLabel, crypto::kBootstrapExportLength));
  MTE_TRY_ASSIGN(crypto::EnrolmentKey key, crypto::SplitBootstrapExport(exported));
  std::string ke_id = crypto::MakeKeId(key.relative_ke_id, settings_.mef_fqdn);  // §10.3.4
  int64_t now = UnixSeconds(clock_.Now());
  int64_t expires_at = now + settings_.enrolment_expiry_seconds;
  int64_t generation = enrolee->generation + 1;
  std::string gen_aad = std::to_string(enrolee->id) + "|" + std::to_string(generation);

  store::EnrolmentCommit commit;
  commit.enrolee_id = enrolee->id;
  commit.expected_generation = enrolee->generation;
  commit.rspf = "PPSK";
  commit.ke_id = ke_id;
  MTE_TRY_ASSIGN(commit.ke_sealed, kek_.Seal(key.ke, "ke|" + gen_aad, rng_));
  commit.ke_expires_at = expires_at;
  commit.now = now;
  nlohmann::json instructions = nlohmann::json::array();
  if (ind.maf_enrolment) {
    // Seed step 7: KmID = KeID on the push path; Km = HMAC-SHA-256(Ke, label || MAF-ID).
    MTE_TRY_ASSIGN(SecretBytes km, crypto::DeriveKm(key.ke, settings_.maf_id));
    std::string km_id = ke_id;
    commit.credential_ids.push_back(std::string(kCredIdTypeKmId) + "-" + km_id);
    nlohmann::json payload = {
        {"kmId", km_id},
        {"km", HexLower(km.Expose(SecretAccess::ForCrypto()))},
        {"enroleeId", enrolee->id},
        {"generation", generation},
        {"expiresAt", expires_at},
    };
    std::string text = payload.dump();
    SecretBytes plain(AsBytes(text), SecretAccess::ForCrypto());
    SecureWipe(text.data(), text.size());
    SecureWipe(payload["km"].get_ptr<std::string*>()->data(), 64);
    commit.outbox.enrolee_id = enrolee->id;
    commit.outbox.generation = generation;
    commit.outbox.target = "maf";
    MTE_TRY_ASSIGN(commit.outbox.payload_sealed, kek_.Seal(plain, "outbox|" + gen_aad, rng_));
    commit.outbox.next_attempt_at = now;
    instructions.push_back({{"type", "mafEnrolment"},
                            {"credentialType", "symmetricKey"},
                            {"mafFqdn", settings_.maf_fqdn},
                            {"mafId", settings_.maf_id},
                            {"kmId", km_id},
                            {"suid", kSuidMaf},
                            {"expiresAt", Rfc3339(expires_at)}});
  }
  MTE_FAILPOINT_HIT("mef-before-commit");
  auto committed = store_.CommitEnrolment(commit);
  if (!committed) {
    if (committed.error().code == Errc::kConflict) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kConflict,
                  "a concurrent enrolment of this device won; retry");
    }
    return Fail(committed.error());
  }
  MTE_TRY(store_.Audit({0, now, "mef", enrolee->generation == 0 ? "enrolment.commit"
                                                                  : "enrolment.reenrol",
                        "enrolee " + std::to_string(enrolee->id) + " device " +
                            device->device_id + " KeID " + ke_id,
                        "generation " + std::to_string(generation)}));
  spdlog::info("mef: enrolled device '{}' (enrolee {}, generation {}) with KeID {} over {} {}",
               device->device_id, enrolee->id, generation, ke_id, tls.version(), tls.cipher());
  if (on_commit_) on_commit_();

  nlohmann::json body = {
      {"keId", ke_id},
      {"rspf", "PPSK"},
      {"enroleeId", enrolee->id},
      {"expiresAt", Rfc3339(expires_at)},
      {"credentialIds", commit.credential_ids},
      {"instructions", instructions},
      {"endOfEnrolment", true},
  };
  auto response = proto::MakeResponse(Rsc::kCreated, body.dump(), request_id);
  response.keep_alive = false;  // TS-0003 §8.3.2.1: the MEF closes the session after the exchange
  return response;
}

}  // namespace mte
