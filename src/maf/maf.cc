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

namespace {

// The Km of a parsed delivery is wiped on every way out, refusals included.
struct WipeKm {
  nlohmann::json& body;
  ~WipeKm() {
    if (!body.is_object()) return;
    auto it = body.find("km");
    if (it == body.end() || !it->is_string()) return;
    auto* text = it->get_ptr<std::string*>();
    SecureWipe(text->data(), text->size());
  }
};

// One delivery (docs/protocol.md §10.1), a JSON object, checked: what the store applies, with Km
// sealed, or the client's error (kPeerProtocol).
Result<store::MafDelivery> ParseDelivery(nlohmann::json& j, const crypto::KeyEncryptionKey& kek,
                                         Rng& rng, int64_t now) {
  WipeKm wipe_km{j};
  store::MafDelivery delivery;
  store::MafCredential& credential = delivery.credential;
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
    delivery.retire = true;
    credential.enrolee_id = *enrolee_id;
    credential.generation = *generation;
    delivery.audit = {0,
                      now,
                      "maf",
                      "credential.retire",
                      "enrolee " + std::to_string(*enrolee_id),
                      "below generation " + std::to_string(*generation)};
    return delivery;
  }
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
  std::string km_hex = j["km"].get<std::string>();
  auto km_bytes = HexDecode(km_hex);
  SecureWipe(km_hex.data(), km_hex.size());
  if (!km_bytes || km_bytes->size() != 32) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "km must be 32 octets in hex");
  }
  SecretBytes km(*km_bytes, SecretAccess::ForCrypto());
  SecureWipe(km_bytes->data(), km_bytes->size());
  credential.received_at = now;
  MTE_TRY_ASSIGN(credential.km_sealed, kek.Seal(km, "km|" + credential.km_id, rng));
  delivery.audit = {
      0,
      now,
      "maf",
      "credential.receive",
      "KmID " + credential.km_id + " enrolee " + std::to_string(credential.enrolee_id),
      "generation " + std::to_string(credential.generation)};
  return delivery;
}

// What the MAF answers for one delivery (§10.3): the RSC and, on success, the JSON body; on
// failure the message (the details of failures that are not the client's stay in the log).
struct Answer {
  Rsc rsc = Rsc::kOk;
  nlohmann::json body;
  std::string error;
};

Answer Refusal(const Error& error) {
  spdlog::warn("maf: delivery refused: {}", Describe(error));
  if (error.kind != ErrorKind::kPeerProtocol && error.kind != ErrorKind::kPeerAuth) {
    return {Rsc::kInternalServerError, nullptr, "internal error"};
  }
  return {proto::RscFor(error), nullptr, error.detail};
}

Answer AnswerFor(const store::MafDelivery& d, const Result<bool>& applied) {
  if (!applied) return Refusal(applied.error());
  const bool changed = *applied;
  const store::MafCredential& c = d.credential;
  if (d.retire) {
    if (changed) {
      spdlog::info("maf: retired the credentials of enrolee {} below generation {}", c.enrolee_id,
                   c.generation);
    }
    return {changed ? Rsc::kCreated : Rsc::kOk,
            {{"enroleeId", c.enrolee_id}, {"retired", changed}},
            ""};
  }
  if (changed) {
    spdlog::info("maf: stored credential KmID {} for enrolee {} (generation {})", c.km_id,
                 c.enrolee_id, c.generation);
  } else {
    spdlog::info("maf: credential KmID {} already stored (repeat delivery)", c.km_id);
  }
  return {changed ? Rsc::kCreated : Rsc::kOk, {{"kmId", c.km_id}, {"stored", changed}}, ""};
}

}  // namespace

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
  const bool batch = request.target == "/maf/v1/credentials/batch";
  if (!batch && request.target != "/maf/v1/credentials") {
    return proto::MakeErrorResponse(Rsc::kNotFound, "no such resource", request_id);
  }
  if (request.method != "POST") {
    return proto::MakeErrorResponse(Rsc::kOperationNotAllowed, "use POST", request_id);
  }
  if (!proto::IsJsonContentType(request)) {
    return proto::MakeErrorResponse(Rsc::kUnsupportedMediaType,
                                    "Content-Type must be application/json", request_id);
  }
  std::string duplicate;
  auto j = proto::ParseJsonStrict(request.body, &duplicate);
  WipeKm wipe_km{j};
  std::string refusal;
  if (!duplicate.empty()) {
    refusal = "duplicate member in body";
  } else if (j.is_discarded() || !j.is_object()) {
    refusal = "body must be a JSON object";
  } else if (batch && (j.size() != 1 || !j.contains("deliveries") || !j["deliveries"].is_array() ||
                       j["deliveries"].empty() || j["deliveries"].size() > kMaxBatch)) {
    refusal = "a batch has exactly the member deliveries, a list of 1 to " +
              std::to_string(kMaxBatch) + " deliveries";
  }
  if (!refusal.empty()) {
    spdlog::warn("maf: delivery refused: {}", refusal);
    return proto::MakeErrorResponse(Rsc::kBadRequest, refusal, request_id);
  }
  const int64_t now = UnixSeconds(clock_.Now());
  if (!batch) {
    auto delivery = ParseDelivery(j, kek_, rng_, now);
    Answer answer;
    if (!delivery) {
      answer = Refusal(delivery.error());
    } else {
      auto applied = store_.ApplyMafDeliveries({*delivery});
      answer = !applied ? Refusal(applied.error()) : AnswerFor(*delivery, (*applied)[0]);
    }
    if (!answer.error.empty()) {
      return proto::MakeErrorResponse(answer.rsc, answer.error, request_id);
    }
    return proto::MakeResponse(answer.rsc, answer.body.dump(), request_id);
  }
  // A batch (§10.5): every well-formed delivery in one transaction, one answer per delivery.
  nlohmann::json& items = j["deliveries"];
  std::vector<Answer> answers(items.size());
  std::vector<store::MafDelivery> deliveries;
  std::vector<size_t> positions;
  for (size_t i = 0; i < items.size(); ++i) {
    auto delivery =
        items[i].is_object()
            ? ParseDelivery(items[i], kek_, rng_, now)
            : Result<store::MafDelivery>(Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                                              "a delivery must be a JSON object"));
    if (!delivery) {
      answers[i] = Refusal(delivery.error());
      continue;
    }
    deliveries.push_back(std::move(*delivery));
    positions.push_back(i);
  }
  if (!deliveries.empty()) {
    auto applied = store_.ApplyMafDeliveries(deliveries);
    if (!applied) {
      spdlog::warn("maf: batch of {} deliveries refused: {}", deliveries.size(),
                   Describe(applied.error()));
      return proto::MakeErrorResponse(Rsc::kInternalServerError, "internal error", request_id);
    }
    for (size_t k = 0; k < deliveries.size(); ++k) {
      answers[positions[k]] = AnswerFor(deliveries[k], (*applied)[k]);
    }
  }
  nlohmann::json results = nlohmann::json::array();
  for (Answer& a : answers) {
    nlohmann::json result =
        a.error.empty() ? std::move(a.body) : nlohmann::json{{"error", a.error}};
    result["status"] = proto::HttpStatusFor(a.rsc);
    results.push_back(std::move(result));
  }
  return proto::MakeResponse(Rsc::kOk, nlohmann::json{{"results", std::move(results)}}.dump(),
                             request_id);
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
