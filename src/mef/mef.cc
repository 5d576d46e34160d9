#include "mef/mef.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <mutex>

#include "base/failpoint.h"
#include "base/log.h"
#include "crypto/keys.h"
#include "mte/enrolees.h"
#include "proto/enrolment.h"
#include "proto/onem2m.h"
#include "proto/server_connection.h"

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
// Flow B also carries the hex of the outer session's channel binding.
Result<Mef::Request> ParseIndications(const std::string& body, bool flow_b,
                                      std::optional<std::string>& channel_binding) {
  std::string duplicate;
  auto j = proto::ParseJsonStrict(body, &duplicate);
  if (!duplicate.empty()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "duplicate member '" + log::Printable(duplicate.substr(0, 64)) +
                    "' in enrolment request");
  }
  if (j.is_discarded()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "request body is not valid JSON");
  }
  if (!j.is_object()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "request body must be a JSON object");
  }
  Mef::Request ind;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (flow_b && it.key() == "channelBinding") {
      if (!it.value().is_string() || it.value().get_ref<const std::string&>().size() > 128) {
        return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                    "member 'channelBinding' must be a hex string");
      }
      channel_binding = it.value().get<std::string>();
      continue;
    }
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
    : store_(store),
      kek_(kek),
      rng_(rng),
      clock_(clock),
      settings_(std::move(settings)),
      token_failures_(store, {settings_.max_token_failures, settings_.token_lockout_seconds,
                              settings_.token_lockout_seconds}),
      rspf_failures_(store, {settings_.max_rspf_failures, settings_.token_lockout_seconds,
                             settings_.token_lockout_seconds}) {}

Mef::~Mef() = default;

void Mef::AddRspf(std::unique_ptr<mef::Rspf> rspf) { rspfs_.push_back(std::move(rspf)); }

void Mef::ConfigureDirect(crypto::TlsServerOptions& options) const {
  for (const auto& rspf : rspfs_) rspf->ConfigureDirect(options);
}

std::optional<SecretBytes> Mef::LookupPsk(std::string_view identity) {
  for (const auto& rspf : rspfs_) {
    if (auto psk = rspf->LookupPsk(identity)) return psk;
  }
  return std::nullopt;
}

mef::Rspf* Mef::DirectRspf(const crypto::TlsEngine& tls) const {
  for (const auto& rspf : rspfs_) {
    if (rspf->Claims(tls)) return rspf.get();
  }
  return nullptr;
}

proto::HttpResponse Mef::RefusalResponse(const Error& error, const std::string& request_id,
                                         std::string_view who) {
  // Only the peer's own faults are explained to it; anything else is ours and stays in the log.
  if (error.kind != ErrorKind::kPeerProtocol && error.kind != ErrorKind::kPeerAuth) {
    spdlog::error("mef: enrolment for {} failed: {}", who, Describe(error));
    return proto::MakeErrorResponse(Rsc::kInternalServerError, "internal error", request_id);
  }
  spdlog::info("mef: enrolment refused for {}: {}", who, Describe(error));
  return proto::MakeErrorResponse(proto::RscFor(error), error.detail, request_id);
}

// An Enrolment Exchange request waiting for its RSPF's verdict (set from any thread).
struct PendingEnrolment {
  Mef::Request parsed;
  mef::Rspf* rspf = nullptr;
  std::shared_ptr<proto::PendingReply> reply = std::make_shared<proto::PendingReply>();
  std::mutex mutex;
  std::optional<Result<mef::AuthenticatedDevice>> device;
};

namespace {

// Parses the request of the Enrolment Exchange and, in Flow B, checks that the inner session
// runs inside THIS outer session (docs/conventions.md §2).
// `session` and `state` are null on a connection-less Flow A path.
Result<Mef::Request> ParseEnrolment(const proto::HttpRequest& request,
                                    const proto::TlsHttpSession* session,
                                    const MefConnectionState* state, bool& binding_mismatch) {
  const bool flow_b = session != nullptr && state != nullptr && session->depth() > 1;
  std::optional<std::string> channel_binding;
  MTE_TRY_ASSIGN(Mef::Request parsed, ParseIndications(request.body, flow_b, channel_binding));
  parsed.request_id = proto::RequestIdOf(request);
  if (!flow_b) return parsed;
  if (!channel_binding) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "member 'channelBinding' is required inside the RSPF session");
  }
  MTE_TRY_ASSIGN(SecretBytes binding, session->tls(0).Export(proto::kChannelBindingLabel,
                                                             proto::kChannelBindingLength,
                                                             ByteSpan()));
  auto bytes = binding.Expose(SecretAccess::ForCrypto());
  auto presented = HexDecode(*channel_binding);
  if (!presented || !ConstantTimeEqual(*presented, bytes)) {
    binding_mismatch = true;
    return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                "channel binding does not match the outer TLS session");
  }
  parsed.flow_b = Mef::FlowB{state->token_id, state->enrolee_id, state->token_spent,
                             std::vector<uint8_t>(bytes.begin(), bytes.end())};
  return parsed;
}

proto::HttpReply Reply(proto::HttpResponse response) {
  proto::HttpReply reply;
  reply.response = std::move(response);
  return reply;
}

// Checks the method and target of an Enrolment Exchange request; nullopt when they are right.
std::optional<proto::HttpResponse> CheckEnrolmentTarget(const proto::HttpRequest& request) {
  std::string request_id = proto::RequestIdOf(request);
  if (request.target != proto::kEnrolmentPath) {
    return proto::MakeErrorResponse(Rsc::kNotFound, "no such resource: use POST /enrolment",
                                    request_id);
  }
  if (request.method != "POST") {
    auto response = proto::MakeErrorResponse(Rsc::kOperationNotAllowed,
                                             "only POST is allowed on /enrolment", request_id);
    response.headers.Set("Allow", "POST");
    return response;
  }
  return std::nullopt;
}

// The Enrolment Exchange carries JSON (docs/protocol.md §6.1); nullopt when it does.
std::optional<proto::HttpResponse> CheckContentType(const proto::HttpRequest& request) {
  if (proto::IsJsonContentType(request)) return std::nullopt;
  return proto::MakeErrorResponse(Rsc::kUnsupportedMediaType,
                                  "Content-Type must be application/json",
                                  proto::RequestIdOf(request));
}

}  // namespace

proto::HttpResponse Mef::Handle(const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
  if (auto wrong = CheckEnrolmentTarget(request)) return std::move(*wrong);
  std::string request_id = proto::RequestIdOf(request);
  mef::Rspf* rspf = DirectRspf(tls);
  if (rspf == nullptr) {
    return proto::MakeErrorResponse(Rsc::kSecurityAssociationRequired,
                                    "this session is not authenticated by an RSPF", request_id);
  }
  if (auto wrong = CheckContentType(request)) return std::move(*wrong);
  bool unused = false;
  auto parsed = ParseEnrolment(request, nullptr, nullptr, unused);
  if (!parsed) return RefusalResponse(parsed.error(), request_id, rspf->name());
  std::optional<Result<mef::AuthenticatedDevice>> device;
  rspf->Authenticate(tls, UnixSeconds(clock_.Now()),
                     [&device](Result<mef::AuthenticatedDevice> r) { device = std::move(r); });
  if (!device) {
    return RefusalResponse(Error{ErrorKind::kInternal, Errc::kInvariant,
                                 "this RSPF answers later; use a connection handler"},
                           request_id, rspf->name());
  }
  return FinishEnrolment(*parsed, tls, *rspf, *device, nullptr);
}

proto::HttpReply Mef::StartEnrolment(const proto::HttpRequest& request,
                                     const proto::TlsHttpSession& session,
                                     MefConnectionState& state, mef::Rspf& rspf) {
  if (auto wrong = CheckEnrolmentTarget(request)) return Reply(std::move(*wrong));
  std::string request_id = proto::RequestIdOf(request);
  const bool flow_b = session.depth() > 1;
  if (auto wrong = CheckContentType(request)) {
    if (flow_b) wrong->keep_alive = false;
    return Reply(std::move(*wrong));
  }
  bool binding_mismatch = false;
  auto parsed = ParseEnrolment(request, &session, &state, binding_mismatch);
  if (!parsed) {
    if (binding_mismatch) RecordRspfFailure(state, UnixSeconds(clock_.Now()));
    proto::HttpResponse response = RefusalResponse(
        parsed.error(), request_id,
        std::string(rspf.name()) + " session from " + state.peer_address +
            (flow_b ? " (flow B, enrolee " + std::to_string(state.enrolee_id) + ")" : ""));
    if (flow_b) response.keep_alive = false;
    return Reply(std::move(response));
  }
  auto pending = std::make_shared<PendingEnrolment>();
  pending->parsed = std::move(*parsed);
  pending->rspf = &rspf;
  rspf.Authenticate(session.tls(), UnixSeconds(clock_.Now()),
                    [pending](Result<mef::AuthenticatedDevice> device) {
                      {
                        std::lock_guard lock(pending->mutex);
                        pending->device = std::move(device);
                      }
                      pending->reply->Complete();
                    });
  if (pending->reply->done()) {
    std::lock_guard lock(pending->mutex);
    return Reply(FinishEnrolment(pending->parsed, session.tls(), rspf, *pending->device, &state));
  }
  // The RSPF asks elsewhere (a certificate status responder): the connection waits for it.
  state.pending = pending;
  proto::HttpReply reply;
  reply.pending = pending->reply;
  return reply;
}

proto::HttpReply Mef::ResumeRequest(const proto::HttpRequest& request,
                                    const proto::TlsHttpSession& session,
                                    MefConnectionState& state) {
  std::shared_ptr<PendingEnrolment> pending = std::move(state.pending);
  if (!pending || !pending->reply->done()) {
    return Reply(RefusalResponse(Error{ErrorKind::kInternal, Errc::kInvariant,
                                       "resumed without a completed RSPF check"},
                                 proto::RequestIdOf(request), state.peer_address));
  }
  std::lock_guard lock(pending->mutex);
  return Reply(
      FinishEnrolment(pending->parsed, session.tls(), *pending->rspf, *pending->device, &state));
}

proto::HttpResponse Mef::FinishEnrolment(const Request& parsed, const crypto::TlsEngine& tls,
                                         mef::Rspf& rspf,
                                         const Result<mef::AuthenticatedDevice>& device,
                                         const MefConnectionState* state) {
  std::string who = std::string(rspf.name()) + " device" +
                    (state ? " from " + state->peer_address : std::string());
  if (device) who = device->credential + " (" + device->rspf + ")";
  if (parsed.flow_b) who += " (flow B, enrolee " + std::to_string(parsed.flow_b->enrolee_id) + ")";
  Result<proto::HttpResponse> result =
      device ? Commit(parsed, tls, rspf, *device) : Result<proto::HttpResponse>(Fail(device.error()));
  proto::HttpResponse response =
      result ? std::move(*result) : RefusalResponse(result.error(), parsed.request_id, who);
  if (parsed.flow_b) response.keep_alive = false;
  return response;
}

Result<proto::HttpResponse> Mef::Commit(const Request& parsed, const crypto::TlsEngine& tls,
                                        mef::Rspf& rspf, const mef::AuthenticatedDevice& device) {
  const Request& ind = parsed;
  const std::string& request_id = parsed.request_id;
  const FlowB* flow_b = parsed.flow_b ? &*parsed.flow_b : nullptr;
  std::optional<store::EnroleeRecord> enrolee;
  if (flow_b == nullptr) {
    MTE_TRY_ASSIGN(enrolee, store_.FindEnroleeByDevice(device.device_id));
    if (!enrolee) {
      // Seed 8.y.3 pre-condition: no enrolment without a stakeholder's proof of control.
      return Fail(ErrorKind::kPeerAuth, Errc::kNotClaimed,
                  "device '" + device.device_id +
                      "' has not been claimed by a stakeholder (no proof of control)");
    }
  } else {
    // Seed 8.y.4 step 18: the device authenticated by the RSPF goes on the token's entry.
    MTE_TRY_ASSIGN(enrolee, store_.GetEnrolee(flow_b->enrolee_id));
    if (!enrolee) return Fail(ErrorKind::kPeerAuth, Errc::kForbidden, "enrolee entry vanished");
    if (!enrolee->device_id.empty() && enrolee->device_id != device.device_id) {
      return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                  flow_b->token_spent
                      ? "the Enrolment-Token has already been used by another device"
                      : "the Enrolment-Token's enrolee entry is for another device");
    }
    if (enrolee->device_id.empty()) {
      MTE_TRY_ASSIGN(auto other, store_.FindEnroleeByDevice(device.device_id));
      if (other) {
        return Fail(ErrorKind::kPeerProtocol, Errc::kConflict,
                    "device '" + device.device_id + "' already has another enrolee entry");
      }
    }
  }
  if (enrolee->state == store::EnroleeState::kRevoked) {
    // Revocation is the stakeholder's decision; only a new Enrolment-Token re-arms the entry.
    return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                "the enrolee of device '" + device.device_id +
                    "' has been revoked by its stakeholder");
  }

  // TS-0003 §10.3.1: Enrolment Key Generation from the mutually authenticated session.
  MTE_TRY_ASSIGN(mef::EnrolmentKey key, rspf.DeriveEnrolmentKey(tls, settings_.mef_fqdn));
  const std::string& ke_id = key.ke_id;
  int64_t now = UnixSeconds(clock_.Now());
  int64_t expires_at = now + settings_.enrolment_expiry_seconds;
  int64_t generation = enrolee->generation + 1;

  store::EnrolmentCommit commit;
  commit.enrolee_id = enrolee->id;
  commit.expected_generation = enrolee->generation;
  commit.rspf = device.rspf;
  commit.ke_id = ke_id;
  MTE_TRY_ASSIGN(commit.ke_sealed, kek_.Seal(key.ke, "ke|" + std::to_string(enrolee->id) + "|" + std::to_string(generation), rng_));
  commit.ke_expires_at = expires_at;
  commit.now = now;
  if (flow_b != nullptr) {
    commit.spend_token_id = flow_b->token_id;
    commit.bind_device_id = device.device_id;
  }
  nlohmann::json instructions = nlohmann::json::array();
  if (ind.maf_enrolment) {
    // Seed step 7: KmID = KeID on the push path; Km = HMAC-SHA-256(Ke, label || MAF-ID).
    MTE_TRY_ASSIGN(SecretBytes km, crypto::DeriveKm(key.ke, settings_.maf_id));
    std::string km_id = ke_id;
    commit.credential_ids.push_back(std::string(kCredIdTypeKmId) + "-" + km_id);
    MTE_TRY_ASSIGN(commit.outbox, MafCredentialDelivery(kek_, rng_, km_id, km, enrolee->id,
                                                        generation, expires_at, now));
    instructions.push_back({{"type", "mafEnrolment"},
                            {"credentialType", "symmetricKey"},
                            {"mafFqdn", settings_.maf_fqdn},
                            {"mafId", settings_.maf_id},
                            {"kmId", km_id},
                            {"suid", kSuidMaf},
                            {"expiresAt", Rfc3339(expires_at)}});
  }
  if (!ind.maf_enrolment && enrolee->generation > 0) {
    // A re-enrolment without MAF enrolment still retires the previous Km at the MAF.
    MTE_TRY_ASSIGN(commit.outbox, MafRetirement(kek_, rng_, enrolee->id, generation, now));
  }
  commit.audit = {
      0,
      now,
      "mef",
      enrolee->generation == 0 ? "enrolment.commit" : "enrolment.reenrol",
      "enrolee " + std::to_string(enrolee->id) + " device " + device.device_id + " KeID " + ke_id,
      "generation " + std::to_string(generation) +
          (flow_b ? ", flow B, token " + std::to_string(flow_b->token_id) +
                        (flow_b->token_spent ? " presented again" : "")
                  : ", flow A") +
          ", RSPF " + device.rspf + (device.audit.empty() ? "" : ", " + device.audit)};
  MTE_FAILPOINT_HIT("mef-before-commit");
  auto committed = store_.CommitEnrolment(commit);
  if (!committed) {
    const Error& error = committed.error();
    if (error.code == Errc::kExpired && flow_b != nullptr) {
      return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                  "the Enrolment-Token has been used or has expired");
    }
    if (error.code == Errc::kConflict) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kConflict,
                  "a concurrent enrolment of this device won; retry");
    }
    if (error.code == Errc::kForbidden) {
      return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                  "the Enrolment-Token's enrolee entry is for another device");
    }
    return Fail(committed.error());
  }
  spdlog::info(
      "mef: enrolled device '{}' (enrolee {}, generation {}, flow {}) with KeID {} "
      "over {} {} (RSPF {})",
      device.device_id, enrolee->id, generation, flow_b ? "B" : "A", ke_id, tls.version(),
      tls.cipher(), device.rspf);
  if (on_commit_) on_commit_();
  // The commit stands but its answer is lost, as when a connection drops after the commit.
  MTE_FAILPOINT_HIT("mef-after-commit");

  nlohmann::json body = {
      {"keId", ke_id},
      {"rspf", device.rspf},
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

namespace {

class MefConnection final : public proto::ConnectionHandler {
 public:
  MefConnection(Mef& mef, std::string peer) : mef_(mef) { state_.peer_address = std::move(peer); }
  proto::HttpReply OnRequest(const proto::HttpRequest& request,
                             const proto::TlsHttpSession& session) override {
    return mef_.HandleRequest(request, session, state_);
  }
  proto::HttpReply OnResume(const proto::HttpRequest& request,
                            const proto::TlsHttpSession& session) override {
    return mef_.ResumeRequest(request, session, state_);
  }
  void OnClose(const proto::TlsHttpSession& session) override {
    mef_.ConnectionClosed(session, state_);
  }

 private:
  Mef& mef_;
  MefConnectionState state_;
};

bool IsBase64Url(std::string_view text) {
  for (char c : text) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::unique_ptr<proto::ConnectionHandler> Mef::NewConnection(std::string peer_address) {
  return std::make_unique<MefConnection>(*this, std::move(peer_address));
}

proto::HttpReply Mef::HandleRequest(const proto::HttpRequest& request,
                                    const proto::TlsHttpSession& session,
                                    MefConnectionState& state) {
  std::string request_id = proto::RequestIdOf(request);
  if (session.depth() > 1) {
    // Flow B, inner session: the Enrolment Exchange of the selected RSPF.
    return StartEnrolment(request, session, state, *state.rspf);
  }
  if (mef::Rspf* rspf = DirectRspf(session.tls(0))) {
    return StartEnrolment(request, session, state, *rspf);  // Flow A: the RSPF session itself
  }
  // Flow B, outer server-authenticated session (seed 8.y.4 steps 12-17).
  if (request.target == proto::kTokenPath) {
    if (request.method != "POST") {
      return Reply(proto::MakeErrorResponse(Rsc::kOperationNotAllowed, "use POST", request_id));
    }
    return Reply(PresentToken(request, state, request_id));
  }
  if (request.target == proto::kRspfPath) return StartRspf(request, state, request_id);
  if (request.target == proto::kEnrolmentPath) {
    return Reply(proto::MakeErrorResponse(
        Rsc::kSecurityAssociationRequired,
        "this session is not mutually authenticated: present an Enrolment-Token at " +
            std::string(proto::kTokenPath) + " and run the RSPF first",
        request_id));
  }
  return Reply(proto::MakeErrorResponse(Rsc::kNotFound, "no such resource", request_id));
}

namespace {

std::string AddressKey(const std::string& address) { return "mef-address:" + address; }
std::string TokenKey(int64_t token_id) { return "mef-token:" + std::to_string(token_id); }

}  // namespace

bool Mef::Locked(StoredFailureLimiter& limiter, const std::string& key, int64_t now) {
  auto retry_after = limiter.RetryAfter(key, now);
  if (!retry_after) {
    spdlog::error("mef: lockout lookup failed (refusing): {}", Describe(retry_after.error()));
    return true;
  }
  return *retry_after > 0;
}

void Mef::RecordFailure(StoredFailureLimiter& limiter, const std::string& key, int64_t now) {
  if (auto ok = limiter.RecordFailure(key, now); !ok) {
    spdlog::error("mef: a failure could not be counted: {}", Describe(ok.error()));
  }
}

void Mef::RecordRspfFailure(const MefConnectionState& state, int64_t now) {
  spdlog::info("mef: failed RSPF run from {} with the Enrolment-Token of enrolee {}",
               state.peer_address, state.enrolee_id);
  // Counted toward the token only: whoever presented a real token is not guessing, and devices
  // behind one NAT address must not lock each other out by dropped connections.
  RecordFailure(rspf_failures_, TokenKey(state.token_id), now);
}

void Mef::ConnectionClosed(const proto::TlsHttpSession& session, const MefConnectionState& state) {
  if (!state.upgraded) return;
  const bool inner_done = session.depth() > 1 && session.tls(1).HandshakeComplete();
  if (!inner_done) RecordRspfFailure(state, UnixSeconds(clock_.Now()));
}

proto::HttpResponse Mef::PresentToken(const proto::HttpRequest& request, MefConnectionState& state,
                                      const std::string& request_id) {
  int64_t now = UnixSeconds(clock_.Now());
  auto refuse = [&](Rsc rsc, const std::string& message, bool count) {
    if (count) RecordFailure(token_failures_, AddressKey(state.peer_address), now);
    spdlog::info("mef: Enrolment-Token from {} refused: {}", state.peer_address, message);
    return proto::MakeErrorResponse(rsc, message, request_id);
  };
  if (Locked(token_failures_, AddressKey(state.peer_address), now)) {
    return refuse(Rsc::kOriginatorHasNoPrivilege,
                  "too many failed Enrolment-Token attempts from this address; try later", false);
  }
  if (state.token_id != 0) {
    return refuse(Rsc::kConflict, "an Enrolment-Token was already accepted on this connection",
                  false);
  }
  if (!proto::IsJsonContentType(request)) {
    return refuse(Rsc::kUnsupportedMediaType, "Content-Type must be application/json", false);
  }
  auto j = proto::ParseJsonStrict(request.body);
  if (j.is_discarded() || !j.is_object() || !j.contains("token") || !j["token"].is_string() ||
      !j.contains("rspfs") || !j["rspfs"].is_array() || j.size() != 2) {
    return refuse(Rsc::kBadRequest, "expected {\"token\": string, \"rspfs\": [string]}", true);
  }
  std::string token = j["token"].get<std::string>();
  SecureWipe(j["token"].get_ptr<std::string*>()->data(),
             j["token"].get_ptr<std::string*>()->size());
  if (token.size() != proto::kTokenTextLength || !IsBase64Url(token)) {
    SecureWipe(token.data(), token.size());
    return refuse(Rsc::kBadRequest, "malformed Enrolment-Token", true);
  }
  auto hash = crypto::Sha256(AsBytes(token));
  SecureWipe(token.data(), token.size());
  auto found = store_.FindToken(hash);
  if (!found) {
    spdlog::error("mef: token lookup failed: {}", Describe(found.error()));
    return proto::MakeErrorResponse(Rsc::kInternalServerError, "internal error", request_id);
  }
  // Seed 8.y.4 step 14: verify the token.
  if (!found->has_value())
    return refuse(Rsc::kOriginatorHasNoPrivilege, "unknown Enrolment-Token", true);
  const store::TokenRecord& record = **found;
  // A real token, not a guess: the refusals below do not count toward the address lockout (a
  // device that lost a race for its token must not lock out its neighbours behind one address).
  if (record.state == store::TokenState::kSpent && record.superseded) {
    return refuse(Rsc::kOriginatorHasNoPrivilege,
                  "the Enrolment-Token has already been used and a newer one has been issued",
                  false);
  }
  // A spent token that is still its enrolee's newest: the device it enrolled may present it again
  // (the answer to its enrolment may have been lost). Which device that is, only the RSPF shows;
  // the commit refuses any other.
  const bool spent = record.state == store::TokenState::kSpent;
  if (record.state == store::TokenState::kRevoked) {
    return refuse(Rsc::kOriginatorHasNoPrivilege, "the Enrolment-Token has been revoked", false);
  }
  if (record.expires_at <= now) {
    return refuse(Rsc::kOriginatorHasNoPrivilege, "the Enrolment-Token has expired", false);
  }
  if (Locked(rspf_failures_, TokenKey(record.id), now)) {
    return refuse(Rsc::kOriginatorHasNoPrivilege,
                  "too many failed RSPF runs with this Enrolment-Token; try later", false);
  }
  // Step 15: an RSPF the enrolee supports and the MTE holds credentials for.
  std::vector<std::string> offered_by_enrolee;
  for (const auto& item : j["rspfs"]) {
    if (!item.is_string() || item.get_ref<const std::string&>().size() > 16 ||
        offered_by_enrolee.size() >= 8) {
      return refuse(Rsc::kBadRequest, "rspfs must be at most 8 short strings", true);
    }
    offered_by_enrolee.push_back(item.get<std::string>());
  }
  // The entry's device, when the stakeholder named it or a spent token bound it: only RSPFs it
  // has credentials for.
  std::optional<store::DeviceRecord> device;
  auto entry = store_.GetEnrolee(record.enrolee_id);
  if (spent && (!entry || !*entry || (*entry)->state == store::EnroleeState::kRevoked)) {
    return refuse(Rsc::kOriginatorHasNoPrivilege,
                  "the Enrolment-Token has already been used and its enrolee has been revoked",
                  false);
  }
  if (entry && *entry && !(*entry)->device_id.empty()) {
    if (auto named = store_.FindDevice((*entry)->device_id); named && *named) {
      device = std::move(**named);
    }
  }
  mef::Rspf* selected = nullptr;
  std::string mine;
  for (const auto& name : settings_.rspf_preference) {
    for (const auto& rspf : rspfs_) {
      if (rspf->name() != name || (device && !rspf->Serves(*device))) continue;
      mine += (mine.empty() ? "" : ", ") + name;
      for (const auto& theirs : offered_by_enrolee) {
        if (theirs == name && selected == nullptr) selected = rspf.get();
      }
    }
  }
  if (selected == nullptr) {
    // The seed's editor's note: refuse clearly, never silently.
    std::string theirs;
    for (const auto& r : offered_by_enrolee) theirs += (theirs.empty() ? "" : ", ") + r;
    return refuse(Rsc::kNotImplemented,
                  "no Remote Security Provisioning Framework in common: the enrolee supports [" +
                      theirs + "], this MTE offers [" + mine + "]" +
                      (device ? " for device '" + device->device_id + "'" : ""),
                  false);
  }
  state.token_id = record.id;
  state.enrolee_id = record.enrolee_id;
  state.token_spent = spent;
  state.rspf = selected;
  spdlog::info("mef: {} presented a valid Enrolment-Token for enrolee {}{}; RSPF {} selected",
               state.peer_address, record.enrolee_id,
               spent ? " (already spent: only its device may enrol again)" : "",
               selected->name());
  char buf[32];
  // Step 16: the instructions that trigger the RSPF.
  nlohmann::json body = {
      {"rspf", std::string(selected->name())},
      {"enroleeId", record.enrolee_id},
      {"tokenExpiresAt", std::string(FormatRfc3339(record.expires_at, buf))},
      {"instructions",
       {{"type", "rspf"},
        {"method", "GET"},
        {"path", std::string(proto::kRspfPath)},
        {"upgrade", std::string(proto::kUpgradeProtocol)}}},
  };
  return proto::MakeResponse(Rsc::kOk, body.dump(), request_id);
}

proto::HttpReply Mef::StartRspf(const proto::HttpRequest& request, MefConnectionState& state,
                                const std::string& request_id) {
  proto::HttpReply reply;
  auto upgrade = request.headers.Get("Upgrade");
  if (request.method != "GET" || !upgrade || *upgrade != proto::kUpgradeProtocol) {
    reply.response =
        proto::MakeErrorResponse(Rsc::kBadRequest,
                                 "use GET " + std::string(proto::kRspfPath) +
                                     " with Upgrade: " + std::string(proto::kUpgradeProtocol),
                                 request_id);
    return reply;
  }
  if (state.token_id == 0) {
    reply.response = proto::MakeErrorResponse(Rsc::kSecurityAssociationRequired,
                                              "present an Enrolment-Token first", request_id);
    return reply;
  }
  if (state.upgraded || state.rspf == nullptr) {
    reply.response =
        proto::MakeErrorResponse(Rsc::kConflict, "the RSPF has already started", request_id);
    return reply;
  }
  if (Locked(rspf_failures_, TokenKey(state.token_id), UnixSeconds(clock_.Now()))) {
    reply.response = proto::MakeErrorResponse(
        Rsc::kOriginatorHasNoPrivilege,
        "too many failed RSPF runs with this Enrolment-Token; try later", request_id);
    reply.response.keep_alive = false;
    return reply;
  }
  // Seed 8.y.4 step 17: the RSPF's TLS handshake runs inside this session.
  auto engine = state.rspf->NewInnerEngine();
  if (!engine) {
    reply.response = RefusalResponse(engine.error(), request_id, state.peer_address);
    return reply;
  }
  state.upgraded = true;
  reply.response.status = 101;
  reply.response.reason_phrase = false;
  reply.response.headers.Set("Connection", "Upgrade");
  reply.response.headers.Set("Upgrade", proto::kUpgradeProtocol);
  reply.response.headers.Set(proto::kHeaderRsc, "2000");
  if (!request_id.empty()) reply.response.headers.Set(proto::kHeaderRequestId, request_id);
  reply.upgrade = std::move(*engine);
  return reply;
}

}  // namespace mte
