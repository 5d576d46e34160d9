#include "crypto/password.h"

#include <argon2.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <string_view>
#include <vector>

namespace mte::crypto {
namespace {

// OWASP Password Storage Cheat Sheet minimum for Argon2id.
constexpr uint32_t kMemoryKiB = 19456;
constexpr uint32_t kIterations = 2;
constexpr uint32_t kParallelism = 1;
constexpr size_t kSaltSize = 16;
constexpr size_t kHashSize = 32;

// Longer inputs are refused rather than hashed: they are not passwords, and hashing them costs.
constexpr size_t kMaxPasswordSize = 4096;

// Stored hashes are hostile input too: refuse cost parameters that would let a tampered hash
// make verification allocate or compute far more than our own hashes need.
constexpr size_t kMaxEncodedSize = 512;
constexpr uint64_t kMaxMemoryKiB = uint64_t{256} * 1024;
constexpr uint64_t kMaxIterations = 16;
constexpr uint64_t kMaxParallelism = 4;

// Consumes "<literal><decimal>" from the front of `s`; false if it does not match.
bool ConsumeNumber(std::string_view& s, std::string_view literal, uint64_t& value) {
  if (s.substr(0, literal.size()) != literal) {
    return false;
  }
  s.remove_prefix(literal.size());
  const char* begin = s.data();
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr == begin) {
    return false;
  }
  s.remove_prefix(static_cast<size_t>(ptr - begin));
  return true;
}

// Checks the PHC header "$argon2id$v=19$m=<m>,t=<t>,p=<p>$" and the cost bounds. The salt and
// hash fields are left to libargon2's decoder.
bool AcceptableHeader(std::string_view s) {
  uint64_t version = 0;
  uint64_t m = 0;
  uint64_t t = 0;
  uint64_t p = 0;
  if (!ConsumeNumber(s, "$argon2id$v=", version) || !ConsumeNumber(s, "$m=", m) ||
      !ConsumeNumber(s, ",t=", t) || !ConsumeNumber(s, ",p=", p)) {
    return false;
  }
  return version == ARGON2_VERSION_13 && s.substr(0, 1) == "$" && m >= 8 && m <= kMaxMemoryKiB &&
         t >= 1 && t <= kMaxIterations && p >= 1 && p <= kMaxParallelism;
}

}  // namespace

Result<std::string> HashPassword(const SecretString& password, Rng& rng) {
  std::string_view pwd = password.Expose(SecretAccess::ForCrypto());
  if (pwd.size() > kMaxPasswordSize) {
    return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge, "password is longer than 4096 bytes");
  }
  std::array<uint8_t, kSaltSize> salt{};
  rng.Fill(salt);
  std::vector<char> encoded(
      argon2_encodedlen(kIterations, kMemoryKiB, kParallelism, kSaltSize, kHashSize, Argon2_id));
  int rc =
      argon2id_hash_encoded(kIterations, kMemoryKiB, kParallelism, pwd.data(), pwd.size(),
                            salt.data(), salt.size(), kHashSize, encoded.data(), encoded.size());
  if (rc != ARGON2_OK) {
    return Fail(ErrorKind::kCrypto, Errc::kCryptoFailed,
                std::string("Argon2id hashing failed: ") + argon2_error_message(rc));
  }
  return std::string(encoded.data());
}

bool VerifyPassword(const SecretString& password, const std::string& phc_hash) {
  std::string_view pwd = password.Expose(SecretAccess::ForCrypto());
  if (pwd.size() > kMaxPasswordSize) {
    return false;
  }
  if (phc_hash.size() > kMaxEncodedSize || phc_hash.find('\0') != std::string::npos) {
    return false;
  }
  if (!AcceptableHeader(phc_hash)) {
    return false;
  }
  // argon2id_verify compares in constant time and rejects anything it cannot decode.
  return argon2id_verify(phc_hash.c_str(), pwd.data(), pwd.size()) == ARGON2_OK;
}

bool VerifyAgainstNothing(const SecretString& password) {
  // A well-formed hash with the production parameters and an all-zero salt and digest.
  static const std::string kDummy =
      "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$"
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  (void)VerifyPassword(password, kDummy);
  return false;
}

}  // namespace mte::crypto
