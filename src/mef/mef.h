// The M2M Enrolment Function's flow (TS-0003 §8.3.2, seed 8.y.3 steps 6-7 and 8.y.4 steps 12-18):
// Enrolment-Tokens and RSPF selection on the outer session of Flow B, the Enrolment Exchange
// inside the session that an RSPF authenticated, the Enrolment Key, and the single transaction
// that records the enrolment and queues the credential for the MAF. What differs per RSPF lives
// behind mef::Rspf (mef/rspf/rspf.h); this code names none of them.
//
// As a pipeline: parse the request -> the RSPF authenticates the device (possibly later, after a
// certificate status request) -> build the commit (pure) -> commit -> render the response.
//
// Transport-free: net/ calls LookupPsk from inside TLS handshakes and the per-connection handler
// with each decrypted request, on the connection's I/O thread (they touch the database briefly).
// Thread-safety: safe to call concurrently; AddRspf only before serving.
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
#include "mef/rspf/rspf.h"
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
  // RSPF preference order for Flow B's selection (seed 8.y.4 step 15); only RSPFs added with
  // AddRspf take part.
  std::vector<std::string> rspf_preference{"CERT", "PPSK"};
  int max_token_failures = 10;           // per source address ...
  int64_t token_lockout_seconds = 600;   // ... then refused for this long
  // Failed RSPF runs (inner handshake not completed, channel binding mismatch) per
  // Enrolment-Token; at this many within token_lockout_seconds the token is refused for that
  // long. They do not count toward the source address (its max_token_failures counts tokens that
  // are unknown, spent, expired or revoked).
  int max_rspf_failures = 5;
};

// What a connection waits for while its RSPF checks the device (mef.cc).
struct PendingEnrolment;

// The state of one MEF connection.
struct MefConnectionState {
  std::string peer_address;
  // Flow B: the token presented on this connection (seed 8.y.4 step 14) and the RSPF selected.
  int64_t token_id = 0;  // 0 = no valid token presented yet
  int64_t enrolee_id = 0;
  // The token was already spent: only the device it enrolled may enrol with it again.
  bool token_spent = false;
  mef::Rspf* rspf = nullptr;
  bool upgraded = false;
  // An Enrolment Exchange whose RSPF answers later.
  std::shared_ptr<PendingEnrolment> pending;
};

class Mef {
 public:
  Mef(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
      MefSettings settings);
  ~Mef();

  // Registers an RSPF this MTE offers. REQUIRES: before serving.
  void AddRspf(std::unique_ptr<mef::Rspf> rspf);
  // Adds every registered RSPF's part to the MEF port's TLS context.
  void ConfigureDirect(crypto::TlsServerOptions& options) const;

  // Called when an enrolment committed (to wake the outbox worker).
  void set_on_commit(std::function<void()> on_commit) { on_commit_ = std::move(on_commit); }

  // The PSK for a psk_identity on the MEF port or an inner session, or nullopt (unknown device,
  // unreadable key; logged).
  std::optional<SecretBytes> LookupPsk(std::string_view identity);

  // One request of the Enrolment Exchange on a Flow A session whose RSPF answers at once (PSK);
  // for tests and tools that have no connection.
  proto::HttpResponse Handle(const proto::HttpRequest& request, const crypto::TlsEngine& tls);

  // Any request on a MEF connection: Flow A (an RSPF authenticated the handshake), or the outer
  // (server-authenticated) and inner (RSPF) sessions of Flow B. May answer `pending`.
  proto::HttpReply HandleRequest(const proto::HttpRequest& request,
                                 const proto::TlsHttpSession& session, MefConnectionState& state);
  // The answer to the request that HandleRequest left pending.
  proto::HttpReply ResumeRequest(const proto::HttpRequest& request,
                                 const proto::TlsHttpSession& session, MefConnectionState& state);
  // The end of a MEF connection: a Flow B connection that upgraded to the RSPF but never
  // completed the inner handshake counts as a failed RSPF run against its token and address.
  void ConnectionClosed(const proto::TlsHttpSession& session, const MefConnectionState& state);
  // A per-connection handler for net/.
  std::unique_ptr<proto::ConnectionHandler> NewConnection(std::string peer_address);

  struct FlowB {
    int64_t token_id;
    int64_t enrolee_id;
    bool token_spent;
    std::vector<uint8_t> outer_binding;
  };
  // A parsed Enrolment Exchange request (Table 8.3.2.1-1).
  struct Request {
    bool maf_enrolment = true;
    bool certificate_enrolment = false;
    bool remote_management = false;
    std::optional<FlowB> flow_b;
    std::string request_id;
  };

 private:
  // The RSPF that authenticated a Flow A handshake, or null (a Flow B outer session).
  mef::Rspf* DirectRspf(const crypto::TlsEngine& tls) const;
  proto::HttpReply StartEnrolment(const proto::HttpRequest& request,
                                  const proto::TlsHttpSession& session, MefConnectionState& state,
                                  mef::Rspf& rspf);
  proto::HttpResponse FinishEnrolment(const Request& parsed, const crypto::TlsEngine& tls,
                                      mef::Rspf& rspf,
                                      const Result<mef::AuthenticatedDevice>& device,
                                      const MefConnectionState* state);
  Result<proto::HttpResponse> Commit(const Request& parsed, const crypto::TlsEngine& tls,
                                     mef::Rspf& rspf, const mef::AuthenticatedDevice& device);
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
  std::vector<std::unique_ptr<mef::Rspf>> rspfs_;
  // In the store, so that every MEF process on one database counts together (keys
  // "mef-address:<ip>" and "mef-token:<token id>", docs/protocol.md §9.4, §9.5).
  StoredFailureLimiter token_failures_;  // by client address
  StoredFailureLimiter rspf_failures_;   // by token id
  // Whether `key` is locked at `now`; a store failure counts as locked (and is logged).
  bool Locked(StoredFailureLimiter& limiter, const std::string& key, int64_t now);
  void RecordFailure(StoredFailureLimiter& limiter, const std::string& key, int64_t now);
};

}  // namespace mte
