#include "mef/rspf/cert/cert_rspf.h"

#include <spdlog/spdlog.h>

#include "crypto/keys.h"
#include "proto/enrolment.h"

namespace mte::mef {
namespace {

// Refusals of the certificate reach the device as RSC 4103 (ORIGINATOR_HAS_NO_PRIVILEGE).
Error Refused(Error error) {
  if (error.kind == ErrorKind::kPeerAuth || error.kind == ErrorKind::kPeerProtocol) {
    error.kind = ErrorKind::kPeerAuth;
    error.code = Errc::kForbidden;
  }
  return error;
}

std::string Short(const std::string& hex) { return hex.substr(0, 16); }

}  // namespace

Result<std::unique_ptr<CertRspf>> CertRspf::Create(store::Store& store,
                                                   RevocationChecker& revocation,
                                                   const CertRspfOptions& options) {
  crypto::TlsServerOptions inner;
  inner.server_name = options.mef_fqdn;
  inner.cert_chain_pem_file = options.cert_chain_pem_file;
  inner.key_pem_file = options.key_pem_file;
  inner.unverified_client_cert = crypto::UnverifiedClientCert::kRequired;
  inner.ocsp_staple = options.ocsp_staple;
  auto rspf = std::unique_ptr<CertRspf>(new CertRspf(store, revocation));
  MTE_TRY_ASSIGN(rspf->inner_, crypto::TlsContext::Server(inner));
  return rspf;
}

std::string_view CertRspf::name() const { return proto::kRspfCert; }

void CertRspf::ConfigureDirect(crypto::TlsServerOptions& options) const {
  // A CertificateRequest on every certificate handshake of the port; a client without one (the
  // outer session of Flow B) answers with none.
  options.unverified_client_cert = crypto::UnverifiedClientCert::kOptional;
}

bool CertRspf::Claims(const crypto::TlsEngine& tls) const {
  return tls.psk_identity().empty() && !tls.peer_chain_der().empty();
}

bool CertRspf::Serves(const store::DeviceRecord& device) const {
  return device.Find(store::CredentialKind::kCertSha256) != nullptr ||
         device.Find(store::CredentialKind::kSpkiSha256) != nullptr;
}

Result<std::unique_ptr<crypto::TlsEngine>> CertRspf::NewInnerEngine() {
  return crypto::TlsEngine::Server(inner_);
}

Result<std::shared_ptr<const crypto::DeviceCaSet>> CertRspf::Anchors(
    std::vector<crypto::DeviceCa> cas) {
  std::lock_guard lock(anchors_mutex_);
  if (anchors_ == nullptr || anchors_->cas() != cas) {
    MTE_TRY_ASSIGN(anchors_, crypto::DeviceCaSet::Load(std::move(cas)));
  }
  return anchors_;
}

void CertRspf::Authenticate(const crypto::TlsEngine& tls, int64_t now, AuthenticateDone done) {
  std::vector<Bytes> chain = tls.peer_chain_der();
  if (chain.empty()) {
    return done(Fail(ErrorKind::kPeerAuth, Errc::kForbidden, "no device certificate presented"));
  }
  // 1. The manifest: the certificate itself (its SHA-256 needs no parsing), else its key.
  bool by_key = false;
  const std::string cert_sha256 = HexLower(crypto::Sha256(chain.front()));
  auto device = store_.FindDeviceByCredential(store::CredentialKind::kCertSha256, cert_sha256);
  if (!device) return done(Fail(device.error()));
  std::string spki_sha256;
  if (!*device) {
    auto facts = crypto::DescribeCertificate(chain.front());
    if (!facts) return done(Fail(Refused(facts.error())));
    by_key = true;
    spki_sha256 = facts->spki_sha256;
    device = store_.FindDeviceByCredential(store::CredentialKind::kSpkiSha256, spki_sha256);
    if (!device) return done(Fail(device.error()));
  }
  if (!*device) {
    return done(Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                     "device certificate matches no device of the manifest (certSha256 " +
                         cert_sha256 + ", spkiSha256 " + spki_sha256 + ")"));
  }
  const std::string device_id = (**device).device_id;
  auto describe = [&](const crypto::CertFacts& leaf) {
    return "device certificate '" + leaf.subject + "' (certSha256 " + Short(cert_sha256) + "...)";
  };
  // 2. The chain, against the device CAs the operator trusts.
  auto cas = store_.ListDeviceCas();
  if (!cas) return done(Fail(cas.error()));
  std::vector<crypto::DeviceCa> trusted;
  for (const auto& ca : *cas) trusted.push_back({ca.name, ca.cert_pem, ca.max_chain_depth});
  auto anchors = Anchors(std::move(trusted));
  if (!anchors) return done(Fail(anchors.error()));
  std::string pinned_credential;
  if (by_key) {
    auto leaf = crypto::CheckPinnedLeaf(chain.front(), now);
    if (!leaf) return done(Fail(Refused(leaf.error())));
    pinned_credential = describe(leaf->leaf);
  }
  auto verified = crypto::VerifyDeviceChain(chain, **anchors, now);
  if (!verified) {
    if (!by_key) return done(Fail(Refused(verified.error())));
    // RFC 6920-style key registration: the key is the credential; no CA, so no status source.
    return done(AuthenticatedDevice{device_id, std::string(proto::kRspfCert), pinned_credential,
                                    "accepted by its registered key (spkiSha256 " + spki_sha256 +
                                        "); no chain to a device CA, no revocation source"});
  }
  std::string credential = describe(verified->leaf);
  // 3. Revocation, under the anchoring device CA's policy.
  RevocationPolicy policy;
  policy.ca_name = verified->ca_name;
  for (const auto& ca : *cas) {
    if (ca.name != verified->ca_name) continue;
    policy.ocsp_url = ca.ocsp_url;
    policy.crl_file = ca.crl_file;
    policy.fail_open = ca.ocsp_fail_open;
  }
  std::string prefix = std::string(by_key ? "key" : "certificate") + " sha256 " +
                       (by_key ? spki_sha256 : cert_sha256) + ", device CA '" +
                       verified->ca_name + "', ";
  revocation_.Check(*verified, policy,
                    [done, device_id, credential, prefix](Result<std::string> status) {
                      if (!status) return done(Fail(status.error()));
                      done(AuthenticatedDevice{device_id, std::string(proto::kRspfCert),
                                               credential, prefix + *status});
                    });
}

}  // namespace mte::mef
