#include "proto/rspf/ppsk_device.h"

#include "crypto/keys.h"
#include "proto/enrolment.h"

namespace mte::proto {

Result<std::unique_ptr<PpskDevice>> PpskDevice::Create(PpskCredential credential,
                                                       RspfTlsOptions tls) {
  MTE_TRY(crypto::CheckIdentifier(credential.kpm_id, "KpmID"));
  if (credential.kpm.empty() || credential.kpm.size() > 64) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "Kpm must be 1..64 octets");
  }
  return std::unique_ptr<PpskDevice>(new PpskDevice(std::move(credential), std::move(tls)));
}

std::string_view PpskDevice::name() const { return kRspfPpsk; }

Result<std::unique_ptr<crypto::TlsEngine>> PpskDevice::NewEngine(
    const std::string& mef_fqdn, const std::string& /*mef_trust_pem*/) {
  // The PSK authenticates the MEF: a server that answers with a certificate instead fails.
  crypto::TlsClientOptions options;
  options.server_name = mef_fqdn;
  options.psk_identity = credential_.kpm_id;
  options.tls12 = tls_.tls12;
  options.tls13 = tls_.tls13;
  options.tls12_ciphers = tls_.tls12_ciphers;
  MTE_TRY_ASSIGN(auto context, crypto::TlsContext::Client(options));
  return crypto::TlsEngine::Client(context, credential_.kpm.Clone());
}

}  // namespace mte::proto
