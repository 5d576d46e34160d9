// The certificate-based RSPF, device side (TS-0003 §8.3.2.2): a mutually authenticated TLS
// handshake with the device's certificate (ECDSA P-256) and the MEF's FQDN certificate, verified
// against the MEF's trust anchors (§8.1.2.5: exact FQDN, no wildcards). The session asks for the
// MEF's stapled OCSP response (RFC 6066 §8), which the state machine checks (proto/mef_status.h).
#pragma once

#include "proto/rspf/device_rspf.h"

namespace mte::proto {

struct CertCredential {
  std::string cert_pem_file;  // the device certificate, then any intermediates (PEM)
  std::string key_pem_file;   // its private key (PEM; the caller checks the file's mode)
};

class CertDevice final : public DeviceRspf {
 public:
  // kLocalUsage/kConfig when the files cannot be read, the key does not match the certificate, or
  // the certificate has no common name.
  static Result<std::unique_ptr<CertDevice>> Create(CertCredential credential,
                                                    RspfTlsOptions tls = {});
  std::string_view name() const override;
  Result<std::unique_ptr<crypto::TlsEngine>> NewEngine(const std::string& mef_fqdn,
                                                       const std::string& mef_trust_pem) override;
  std::string origin() const override { return common_name_; }
  std::pair<std::string, std::string> credential_record() const override {
    return {"certSha256", cert_sha256_};
  }

 private:
  CertDevice() = default;
  CertCredential credential_;
  RspfTlsOptions tls_;
  std::string common_name_;
  std::string cert_sha256_;
};

}  // namespace mte::proto
