#include "crypto/device_pki.h"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/bytes.h"
#include "base/file.h"
#include "base/secret.h"
#include "crypto/internal/cert_build.h"
#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

namespace fs = std::filesystem;

using internal::AddExtension;
using internal::AddYears;
using internal::CertificatePem;
using internal::CheckCommonName;
using internal::GenerateP256Key;
using internal::NewCertificate;
using internal::PrivateKeyPem;
using internal::Sign;

constexpr int kCaValidityYears = 10;
constexpr int64_t kBackdateSeconds = 3600;  // tolerate peers whose clocks run behind
constexpr size_t kMaxUrl = 1024;
constexpr mode_t kKeyMode = 0600;
constexpr mode_t kCertMode = 0644;

tl::unexpected<Error> ConfigFail(std::string detail) {
  return Fail(ErrorKind::kLocalUsage, Errc::kConfig, std::move(detail));
}

Result<void> CheckOcspUrl(std::string_view url) {
  if (url.empty()) {
    return {};
  }
  if (!url.starts_with("http://") || url.size() <= 7 || url.size() > kMaxUrl) {
    return ConfigFail("OCSP URL must start with http:// and be at most 1024 characters");
  }
  for (char c : url) {
    if (c <= 0x20 || c > 0x7e) {
      return ConfigFail("OCSP URL must be printable ASCII without spaces");
    }
  }
  return {};
}

Result<void> CheckAbsent(const std::vector<fs::path>& targets) {
  for (const auto& target : targets) {
    std::error_code ec;
    if (fs::symlink_status(target, ec).type() != fs::file_type::not_found) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConflict,
                  QuotedPath(target) + " already exists; refusing to overwrite it");
    }
  }
  return {};
}

Result<void> MakeDirectory(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir, ec)) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot create directory " + QuotedPath(dir) + (ec ? ": " + ec.message() : ""));
  }
  return {};
}

// RFC 5280 §4.2.2.1: authorityInfoAccess with one id-ad-ocsp uniformResourceIdentifier. Built
// as a structure rather than from config text, so no character of the URL is interpreted.
Result<void> AddOcspUrl(X509* cert, const std::string& url) {
  AuthorityInfoAccessPtr aia(AUTHORITY_INFO_ACCESS_new());
  AccessDescriptionPtr ad(ACCESS_DESCRIPTION_new());
  Asn1StringPtr uri(ASN1_IA5STRING_new());
  if (!aia || !ad || !uri ||
      ASN1_STRING_set(uri.get(), url.data(), static_cast<int>(url.size())) != 1) {
    return Fail(OsslError("build authorityInfoAccess"));
  }
  // A new ACCESS_DESCRIPTION holds the static NID_undef object; OBJ_nid2obj objects are static
  // too, so nothing is leaked or owned here.
  ad->method = OBJ_nid2obj(NID_ad_OCSP);
  GENERAL_NAME_set0_value(ad->location, GEN_URI, uri.release());  // now owned by `ad`
  if (sk_ACCESS_DESCRIPTION_push(aia.get(), ad.get()) <= 0) {
    return Fail(OsslError("build authorityInfoAccess"));
  }
  static_cast<void>(ad.release());  // now owned by `aia`
  if (X509_add1_ext_i2d(cert, NID_info_access, aia.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return Fail(OsslError("add authorityInfoAccess"));
  }
  return {};
}

Result<void> WritePair(const fs::path& cert_path, X509* cert, const fs::path& key_path,
                       EVP_PKEY* key) {
  MTE_TRY_ASSIGN(Bytes cert_pem, CertificatePem(cert));
  MTE_TRY_ASSIGN(SecretBytes key_pem, PrivateKeyPem(key));
  MTE_TRY(WriteNewFile(cert_path, cert_pem, kCertMode));
  auto written = WriteNewFile(key_path, key_pem.Expose(SecretAccess::ForCrypto()), kKeyMode);
  if (!written.has_value()) {
    ::unlink(cert_path.c_str());
    return written;
  }
  return {};
}

Result<X509Ptr> ReadCaCert(const fs::path& path) {
  ERR_clear_error();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) {
    return Fail(OsslError("cannot read the CA certificate " + QuotedPath(path),
                          ErrorKind::kLocalUsage, Errc::kConfig));
  }
  return cert;
}

Result<EvpPkeyPtr> ReadCaKey(const fs::path& path) {
  ERR_clear_error();
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  EvpPkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) {
    return Fail(OsslError("cannot read the CA key " + QuotedPath(path), ErrorKind::kLocalUsage,
                          Errc::kConfig));
  }
  return key;
}

}  // namespace

Result<void> CreateDeviceCa(const fs::path& dir, const std::string& name, SystemTime now) {
  MTE_TRY(CheckCommonName(name, "device CA name"));
  const fs::path cert_path = dir / "ca.crt";
  const fs::path key_path = dir / "ca.key";
  MTE_TRY(CheckAbsent({cert_path, key_path}));

  const SystemTime not_before = now - std::chrono::seconds(kBackdateSeconds);
  MTE_TRY_ASSIGN(EvpPkeyPtr key, GenerateP256Key());
  MTE_TRY_ASSIGN(X509Ptr ca, NewCertificate(name, key.get(), nullptr, UnixSeconds(not_before),
                                            UnixSeconds(AddYears(not_before, kCaValidityYears))));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca.get(), ca.get(), nullptr, nullptr, 0);
  // RFC 5280 §4.2.1.9 and §4.2.1.3: both critical in a CA certificate.
  MTE_TRY(AddExtension(ca.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE"));
  MTE_TRY(AddExtension(ca.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"));
  MTE_TRY(AddExtension(ca.get(), &ctx, NID_subject_key_identifier, "hash"));
  MTE_TRY(Sign(ca.get(), key.get()));

  MTE_TRY(MakeDirectory(dir));
  return WritePair(cert_path, ca.get(), key_path, key.get());
}

Result<void> IssueDeviceCert(const fs::path& ca_dir, const DeviceCertSpec& spec,
                             const fs::path& out, SystemTime now) {
  MTE_TRY(CheckCommonName(spec.device_id, "device id"));
  MTE_TRY(CheckOcspUrl(spec.ocsp_url));
  if (spec.valid_seconds <= 0) {
    return ConfigFail("device certificate validity must be positive");
  }
  const fs::path cert_path = out / "device.crt";
  const fs::path key_path = out / "device.key";
  MTE_TRY(CheckAbsent({cert_path, key_path}));

  MTE_TRY_ASSIGN(X509Ptr ca, ReadCaCert(ca_dir / "ca.crt"));
  MTE_TRY_ASSIGN(EvpPkeyPtr ca_key, ReadCaKey(ca_dir / "ca.key"));
  if (X509_check_private_key(ca.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return ConfigFail("the CA key in " + QuotedPath(ca_dir) + " does not match its certificate");
  }

  const int64_t not_before = UnixSeconds(now) + spec.not_before_offset_seconds;
  MTE_TRY_ASSIGN(EvpPkeyPtr key, GenerateP256Key());
  MTE_TRY_ASSIGN(X509Ptr cert,
                 NewCertificate(spec.device_id, key.get(), X509_get_subject_name(ca.get()),
                                not_before, not_before + spec.valid_seconds));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca.get(), cert.get(), nullptr, nullptr, 0);
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"));
  // TS-0003 §10.1.1: keyUsage digitalSignature (TLS client authentication with ECDSA).
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature"));
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_ext_key_usage, "clientAuth"));
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  if (!spec.ocsp_url.empty()) {
    MTE_TRY(AddOcspUrl(cert.get(), spec.ocsp_url));
  }
  MTE_TRY(Sign(cert.get(), ca_key.get()));

  MTE_TRY(MakeDirectory(out));
  return WritePair(cert_path, cert.get(), key_path, key.get());
}

Result<void> RevokeDeviceCert(const fs::path& ca_dir, const std::string& cert_file,
                              SystemTime now, int valid_days) {
  if (valid_days <= 0) return ConfigFail("CRL validity must be positive");
  MTE_TRY_ASSIGN(X509Ptr ca, ReadCaCert(ca_dir / "ca.crt"));
  MTE_TRY_ASSIGN(EvpPkeyPtr ca_key, ReadCaKey(ca_dir / "ca.key"));
  const fs::path list_path = ca_dir / "revoked.txt";
  std::vector<std::pair<std::string, int64_t>> revoked;
  {
    std::ifstream in(list_path);
    std::string serial;
    int64_t at = 0;
    while (in >> serial >> at) revoked.emplace_back(serial, at);
  }
  if (!cert_file.empty()) {
    MTE_TRY_ASSIGN(X509Ptr cert, ReadCaCert(cert_file));
    if (X509_NAME_cmp(X509_get_issuer_name(cert.get()), X509_get_subject_name(ca.get())) != 0 ||
        X509_verify(cert.get(), ca_key.get()) != 1) {
      ERR_clear_error();
      return ConfigFail(QuotedPath(cert_file) + " was not issued by the CA in " +
                        QuotedPath(ca_dir));
    }
    BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
    if (!bn) return Fail(OsslError("serial number"));
    OpensslCharPtr hex(BN_bn2hex(bn.get()));
    if (!hex) return Fail(OsslError("serial number"));
    std::string serial(hex.get());
    bool known = false;
    for (const auto& [s, at] : revoked) known = known || s == serial;
    if (!known) revoked.emplace_back(serial, UnixSeconds(now));
  }
  ERR_clear_error();
  X509CrlPtr crl(X509_CRL_new());
  if (!crl || X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.get())) != 1) {
    return Fail(OsslError("new CRL"));
  }
  Asn1TimePtr this_update(ASN1_TIME_set(nullptr, static_cast<time_t>(UnixSeconds(now))));
  Asn1TimePtr next_update(ASN1_TIME_set(
      nullptr, static_cast<time_t>(UnixSeconds(now) + int64_t{valid_days} * 86400)));
  if (!this_update || !next_update || X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    return Fail(OsslError("CRL dates"));
  }
  for (const auto& [serial, at] : revoked) {
    BIGNUM* raw = nullptr;
    if (BN_hex2bn(&raw, serial.c_str()) == 0) return ConfigFail("bad serial in revoked.txt");
    BignumPtr bn(raw);
    Asn1IntegerPtr number(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    Asn1TimePtr when(ASN1_TIME_set(nullptr, static_cast<time_t>(at)));
    X509RevokedPtr entry(X509_REVOKED_new());
    if (!number || !when || !entry || X509_REVOKED_set_serialNumber(entry.get(), number.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), when.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) {
      return Fail(OsslError("CRL entry"));
    }
    entry.release();  // now owned by the CRL
  }
  X509_CRL_sort(crl.get());
  if (X509_CRL_sign(crl.get(), ca_key.get(), EVP_sha256()) <= 0) {
    return Fail(OsslError("sign CRL"));
  }
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio_X509_CRL(out.get(), crl.get()) != 1) {
    return Fail(OsslError("write CRL"));
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  std::string list;
  for (const auto& [serial, at] : revoked) list += serial + " " + std::to_string(at) + "\n";
  MTE_TRY(ReplaceFile(list_path, AsBytes(list), 0644));
  return ReplaceFile(ca_dir / "crl.pem",
                     ByteSpan(reinterpret_cast<const uint8_t*>(data), static_cast<size_t>(n)),
                     0644);
}

}  // namespace mte::crypto
