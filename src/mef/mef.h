// The M2M Enrolment Function's application logic (TS-0003 §8.3.2.1, seed 8.y.3 steps 6-7):
// PSK lookup for the bootstrap handshake, the Enrolment Exchange inside the authenticated
// session, the Enrolment Key, and the single transaction that records the enrolment and queues
// the credential for the MAF.
//
// Transport-free: net/ calls LookupKpm from inside the TLS handshake and Handle with each
// decrypted request, both on the connection's I/O thread (they touch the database briefly).
// Thread-safety: safe to call concurrently.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/secret.h"
#include "crypto/aead.h"
#include "crypto/tls_engine.h"
#include "mte/lockout.h"
#include "proto/http.h"
#include "proto/tls_http_session.h"
#include "store/store.h"

namespace mte {

struct MefSettings {
  std::string mef_fqdn;
  std::string maf_id;    // MAF-ID for Km (TS-0003 §10.3.2)
  std::string maf_fqdn;  // KmID = KeID on the push path; the MAF is named in the instruction
  int64_t enrolment_expiry_seconds = 0;
  // RSPFs this MTE holds credentials for, in preference order (seed 8.y.4 step 15).
  std::vector<std::string> offered_rspfs{"PPSK"};
  int max_token_failures = 10;           // per source address ...
  int64_t token_lockout_seconds = 600;   // ... then refused for this long
  // Failed RSPF runs (inner handshake not completed, channel binding mismatch) per
  // Enrolment-Token; at this many within token_lockout_seconds the token is refused for that
  // long. Each failure also counts once toward the source address's max_token_failures.
  int max_rspf_failures = 5;
};

// Flow B state of one MEF connection: the token presented on it (seed 8.y.4 step 14).
struct MefConnectionState {
  std::string peer_address;
  int64_t token_id = 0;  // 0 = no valid token presented yet
  int64_t enrolee_id = 0;
  std::string rspf;
  bool upgraded = false;
};

class Mef {
 public:
  Mef(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
      MefSettings settings);

  // Called when an enrolment committed (to wake the outbox worker).
  void set_on_commit(std::function<void()> on_commit) { on_commit_ = std::move(on_commit); }

  // Kpm for a KpmID, or nullopt (unknown device, unreadable key). Logs the reason.
  std::optional<SecretBytes> LookupKpm(std::string_view kpm_id);

  // One request of the Enrolment Exchange on a Flow A session (psk_identity = KpmID).
  proto::HttpResponse Handle(const proto::HttpRequest& request, const crypto::TlsEngine& tls);

  // The PSK context of the RSPF's handshake inside a Flow B session (set before serving).
  void set_rspf_context(std::shared_ptr<const crypto::TlsContext> context) {
    rspf_context_ = std::move(context);
  }

  // Any request on a MEF connection: Flow A (PSK session), or the outer (server-authenticated)
  // and inner (RSPF) sessions of Flow B.
  proto::HttpReply HandleRequest(const proto::HttpRequest& request,
                                 const proto::TlsHttpSession& session, MefConnectionState& state);
  // The end of a MEF connection: a Flow B connection that upgraded to the RSPF but never
  // completed the inner handshake counts as a failed RSPF run against its token and address.
  void ConnectionClosed(const proto::TlsHttpSession& session, const MefConnectionState& state);
  // A per-connection handler for net/.
  std::unique_ptr<proto::ConnectionHandler> NewConnection(std::string peer_address);

 private:
  struct FlowB {
    int64_t token_id;
    int64_t enrolee_id;
    std::vector<uint8_t> outer_binding;
    bool binding_mismatch = false;  // set by Enrol
  };
  Result<proto::HttpResponse> Enrol(const proto::HttpRequest& request,
                                    const crypto::TlsEngine& tls, const std::string& request_id,
                                    FlowB* flow_b);
  proto::HttpResponse RefusalResponse(const Error& error, const std::string& request_id,
                                      std::string_view who);
  proto::HttpResponse PresentToken(const proto::HttpRequest& request, MefConnectionState& state,
                                   const std::string& request_id);
  proto::HttpReply StartRspf(const proto::HttpRequest& request, MefConnectionState& state,
                             const std::string& request_id);
  // One failed RSPF run on a connection that presented a valid token: counts toward the token and
  // the client address.
  void RecordRspfFailure(const MefConnectionState& state, int64_t now);

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  Rng& rng_;
  const Clock& clock_;
  MefSettings settings_;
  std::function<void()> on_commit_;
  std::shared_ptr<const crypto::TlsContext> rspf_context_;
  FailureLimiter<std::string> token_failures_;  // by client address
  FailureLimiter<int64_t> rspf_failures_;       // by token id
};

}  // namespace mte
