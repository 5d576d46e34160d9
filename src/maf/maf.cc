#include "maf/maf.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <strings.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "crypto/keys.h"
#include "proto/onem2m.h"

namespace mte {

using proto::Rsc;

Maf::Maf(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
         MafSettings settings)
    : store_(store), kek_(kek), rng_(rng), clock_(clock), settings_(std::move(settings)) {}

std::optional<SecretBytes> Maf::LookupKm(std::string_view km_id) {
  if (!crypto::CheckIdentifier(km_id, "KmID")) return std::nullopt;
  auto found = store_.FindMafCredential(km_id);
  if (!found) {
    spdlog::error("maf: credential lookup failed: {}", Describe(found.error()));
    return std::nullopt;
  }
  if (!found->has_value()) {
    spdlog::info("maf: handshake with unknown KmID '{}'", km_id);
    return std::nullopt;
  }
  if ((*found)->expires_at <= UnixSeconds(clock_.Now())) {
    spdlog::info("maf: handshake with expired KmID '{}'", km_id);
    return std::nullopt;
  }
  auto km = kek_.Open((*found)->km_sealed, "km|" + (*found)->km_id);
  if (!km) {
    spdlog::error("maf: cannot open Km '{}': {}", (*found)->km_id, Describe(km.error()));
    return std::nullopt;
  }
  return std::move(*km);
}

proto::HttpResponse Maf::HandleDelivery(const proto::HttpRequest& request,
                                        const crypto::TlsEngine& tls) {
  std::string request_id = proto::RequestIdOf(request);
  bool from_mef = false;
  for (const auto& name : tls.peer_dns_names()) {
    if (strcasecmp(name.c_str(), settings_.mef_fqdn.c_str()) == 0) from_mef = true;
  }
  if (!from_mef) {
    spdlog::warn("maf: delivery refused: client certificate does not name the MEF '{}'",
                 settings_.mef_fqdn);
    return proto::MakeErrorResponse(Rsc::kOriginatorHasNoPrivilege,
                                    "only the MEF may deliver credentials", request_id);
  }
  if (request.target != "/maf/v1/credentials") {
    return proto::MakeErrorResponse(Rsc::kNotFound, "no such resource", request_id);
  }
  if (request.method != "POST") {
    return proto::MakeErrorResponse(Rsc::kOperationNotAllowed, "use POST", request_id);
  }
  auto result = Deliver(request, request_id);
  if (result) return std::move(*result);
  spdlog::warn("maf: delivery refused: {}", Describe(result.error()));
  if (result.error().kind != ErrorKind::kPeerProtocol &&
      result.error().kind != ErrorKind::kPeerAuth) {
    return proto::MakeErrorResponse(Rsc::kInternalServerError, "internal error", request_id);
  }
  return proto::MakeErrorResponse(proto::RscFor(result.error()), result.error().detail,
                                  request_id);
}

Result<proto::HttpResponse> Maf::Deliver(const proto::HttpRequest& request,
                                         const std::string& request_id) {
  if (!proto::IsJsonContentType(request)) {
    return proto::MakeErrorResponse(Rsc::kUnsupportedMediaType,
                                    "Content-Type must be application/json", request_id);
  }
  std::string duplicate;
  auto j = proto::ParseJsonStrict(request.body, &duplicate);
  if (!duplicate.empty()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "duplicate member in body");
  }
  if (j.is_discarded() || !j.is_object()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "body must be a JSON object");
  }
  // The parsed Km is wiped on every way out, refusals included.
  struct WipeKm {
    nlohmann::json& body;
    ~WipeKm() {
      auto it = body.find("km");
      if (it == body.end() || !it->is_string()) return;
      auto* text = it->get_ptr<std::string*>();
      SecureWipe(text->data(), text->size());
    }
  } wipe_km{j};
  if (j.contains("retire")) {
    std::optional<int64_t> enrolee_id, generation;
    if (j.contains("enroleeId")) enrolee_id = proto::JsonInteger(j["enroleeId"], 1, INT64_MAX);
    if (j.contains("generation")) generation = proto::JsonInteger(j["generation"], 1, INT64_MAX);
    bool well_formed = j.size() == 3 && j["retire"].is_boolean() && j["retire"].get<bool>() &&
                       enrolee_id && generation;
    if (!well_formed) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                  "a retirement has exactly the members retire (true), enroleeId, generation "
                  "(integers from 1)");
    }
    return Retire(*enrolee_id, *generation, request_id);
  }
  store::MafCredential credential;
  std::string km_hex;
  if (!j.contains("kmId") || !j["kmId"].is_string() || !j.contains("km") ||
      !j["km"].is_string()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "expected members kmId, km, enroleeId, generation, expiresAt");
  }
  // Each number is an integer in its range; nothing is rounded or wrapped.
  constexpr int64_t kMaxUnixTime = 253402300799;  // 9999-12-31T23:59:59Z
  for (auto [name, field, hi, rule] :
       {std::tuple{"enroleeId", &credential.enrolee_id, INT64_MAX, "a positive integer"},
        std::tuple{"generation", &credential.generation, INT64_MAX, "a positive integer"},
        std::tuple{"expiresAt", &credential.expires_at, kMaxUnixTime,
                   "an integer Unix time from 1 to 253402300799"}}) {
    if (!j.contains(name)) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                  "expected members kmId, km, enroleeId, generation, expiresAt");
    }
    std::optional<int64_t> v = proto::JsonInteger(j[name], 1, hi);
    if (!v) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                  std::string("member ") + name + " must be " + rule);
    }
    *field = *v;
  }
  credential.km_id = j["kmId"].get<std::string>();
  if (auto ok = crypto::CheckIdentifier(credential.km_id, "kmId"); !ok) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, ok.error().detail);
  }
  km_hex = j["km"].get<std::string>();
  auto km_bytes = HexDecode(km_hex);
  SecureWipe(km_hex.data(), km_hex.size());
  if (!km_bytes || km_bytes->size() != 32) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "km must be 32 octets in hex");
  }
  SecretBytes km(*km_bytes, SecretAccess::ForCrypto());
  SecureWipe(km_bytes->data(), km_bytes->size());
  int64_t now = UnixSeconds(clock_.Now());
  credential.received_at = now;
  MTE_TRY_ASSIGN(credential.km_sealed, kek_.Seal(km, "km|" + credential.km_id, rng_));
  MTE_TRY_ASSIGN(bool stored,
                 store_.PutMafCredential(credential,
                                         {0, now, "maf", "credential.receive",
                                          "KmID " + credential.km_id + " enrolee " +
                                              std::to_string(credential.enrolee_id),
                                          "generation " + std::to_string(credential.generation)}));
  if (stored) {
    spdlog::info("maf: stored credential KmID {} for enrolee {} (generation {})",
                 credential.km_id, credential.enrolee_id, credential.generation);
  } else {
    spdlog::info("maf: credential KmID {} already stored (repeat delivery)", credential.km_id);
  }
  nlohmann::json body = {{"kmId", credential.km_id}, {"stored", stored}};
  return proto::MakeResponse(stored ? Rsc::kCreated : Rsc::kOk, body.dump(), request_id);
}

Result<proto::HttpResponse> Maf::Retire(int64_t enrolee_id, int64_t generation,
                                        const std::string& request_id) {
  int64_t now = UnixSeconds(clock_.Now());
  MTE_TRY_ASSIGN(bool retired,
                 store_.RetireMafCredentials(enrolee_id, generation,
                                             {0, now, "maf", "credential.retire",
                                              "enrolee " + std::to_string(enrolee_id),
                                              "below generation " + std::to_string(generation)}));
  if (retired) {
    spdlog::info("maf: retired the credentials of enrolee {} below generation {}", enrolee_id,
                 generation);
  }
  nlohmann::json body = {{"enroleeId", enrolee_id}, {"retired", retired}};
  return proto::MakeResponse(retired ? Rsc::kCreated : Rsc::kOk, body.dump(), request_id);
}

proto::HttpResponse Maf::HandleDevice(const proto::HttpRequest& request,
                                      const crypto::TlsEngine& tls) {
  std::string request_id = proto::RequestIdOf(request);
  if (request.target != "/maf/v1/session") {
    return proto::MakeErrorResponse(Rsc::kNotFound, "no such resource: use GET /maf/v1/session",
                                    request_id);
  }
  if (request.method != "GET") {
    return proto::MakeErrorResponse(Rsc::kOperationNotAllowed, "use GET", request_id);
  }
  auto found = store_.FindMafCredential(tls.psk_identity());
  if (!found || !found->has_value()) {
    return proto::MakeErrorResponse(Rsc::kInternalServerError, "credential vanished", request_id);
  }
  nlohmann::json body = {{"kmId", (*found)->km_id},
                         {"enroleeId", (*found)->enrolee_id},
                         {"mafFqdn", settings_.maf_fqdn},
                         {"tlsVersion", tls.version()},
                         {"cipher", tls.cipher()}};
  spdlog::info("maf: handshake with KmID {} ({} {})", (*found)->km_id, tls.version(),
               tls.cipher());
  return proto::MakeResponse(Rsc::kOk, body.dump(), request_id);
}

}  // namespace mte
