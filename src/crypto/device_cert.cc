#include "crypto/device_cert.h"

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <strings.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "crypto/internal/x509_util.h"
#include "crypto/keys.h"
#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

using internal::NameText;
using internal::ParseDerCert;
using internal::TimeText;

tl::unexpected<Error> AuthFail(std::string detail) {
  return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, std::move(detail));
}

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

Result<X509Ptr> ParsePeerCert(ByteSpan der, std::string_view what) {
  if (der.size() > kMaxDeviceCertSize) {
    return Fail(
        ErrorKind::kPeerProtocol, Errc::kTooLarge,
        std::string(what) + " is larger than " + std::to_string(kMaxDeviceCertSize) + " bytes");
  }
  X509Ptr cert = ParseDerCert(der);
  if (!cert) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                std::string(what) + " is not a valid DER certificate");
  }
  return cert;
}

// The first http:// OCSP access location of the AIA extension (RFC 5280 §4.2.2.1).
std::string OcspUrl(X509* cert) {
  AuthorityInfoAccessPtr aia(static_cast<AUTHORITY_INFO_ACCESS*>(
      X509_get_ext_d2i(cert, NID_info_access, nullptr, nullptr)));
  ERR_clear_error();
  if (!aia) {
    return "";
  }
  for (int i = 0; i < sk_ACCESS_DESCRIPTION_num(aia.get()); ++i) {
    const ACCESS_DESCRIPTION* ad = sk_ACCESS_DESCRIPTION_value(aia.get(), i);
    if (OBJ_obj2nid(ad->method) != NID_ad_OCSP || ad->location->type != GEN_URI) {
      continue;
    }
    const ASN1_IA5STRING* uri = ad->location->d.uniformResourceIdentifier;
    std::string_view text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                          static_cast<size_t>(ASN1_STRING_length(uri)));
    if (text.size() > 7 && strncasecmp(text.data(), "http://", 7) == 0 &&
        text.find('\0') == std::string_view::npos) {
      return std::string(text);
    }
  }
  return "";
}

template <class Encode>
Result<std::string> HexSha256(int len, const Encode& encode) {
  if (len <= 0) {
    return Fail(OsslError("encode for hashing"));
  }
  Bytes der(static_cast<size_t>(len));
  unsigned char* p = der.data();
  if (encode(&p) != len) {
    return Fail(OsslError("encode for hashing"));
  }
  return HexLower(Sha256(der));
}

Result<CertFacts> Facts(X509* cert) {
  ERR_clear_error();
  CertFacts facts;
  MTE_TRY_ASSIGN(facts.cert_sha256, HexSha256(i2d_X509(cert, nullptr), [&](unsigned char** p) {
                   return i2d_X509(cert, p);
                 }));
  X509_PUBKEY* spki = X509_get_X509_PUBKEY(cert);  // owned by `cert`
  MTE_TRY_ASSIGN(facts.spki_sha256,
                 HexSha256(i2d_X509_PUBKEY(spki, nullptr),
                           [&](unsigned char** p) { return i2d_X509_PUBKEY(spki, p); }));
  facts.subject = NameText(X509_get_subject_name(cert));
  const X509_NAME* name = X509_get_subject_name(cert);
  int cn = -1;
  for (int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) {
    cn = i;
  }
  if (cn >= 0) {
    const ASN1_STRING* text = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, cn));
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(&utf8, text);
    OpensslBytesPtr owned(utf8);
    if (n > 0 && n <= 256) facts.common_name.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  }
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  facts.serial_hex = HexUpper(
      ByteSpan(ASN1_STRING_get0_data(serial), static_cast<size_t>(ASN1_STRING_length(serial))));
  if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER) {
    facts.serial_hex.insert(0, "-");
  }
  auto not_before = internal::UnixTime(X509_get0_notBefore(cert));
  auto not_after = internal::UnixTime(X509_get0_notAfter(cert));
  if (!not_before || !not_after) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "certificate validity dates cannot be decoded");
  }
  facts.not_before = *not_before;
  facts.not_after = *not_after;
  facts.ocsp_url = OcspUrl(cert);
  return facts;
}

bool IsP256(X509* cert) {
  const EVP_PKEY* key = X509_get0_pubkey(cert);
  char group[64] = {};
  size_t len = 0;
  const bool ok =
      key != nullptr && EVP_PKEY_get_base_id(key) == EVP_PKEY_EC &&
      EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) ==
          1 &&
      (std::string_view(group, len) == "prime256v1" || std::string_view(group, len) == "P-256");
  ERR_clear_error();
  return ok;
}

// The leaf rules shared by chain and pinned-key acceptance.
Result<void> CheckLeafRules(X509* leaf, const CertFacts& facts, int64_t now) {
  // TS-0003 §10.1.1: id-ecPublicKey on secp256r1.
  if (!IsP256(leaf)) {
    return AuthFail("device certificate key is not EC P-256");
  }
  const uint32_t flags = X509_get_extension_flags(leaf);  // also caches the extensions
  ERR_clear_error();
  if ((flags & EXFLAG_INVALID) != 0) {
    return AuthFail("device certificate has an undecodable or duplicated extension");
  }
  if ((flags & EXFLAG_CRITICAL) != 0) {
    return AuthFail("device certificate has an unsupported critical extension");
  }
  // RFC 5280 §4.2.1.9: a leaf must not assert cA; RFC 5280 §4.2.1.3: nor keyCertSign.
  if ((flags & EXFLAG_CA) != 0 ||
      ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(leaf) & KU_KEY_CERT_SIGN) != 0)) {
    return AuthFail("device certificate is a CA certificate, not a device certificate");
  }
  // RFC 5280 §4.2.1.3: TLS client authentication with ECDSA needs digitalSignature.
  if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE) == 0) {
    return AuthFail("device certificate keyUsage lacks digitalSignature");
  }
  // RFC 5280 §4.2.1.12: id-kp-clientAuth (anyExtendedKeyUsage is not accepted).
  if ((flags & EXFLAG_XKUSAGE) != 0 && (X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT) == 0) {
    return AuthFail("device certificate extendedKeyUsage lacks clientAuth");
  }
  // RFC 5280 §4.1.2.5: valid from notBefore to notAfter, both inclusive.
  if (now > facts.not_after) {
    return AuthFail("device certificate has expired (notAfter " + TimeText(facts.not_after) + ")");
  }
  if (now < facts.not_before) {
    return AuthFail("device certificate is not yet valid (notBefore " + TimeText(facts.not_before) +
                    ")");
  }
  return {};
}

bool SignedWithEcdsaSha256(const X509* cert) {
  return X509_get_signature_nid(cert) == NID_ecdsa_with_SHA256;
}

struct TrustedCa {
  const DeviceCa* config;
  X509Ptr cert;
};

Result<std::vector<TrustedCa>> LoadCas(const std::vector<DeviceCa>& cas) {
  // `cas` must outlive the result (TrustedCa::config points into it).
  std::vector<TrustedCa> out;
  for (const auto& ca : cas) {
    const std::string what = "device CA " + Quoted(ca.name);
    ERR_clear_error();
    BioPtr bio(BIO_new_mem_buf(ca.cert_pem.data(), static_cast<int>(ca.cert_pem.size())));
    if (!bio) {
      return Fail(OsslError("BIO_new_mem_buf"));
    }
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) {
      ERR_clear_error();
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, what + " has no PEM certificate");
    }
    X509Ptr extra(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();  // the second read normally ends on "no start line"
    if (extra) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                  what + " must hold exactly one certificate");
    }
    if (X509_check_ca(cert.get()) != 1) {
      ERR_clear_error();
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, what + " is not a CA certificate");
    }
    if (ca.max_chain_depth < 0) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, what + " has a negative max_chain_depth");
    }
    out.push_back({&ca, std::move(cert)});
  }
  return out;
}

// Explains an X509_verify_cert failure in words a device operator can act on.
Error ChainError(X509_STORE_CTX* ctx) {
  const int err = X509_STORE_CTX_get_error(ctx);
  const int depth = X509_STORE_CTX_get_error_depth(ctx);
  X509* current = X509_STORE_CTX_get_current_cert(ctx);  // owned by `ctx`
  const std::string subject =
      current != nullptr ? Quoted(NameText(X509_get_subject_name(current))) : "(unknown)";
  const std::string who = depth == 0 ? "device certificate" : "device CA certificate " + subject;
  std::string detail;
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
      detail = "device certificate was not issued by a trusted device CA";
      break;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      detail = "the signature on " + who + " is invalid";
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      detail = who + " has expired";
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      detail = who + " is not yet valid";
      break;
    case X509_V_ERR_INVALID_CA:
      detail = "device certificate chain contains " + subject + ", which is not a CA";
      break;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
      detail = "device certificate chain exceeds a CA's pathLenConstraint";
      break;
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
      detail = "device certificate chain is longer than " + std::to_string(kMaxDeviceChainCerts) +
               " certificates";
      break;
    default:
      detail = "device certificate chain verification failed at " + who + ": " +
               X509_verify_cert_error_string(err);
      break;
  }
  return Error{ErrorKind::kPeerAuth, Errc::kAuthFailed, std::move(detail)};
}

tl::unexpected<Error> CaConfigFail(std::string detail) {
  return Fail(ErrorKind::kLocalUsage, Errc::kConfig, std::move(detail));
}

// The subject's first commonName, bounded; "" when there is none. The octets are as encoded
// (UTF-8 for the UTF8String and PrintableString that CAs use); callers treat them as text to
// sanitise, never as an identifier.
std::string CommonName(X509* cert) {
  constexpr int kMaxText = 256;
  char buf[kMaxText + 1] = {};
  const int len =
      X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  ERR_clear_error();
  if (len <= 0) return "";
  return std::string(buf, static_cast<size_t>(std::min(len, kMaxText)));
}

// The one PEM certificate of `pem`; `what` names the file in errors.
Result<X509Ptr> ReadOnePemCertificate(const std::string& pem, const std::string& what) {
  ERR_clear_error();
  if (pem.size() > 4 * kMaxDeviceCertSize) {
    return CaConfigFail(what + " is larger than " + std::to_string(4 * kMaxDeviceCertSize) +
                        " bytes");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Fail(OsslError("BIO_new_mem_buf"));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return CaConfigFail(what + " holds no PEM certificate");
  }
  X509Ptr extra(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();  // the second read normally ends on "no start line"
  if (extra) {
    return CaConfigFail(what + " must hold exactly one certificate, it holds more");
  }
  const int len = i2d_X509(cert.get(), nullptr);
  ERR_clear_error();
  if (len <= 0 || static_cast<size_t>(len) > kMaxDeviceCertSize) {
    return CaConfigFail("the certificate in " + what + " is larger than " +
                        std::to_string(kMaxDeviceCertSize) + " bytes");
  }
  return cert;
}

}  // namespace

Result<CertFacts> DescribePemCertificate(const std::string& pem) {
  MTE_TRY_ASSIGN(X509Ptr cert, ReadOnePemCertificate(pem, "certificate file"));
  return Facts(cert.get());
}

Result<DeviceCaCertificate> ReadDeviceCaCertificate(const std::string& pem) {
  MTE_TRY_ASSIGN(X509Ptr cert, ReadOnePemCertificate(pem, "device CA file"));
  MTE_TRY_ASSIGN(Bytes der, internal::CertDer(cert.get()));
  const uint32_t flags = X509_get_extension_flags(cert.get());  // also caches the extensions
  ERR_clear_error();
  if ((flags & EXFLAG_INVALID) != 0) {
    return CaConfigFail("device CA certificate has an undecodable or duplicated extension");
  }
  // RFC 5280 §4.2.1.9: only basicConstraints cA TRUE makes a CA (no v1 or keyUsage-only CAs).
  if ((flags & EXFLAG_BCONS) == 0 || (flags & EXFLAG_CA) == 0) {
    return CaConfigFail("certificate is not a CA certificate (basicConstraints CA:TRUE missing)");
  }
  // RFC 5280 §4.2.1.3: a CA that signs certificates has keyCertSign when keyUsage is present.
  if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN) == 0) {
    return CaConfigFail("device CA certificate keyUsage lacks keyCertSign");
  }
  // TS-0003 §10.1.1: P-256 keys and ECDSA with SHA-256 on the whole path.
  if (!IsP256(cert.get())) {
    return CaConfigFail("device CA certificate key is not EC P-256");
  }
  if (!SignedWithEcdsaSha256(cert.get())) {
    return CaConfigFail("device CA certificate is not signed with ecdsa-with-SHA256");
  }
  auto facts = Facts(cert.get());
  if (!facts) {
    return CaConfigFail("device CA certificate cannot be described: " + facts.error().detail);
  }
  DeviceCaCertificate out;
  out.der = std::move(der);
  out.facts = std::move(*facts);
  out.common_name = CommonName(cert.get());
  return out;
}

Result<void> CheckDeviceCaCertificate(const std::string& pem) {
  MTE_TRY(ReadDeviceCaCertificate(pem));
  return {};
}

Result<CertFacts> DescribeCertificate(ByteSpan der) {
  MTE_TRY_ASSIGN(X509Ptr cert, ParsePeerCert(der, "certificate"));
  return Facts(cert.get());
}

Result<std::vector<Bytes>> CertificatesFromPem(std::string_view pem) {
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return Fail(OsslError("BIO_new_mem_buf"));
  std::vector<Bytes> out;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    if (out.size() >= kMaxDeviceChainCerts) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                  "more than " + std::to_string(kMaxDeviceChainCerts) + " certificates in PEM");
    }
    MTE_TRY_ASSIGN(Bytes der, internal::CertDer(cert.get()));
    out.push_back(std::move(der));
  }
  unsigned long last = ERR_peek_last_error();
  ERR_clear_error();
  // The loop ends on "no start line" after the last block; anything else is a broken block.
  if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "a PEM certificate does not decode");
  }
  if (out.empty()) return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "no PEM certificate");
  return out;
}

Result<std::string> CertificateToPem(ByteSpan der) {
  ERR_clear_error();
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != der.data() + der.size()) {
    ERR_clear_error();
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "certificate DER does not decode");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1) {
    return Fail(OsslError("PEM_write_bio_X509"));
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, n > 0 ? static_cast<size_t>(n) : 0);
}

namespace {

Result<void> IssuerAndSerial(const X509* leaf, VerifiedChain& out) {
  MTE_TRY_ASSIGN(out.leaf_issuer_name_der, internal::NameDer(X509_get_issuer_name(leaf)));
  MTE_TRY_ASSIGN(out.leaf_serial_der, internal::IntegerDer(X509_get0_serialNumber(leaf)));
  return {};
}

}  // namespace

Result<VerifiedChain> CheckPinnedLeaf(ByteSpan leaf_der, int64_t now) {
  MTE_TRY_ASSIGN(X509Ptr leaf, ParsePeerCert(leaf_der, "device certificate"));
  MTE_TRY_ASSIGN(CertFacts facts, Facts(leaf.get()));
  MTE_TRY(CheckLeafRules(leaf.get(), facts, now));
  VerifiedChain out;
  out.leaf = std::move(facts);
  out.leaf_der.assign(leaf_der.begin(), leaf_der.end());
  MTE_TRY(IssuerAndSerial(leaf.get(), out));
  return out;
}

struct DeviceCaSet::Parsed {
  std::vector<TrustedCa> trusted;  // config points into DeviceCaSet::cas_
};

struct DeviceCaSetAccess {
  static const std::vector<TrustedCa>& Trusted(const DeviceCaSet& set) {
    return set.parsed_->trusted;
  }
};

DeviceCaSet::DeviceCaSet() = default;
DeviceCaSet::~DeviceCaSet() = default;

Result<std::shared_ptr<const DeviceCaSet>> DeviceCaSet::Load(std::vector<DeviceCa> cas) {
  std::shared_ptr<DeviceCaSet> set(new DeviceCaSet());
  set->cas_ = std::move(cas);
  set->parsed_ = std::make_unique<Parsed>();
  MTE_TRY_ASSIGN(set->parsed_->trusted, LoadCas(set->cas_));
  return std::shared_ptr<const DeviceCaSet>(std::move(set));
}

Result<VerifiedChain> VerifyDeviceChain(const std::vector<Bytes>& chain_der,
                                        const std::vector<DeviceCa>& cas, int64_t now) {
  MTE_TRY_ASSIGN(auto set, DeviceCaSet::Load(cas));
  return VerifyDeviceChain(chain_der, *set, now);
}

Result<VerifiedChain> VerifyDeviceChain(const std::vector<Bytes>& chain_der,
                                        const DeviceCaSet& cas, int64_t now) {
  if (chain_der.empty()) {
    return AuthFail("no device certificate was presented");
  }
  if (chain_der.size() > kMaxDeviceChainCerts) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kTooLarge,
                "device certificate chain has more than " + std::to_string(kMaxDeviceChainCerts) +
                    " certificates");
  }
  const std::vector<TrustedCa>& trusted = DeviceCaSetAccess::Trusted(cas);

  std::vector<X509Ptr> presented;
  for (size_t i = 0; i < chain_der.size(); ++i) {
    MTE_TRY_ASSIGN(X509Ptr cert, ParsePeerCert(chain_der[i], i == 0 ? "device certificate"
                                                                    : "device chain certificate " +
                                                                          std::to_string(i)));
    presented.push_back(std::move(cert));
  }
  X509* leaf = presented.front().get();
  MTE_TRY_ASSIGN(CertFacts facts, Facts(leaf));
  MTE_TRY(CheckLeafRules(leaf, facts, now));
  // TS-0003 §10.1.1: ECDSA with SHA-256.
  if (!SignedWithEcdsaSha256(leaf)) {
    return AuthFail("device certificate is not signed with ecdsa-with-SHA256");
  }
  if (trusted.empty()) {
    return AuthFail("device certificate was not issued by a trusted device CA");
  }

  ERR_clear_error();
  X509StorePtr store(X509_STORE_new());
  X509StackPtr untrusted(sk_X509_new_null());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) {
    return Fail(OsslError("allocate certificate store"));
  }
  for (const auto& ca : trusted) {
    if (X509_STORE_add_cert(store.get(), ca.cert.get()) != 1) {  // up-refs the certificate
      return Fail(OsslError("add device CA"));
    }
  }
  for (size_t i = 1; i < presented.size(); ++i) {
    if (X509_add_cert(untrusted.get(), presented[i].get(), X509_ADD_FLAG_UP_REF) != 1) {
      return Fail(OsslError("add chain certificate"));
    }
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return Fail(OsslError("X509_STORE_CTX_init"));
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());  // owned by `ctx`
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now));      // never the system clock
  // An intermediate CA of a device maker may be configured as the anchor.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  // Depth counts intermediates; the configured max_chain_depth is checked below, per anchor.
  X509_VERIFY_PARAM_set_depth(param, static_cast<int>(kMaxDeviceChainCerts) - 2);
  const int verified = X509_verify_cert(ctx.get());
  if (verified != 1) {
    Error error = ChainError(ctx.get());
    ERR_clear_error();
    return Fail(std::move(error));
  }
  ERR_clear_error();

  STACK_OF(X509)* path = X509_STORE_CTX_get0_chain(ctx.get());  // owned by `ctx`
  const int path_len = sk_X509_num(path);
  // The anchor is the configured CA nearest to the leaf.
  int anchor_index = -1;
  const TrustedCa* anchor = nullptr;
  for (int i = 1; i < path_len && anchor == nullptr; ++i) {
    for (const auto& ca : trusted) {
      if (X509_cmp(sk_X509_value(path, i), ca.cert.get()) == 0) {
        anchor_index = i;
        anchor = &ca;
        break;
      }
    }
  }
  if (anchor == nullptr) {
    return AuthFail("device certificate was not issued by a trusted device CA");
  }
  const int intermediates = anchor_index - 1;
  if (intermediates > anchor->config->max_chain_depth) {
    return AuthFail("device certificate chain is deeper than device CA " +
                    Quoted(anchor->config->name) + " allows (" +
                    std::to_string(anchor->config->max_chain_depth) + ")");
  }
  for (int i = 1; i < anchor_index; ++i) {
    const X509* cert = sk_X509_value(path, i);
    if (!SignedWithEcdsaSha256(cert)) {
      return AuthFail("device CA certificate " + Quoted(NameText(X509_get_subject_name(cert))) +
                      " is not signed with ecdsa-with-SHA256");
    }
  }

  VerifiedChain out;
  out.leaf = std::move(facts);
  out.leaf_der = chain_der.front();
  MTE_TRY_ASSIGN(out.issuer_der, internal::CertDer(sk_X509_value(path, 1)));
  out.ca_name = anchor->config->name;
  MTE_TRY(IssuerAndSerial(leaf, out));
  return out;
}

}  // namespace mte::crypto
