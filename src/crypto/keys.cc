#include "crypto/keys.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

constexpr size_t kMaxIdentifierLength = 255;
constexpr size_t kEnrolmentKeySize = 32;  // TS-0003 §10.3.1: the 32 least-significant octets
constexpr size_t kHmacSha256Size = 32;

char AsciiLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

Result<void> CheckEnrolmentKey(const SecretBytes& ke) {
  if (ke.size() != kEnrolmentKeySize) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                "enrolment key must be 32 octets, got " + std::to_string(ke.size()));
  }
  return {};
}

// HMAC-SHA-256(ke, label || parts...), all parts ASCII (checked by the callers).
Result<SecretBytes> DeriveWithLabel(const SecretBytes& ke, std::string_view label,
                                    std::initializer_list<std::string_view> parts) {
  MTE_TRY(CheckEnrolmentKey(ke));
  std::string input(label);
  for (std::string_view part : parts) {
    input += part;
  }
  // The input holds only public labels and identifiers, so a plain string is fine here.
  return HmacSha256(ke, AsBytes(input));
}

}  // namespace

Result<EnrolmentKey> SplitBootstrapExport(const SecretBytes& exported) {
  if (exported.size() != kBootstrapExportLength) {
    return Fail(
        ErrorKind::kInternal, Errc::kInvariant,
        "bootstrap exporter output must be 48 octets, got " + std::to_string(exported.size()));
  }
  auto all = exported.Expose(SecretAccess::ForCrypto());
  EnrolmentKey out;
  // TS-0003 §10.3.1: the 16 most-significant octets are RelativeKeID, the 32 least-significant
  // octets are Ke (the output read as a big-endian octet string).
  auto rel = all.first(out.relative_ke_id.bytes.size());
  std::copy(rel.begin(), rel.end(), out.relative_ke_id.bytes.begin());
  out.ke = SecretBytes(all.subspan(out.relative_ke_id.bytes.size()), SecretAccess::ForCrypto());
  return out;
}

std::string MakeKeId(const RelativeKeId& rel, std::string_view mef_fqdn) {
  // TS-0003 §10.3.4; upper case is the xs:hexBinary canonical form.
  std::string id = HexUpper(rel.bytes);
  id += '@';
  id += mef_fqdn;
  return id;
}

bool KeIdEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) {
      return false;
    }
  }
  return true;
}

Result<void> CheckIdentifier(std::string_view id, std::string_view what) {
  if (id.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, std::string(what) + " is empty");
  }
  if (id.size() > kMaxIdentifierLength) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                std::string(what) + " is longer than 255 bytes");
  }
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) {
      // Only printable ASCII is accepted, so NFKC normalisation is the identity (TS-0003 §10.3.2).
      return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                  std::string(what) + " must be printable ASCII without spaces");
    }
  }
  return {};
}

Result<SecretBytes> HmacSha256(const SecretBytes& key, ByteSpan data) {
  static constexpr uint8_t kEmpty = 0;
  auto key_bytes = key.Expose(SecretAccess::ForCrypto());
  // OpenSSL treats a NULL key as "no key set"; an empty HMAC key is legal, so pass a valid pointer.
  const uint8_t* key_ptr = key_bytes.empty() ? &kEmpty : key_bytes.data();
  const uint8_t* data_ptr = data.empty() ? &kEmpty : data.data();
  SecretBytes mac(kHmacSha256Size);
  auto out = mac.ExposeMutable(SecretAccess::ForCrypto());
  size_t out_len = 0;
  ERR_clear_error();
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key_ptr, key_bytes.size(), data_ptr,
                data.size(), out.data(), out.size(), &out_len) == nullptr ||
      out_len != kHmacSha256Size) {
    return Fail(OsslError("HMAC-SHA-256 failed"));
  }
  return mac;
}

Result<SecretBytes> DeriveKm(const SecretBytes& ke, std::string_view maf_id) {
  MTE_TRY(CheckIdentifier(maf_id, "MAF-ID"));
  return DeriveWithLabel(ke, kKmLabel, {maf_id});  // TS-0003 §10.3.2
}

Result<SecretBytes> DeriveKpsa(const SecretBytes& ke, std::string_view enrolee_b_id) {
  MTE_TRY(CheckIdentifier(enrolee_b_id, "Enrolee-B-ID"));
  return DeriveWithLabel(ke, kKpsaLabel, {enrolee_b_id});  // TS-0003 §10.3.3
}

Result<SecretBytes> DeriveUsageConstrainedKey(const SecretBytes& ke, unsigned suid,
                                              std::string_view target_id) {
  MTE_TRY(CheckIdentifier(target_id, "Enrolment-Target-ID"));
  // TS-0003 §10.3.7 leaves the SUID encoding open; OpenMTE uses decimal ASCII digits ("21").
  const std::string suid_text = std::to_string(suid);
  return DeriveWithLabel(ke, kUsageConstrainedLabel, {suid_text, target_id});
}

std::array<uint8_t, 32> Sha256(ByteSpan data) {
  static constexpr uint8_t kEmpty = 0;
  std::array<uint8_t, 32> digest{};
  size_t len = 0;
  if (EVP_Q_digest(nullptr, "SHA256", nullptr, data.empty() ? &kEmpty : data.data(), data.size(),
                   digest.data(), &len) != 1 ||
      len != digest.size()) {
    // SHA-256 is always available in the default provider; failure means a broken OpenSSL.
    static_cast<void>(std::fputs("fatal: OpenSSL SHA-256 failed\n", stderr));
    std::abort();
  }
  return digest;
}

}  // namespace mte::crypto
