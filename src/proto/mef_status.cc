#include "proto/mef_status.h"

#include "crypto/device_cert.h"
#include "crypto/ocsp.h"

namespace mte::proto {

Result<void> CheckMefStaple(const crypto::TlsEngine& tls, const std::string& mef_trust_pem,
                            int64_t now, bool required) {
  Bytes staple = tls.stapled_ocsp_response();
  if (staple.empty()) {
    if (!required) return {};
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                "the MEF stapled no OCSP response for its certificate (a staple is required)");
  }
  std::vector<Bytes> chain = tls.peer_chain_der();
  if (chain.empty()) {
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "the MEF presented no certificate");
  }
  // The issuer of the MEF's certificate: in the chain it sent, or among the trust anchors.
  std::vector<Bytes> issuers(chain.begin() + 1, chain.end());
  if (auto anchors = crypto::CertificatesFromPem(mef_trust_pem)) {
    issuers.insert(issuers.end(), anchors->begin(), anchors->end());
  }
  std::optional<Error> first_error;
  for (const Bytes& issuer : issuers) {
    crypto::OcspCheck check;
    check.now = now;  // a stapled response carries no nonce (RFC 6066 §8)
    auto verdict = crypto::VerifyOcspResponse(staple, chain.front(), issuer, check);
    if (!verdict) {
      if (!first_error) first_error = verdict.error();
      continue;
    }
    if (verdict->status == crypto::CertStatus::kGood) return {};
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                "the MEF's stapled OCSP response says its certificate is " +
                    std::string(crypto::ToString(verdict->status)));
  }
  return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
              "the MEF's stapled OCSP response is not usable: " +
                  (first_error ? first_error->detail : std::string("no issuer certificate")));
}

}  // namespace mte::proto
