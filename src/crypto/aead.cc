#include "crypto/aead.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <span>
#include <string>
#include <system_error>

#include "base/file.h"
#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

constexpr uint8_t kSealVersion = 0x01;
constexpr size_t kNonceSize = 12;  // 96-bit GCM nonce (NIST SP 800-38D §8.2.2, random)
constexpr size_t kTagSize = 16;
constexpr size_t kHeaderSize = 1 + kNonceSize;
constexpr size_t kOverhead = kHeaderSize + kTagSize;

constexpr std::string_view kOpenFailed = "sealed value does not verify (wrong key or tampered)";

std::string OctalMode(mode_t mode) {
  std::string out(4, '0');
  auto bits = static_cast<unsigned>(mode & 07777);
  for (size_t i = out.size(); i-- > 0; bits >>= 3) {
    out[i] = static_cast<char>('0' + (bits & 7));
  }
  return out;
}

Result<void> CheckKekSize(const SecretBytes& key) {
  if (key.size() != kKekSize) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant,
                "key-encryption key must be 32 octets, got " + std::to_string(key.size()));
  }
  return {};
}

}  // namespace

Result<void> KeyEncryptionKey::CreateFile(const std::filesystem::path& path, Rng& rng) {
  SecretBytes key(kKekSize);
  rng.Fill(key.ExposeMutable(SecretAccess::ForCrypto()));
  return WriteNewFile(path, key.Expose(SecretAccess::ForCrypto()), 0600);
}

Result<KeyEncryptionKey> KeyEncryptionKey::LoadFile(const std::filesystem::path& path) {
  const std::string prefix = "key-encryption key file " + QuotedPath(path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    int err = errno;
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "cannot open " + prefix + ": " + ErrnoText(err));
  }

  struct stat st {};

  if (::fstat(fd.get(), &st) != 0) {
    int err = errno;
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "cannot stat " + prefix + ": " + ErrnoText(err));
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, prefix + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                prefix + " is accessible by group or others (mode " + OctalMode(st.st_mode) +
                    "); run: chmod 600 " + QuotedPath(path));
  }
  if (st.st_size != static_cast<off_t>(kKekSize)) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                prefix + " has " + std::to_string(st.st_size) + " bytes; it must hold exactly " +
                    std::to_string(kKekSize) + " random bytes");
  }
  SecretBytes key(kKekSize);
  auto buf = key.ExposeMutable(SecretAccess::ForCrypto());
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::read(fd.get(), buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int err = errno;
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                  "cannot read " + prefix + ": " + ErrnoText(err));
    }
    if (n == 0) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig, prefix + " is shorter than 32 bytes");
    }
    done += static_cast<size_t>(n);
  }
  return KeyEncryptionKey(std::move(key));
}

KeyEncryptionKey KeyEncryptionKey::FromSecret(SecretBytes key) {
  // A wrong size is reported by Seal/Open (kInternal/kInvariant) rather than aborting here.
  return KeyEncryptionKey(std::move(key));
}

Result<Bytes> KeyEncryptionKey::Seal(const SecretBytes& plaintext, std::string_view aad,
                                     Rng& rng) const {
  MTE_TRY(CheckKekSize(key_));
  if (plaintext.size() > static_cast<size_t>(INT_MAX) - kOverhead ||
      aad.size() > static_cast<size_t>(INT_MAX)) {
    return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge, "value to seal is too large");
  }
  auto pt = plaintext.Expose(SecretAccess::ForCrypto());
  Bytes out(kOverhead + pt.size());
  out[0] = kSealVersion;
  std::span<uint8_t> nonce(out.data() + 1, kNonceSize);
  rng.Fill(nonce);
  uint8_t* ct = out.data() + kHeaderSize;
  uint8_t* tag = ct + pt.size();

  ERR_clear_error();
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) {
    return Fail(OsslError("EVP_CIPHER_CTX_new"));
  }
  // The GCM default IV length is 12 octets, the nonce size above.
  if (EVP_EncryptInit_ex2(ctx.get(), EVP_aes_256_gcm(),
                          key_.Expose(SecretAccess::ForCrypto()).data(), nonce.data(),
                          nullptr) != 1) {
    return Fail(OsslError("AES-256-GCM init"));
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const uint8_t*>(aad.data()),
                        static_cast<int>(aad.size())) != 1) {
    return Fail(OsslError("AES-256-GCM aad"));
  }
  if (!pt.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), ct, &len, pt.data(), static_cast<int>(pt.size())) != 1 ||
        static_cast<size_t>(len) != pt.size()) {
      return Fail(OsslError("AES-256-GCM encrypt"));
    }
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), ct + pt.size(), &final_len) != 1 || final_len != 0) {
    return Fail(OsslError("AES-256-GCM final"));
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize), tag) != 1) {
    return Fail(OsslError("AES-256-GCM tag"));
  }
  return out;
}

Result<SecretBytes> KeyEncryptionKey::Open(ByteSpan sealed, std::string_view aad) const {
  MTE_TRY(CheckKekSize(key_));
  if (sealed.size() < kOverhead) {
    return Fail(ErrorKind::kCrypto, Errc::kMalformed, "sealed value is too short");
  }
  if (sealed.size() > static_cast<size_t>(INT_MAX) || aad.size() > static_cast<size_t>(INT_MAX)) {
    return Fail(ErrorKind::kCrypto, Errc::kTooLarge, "sealed value is too large");
  }
  if (sealed[0] != kSealVersion) {
    return Fail(ErrorKind::kCrypto, Errc::kUnsupported, "sealed value has an unknown version");
  }
  auto nonce = sealed.subspan(1, kNonceSize);
  auto ct = sealed.subspan(kHeaderSize, sealed.size() - kOverhead);
  std::array<uint8_t, kTagSize> tag{};
  auto tag_in = sealed.last(kTagSize);
  std::copy(tag_in.begin(), tag_in.end(), tag.begin());

  // Decrypted bytes go straight into a secret buffer, which is wiped if the tag fails.
  SecretBytes plaintext(ct.size());
  auto pt = plaintext.ExposeMutable(SecretAccess::ForCrypto());

  ERR_clear_error();
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx) {
    return Fail(OsslError("EVP_CIPHER_CTX_new"));
  }
  if (EVP_DecryptInit_ex2(ctx.get(), EVP_aes_256_gcm(),
                          key_.Expose(SecretAccess::ForCrypto()).data(), nonce.data(),
                          nullptr) != 1) {
    return Fail(OsslError("AES-256-GCM init"));
  }
  int len = 0;
  if (!aad.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const uint8_t*>(aad.data()),
                        static_cast<int>(aad.size())) != 1) {
    return Fail(OsslError("AES-256-GCM aad"));
  }
  if (!ct.empty()) {
    if (EVP_DecryptUpdate(ctx.get(), pt.data(), &len, ct.data(), static_cast<int>(ct.size())) !=
            1 ||
        static_cast<size_t>(len) != ct.size()) {
      return Fail(OsslError("AES-256-GCM decrypt"));
    }
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize),
                          tag.data()) != 1) {
    return Fail(OsslError("AES-256-GCM set tag"));
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), pt.data() + pt.size(), &final_len) != 1) {
    // Nothing about the plaintext is revealed: one message for every verification failure.
    ERR_clear_error();
    return Fail(ErrorKind::kCrypto, Errc::kCryptoFailed, std::string(kOpenFailed));
  }
  return plaintext;
}

}  // namespace mte::crypto
