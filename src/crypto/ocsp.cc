#include "crypto/ocsp.h"

#include <openssl/ocsp.h>

#include <algorithm>
#include <limits>

#include "crypto/internal/x509_util.h"
#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

using internal::ParseDerCert;
using internal::TimeText;

tl::unexpected<Error> PeerFail(Errc code, std::string detail) {
  return Fail(ErrorKind::kPeerProtocol, code, std::move(detail));
}

Result<X509Ptr> ParseInputCert(ByteSpan der, std::string_view what) {
  X509Ptr cert = ParseDerCert(der);
  if (!cert) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                std::string(what) + " is not a valid DER certificate");
  }
  return cert;
}

// RFC 6960 §4.2.1 OCSPResponseStatus names.
std::string_view ResponderStatusName(int status) {
  switch (status) {
    case OCSP_RESPONSE_STATUS_MALFORMEDREQUEST:
      return "malformedRequest";
    case OCSP_RESPONSE_STATUS_INTERNALERROR:
      return "internalError";
    case OCSP_RESPONSE_STATUS_TRYLATER:
      return "tryLater";
    case OCSP_RESPONSE_STATUS_SIGREQUIRED:
      return "sigRequired";
    case OCSP_RESPONSE_STATUS_UNAUTHORIZED:
      return "unauthorized";
    default:
      return "";
  }
}

// The SingleResponse about `leaf`, whichever CertID hash the responder used (RFC 6960 §4.1.1
// allows any; requests from MakeOcspRequest use SHA-1).
OCSP_SINGLERESP* FindSingle(OCSP_BASICRESP* basic, X509* leaf, X509* issuer) {
  for (const EVP_MD* md : {EVP_sha1(), EVP_sha256(), EVP_sha384(), EVP_sha512()}) {
    OcspCertIdPtr id(OCSP_cert_to_id(md, leaf, issuer));
    if (!id) {
      continue;
    }
    const int index = OCSP_resp_find(basic, id.get(), -1);
    if (index >= 0) {
      return OCSP_resp_get0(basic, index);  // owned by `basic`
    }
  }
  ERR_clear_error();
  return nullptr;
}

// RFC 6960 §4.2.2.2: the issuer itself, or a responder certificate issued directly by the
// issuer that carries id-kp-OCSPSigning. Only `issuer` is trusted, at `now`.
Result<void> VerifySigner(OCSP_BASICRESP* basic, X509* issuer, int64_t now) {
  ERR_clear_error();
  X509StorePtr store(X509_STORE_new());
  X509StackPtr issuer_only(sk_X509_new_null());
  if (!store || !issuer_only) {
    return Fail(OsslError("allocate certificate store"));
  }
  if (X509_STORE_add_cert(store.get(), issuer) != 1 ||
      X509_add_cert(issuer_only.get(), issuer, X509_ADD_FLAG_UP_REF) != 1) {
    return Fail(OsslError("add issuer"));
  }
  // OCSP_basic_verify copies these into the X509_STORE_CTX it builds for a delegated responder.
  X509_VERIFY_PARAM* param = X509_STORE_get0_param(store.get());  // owned by `store`
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now));    // never the system clock
  // The issuer may be an intermediate CA: it is the trust anchor, not its root.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  // OCSP_TRUSTOTHER: a responder named by `issuer_only` (the issuer itself) needs no chain.
  // OCSP_NOEXPLICIT: a signer that is neither the issuer nor its OCSPSigning delegate is refused
  // rather than looked up in auxiliary trust settings.
  const unsigned long flags = OCSP_TRUSTOTHER | OCSP_NOEXPLICIT;
  if (OCSP_basic_verify(basic, issuer_only.get(), store.get(), flags) != 1) {
    ERR_clear_error();
    return PeerFail(Errc::kAuthFailed,
                    "OCSP response is not signed by the CA or a delegated responder");
  }
  ERR_clear_error();
  return {};
}

// RFC 6960 §4.4.1: extnValue holds the DER of `Nonce ::= OCTET STRING`. Some responders put the
// bare nonce there instead; both forms carry the same bytes, so both are compared.
Result<void> CheckNonce(OCSP_BASICRESP* basic, ByteSpan expected) {
  const int index = OCSP_BASICRESP_get_ext_by_NID(basic, NID_id_pkix_OCSP_Nonce, -1);
  if (index < 0) {
    return PeerFail(Errc::kAuthFailed, "OCSP response has no nonce");
  }
  X509_EXTENSION* ext = OCSP_BASICRESP_get_ext(basic, index);  // owned by `basic`
  const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(ext);
  ByteSpan raw(ASN1_STRING_get0_data(value), static_cast<size_t>(ASN1_STRING_length(value)));
  auto equal = [&](ByteSpan got) {
    return std::equal(got.begin(), got.end(), expected.begin(), expected.end());
  };
  const unsigned char* p = raw.data();
  Asn1StringPtr inner(d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(raw.size())));
  ERR_clear_error();
  if (inner && p == raw.data() + raw.size() &&
      equal(ByteSpan(ASN1_STRING_get0_data(inner.get()),
                     static_cast<size_t>(ASN1_STRING_length(inner.get()))))) {
    return {};
  }
  if (equal(raw)) {
    return {};
  }
  return PeerFail(Errc::kAuthFailed, "OCSP response nonce does not match");
}

}  // namespace

std::string_view ToString(CertStatus status) {
  switch (status) {
    case CertStatus::kGood:
      return "good";
    case CertStatus::kRevoked:
      return "revoked";
    case CertStatus::kUnknown:
      return "unknown";
  }
  return "unknown";
}

Result<OcspRequest> MakeOcspRequest(ByteSpan leaf_der, ByteSpan issuer_der, ByteSpan nonce) {
  if (nonce.size() < kMinOcspNonceSize || nonce.size() > kMaxOcspNonceSize) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "OCSP nonce must be 16 to 32 bytes");
  }
  MTE_TRY_ASSIGN(X509Ptr leaf, ParseInputCert(leaf_der, "device certificate"));
  MTE_TRY_ASSIGN(X509Ptr issuer, ParseInputCert(issuer_der, "issuer certificate"));
  ERR_clear_error();
  OcspRequestPtr request(OCSP_REQUEST_new());
  // RFC 6960 §4.1.1: hashAlgorithm SHA-1, issuerNameHash, issuerKeyHash, serialNumber.
  OcspCertIdPtr id(OCSP_cert_to_id(EVP_sha1(), leaf.get(), issuer.get()));
  if (!request || !id) {
    return Fail(OsslError("build OCSP CertID"));
  }
  if (OCSP_request_add0_id(request.get(), id.get()) == nullptr) {
    return Fail(OsslError("add OCSP CertID"));
  }
  static_cast<void>(id.release());  // now owned by `request`
  // RFC 6960 §4.4.1: the nonce, wrapped as an OCTET STRING inside extnValue.
  if (OCSP_request_add1_nonce(request.get(), const_cast<unsigned char*>(nonce.data()),
                              static_cast<int>(nonce.size())) != 1) {
    return Fail(OsslError("add OCSP nonce"));
  }
  const int len = i2d_OCSP_REQUEST(request.get(), nullptr);
  if (len <= 0) {
    return Fail(OsslError("encode OCSP request"));
  }
  OcspRequest out;
  out.der.resize(static_cast<size_t>(len));
  unsigned char* p = out.der.data();
  if (i2d_OCSP_REQUEST(request.get(), &p) != len) {
    return Fail(OsslError("encode OCSP request"));
  }
  out.nonce.assign(nonce.begin(), nonce.end());
  return out;
}

Result<OcspVerdict> VerifyOcspResponse(ByteSpan response_der, ByteSpan leaf_der,
                                       ByteSpan issuer_der, const OcspCheck& check) {
  if (response_der.size() > kMaxOcspResponseSize) {
    return PeerFail(Errc::kTooLarge,
                    "OCSP response larger than " + std::to_string(kMaxOcspResponseSize) + " bytes");
  }
  MTE_TRY_ASSIGN(X509Ptr leaf, ParseInputCert(leaf_der, "device certificate"));
  MTE_TRY_ASSIGN(X509Ptr issuer, ParseInputCert(issuer_der, "issuer certificate"));

  ERR_clear_error();
  const unsigned char* p = response_der.data();
  OcspResponsePtr response(
      response_der.empty()
          ? nullptr
          : d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(response_der.size())));
  if (!response || p != response_der.data() + response_der.size()) {
    ERR_clear_error();
    return PeerFail(Errc::kMalformed, "OCSP response is not valid DER");
  }
  // RFC 6960 §4.2.1: responseStatus.
  const int responder_status = OCSP_response_status(response.get());
  if (responder_status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    const std::string_view name = ResponderStatusName(responder_status);
    return PeerFail(Errc::kMalformed, name.empty()
                                          ? "OCSP responder answered an undefined status (" +
                                                std::to_string(responder_status) + ")"
                                          : "OCSP responder answered " + std::string(name));
  }
  // RFC 6960 §4.2.1: id-pkix-ocsp-basic is the one response type.
  OcspBasicRespPtr basic(OCSP_response_get1_basic(response.get()));
  if (!basic) {
    ERR_clear_error();
    return PeerFail(Errc::kMalformed, "OCSP response is not a basic OCSP response");
  }
  MTE_TRY(VerifySigner(basic.get(), issuer.get(), check.now));

  // RFC 6960 §4.2.2.3 / §4.2.2.1: the SingleResponse for our CertID.
  OCSP_SINGLERESP* single = FindSingle(basic.get(), leaf.get(), issuer.get());
  if (single == nullptr) {
    return PeerFail(Errc::kAuthFailed, "OCSP response is for another certificate");
  }
  int reason = -1;
  ASN1_GENERALIZEDTIME* revoked_at = nullptr;  // these point into `basic`
  ASN1_GENERALIZEDTIME* this_update = nullptr;
  ASN1_GENERALIZEDTIME* next_update = nullptr;
  const int status =
      OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);

  OcspVerdict verdict;
  auto this_time = internal::UnixTime(this_update);
  if (!this_time) {
    return PeerFail(Errc::kMalformed, "OCSP response thisUpdate cannot be decoded");
  }
  verdict.this_update = *this_time;
  if (next_update != nullptr) {
    auto next_time = internal::UnixTime(next_update);
    if (!next_time) {
      return PeerFail(Errc::kMalformed, "OCSP response nextUpdate cannot be decoded");
    }
    verdict.next_update = *next_time;
  }
  // RFC 6960 §4.2.2.1 and §3.2 (items 5 and 6): thisUpdate sufficiently recent, nextUpdate not
  // in the past.
  if (verdict.this_update > check.now + check.max_skew_seconds) {
    return PeerFail(Errc::kExpired, "OCSP response is not yet valid (thisUpdate " +
                                        TimeText(verdict.this_update) + ")");
  }
  if (next_update != nullptr) {
    if (verdict.next_update < check.now) {
      return PeerFail(Errc::kExpired,
                      "OCSP response is stale (nextUpdate " + TimeText(verdict.next_update) + ")");
    }
  } else if (check.now > verdict.this_update + check.max_age_without_next_update) {
    return PeerFail(Errc::kExpired, "OCSP response is stale (thisUpdate " +
                                        TimeText(verdict.this_update) + ", no nextUpdate)");
  }
  if (check.expected_nonce.has_value()) {
    MTE_TRY(CheckNonce(basic.get(), *check.expected_nonce));
  }

  switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
      verdict.status = CertStatus::kGood;
      break;
    case V_OCSP_CERTSTATUS_REVOKED: {
      verdict.status = CertStatus::kRevoked;
      auto when = internal::UnixTime(revoked_at);
      if (!when) {
        return PeerFail(Errc::kMalformed, "OCSP response revocationTime cannot be decoded");
      }
      verdict.revoked_at = *when;
      // RFC 6960 §4.2.1 RevokedInfo.revocationReason (RFC 5280 §5.3.1 CRLReason), optional.
      if (reason >= 0) {
        verdict.revocation_reason = OCSP_crl_reason_str(reason);
      }
      break;
    }
    case V_OCSP_CERTSTATUS_UNKNOWN:
      verdict.status = CertStatus::kUnknown;
      break;
    default:
      return PeerFail(Errc::kMalformed, "OCSP response has an undefined certStatus");
  }
  ERR_clear_error();
  return verdict;
}

}  // namespace mte::crypto
