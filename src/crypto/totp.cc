#include "crypto/totp.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <array>

#include "base/bytes.h"
#include "crypto/ossl.h"

namespace mte::crypto {
Result<std::string> Hotp(const SecretBytes& key, uint64_t counter, int digits,
                         std::string_view hash) {
  if (digits < 6 || digits > 8 || (hash != "SHA1" && hash != "SHA256" && hash != "SHA512")) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                "HOTP takes 6 to 8 digits and SHA1, SHA256 or SHA512");
  }
  std::array<uint8_t, 8> message{};
  for (int i = 7; i >= 0; --i) {
    message[static_cast<size_t>(i)] = static_cast<uint8_t>(counter & 0xff);
    counter >>= 8;
  }
  static constexpr uint8_t kEmpty = 0;
  auto key_bytes = key.Expose(SecretAccess::ForCrypto());
  const std::string digest(hash);
  std::array<uint8_t, EVP_MAX_MD_SIZE> mac{};
  size_t mac_len = 0;
  ERR_clear_error();
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, digest.c_str(), nullptr,
                key_bytes.empty() ? &kEmpty : key_bytes.data(), key_bytes.size(),
                message.data(), message.size(), mac.data(), mac.size(), &mac_len) == nullptr ||
      mac_len < 20) {
    return Fail(OsslError("HOTP HMAC failed"));
  }
  // RFC 4226 §5.3: the low nibble of the last octet selects four octets, top bit cleared.
  const size_t offset = mac[mac_len - 1] & 0x0f;
  const uint32_t binary = (static_cast<uint32_t>(mac[offset] & 0x7f) << 24) |
                          (static_cast<uint32_t>(mac[offset + 1]) << 16) |
                          (static_cast<uint32_t>(mac[offset + 2]) << 8) |
                          static_cast<uint32_t>(mac[offset + 3]);
  OPENSSL_cleanse(mac.data(), mac.size());
  uint32_t modulus = 1;
  for (int i = 0; i < digits; ++i) modulus *= 10;
  uint32_t value = binary % modulus;
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  return out;
}

int64_t TotpStep(int64_t unix_seconds) {
  return unix_seconds <= 0 ? 0 : unix_seconds / kTotpPeriodSeconds;
}

Result<std::optional<int64_t>> MatchTotp(const SecretBytes& key, std::string_view code,
                                         int64_t now, int window) {
  bool well_formed = code.size() == static_cast<size_t>(kTotpDigits);
  for (char c : code) well_formed = well_formed && c >= '0' && c <= '9';
  if (!well_formed) return std::optional<int64_t>();
  const int64_t step = TotpStep(now);
  std::optional<int64_t> matched;
  for (int64_t s = step - window; s <= step + window; ++s) {
    if (s < 0) continue;
    MTE_TRY_ASSIGN(std::string expected, Hotp(key, static_cast<uint64_t>(s)));
    const bool equal = CRYPTO_memcmp(expected.data(), code.data(), code.size()) == 0;
    OPENSSL_cleanse(expected.data(), expected.size());
    if (equal && !matched) matched = s;
  }
  return matched;
}

std::string OtpauthUri(std::string_view issuer, std::string_view account,
                       std::string_view secret_base32) {
  return "otpauth://totp/" + PercentEncode(issuer) + ":" + PercentEncode(account) +
         "?secret=" + std::string(secret_base32) + "&issuer=" + PercentEncode(issuer) +
         "&algorithm=SHA1&digits=" + std::to_string(kTotpDigits) +
         "&period=" + std::to_string(kTotpPeriodSeconds);
}

}  // namespace mte::crypto
