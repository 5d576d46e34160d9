#include "crypto/internal/cert_build.h"

#include <openssl/bn.h>
#include <openssl/pem.h>

#include <ctime>

namespace mte::crypto::internal {
namespace {

constexpr int kSerialBits = 128;
constexpr size_t kMaxCommonName = 64;  // RFC 5280 Appendix A: ub-common-name

tl::unexpected<Error> ConfigFail(std::string detail) {
  return Fail(ErrorKind::kLocalUsage, Errc::kConfig, std::move(detail));
}

}  // namespace

Result<void> CheckCommonName(std::string_view cn, std::string_view what) {
  if (cn.empty() || cn.size() > kMaxCommonName) {
    return ConfigFail(std::string(what) + " must be 1 to 64 characters");
  }
  for (char c : cn) {
    if (c < 0x20 || c > 0x7e) {
      return ConfigFail(std::string(what) + " must be printable ASCII");
    }
  }
  return {};
}

SystemTime AddYears(SystemTime t, int n) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  year_month_day ymd{day};
  ymd += years{n};
  if (!ymd.ok()) {
    ymd = ymd.year() / ymd.month() / last;  // 29 February in a non-leap year
  }
  return sys_days{ymd} + (t - day);
}

Result<EvpPkeyPtr> GenerateP256Key() {
  ERR_clear_error();
  // TS-0003 §10.1.1: id-ecPublicKey on secp256r1.
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) {
    return Fail(OsslError("P-256 key generation failed"));
  }
  return key;
}

Result<void> SetRandomSerial(X509* cert) {
  BignumPtr bn(BN_new());
  if (!bn) {
    return Fail(OsslError("BN_new"));
  }
  // RFC 5280 §4.1.2.2: positive, at most 20 octets; 128 random bits make serials unpredictable.
  do {
    if (BN_rand(bn.get(), kSerialBits, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
      return Fail(OsslError("random serial number"));
    }
  } while (BN_is_zero(bn.get()));
  // BN_to_ASN1_INTEGER writes into the certificate's own serial (owned by `cert`).
  if (BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return Fail(OsslError("set serial number"));
  }
  return {};
}

Result<void> AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext) {
    return Fail(OsslError(std::string("build extension ") + OBJ_nid2sn(nid)));
  }
  if (X509_add_ext(cert, ext.get(), -1) != 1) {  // copies the extension
    return Fail(OsslError(std::string("add extension ") + OBJ_nid2sn(nid)));
  }
  return {};
}

// A v3 certificate for `key` named CN=`cn`, valid [not_before, not_after], without extensions.
// `issuer_name` is null for a self-signed certificate.
Result<X509Ptr> NewCertificate(const std::string& cn, EVP_PKEY* key, const X509_NAME* issuer_name,
                               int64_t not_before, int64_t not_after) {
  ERR_clear_error();
  X509Ptr cert(X509_new());
  if (!cert) {
    return Fail(OsslError("X509_new"));
  }
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return Fail(OsslError("set version"));
  }
  MTE_TRY(SetRandomSerial(cert.get()));
  X509_NAME* subject = X509_get_subject_name(cert.get());  // owned by `cert`
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.data()),
                                 static_cast<int>(cn.size()), -1, 0) != 1) {
    return Fail(OsslError("set subject name"));
  }
  if (X509_set_issuer_name(cert.get(), issuer_name != nullptr ? issuer_name : subject) != 1) {
    return Fail(OsslError("set issuer name"));
  }
  if (X509_set_pubkey(cert.get(), key) != 1) {
    return Fail(OsslError("set public key"));
  }
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(not_after)) == nullptr) {
    return Fail(OsslError("set validity"));
  }
  return cert;
}

Result<void> Sign(X509* cert, EVP_PKEY* issuer_key) {
  // TS-0003 §10.1.1: ECDSA with SHA-256.
  if (X509_sign(cert, issuer_key, EVP_sha256()) <= 0) {
    return Fail(OsslError("sign certificate"));
  }
  return {};
}

Result<Bytes> CertificatePem(X509* cert) {
  ERR_clear_error();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return Fail(OsslError("encode certificate"));
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) {
    return Fail(OsslError("encode certificate"));
  }
  return Bytes(data, data + len);
}

// PKCS#8, unencrypted. The buffer BIO wipes its memory when freed.
Result<SecretBytes> PrivateKeyPem(EVP_PKEY* key) {
  ERR_clear_error();
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return Fail(OsslError("encode private key"));
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) {
    return Fail(OsslError("encode private key"));
  }
  return SecretBytes(ByteSpan(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(len)),
                     SecretAccess::ForCrypto());
}

// Writes the certificate, then the key; removes the certificate if the key cannot be written.
}  // namespace mte::crypto::internal
