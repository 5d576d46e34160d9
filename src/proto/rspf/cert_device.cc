#include "proto/rspf/cert_device.h"

#include "base/file.h"
#include "crypto/device_cert.h"
#include "proto/enrolment.h"

namespace mte::proto {

Result<std::unique_ptr<CertDevice>> CertDevice::Create(CertCredential credential,
                                                       RspfTlsOptions tls) {
  MTE_TRY_ASSIGN(std::string pem,
                 ReadBoundedFile(credential.cert_pem_file, crypto::kMaxPemFileSize));
  auto chain = crypto::CertificatesFromPem(pem);
  if (!chain) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                credential.cert_pem_file + ": " + chain.error().detail);
  }
  MTE_TRY_ASSIGN(crypto::CertFacts facts, crypto::DescribeCertificate(chain->front()));
  if (facts.common_name.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "the device certificate " + credential.cert_pem_file + " has no common name");
  }
  // Loading a client context checks that the key matches the certificate.
  crypto::TlsClientOptions probe;
  probe.server_name = "probe.invalid";
  probe.psk_identity = "probe";
  probe.cert_chain_pem_file = credential.cert_pem_file;
  probe.key_pem_file = credential.key_pem_file;
  MTE_TRY(crypto::TlsContext::Client(probe));
  auto device = std::unique_ptr<CertDevice>(new CertDevice());
  device->credential_ = std::move(credential);
  device->tls_ = std::move(tls);
  device->common_name_ = facts.common_name;
  device->cert_sha256_ = facts.cert_sha256;
  return device;
}

std::string_view CertDevice::name() const { return kRspfCert; }

Result<std::unique_ptr<crypto::TlsEngine>> CertDevice::NewEngine(
    const std::string& mef_fqdn, const std::string& mef_trust_pem) {
  if (mef_trust_pem.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "the certificate RSPF needs the MEF's trust anchors");
  }
  crypto::TlsClientOptions options;
  options.server_name = mef_fqdn;
  options.trust_pem = mef_trust_pem;
  options.cert_chain_pem_file = credential_.cert_pem_file;
  options.key_pem_file = credential_.key_pem_file;
  options.request_ocsp_staple = true;
  options.tls12 = tls_.tls12;
  options.tls13 = tls_.tls13;
  options.tls12_ciphers = tls_.tls12_ciphers;
  MTE_TRY_ASSIGN(auto context, crypto::TlsContext::Client(options));
  return crypto::TlsEngine::Client(context);
}

}  // namespace mte::proto
