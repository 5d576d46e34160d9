#include "portal/portal.h"

#include <spdlog/spdlog.h>
#include <strings.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "crypto/keys.h"
#include "crypto/password.h"
#include "mte/enrolees.h"
#include "portal/openapi.inc.h"
#include "proto/enrolment.h"
#include "proto/onem2m.h"

namespace mte {
namespace {

constexpr size_t kTokenBytes = 32;
constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxPasswordLength = 256;
constexpr size_t kMaxDeviceInfoLength = 1024;
constexpr size_t kMaxCodeLength = 64;  // a TOTP code or a recovery code

proto::HttpResponse Json(int status, const nlohmann::json& body) {
  proto::HttpResponse response;
  response.status = status;
  response.headers.Set("Content-Type", "application/json");
  response.headers.Set("Cache-Control", "no-store");
  response.headers.Set("X-Content-Type-Options", "nosniff");
  response.headers.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  response.headers.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains");
  response.headers.Set("Referrer-Policy", "no-referrer");
  // Peer-supplied text quoted in an answer (a member name cut at 64 octets) may not be UTF-8.
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

proto::HttpResponse ErrorJson(int status, std::string_view message) {
  return Json(status, {{"error", std::string(message)}});
}

int StatusFor(const Error& error) {
  switch (error.code) {
    case Errc::kMalformed:
    case Errc::kTooLarge:
      return 400;
    case Errc::kAuthFailed:
      return 401;
    case Errc::kForbidden:
    case Errc::kNotClaimed:
    case Errc::kExpired:
      return 403;
    case Errc::kNotFound:
      return 404;
    case Errc::kConflict:
      return 409;
    case Errc::kRateLimited:
      return 429;
    case Errc::kConfig:  // only for what this portal was not configured to do
      return 503;
    default:
      return 500;
  }
}

// 429 with Retry-After (RFC 9110 §10.2.3): the seconds until the lock that refused it ends.
proto::HttpResponse TooMany(std::string_view message, int64_t retry_after_seconds) {
  proto::HttpResponse response = ErrorJson(429, std::string(message));
  response.headers.Set("Retry-After", std::to_string(retry_after_seconds));
  return response;
}

// The response for an error: the peer's own faults are explained, ours are not.
proto::HttpResponse ErrorFrom(const Error& error) {
  int status = StatusFor(error);
  return ErrorJson(status, status == 500 ? "internal error" : error.detail);
}

Result<nlohmann::json> ParseObject(const proto::HttpRequest& request) {
  auto ct = request.headers.Get("Content-Type");
  if (!ct || strncasecmp(ct->data(), "application/json", 16) != 0) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "Content-Type must be application/json");
  }
  std::string duplicate;
  auto j = proto::ParseJsonStrict(request.body, &duplicate);
  if (!duplicate.empty()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "duplicate member '" + log::Printable(duplicate.substr(0, 64)) + "'");
  }
  if (j.is_discarded() || !j.is_object()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "body must be a JSON object");
  }
  return j;
}

Result<std::string> StringMember(const nlohmann::json& j, const char* name, size_t max,
                                 bool required) {
  auto it = j.find(name);
  if (it == j.end()) {
    if (!required) return std::string();
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                std::string("missing member '") + name + "'");
  }
  if (!it->is_string()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                std::string("member '") + name + "' must be a string");
  }
  if (it->get_ref<const std::string&>().size() > max) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                std::string("member '") + name + "' is too long");
  }
  return it->get<std::string>();
}

}  // namespace

int Portal::StatusOf(const Error& error) { return StatusFor(error); }

Portal::Portal(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng,
               const Clock& clock, PortalSettings settings)
    : store_(store),
      kek_(kek),
      rng_(rng),
      clock_(clock),
      settings_(settings),
      failures_(store, {settings.max_failures, settings.lockout_seconds, /*window_seconds=*/0,
                        settings.max_lockout_seconds}) {}

proto::HttpResponse Portal::Handle(const proto::HttpRequest& request,
                                   const std::string& peer_address) {
  std::string_view target = request.target;
  target = target.substr(0, target.find('?'));
  constexpr std::string_view kApi = "/api/";
  if (target.substr(0, kApi.size()) == kApi) return HandleApi(request, target, peer_address);
  return HandleWeb(request, target, peer_address);
}

proto::HttpResponse Portal::HandleApi(const proto::HttpRequest& request, std::string_view target,
                                      const std::string& peer_address) {
  if (target == "/api/v1/health") {
    if (request.method != "GET") return ErrorJson(405, "use GET");
    return Health();
  }
  if (target == "/api/v1/openapi.json") {
    if (request.method != "GET") return ErrorJson(405, "use GET");
    // The OpenAPI 3.1 document of this API (src/portal/openapi.json), byte for byte.
    proto::HttpResponse response = Json(200, nullptr);
    response.headers.Set("Cache-Control", "no-cache");
    response.body = std::string(kOpenApiDocument);
    return response;
  }
  if (target == "/api/v1/login") {
    if (request.method != "POST") return ErrorJson(405, "use POST");
    return Login(request, peer_address);
  }
  constexpr std::string_view kEnrolees = "/api/v1/enrolees";
  constexpr std::string_view kAccount = "/api/v1/account";
  const bool audit = target == "/api/v1/audit";
  const bool logout = target == "/api/v1/logout";
  const bool account = target.substr(0, kAccount.size()) == kAccount &&
                       (target.size() == kAccount.size() || target[kAccount.size()] == '/');
  if (!audit && !logout && !account && target.substr(0, kEnrolees.size()) != kEnrolees) {
    return ErrorJson(404, "no such resource");
  }
  auto who = Authenticate(request);
  if (!who) {
    auto response = ErrorJson(401, who.error().detail);
    response.headers.Set("WWW-Authenticate", "Bearer realm=\"openmte\"");
    return response;
  }
  if (audit) {
    if (request.method != "GET") return ErrorJson(405, "use GET");
    if (!who->is_admin) return ErrorJson(403, "the audit log needs the admin role");
    return Audit();
  }
  if (logout) {
    if (request.method != "POST") return ErrorJson(405, "use POST");
    auto header = request.headers.Get("Authorization");
    std::string_view token = header->substr(7);
    if (token.substr(0, kApiTokenPrefix.size()) == kApiTokenPrefix) {
      return ErrorJson(400, "an API token is not a session: revoke it instead");
    }
    auto ended = store_.DeleteSession(
        crypto::Sha256(AsBytes(token)),
        {0, UnixSeconds(clock_.Now()), "stakeholder:" + who->name, "portal.logout",
         "stakeholder " + who->name, "from " + peer_address});
    if (!ended) return ErrorJson(500, "internal error");
    return Json(200, {{"loggedOut", true}});
  }
  if (account) return Account(request, target.substr(kAccount.size()), *who, peer_address);
  std::string_view rest = target.substr(kEnrolees.size());
  if (rest.empty()) {
    if (request.method == "POST") return AddEnrolee(request, *who, peer_address);
    if (request.method == "GET") return ListEnrolees(*who);
    return ErrorJson(405, "use GET or POST");
  }
  if (rest.front() == '/' && rest.size() > 1 && rest.find('/', 1) == std::string_view::npos) {
    if (request.method == "DELETE") return DeleteEnrolee(rest.substr(1), *who);
    if (request.method != "GET") return ErrorJson(405, "use GET or DELETE");
    return GetEnrolee(rest.substr(1), *who);
  }
  // /{id}/tokens and /{id}/revoke: POST; /{id}/timeline: GET.
  const size_t slash = rest.find('/', 1);
  if (rest.front() == '/' && slash != std::string_view::npos && slash > 1 &&
      rest.find('/', slash + 1) == std::string_view::npos) {
    std::string_view id = rest.substr(1, slash - 1);
    std::string_view action = rest.substr(slash + 1);
    if (action == "tokens" || action == "revoke") {
      if (request.method != "POST") return ErrorJson(405, "use POST");
      return action == "tokens" ? IssueToken(id, *who) : Revoke(id, *who, peer_address);
    }
    if (action == "timeline") {
      if (request.method != "GET") return ErrorJson(405, "use GET");
      return EnroleeTimeline(id, *who);
    }
  }
  return ErrorJson(404, "no such resource");
}

// The store answers, and how far the outbox is behind (docs/protocol.md §12).
proto::HttpResponse Portal::Health() {
  auto outbox = store_.GetOutboxStatus();
  if (!outbox) {
    spdlog::error("portal: health: {}", Describe(outbox.error()));
    return Json(503, {{"status", "unavailable"}, {"store", "error"}});
  }
  const int64_t now = UnixSeconds(clock_.Now());
  const int64_t age =
      outbox->pending > 0 ? std::max<int64_t>(0, now - outbox->oldest_created_at) : 0;
  return Json(200, {{"status", "ok"},
                    {"store", "ok"},
                    {"outbox", {{"pending", outbox->pending}, {"oldestPendingSeconds", age}}}});
}

Result<void> Portal::RefuseWhileLocked(const std::string& account_key,
                                       const std::string& address_key, int64_t now,
                                       std::string_view what, int64_t* retry_after) {
  // An address that keeps failing is locked out whatever account it names. A locked account is
  // locked only for addresses that have failed recently: its owner, from an address that has
  // not, still gets to give the password (and a failure there marks that address too).
  MTE_TRY_ASSIGN(int64_t wait, failures_.RetryAfter(address_key, now));
  if (wait == 0) {
    MTE_TRY_ASSIGN(const bool address_failed, failures_.HasFailures(address_key, now));
    if (address_failed) {
      MTE_TRY_ASSIGN(wait, failures_.RetryAfter(account_key, now));
    }
  }
  if (wait == 0) return {};
  spdlog::warn("portal: {} refused for {} s: {} locked after repeated failures", address_key,
               wait, log::Printable(account_key));
  *retry_after = wait;
  return Fail(ErrorKind::kPeerAuth, Errc::kRateLimited,
              "too many " + std::string(what) + "; try again later");
}

Result<void> Portal::RecordLoginFailure(const std::string& account_key,
                                        const std::string& address_key, int64_t now) {
  MTE_TRY(failures_.RecordFailure(account_key, now));
  return failures_.RecordFailure(address_key, now);
}

Result<store::StakeholderRecord> Portal::CheckLogin(const std::string& name,
                                                    const SecretString& password,
                                                    const SecretString* code,
                                                    const std::string& peer_address,
                                                    LoginAttempt* attempt) {
  int64_t now = UnixSeconds(clock_.Now());
  std::string account_key = "account:" + name;
  std::string address_key = "address:" + peer_address;
  MTE_TRY(RefuseWhileLocked(account_key, address_key, now, "failed logins",
                            &attempt->retry_after));
  MTE_TRY_ASSIGN(auto stakeholder, store_.FindStakeholder(name));
  bool ok = stakeholder.has_value() ? crypto::VerifyPassword(password, stakeholder->password_hash)
                                    : crypto::VerifyAgainstNothing(password);
  if (!stakeholder.has_value() || !ok) {
    MTE_TRY(RecordLoginFailure(account_key, address_key, now));
    spdlog::info("portal: failed login for '{}' from {}", log::Printable(name), peer_address);
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "name or password is wrong");
  }
  if (code != nullptr) {
    MTE_TRY_ASSIGN(auto totp, store_.FindTotp(stakeholder->id));
    if (totp.has_value() && totp->confirmed) {
      if (code->size() == 0) {
        attempt->second_factor_required = true;
        return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                    "this account needs a TOTP code or a recovery code");
      }
      auto second = CheckSecondFactor(*stakeholder, *code, peer_address, &attempt->retry_after);
      if (!second) {
        attempt->second_factor_required = second.error().code == Errc::kAuthFailed;
        return Fail(second.error());
      }
    }
  }
  MTE_TRY(failures_.Clear(account_key));
  return std::move(*stakeholder);
}

Result<std::string> Portal::StartSession(const store::StakeholderRecord& who,
                                         store::SessionKind kind,
                                         const std::string& peer_address, int64_t* expires_at) {
  Bytes token(kTokenBytes);
  rng_.Fill(token);
  std::string token_text = Base64UrlEncode(token);
  SecureWipe(token.data(), token.size());
  const int64_t now = UnixSeconds(clock_.Now());
  *expires_at = now + settings_.session_seconds;
  const bool browser = kind == store::SessionKind::kBrowser;
  store::SessionSpec spec{kind, now, *expires_at, browser ? settings_.browser_idle_seconds : 0};
  auto added = store_.AddSession(crypto::Sha256(AsBytes(token_text)), who.id, spec,
                                 {0, now, "stakeholder:" + who.name, "portal.login",
                                  "stakeholder " + who.name,
                                  std::string(browser ? "browser" : "bearer") + " session from " +
                                      peer_address});
  if (!added) {
    SecureWipe(token_text.data(), token_text.size());
    return Fail(added.error());
  }
  return token_text;
}

proto::HttpResponse Portal::Login(const proto::HttpRequest& request,
                                  const std::string& peer_address) {
  auto j = ParseObject(request);
  if (!j) return ErrorJson(400, j.error().detail);
  auto name = StringMember(*j, "name", kMaxNameLength, true);
  if (!name) return ErrorJson(400, name.error().detail);
  auto password_text = StringMember(*j, "password", kMaxPasswordLength, true);
  if (!password_text) return ErrorJson(400, password_text.error().detail);
  SecretString password(std::move(*password_text));
  SecureWipe((*j)["password"].get_ptr<std::string*>()->data(),
             (*j)["password"].get_ptr<std::string*>()->size());
  // The second factor, for an account with TOTP: "totp" (6 digits) or "recoveryCode".
  auto totp_text = StringMember(*j, "totp", kMaxCodeLength, false);
  if (!totp_text) return ErrorJson(400, totp_text.error().detail);
  auto recovery_text = StringMember(*j, "recoveryCode", kMaxCodeLength, false);
  if (!recovery_text) return ErrorJson(400, recovery_text.error().detail);
  if (!totp_text->empty() && !recovery_text->empty()) {
    return ErrorJson(400, "give 'totp' or 'recoveryCode', not both");
  }
  SecretString code(std::move(totp_text->empty() ? *recovery_text : *totp_text));
  LoginAttempt attempt;
  auto who = CheckLogin(*name, password, &code, peer_address, &attempt);
  if (!who) {
    if (who.error().code == Errc::kRateLimited) {
      return TooMany(who.error().detail, attempt.retry_after);
    }
    if (attempt.second_factor_required) {
      return Json(401, {{"error", who.error().detail}, {"totpRequired", true}});
    }
    return ErrorFrom(who.error());
  }
  int64_t expires_at = 0;
  auto token_text = StartSession(*who, store::SessionKind::kBearer, peer_address, &expires_at);
  if (!token_text) return ErrorJson(500, "internal error");
  char buf[32];
  auto response = Json(200, {{"token", *token_text},
                             {"tokenType", "Bearer"},
                             {"expiresAt", std::string(FormatRfc3339(expires_at, buf))}});
  SecureWipe(token_text->data(), token_text->size());
  return response;
}

Result<store::StakeholderRecord> Portal::Authenticate(const proto::HttpRequest& request) {
  auto header = request.headers.Get("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (!header || header->size() <= kBearer.size() ||
      strncasecmp(header->data(), kBearer.data(), kBearer.size()) != 0 || header->size() > 512) {
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                "missing bearer token (POST /api/v1/login first)");
  }
  std::string_view token = header->substr(kBearer.size());
  auto hash = crypto::Sha256(AsBytes(token));
  const int64_t now = UnixSeconds(clock_.Now());
  // A personal API token (kApiTokenPrefix) or a login session.
  const bool api_token = token.substr(0, kApiTokenPrefix.size()) == kApiTokenPrefix;
  MTE_TRY_ASSIGN(auto who,
                 api_token ? store_.FindApiToken(hash, now) : store_.FindSession(hash, now));
  if (!who) {
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                api_token ? "invalid, expired or revoked API token"
                          : "invalid or expired bearer token");
  }
  return std::move(*who);
}

Result<store::EnroleeRecord> Portal::Claim(const store::StakeholderRecord& who,
                                           const std::string& device_id,
                                           const SecretString& code, const std::string& label,
                                           const std::string& peer_address,
                                           int64_t* retry_after) {
  int64_t now = UnixSeconds(clock_.Now());
  std::string limiter_key = "claim:" + peer_address;
  std::string account_key = "claim-account:" + who.name;
  MTE_TRY_ASSIGN(const int64_t address_wait, failures_.RetryAfter(limiter_key, now));
  MTE_TRY_ASSIGN(const int64_t account_wait, failures_.RetryAfter(account_key, now));
  if (int64_t wait = std::max(address_wait, account_wait); wait > 0) {
    *retry_after = wait;
    return Fail(ErrorKind::kPeerAuth, Errc::kRateLimited,
                "too many failed claims; try again later");
  }
  auto enrolee = ClaimDevice(store_, who, device_id, code, label, now);
  if (!enrolee) {
    if (enrolee.error().code == Errc::kForbidden) {
      MTE_TRY(failures_.RecordFailure(limiter_key, now));
      MTE_TRY(failures_.RecordFailure(account_key, now));
    }
    spdlog::info("portal: '{}' could not add device '{}': {}", who.name, log::Printable(device_id),
                 Describe(enrolee.error()));
    return enrolee;
  }
  spdlog::info("portal: '{}' added enrolee {} for device '{}'", who.name, enrolee->id,
               enrolee->device_id);
  return enrolee;
}

Result<store::EnroleeRecord> Portal::AddFlowBEntry(const store::StakeholderRecord& who,
                                                   const std::string& label,
                                                   const std::string& info,
                                                   const std::string& device_id) {
  auto malformed = [](std::string detail) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, std::move(detail));
  };
  if (label.size() > kMaxLabelLength) return malformed("the label is too long");
  if (info.size() > kMaxDeviceInfoLength) return malformed("the device information is too long");
  if (device_id.size() > 255) return malformed("the device ID is too long");
  if (label.empty() && info.empty()) {
    return malformed("give a label or deviceInfo to identify the enrolee later");
  }
  std::optional<std::string_view> device;
  if (!device_id.empty()) {
    if (!crypto::CheckIdentifier(device_id, "deviceId")) {
      return malformed("deviceId must be printable ASCII without spaces");
    }
    device = device_id;
  }
  int64_t now = UnixSeconds(clock_.Now());
  auto enrolee = store_.AddEnroleeEntry(
      who.id, device, label, info, now,
      {0, now, "stakeholder:" + who.name, "enrolee.add", "enrolee {id} (flow B entry)", ""});
  if (!enrolee) {
    // An entry naming a device is no claim: do not reveal whether that device exists.
    if (enrolee.error().code == Errc::kNotFound || enrolee.error().code == Errc::kConflict) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kConflict, "that device cannot be added");
    }
    return enrolee;
  }
  spdlog::info("portal: '{}' added enrolee entry {} (flow B)", who.name, enrolee->id);
  return enrolee;
}

proto::HttpResponse Portal::AddEnrolee(const proto::HttpRequest& request,
                                       const store::StakeholderRecord& who,
                                       const std::string& peer_address) {
  auto j = ParseObject(request);
  if (!j) return ErrorJson(400, j.error().detail);
  Result<store::EnroleeRecord> enrolee = store::EnroleeRecord{};
  if (!j->contains("claimCode")) {
    // Without a claim code this is a Flow B entry (seed 8.y.4 steps 5-6): proof of control is
    // given to the OBF, and the device is identified when it enrols.
    for (auto it = j->begin(); it != j->end(); ++it) {
      if (it.key() != "label" && it.key() != "deviceInfo" && it.key() != "deviceId") {
        return ErrorJson(400, "unknown member '" + it.key().substr(0, 64) + "'");
      }
    }
    auto label = StringMember(*j, "label", kMaxLabelLength, false);
    if (!label) return ErrorJson(400, label.error().detail);
    auto info = StringMember(*j, "deviceInfo", kMaxDeviceInfoLength, false);
    if (!info) return ErrorJson(400, info.error().detail);
    auto device_id = StringMember(*j, "deviceId", 255, false);
    if (!device_id) return ErrorJson(400, device_id.error().detail);
    enrolee = AddFlowBEntry(who, *label, *info, *device_id);
  } else {
    auto device_id = StringMember(*j, "deviceId", 255, true);
    if (!device_id) return ErrorJson(400, device_id.error().detail);
    auto code_text = StringMember(*j, "claimCode", kMaxClaimCodeLength, true);
    if (!code_text) return ErrorJson(400, code_text.error().detail);
    auto label = StringMember(*j, "label", kMaxLabelLength, false);
    if (!label) return ErrorJson(400, label.error().detail);
    SecretString code(std::move(*code_text));
    SecureWipe((*j)["claimCode"].get_ptr<std::string*>()->data(),
               (*j)["claimCode"].get_ptr<std::string*>()->size());
    int64_t retry_after = 0;
    enrolee = Claim(who, *device_id, code, *label, peer_address, &retry_after);
    if (!enrolee && enrolee.error().code == Errc::kRateLimited) {
      return TooMany(enrolee.error().detail, retry_after);
    }
  }
  if (!enrolee) return ErrorFrom(enrolee.error());
  auto response = Json(201, EnroleeJson(*enrolee));
  response.headers.Set("Location", "/api/v1/enrolees/" + std::to_string(enrolee->id));
  return response;
}

proto::HttpResponse Portal::DeleteEnrolee(std::string_view id_text,
                                          const store::StakeholderRecord& who) {
  auto enrolee = OwnEnrolee(id_text, who);
  if (!enrolee) return ErrorFrom(enrolee.error());
  const int64_t now = UnixSeconds(clock_.Now());
  auto deleted = mte::DeleteEnrolee(store_, *enrolee, now, "stakeholder:" + who.name);
  if (!deleted) return ErrorFrom(deleted.error());
  spdlog::info("portal: '{}' deleted enrolee {}", who.name, enrolee->id);
  return Json(200, {{"deleted", enrolee->id}});
}

proto::HttpResponse Portal::Revoke(std::string_view id_text, const store::StakeholderRecord& who,
                                   const std::string& peer_address) {
  auto enrolee = OwnEnrolee(id_text, who);
  if (!enrolee) return ErrorFrom(enrolee.error());
  const int64_t now = UnixSeconds(clock_.Now());
  auto revoked = RevokeEnrolee(store_, kek_, rng_, enrolee->id, now, "stakeholder:" + who.name,
                               "from " + peer_address);
  if (!revoked) return ErrorFrom(revoked.error());
  if (revoked->revoked_now) {
    spdlog::info("portal: '{}' revoked enrolee {}", who.name, enrolee->id);
  }
  return Json(200, EnroleeJson(revoked->enrolee));
}

Result<store::EnroleeRecord> Portal::OwnEnrolee(std::string_view id_text,
                                                const store::StakeholderRecord& who) {
  int64_t id = 0;
  auto [ptr, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (ec != std::errc() || ptr != id_text.data() + id_text.size() || id <= 0) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kNotFound, "no such enrolee");
  }
  MTE_TRY_ASSIGN(auto enrolee, store_.GetEnrolee(id));
  // Another stakeholder's enrolee is indistinguishable from a missing one (but for admins).
  if (!enrolee.has_value() || (enrolee->stakeholder_id != who.id && !who.is_admin)) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kNotFound, "no such enrolee");
  }
  return std::move(*enrolee);
}

Result<nlohmann::json> Portal::NewTokenBundle(const store::EnroleeRecord& enrolee,
                                              const store::StakeholderRecord& who) {
  const int64_t id = enrolee.id;
  if (settings_.mef_uri.empty() || settings_.mef_trust_anchors.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "this portal has no MEF configured for Enrolment-Tokens");
  }
  // Seed 8.y.4 step 7: a single-use random token; only its SHA-256 is stored.
  Bytes token(proto::kTokenBytes);
  rng_.Fill(token);
  std::string token_text = Base64UrlEncode(token);
  SecureWipe(token.data(), token.size());
  auto hash = crypto::Sha256(AsBytes(token_text));
  int64_t now = UnixSeconds(clock_.Now());
  int64_t expires_at = now + settings_.token_seconds;
  auto issued = store_.IssueToken(
      id, hash, now, expires_at,
      {0, now, "stakeholder:" + who.name, "token.issue",
       "enrolee " + std::to_string(id) + " token {id}", "previous unused tokens revoked"});
  if (!issued) {
    SecureWipe(token_text.data(), token_text.size());
    return Fail(issued.error());
  }
  spdlog::info("portal: '{}' issued Enrolment-Token {} for enrolee {}", who.name, issued->id, id);
  char buf[32];
  // Step 8: token, MTE-selected MEF URI and MEF trust anchors.
  nlohmann::json bundle = {{"token", token_text},
                           {"mefUri", settings_.mef_uri},
                           {"mefFqdn", settings_.mef_fqdn},
                           {"mefTrustAnchors", settings_.mef_trust_anchors},
                           {"expiresAt", std::string(FormatRfc3339(expires_at, buf))},
                           {"enroleeId", id}};
  SecureWipe(token_text.data(), token_text.size());
  return bundle;
}

proto::HttpResponse Portal::IssueToken(std::string_view id_text,
                                       const store::StakeholderRecord& who) {
  auto enrolee = OwnEnrolee(id_text, who);
  if (!enrolee) return ErrorFrom(enrolee.error());
  auto bundle = NewTokenBundle(*enrolee, who);
  if (!bundle) return ErrorFrom(bundle.error());
  auto response = Json(201, *bundle);
  auto* token = (*bundle)["token"].get_ptr<std::string*>();
  SecureWipe(token->data(), token->size());
  return response;
}

Result<std::pair<store::ApiTokenRecord, std::string>> Portal::NewApiToken(
    const store::StakeholderRecord& who, const std::string& name) {
  if (name.empty() || name.size() > kMaxNameLength ||
      !crypto::CheckIdentifier(name, "token name")) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "a token name is 1-64 printable ASCII characters without spaces");
  }
  Bytes token(kTokenBytes);
  rng_.Fill(token);
  std::string token_text = std::string(kApiTokenPrefix) + Base64UrlEncode(token);
  SecureWipe(token.data(), token.size());
  const int64_t now = UnixSeconds(clock_.Now());
  const int64_t expires_at =
      settings_.api_token_seconds > 0 ? now + settings_.api_token_seconds : 0;
  auto added = store_.AddApiToken(who.id, name, crypto::Sha256(AsBytes(token_text)), now,
                                  expires_at,
                                  {0, now, "stakeholder:" + who.name, "apitoken.create",
                                   "stakeholder " + who.name + " API token {id}",
                                   "name " + name});
  if (!added) {
    SecureWipe(token_text.data(), token_text.size());
    if (added.error().code == Errc::kConflict) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kConflict,
                  "you already have a token of that name");
    }
    return Fail(added.error());
  }
  spdlog::info("portal: '{}' created API token {} ('{}')", who.name, added->id, name);
  return std::make_pair(std::move(*added), std::move(token_text));
}

Result<int64_t> Portal::RevokeApiToken(const store::StakeholderRecord& who,
                                       std::string_view id_text,
                                       const std::string& peer_address) {
  int64_t id = 0;
  auto [ptr, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
  if (ec != std::errc() || ptr != id_text.data() + id_text.size() || id <= 0) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kNotFound, "no such API token");
  }
  const int64_t now = UnixSeconds(clock_.Now());
  MTE_TRY(store_.RevokeApiToken(
      who.id, id,
      {0, now, "stakeholder:" + who.name, "apitoken.revoke",
       "stakeholder " + who.name + " API token " + std::to_string(id), "from " + peer_address}));
  return id;
}

Result<void> Portal::ChangePassword(const store::StakeholderRecord& who,
                                    const SecretString& current, const SecretString& replacement,
                                    const std::string& peer_address) {
  LoginAttempt attempt;
  auto checked = CheckLogin(who.name, current, nullptr, peer_address, &attempt);
  if (!checked) {
    if (checked.error().code == Errc::kAuthFailed) {
      return Fail(ErrorKind::kPeerAuth, Errc::kForbidden, "the current password is wrong");
    }
    return Fail(checked.error());
  }
  if (replacement.size() < 12 || replacement.size() > kMaxPasswordLength) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "a new password is 12 to 256 characters");
  }
  MTE_TRY_ASSIGN(auto hash, crypto::HashPassword(replacement, rng_));
  const int64_t now = UnixSeconds(clock_.Now());
  MTE_TRY(store_.SetStakeholderPassword(who.name, hash,
                                        {0, now, "stakeholder:" + who.name, "stakeholder.passwd",
                                         "stakeholder " + who.name,
                                         "from " + peer_address + "; every session ended"}));
  spdlog::info("portal: '{}' changed their password; their sessions ended", who.name);
  return {};
}

Result<std::vector<store::AuditEntry>> Portal::Timeline(const store::EnroleeRecord& enrolee) {
  MTE_TRY_ASSIGN(auto all, store_.ListAudit());
  // Lifecycle subjects are "enrolee <id>" alone or followed by a space (EnroleeSubject).
  const std::string subject = "enrolee " + std::to_string(enrolee.id);
  std::vector<store::AuditEntry> out;
  for (auto& entry : all) {
    if (entry.subject == subject ||
        (entry.subject.size() > subject.size() && entry.subject.starts_with(subject) &&
         entry.subject[subject.size()] == ' ')) {
      out.push_back(std::move(entry));
    }
  }
  return out;
}

proto::HttpResponse Portal::EnroleeTimeline(std::string_view id_text,
                                            const store::StakeholderRecord& who) {
  auto enrolee = OwnEnrolee(id_text, who);
  if (!enrolee) return ErrorFrom(enrolee.error());
  auto entries = Timeline(*enrolee);
  if (!entries) return ErrorJson(500, "internal error");
  nlohmann::json items = nlohmann::json::array();
  for (const auto& a : *entries) items.push_back(AuditEntryJson(a));
  return Json(200, {{"enroleeId", enrolee->id}, {"entries", items}});
}

nlohmann::json ApiTokenJson(const store::ApiTokenRecord& t) {
  char created[32], used[32], expires[32];
  return {{"id", t.id},
          {"name", t.name},
          {"createdAt", std::string(FormatRfc3339(t.created_at, created))},
          {"lastUsedAt", t.last_used_at ? std::string(FormatRfc3339(t.last_used_at, used)) : ""},
          {"expiresAt", t.expires_at ? std::string(FormatRfc3339(t.expires_at, expires)) : ""}};
}

// /api/v1/account, .../tokens[/{id}], .../password, .../totp[/confirm|/disable] and
// .../recovery-codes.
proto::HttpResponse Portal::Account(const proto::HttpRequest& request, std::string_view rest,
                                    const store::StakeholderRecord& who,
                                    const std::string& peer_address) {
  if (rest == "/tokens") {
    if (request.method == "GET") {
      auto tokens = store_.ListApiTokens(who.id);
      if (!tokens) return ErrorJson(500, "internal error");
      nlohmann::json items = nlohmann::json::array();
      for (const auto& t : *tokens) items.push_back(ApiTokenJson(t));
      return Json(200, {{"tokens", items}});
    }
    if (request.method != "POST") return ErrorJson(405, "use GET or POST");
    auto j = ParseObject(request);
    if (!j) return ErrorJson(400, j.error().detail);
    auto name = StringMember(*j, "name", kMaxNameLength, true);
    if (!name) return ErrorJson(400, name.error().detail);
    auto created = NewApiToken(who, *name);
    if (!created) return ErrorFrom(created.error());
    nlohmann::json body = ApiTokenJson(created->first);
    body["token"] = created->second;
    auto response = Json(201, body);
    SecureWipe(created->second.data(), created->second.size());
    auto* text = body["token"].get_ptr<std::string*>();
    SecureWipe(text->data(), text->size());
    return response;
  }
  constexpr std::string_view kTokens = "/tokens/";
  if (rest.substr(0, kTokens.size()) == kTokens) {
    if (request.method != "DELETE") return ErrorJson(405, "use DELETE");
    std::string_view id_text = rest.substr(kTokens.size());
    auto revoked = RevokeApiToken(who, id_text, peer_address);
    if (!revoked) {
      return revoked.error().code == Errc::kNotFound ? ErrorJson(404, "no such API token")
                                                     : ErrorJson(500, "internal error");
    }
    const int64_t id = *revoked;
    return Json(200, {{"revoked", id}});
  }
  if (rest.empty()) {
    if (request.method != "GET") return ErrorJson(405, "use GET");
    auto totp = store_.FindTotp(who.id);
    if (!totp) return ErrorJson(500, "internal error");
    const bool on = totp->has_value() && (*totp)->confirmed;
    return Json(200, {{"name", who.name},
                      {"admin", who.is_admin},
                      {"totp", on},
                      {"recoveryCodesLeft", on ? (*totp)->recovery_codes_left : 0}});
  }
  if (rest == "/totp") {
    if (request.method != "POST") return ErrorJson(405, "use POST");
    auto setup = BeginTotp(who, peer_address);
    if (!setup) return ErrorFrom(setup.error());
    auto response = Json(201, {{"secret", setup->secret_base32},
                               {"otpauthUri", setup->otpauth_uri},
                               {"algorithm", "SHA1"},
                               {"digits", 6},
                               {"period", 30}});
    SecureWipe(setup->secret_base32.data(), setup->secret_base32.size());
    SecureWipe(setup->otpauth_uri.data(), setup->otpauth_uri.size());
    return response;
  }
  if (rest == "/totp/confirm" || rest == "/totp/disable" || rest == "/recovery-codes") {
    if (request.method != "POST") return ErrorJson(405, "use POST");
    auto j = ParseObject(request);
    if (!j) return ErrorJson(400, j.error().detail);
    auto code_text = StringMember(*j, "code", kMaxCodeLength, true);
    if (!code_text) return ErrorJson(400, code_text.error().detail);
    SecretString code(std::move(*code_text));
    SecureWipe((*j)["code"].get_ptr<std::string*>()->data(),
               (*j)["code"].get_ptr<std::string*>()->size());
    int64_t retry_after = 0;
    auto failed = [&](const Error& error) {
      return error.code == Errc::kRateLimited ? TooMany(error.detail, retry_after)
                                              : ErrorFrom(error);
    };
    if (rest == "/totp/disable") {
      auto disabled = DisableTotp(who, code, peer_address, &retry_after);
      if (!disabled) return failed(disabled.error());
      return Json(200, {{"totp", false}});
    }
    auto codes = rest == "/totp/confirm" ? ConfirmTotp(who, code, peer_address, &retry_after)
                                         : NewRecoveryCodes(who, code, peer_address, &retry_after);
    if (!codes) return failed(codes.error());
    auto response = Json(200, {{"totp", true}, {"recoveryCodes", *codes}});
    for (auto& text : *codes) SecureWipe(text.data(), text.size());
    return response;
  }
  if (rest == "/password") {
    if (request.method != "POST") return ErrorJson(405, "use POST");
    auto j = ParseObject(request);
    if (!j) return ErrorJson(400, j.error().detail);
    auto current = StringMember(*j, "currentPassword", kMaxPasswordLength, true);
    if (!current) return ErrorJson(400, current.error().detail);
    auto replacement = StringMember(*j, "newPassword", kMaxPasswordLength, true);
    if (!replacement) return ErrorJson(400, replacement.error().detail);
    SecretString current_secret(std::move(*current));
    SecretString replacement_secret(std::move(*replacement));
    for (const char* member : {"currentPassword", "newPassword"}) {
      auto* text = (*j)[member].get_ptr<std::string*>();
      SecureWipe(text->data(), text->size());
    }
    auto changed = ChangePassword(who, current_secret, replacement_secret, peer_address);
    if (!changed) return ErrorFrom(changed.error());
    return Json(200, {{"changed", true}, {"sessionsEnded", true}});
  }
  return ErrorJson(404, "no such resource");
}

proto::HttpResponse Portal::ListEnrolees(const store::StakeholderRecord& who) {
  auto list = store_.ListEnrolees(who.is_admin ? std::nullopt : std::optional<int64_t>(who.id));
  if (!list) return ErrorJson(500, "internal error");
  nlohmann::json items = nlohmann::json::array();
  for (const auto& e : *list) items.push_back(EnroleeJson(e));
  return Json(200, {{"enrolees", items}});
}

proto::HttpResponse Portal::Audit() {
  auto entries = store_.ListAudit();
  if (!entries) return ErrorJson(500, "internal error");
  nlohmann::json items = nlohmann::json::array();
  for (const auto& a : *entries) items.push_back(AuditEntryJson(a));
  return Json(200, {{"entries", items}});
}

proto::HttpResponse Portal::GetEnrolee(std::string_view id_text,
                                       const store::StakeholderRecord& who) {
  auto enrolee = OwnEnrolee(id_text, who);
  if (!enrolee) return ErrorFrom(enrolee.error());
  return Json(200, EnroleeJson(*enrolee));
}

}  // namespace mte
