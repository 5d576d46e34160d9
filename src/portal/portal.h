// The Enrolment Portal's REST API (seed 8.y.3 steps 1-4): stakeholder login (Argon2id) with
// bearer tokens stored as SHA-256 hashes, proof of control (device ID + claim code), and the
// stakeholder's own view of the MTE Enrolee Database (tenant isolation).
//
// Pure request -> response handler; blocking (Argon2id, database): worker threads only.
// Thread-safety: safe to call concurrently.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
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
};

class Portal {
 public:
  // `kek` seals the MAF retirements that revocations queue in the outbox.
  Portal(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
         PortalSettings settings);

  proto::HttpResponse Handle(const proto::HttpRequest& request, const std::string& peer_address);

 private:
  proto::HttpResponse Health();
  proto::HttpResponse Audit();  // the whole audit log (admins)
  proto::HttpResponse Login(const proto::HttpRequest& request, const std::string& peer_address);
  Result<store::StakeholderRecord> Authenticate(const proto::HttpRequest& request);
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

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  Rng& rng_;
  const Clock& clock_;
  PortalSettings settings_;
  // Login and claim failures, by "account:<name>", "address:<ip>" and similar keys.
  FailureLimiter<std::string> failures_;
};

}  // namespace mte
