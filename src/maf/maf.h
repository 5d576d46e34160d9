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

  // On the mutually authenticated delivery listener: POST /maf/v1/credentials, one delivery, and
  // POST /maf/v1/credentials/batch, up to kMaxBatch deliveries applied in one transaction (one
  // durable commit) with one answer each (docs/protocol.md §10).
  proto::HttpResponse HandleDelivery(const proto::HttpRequest& request,
                                     const crypto::TlsEngine& tls);
  static constexpr size_t kMaxBatch = 64;
  // GET /maf/v1/session on the PSK listener: proves the credential works.
  proto::HttpResponse HandleDevice(const proto::HttpRequest& request,
                                   const crypto::TlsEngine& tls);

 private:
  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  Rng& rng_;
  const Clock& clock_;
  MafSettings settings_;
};

}  // namespace mte
