// The Pre-Provisioned Symmetric Key RSPF, MEF side (TS-0003 §8.3.2.1): the device authenticates
// with a TLS-PSK handshake, psk_identity = KpmID and psk = Kpm (RFC 4279, RFC 8446 external PSK),
// directly on the MEF port (Flow A) or inside the outer session (Flow B). Kpm is sealed in the
// store with aad "kpm|<device id>".
// Thread-safety: safe to call concurrently (the store serialises).
#pragma once

#include <memory>

#include "crypto/aead.h"
#include "mef/rspf/rspf.h"

namespace mte::mef {

class PpskRspf final : public Rspf {
 public:
  // `inner` configures the TLS versions of the Flow B inner session (server name = MEF FQDN).
  static Result<std::unique_ptr<PpskRspf>> Create(store::Store& store,
                                                  const crypto::KeyEncryptionKey& kek,
                                                  std::string mef_fqdn);

  std::string_view name() const override;
  void ConfigureDirect(crypto::TlsServerOptions& options) const override;
  std::optional<SecretBytes> LookupPsk(std::string_view identity) override;
  bool Claims(const crypto::TlsEngine& tls) const override;
  bool Serves(const store::DeviceRecord& device) const override;
  Result<std::unique_ptr<crypto::TlsEngine>> NewInnerEngine() override;
  void Authenticate(const crypto::TlsEngine& tls, int64_t now, AuthenticateDone done) override;

 private:
  PpskRspf(store::Store& store, const crypto::KeyEncryptionKey& kek) : store_(store), kek_(kek) {}

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  std::shared_ptr<const crypto::TlsContext> inner_;
};

}  // namespace mte::mef
