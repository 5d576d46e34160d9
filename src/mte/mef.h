// The M2M Enrolment Function's application logic (TS-0003 §8.3.2.1, seed 8.y.3 steps 6-7):
// PSK lookup for the bootstrap handshake, the Enrolment Exchange inside the authenticated
// session, the Enrolment Key, and the single transaction that records the enrolment and queues
// the credential for the MAF.
//
// Transport-free: net/ calls LookupKpm from inside the TLS handshake and Handle with each
// decrypted request, both on a worker thread (they touch the database).
// Thread-safety: safe to call concurrently.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "base/clock.h"
#include "base/secret.h"
#include "crypto/aead.h"
#include "crypto/tls_engine.h"
#include "proto/http.h"
#include "store/store.h"

namespace mte {

struct MefSettings {
  std::string mef_fqdn;
  std::string maf_id;    // MAF-ID for Km (TS-0003 §10.3.2)
  std::string maf_fqdn;  // KmID = KeID on the push path; the MAF is named in the instruction
  int64_t enrolment_expiry_seconds = 0;
};

// The sealed outbox payload delivered to the MAF (JSON, docs/protocol.md §MAF delivery).
struct MafDeliveryPayload;

class Mef {
 public:
  Mef(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
      MefSettings settings);

  // Called when an enrolment committed (to wake the outbox worker).
  void set_on_commit(std::function<void()> on_commit) { on_commit_ = std::move(on_commit); }

  // Kpm for a KpmID, or nullopt (unknown device, unreadable key). Logs the reason.
  std::optional<SecretBytes> LookupKpm(std::string_view kpm_id);

  // One request of the Enrolment Exchange on an authenticated session (psk_identity = KpmID).
  proto::HttpResponse Handle(const proto::HttpRequest& request, const crypto::TlsEngine& tls);

 private:
  Result<proto::HttpResponse> Enrol(const proto::HttpRequest& request,
                                    const crypto::TlsEngine& tls, const std::string& request_id);

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  Rng& rng_;
  const Clock& clock_;
  MefSettings settings_;
  std::function<void()> on_commit_;
};

}  // namespace mte
