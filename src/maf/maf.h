// The M2M Authentication Function's application logic: receiving enrolee credentials from the
// MEF (seed 8.y.3 step 7 / 8.y.4 step 18, push) and the MAF handshake (TS-0003 §8.8.2.2,
// TLS-PSK with psk_identity = KmID, psk = Km).
// Transport-free; called on the connections' I/O threads. Thread-safety: safe to call concurrently.
#pragma once

#include <optional>
#include <string>

#include "base/clock.h"
#include "base/secret.h"
#include "crypto/aead.h"
#include "crypto/tls_engine.h"
#include "proto/http.h"
#include "store/store.h"

namespace mte {

struct MafSettings {
  std::string maf_fqdn;
  std::string mef_fqdn;  // the only client allowed to deliver (its certificate's dNSName)
};

class Maf {
 public:
  Maf(store::Store& store, const crypto::KeyEncryptionKey& kek, Rng& rng, const Clock& clock,
      MafSettings settings);

  // Km for a KmID if it exists and has not expired.
  std::optional<SecretBytes> LookupKm(std::string_view km_id);

  // POST /maf/v1/credentials on the mutually authenticated delivery listener.
  proto::HttpResponse HandleDelivery(const proto::HttpRequest& request,
                                     const crypto::TlsEngine& tls);
  // GET /maf/v1/session on the PSK listener: proves the credential works.
  proto::HttpResponse HandleDevice(const proto::HttpRequest& request,
                                   const crypto::TlsEngine& tls);

 private:
  // Removes the enrolee's credentials below `generation` (a retirement, §10.1).
  Result<proto::HttpResponse> Retire(int64_t enrolee_id, int64_t generation,
                                     const std::string& request_id);
  Result<proto::HttpResponse> Deliver(const proto::HttpRequest& request,
                                      const std::string& request_id);

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  Rng& rng_;
  const Clock& clock_;
  MafSettings settings_;
};

}  // namespace mte
