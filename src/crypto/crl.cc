#include "crypto/crl.h"

#include <openssl/ocsp.h>
#include <openssl/pem.h>

#include <string_view>

#include "crypto/internal/x509_util.h"
#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

using internal::NameText;
using internal::TimeText;

tl::unexpected<Error> ConfigFail(std::string detail) {
  return Fail(ErrorKind::kLocalUsage, Errc::kConfig, std::move(detail));
}

bool LooksLikePem(ByteSpan data) {
  const std::string_view text = AsText(data);
  const size_t start = text.find_first_not_of(" \t\r\n");
  return start != std::string_view::npos && text.substr(start).starts_with("-----BEGIN");
}

X509CrlPtr DecodeCrl(ByteSpan data) {
  ERR_clear_error();
  X509CrlPtr crl;
  if (LooksLikePem(data)) {
    BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    if (bio) {
      crl.reset(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    }
  } else {
    const unsigned char* p = data.data();
    crl.reset(d2i_X509_CRL(nullptr, &p, static_cast<long>(data.size())));
    if (crl && p != data.data() + data.size()) {
      crl.reset();
    }
  }
  ERR_clear_error();
  return crl;
}

}  // namespace

struct Crl::Impl {
  X509CrlPtr crl;
  X509NamePtr issuer_name;
  int64_t this_update = 0;
  int64_t next_update = 0;
};

Crl::Crl(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Crl::Crl(Crl&&) noexcept = default;
Crl& Crl::operator=(Crl&&) noexcept = default;
Crl::~Crl() = default;

Result<Crl> Crl::Parse(ByteSpan pem_or_der, ByteSpan issuer_der, int64_t now) {
  if (pem_or_der.size() > kMaxCrlSize) {
    return ConfigFail("CRL file is larger than " + std::to_string(kMaxCrlSize) + " bytes");
  }
  X509Ptr issuer = internal::ParseDerCert(issuer_der);
  if (!issuer) {
    return ConfigFail("device CA certificate for the CRL is not a valid DER certificate");
  }
  const std::string ca = "'" + NameText(X509_get_subject_name(issuer.get())) + "'";
  X509CrlPtr crl = pem_or_der.empty() ? nullptr : DecodeCrl(pem_or_der);
  if (!crl) {
    return ConfigFail("CRL file is not a CRL");
  }
  // RFC 5280 §5.1.2.3: the CRL issuer is the CA (indirect CRLs are not supported).
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(issuer.get())) != 0) {
    return ConfigFail("CRL is not signed by device CA " + ca + " (its issuer is '" +
                      NameText(X509_CRL_get_issuer(crl.get())) + "')");
  }
  // RFC 5280 §4.2.1.3: a CRL signer asserts cRLSign when keyUsage is present.
  const uint32_t flags = X509_get_extension_flags(issuer.get());
  if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(issuer.get()) & KU_CRL_SIGN) == 0) {
    ERR_clear_error();
    return ConfigFail("device CA " + ca + " may not sign CRLs (keyUsage lacks cRLSign)");
  }
  // RFC 5280 §5.1.1.3: signatureValue over tbsCertList with the issuer's key.
  EVP_PKEY* key = X509_get0_pubkey(issuer.get());  // owned by `issuer`
  if (key == nullptr || X509_CRL_verify(crl.get(), key) != 1) {
    ERR_clear_error();
    return ConfigFail("CRL is not signed by device CA " + ca);
  }
  auto this_update = internal::UnixTime(X509_CRL_get0_lastUpdate(crl.get()));
  if (!this_update) {
    return ConfigFail("CRL thisUpdate cannot be decoded");
  }
  // RFC 5280 §5.1.2.5: conforming CRL issuers include nextUpdate; without it we cannot tell a
  // current CRL from an old one.
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
  if (next == nullptr) {
    return ConfigFail("CRL has no nextUpdate, so its freshness cannot be judged");
  }
  auto next_update = internal::UnixTime(next);
  if (!next_update) {
    return ConfigFail("CRL nextUpdate cannot be decoded");
  }
  if (*next_update < now) {
    return ConfigFail("CRL is stale (nextUpdate " + TimeText(*next_update) + ")");
  }
  auto impl = std::make_unique<Impl>();
  impl->issuer_name.reset(X509_NAME_dup(X509_get_subject_name(issuer.get())));
  if (!impl->issuer_name) {
    return Fail(OsslError("copy CRL issuer name"));
  }
  impl->crl = std::move(crl);
  impl->this_update = *this_update;
  impl->next_update = *next_update;
  ERR_clear_error();
  return Crl(std::move(impl));
}

OcspVerdict Crl::Status(ByteSpan leaf_der) const {
  X509Ptr leaf = internal::ParseDerCert(leaf_der);
  if (!leaf) {
    ERR_clear_error();
    return Status(ByteSpan(), ByteSpan());
  }
  auto name = internal::NameDer(X509_get_issuer_name(leaf.get()));
  auto serial = internal::IntegerDer(X509_get0_serialNumber(leaf.get()));
  return Status(name ? ByteSpan(*name) : ByteSpan(), serial ? ByteSpan(*serial) : ByteSpan());
}

OcspVerdict Crl::Status(ByteSpan issuer_name_der, ByteSpan serial_der) const {
  OcspVerdict verdict;
  verdict.status = CertStatus::kUnknown;
  verdict.this_update = impl_->this_update;
  verdict.next_update = impl_->next_update;
  const unsigned char* p = issuer_name_der.data();
  X509NamePtr issuer(
      issuer_name_der.empty()
          ? nullptr
          : d2i_X509_NAME(nullptr, &p, static_cast<long>(issuer_name_der.size())));
  const unsigned char* q = serial_der.data();
  Asn1IntegerPtr serial(serial_der.empty() ? nullptr
                                           : d2i_ASN1_INTEGER(nullptr, &q,
                                                              static_cast<long>(serial_der.size())));
  if (!issuer || !serial || X509_NAME_cmp(issuer.get(), impl_->issuer_name.get()) != 0) {
    ERR_clear_error();
    return verdict;
  }
  // RFC 5280 §5.1.2.6: revokedCertificates, matched by serial number (the issuer matched above).
  X509_REVOKED* revoked = nullptr;  // owned by the CRL
  const int found = X509_CRL_get0_by_serial(impl_->crl.get(), &revoked, serial.get());
  // 2 is removeFromCRL (RFC 5280 §5.3.1), which only appears in delta CRLs: not revoked.
  if (found != 1 || revoked == nullptr) {
    ERR_clear_error();
    verdict.status = CertStatus::kGood;
    return verdict;
  }
  verdict.status = CertStatus::kRevoked;
  verdict.revoked_at = internal::UnixTime(X509_REVOKED_get0_revocationDate(revoked)).value_or(0);
  // RFC 5280 §5.3.1: reasonCode, optional.
  int critical = 0;
  Asn1StringPtr reason(static_cast<ASN1_ENUMERATED*>(
      X509_REVOKED_get_ext_d2i(revoked, NID_crl_reason, &critical, nullptr)));
  if (reason) {
    const long code = ASN1_ENUMERATED_get(reason.get());
    verdict.revocation_reason = OCSP_crl_reason_str(code);
  }
  ERR_clear_error();
  return verdict;
}

int64_t Crl::next_update() const { return impl_->next_update; }

}  // namespace mte::crypto
