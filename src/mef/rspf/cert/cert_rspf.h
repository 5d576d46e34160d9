// The certificate-based RSPF, MEF side (TS-0003 §8.3.2.2): the device authenticates with its
// certificate (ECDSA P-256) in a mutually authenticated TLS handshake, directly on the MEF port
// (Flow A) or inside the outer session (Flow B); the MEF presents its FQDN certificate.
//
// The handshake proves possession of the certificate's key; the MEF then judges the certificate
// itself, so that a refusal reaches the device as RSC 4103 with its reason:
//   1. the manifest: a device whose certSha256 is the certificate's SHA-256 (then the chain must
//      verify to a trusted device CA), or whose spkiSha256 is its key's (RFC 6920; accepted by
//      that key, with or without a chain);
//   2. the chain (crypto::VerifyDeviceChain: P-256/SHA-256, keyUsage, EKU, validity at the
//      injected clock, the device CA's depth limit);
//   3. revocation (revocation.h), which may answer later: Authenticate then completes from the
//      OCSP transport's thread.
// Ke/KeID come from the session's exporter exactly as for PPSK (§10.3.1, §10.3.4).
// Thread-safety: safe to call concurrently.
#pragma once

#include <memory>
#include <mutex>

#include "mef/rspf/cert/revocation.h"
#include "mef/rspf/rspf.h"

namespace mte::mef {

struct CertRspfOptions {
  std::string mef_fqdn;
  std::string cert_chain_pem_file;  // the MEF's FQDN certificate (inner sessions)
  std::string key_pem_file;
  crypto::OcspStapleSource ocsp_staple;  // optional, for the inner sessions too
};

class CertRspf final : public Rspf {
 public:
  // `revocation` must outlive the RSPF.
  static Result<std::unique_ptr<CertRspf>> Create(store::Store& store,
                                                  RevocationChecker& revocation,
                                                  const CertRspfOptions& options);

  std::string_view name() const override;
  void ConfigureDirect(crypto::TlsServerOptions& options) const override;
  bool Claims(const crypto::TlsEngine& tls) const override;
  bool Serves(const store::DeviceRecord& device) const override;
  Result<std::unique_ptr<crypto::TlsEngine>> NewInnerEngine() override;
  void Authenticate(const crypto::TlsEngine& tls, int64_t now, AuthenticateDone done) override;

 private:
  CertRspf(store::Store& store, RevocationChecker& revocation)
      : store_(store), revocation_(revocation) {}
  // The trusted device CAs, parsed again only when the operator changed them.
  Result<std::shared_ptr<const crypto::DeviceCaSet>> Anchors(std::vector<crypto::DeviceCa> cas);

  store::Store& store_;
  RevocationChecker& revocation_;
  std::shared_ptr<const crypto::TlsContext> inner_;
  std::mutex anchors_mutex_;
  std::shared_ptr<const crypto::DeviceCaSet> anchors_;  // guarded by anchors_mutex_
};

}  // namespace mte::mef
