// The PPSK-RSPF, device side (TS-0003 §8.3.2.1): a TLS-PSK handshake with psk_identity = KpmID
// and psk = Kpm, TLS 1.3 external PSK (psk_dhe_ke) or TLS 1.2 ECDHE-PSK / PSK suites.
#pragma once

#include "proto/rspf/device_rspf.h"

namespace mte::proto {

struct PpskCredential {
  std::string kpm_id;
  SecretBytes kpm;
};

class PpskDevice final : public DeviceRspf {
 public:
  // kLocalUsage/kConfig for a malformed KpmID or a Kpm outside 1..64 octets.
  static Result<std::unique_ptr<PpskDevice>> Create(PpskCredential credential,
                                                    RspfTlsOptions tls = {});
  std::string_view name() const override;
  Result<std::unique_ptr<crypto::TlsEngine>> NewEngine(const std::string& mef_fqdn,
                                                       const std::string& mef_trust_pem) override;
  std::string origin() const override { return credential_.kpm_id; }
  std::pair<std::string, std::string> credential_record() const override {
    return {"kpmId", credential_.kpm_id};
  }

 private:
  PpskDevice(PpskCredential credential, RspfTlsOptions tls)
      : credential_(std::move(credential)), tls_(std::move(tls)) {}
  PpskCredential credential_;
  RspfTlsOptions tls_;
};

}  // namespace mte::proto
