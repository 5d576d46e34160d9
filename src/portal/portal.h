// The Enrolment Portal (seed 8.y.3 steps 1-4, 8.y.4 steps 2-8): a REST API under /api/v1/ and
// a server-rendered web application under / for the same operations. Stakeholder login
// (Argon2id) with bearer tokens, personal API tokens and browser sessions (cookies), all stored
// as SHA-256 hashes; proof of control (device ID + claim code); Flow B entries and
// Enrolment-Tokens; revocation; and the stakeholder's own view of the MTE Enrolee Database
// (tenant isolation). portal.cc holds the REST API and the operations both share; web.cc the
// HTML pages.
//
// Pure request -> response handler; blocking (Argon2id, database): worker threads only.
// Thread-safety: safe to call concurrently.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/secret.h"
#include "crypto/aead.h"
#include "mte/lockout.h"
#include "proto/http.h"
#include "store/store.h"

namespace mte {

struct PortalSettings {
  int64_t session_seconds = 8 * 3600;
  // Flow B (seed 8.y.4 steps 7-8): what a token bundle carries.
  int64_t token_seconds = 7 * 24 * 3600;
  std::string mef_uri;               // MTE-selected MEF URI, e.g. "https://mef.example.com:8443"
  std::string mef_fqdn;
  std::vector<std::string> mef_trust_anchors;  // PEM certificates
  int max_failures = 5;              // per account and per client address ...
  int64_t lockout_seconds = 300;     // ... then locked for this long, the first time; every
  int64_t max_lockout_seconds = 3600;  // further lock of the same key doubles, up to this
  // Browser sessions end after session_seconds (absolute) or this long without a request.
  int64_t browser_idle_seconds = 30 * 60;
  int64_t api_token_seconds = 0;  // lifetime of a personal API token; 0 = until revoked
};

// The prefix of a personal API token's text, so that scanners and people can tell one apart
// from a login token.
inline constexpr std::string_view kApiTokenPrefix = "mtept_";

class Portal {
 public:
  // `kek` seals the MAF retirements that revocations queue in the outbox.
  Portal(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
         PortalSettings settings);

  proto::HttpResponse Handle(const proto::HttpRequest& request, const std::string& peer_address);

 private:
  // --- operations shared by the REST API and the web pages (portal.cc) ---
  // What a sign-in attempt learnt besides its result.
  struct LoginAttempt {
    int64_t retry_after = 0;              // with kRateLimited: seconds until the lock ends
    bool second_factor_required = false;  // with kAuthFailed: the password was right, but the
                                          // account has TOTP and no code was given
  };
  // Checks a password login with lockout, and the second factor of an account that has TOTP
  // confirmed: `code` is a 6-digit TOTP code or a recovery code, empty if none was given;
  // nullptr checks the password alone (a signed-in caller confirming it). kRateLimited while
  // the address (or, for an address that has failed, the account) is locked; kAuthFailed for a
  // wrong name, password or code. Wrong passwords and codes count towards the lock.
  Result<store::StakeholderRecord> CheckLogin(const std::string& name,
                                              const SecretString& password,
                                              const SecretString* code,
                                              const std::string& peer_address,
                                              LoginAttempt* attempt);
  // A new session of `kind` for `who`; the token text, which only its holder ever sees.
  Result<std::string> StartSession(const store::StakeholderRecord& who, store::SessionKind kind,
                                   const std::string& peer_address, int64_t* expires_at);
  Result<store::EnroleeRecord> Claim(const store::StakeholderRecord& who,
                                     const std::string& device_id, const SecretString& code,
                                     const std::string& label, const std::string& peer_address,
                                     int64_t* retry_after);
  Result<store::EnroleeRecord> AddFlowBEntry(const store::StakeholderRecord& who,
                                             const std::string& label, const std::string& info,
                                             const std::string& device_id);
  // The token bundle (docs/protocol.md §9.1) of a new Enrolment-Token for `enrolee`.
  Result<nlohmann::json> NewTokenBundle(const store::EnroleeRecord& enrolee,
                                        const store::StakeholderRecord& who);
  // A new personal API token: its record and its text (shown once).
  Result<std::pair<store::ApiTokenRecord, std::string>> NewApiToken(
      const store::StakeholderRecord& who, const std::string& name);
  // Revokes the caller's API token `id_text`; its id. kNotFound for another's, an unknown or a
  // malformed id.
  Result<int64_t> RevokeApiToken(const store::StakeholderRecord& who, std::string_view id_text,
                                 const std::string& peer_address);
  Result<void> ChangePassword(const store::StakeholderRecord& who, const SecretString& current,
                              const SecretString& replacement, const std::string& peer_address);
  // --- the second factor (second_factor.cc; docs/protocol.md §12) ---
  struct TotpSetup {
    std::string secret_base32;  // RFC 4648 base32 without padding, for typing into an app
    std::string otpauth_uri;    // for a QR code
  };
  // A new unconfirmed TOTP secret for `who` (replacing an unconfirmed one). kConflict while
  // TOTP is on.
  Result<TotpSetup> BeginTotp(const store::StakeholderRecord& who,
                              const std::string& peer_address);
  // The key of the unconfirmed setup again (to retry a wrong first code). kNotFound without one.
  Result<TotpSetup> PendingTotp(const store::StakeholderRecord& who);
  // Turns TOTP on with the first code from the app; the new recovery codes (shown once).
  // kAuthFailed for a wrong code (counted towards the lock); kNotFound without a setup.
  Result<std::vector<std::string>> ConfirmTotp(const store::StakeholderRecord& who,
                                               const SecretString& code,
                                               const std::string& peer_address,
                                               int64_t* retry_after);
  // Turns TOTP off; `code` is a current TOTP code or a recovery code. (These three set
  // *retry_after with kRateLimited, like CheckSecondFactor.)
  Result<void> DisableTotp(const store::StakeholderRecord& who, const SecretString& code,
                           const std::string& peer_address, int64_t* retry_after);
  // Replaces the recovery codes; `code` is a current TOTP code or a recovery code.
  Result<std::vector<std::string>> NewRecoveryCodes(const store::StakeholderRecord& who,
                                                    const SecretString& code,
                                                    const std::string& peer_address,
                                                    int64_t* retry_after);
  // Checks a second-factor code of `who`, whose TOTP is confirmed: a TOTP code of a step not
  // used before, or an unused recovery code (which it uses up). kAuthFailed otherwise, with the
  // failure counted on the account and address keys; kRateLimited (*retry_after) while locked.
  Result<void> CheckSecondFactor(const store::StakeholderRecord& who, const SecretString& code,
                                 const std::string& peer_address, int64_t* retry_after);
  // kRateLimited ("too many <what>; try again later", *retry_after set) while the address, or
  // (for an address that has failed) the account, is locked.
  Result<void> RefuseWhileLocked(const std::string& account_key, const std::string& address_key,
                                 int64_t now, std::string_view what, int64_t* retry_after);
  // Records a failed password or code on both keys.
  Result<void> RecordLoginFailure(const std::string& account_key, const std::string& address_key,
                                  int64_t now);

  // The audit entries of one enrolee, oldest first.
  Result<std::vector<store::AuditEntry>> Timeline(const store::EnroleeRecord& enrolee);

  // The HTTP status for an error of the operations above (500 hides the detail).
  static int StatusOf(const Error& error);

  // --- the REST API (portal.cc) ---
  proto::HttpResponse HandleApi(const proto::HttpRequest& request, std::string_view target,
                                const std::string& peer_address);
  proto::HttpResponse Health();
  proto::HttpResponse Audit();  // the whole audit log (admins)
  proto::HttpResponse Login(const proto::HttpRequest& request, const std::string& peer_address);
  Result<store::StakeholderRecord> Authenticate(const proto::HttpRequest& request);
  proto::HttpResponse Account(const proto::HttpRequest& request, std::string_view rest,
                              const store::StakeholderRecord& who,
                              const std::string& peer_address);
  proto::HttpResponse EnroleeTimeline(std::string_view id_text,
                                      const store::StakeholderRecord& who);
  proto::HttpResponse AddEnrolee(const proto::HttpRequest& request,
                                 const store::StakeholderRecord& who,
                                 const std::string& peer_address);
  proto::HttpResponse ListEnrolees(const store::StakeholderRecord& who);
  proto::HttpResponse GetEnrolee(std::string_view id_text, const store::StakeholderRecord& who);
  proto::HttpResponse AddEntry(const nlohmann::json& body, const store::StakeholderRecord& who);
  proto::HttpResponse IssueToken(std::string_view id_text, const store::StakeholderRecord& who);
  proto::HttpResponse DeleteEnrolee(std::string_view id_text, const store::StakeholderRecord& who);
  proto::HttpResponse Revoke(std::string_view id_text, const store::StakeholderRecord& who,
                             const std::string& peer_address);
  // The stakeholder's own enrolee by id text; kNotFound also for another stakeholder's.
  Result<store::EnroleeRecord> OwnEnrolee(std::string_view id_text,
                                          const store::StakeholderRecord& who);

  // --- the web pages (web.cc) ---
  proto::HttpResponse HandleWeb(const proto::HttpRequest& request, std::string_view target,
                                const std::string& peer_address);
  class Web;
  friend class Web;

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  Rng& rng_;
  const Clock& clock_;
  PortalSettings settings_;
  // Login and claim failures in the store, by "account:<name>", "address:<ip>",
  // "claim:<ip>" and "claim-account:<name>" (docs/protocol.md §12, rate limits and lockout).
  StoredFailureLimiter failures_;
};

}  // namespace mte
