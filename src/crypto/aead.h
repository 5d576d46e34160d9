// Secrets at rest (docs/conventions.md §3): AES-256-GCM under a key-encryption key (KEK) read from a file
// with mode 0600.
//
// Sealed format (all octets): 0x01 (version) || nonce (12) || ciphertext || tag (16).
// The associated data binds a ciphertext to its place (e.g. "kpm|<deviceId>"), so a sealed value
// copied into another row does not open.
// Thread-safety: a KeyEncryptionKey is immutable after creation and may be shared across threads.
#pragma once

#include <filesystem>
#include <string_view>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/result.h"
#include "base/secret.h"

namespace mte::crypto {

inline constexpr size_t kKekSize = 32;

class KeyEncryptionKey {
 public:
  // Writes 32 random octets to `path` with mode 0600 (created exclusively; fails with
  // kLocalUsage/kConflict if the file exists).
  static Result<void> CreateFile(const std::filesystem::path& path, Rng& rng);
  // Reads the KEK. Fails (kLocalUsage/kConfig) if the file is missing, has the wrong size, or is
  // readable by group or others.
  static Result<KeyEncryptionKey> LoadFile(const std::filesystem::path& path);
  static KeyEncryptionKey FromSecret(SecretBytes key);  // REQUIRES: key.size() == kKekSize

  Result<Bytes> Seal(const SecretBytes& plaintext, std::string_view aad, Rng& rng) const;
  // Fails (kStorage/kAuthFailed-free: kCrypto/kCryptoFailed) if the tag does not verify.
  Result<SecretBytes> Open(ByteSpan sealed, std::string_view aad) const;

 private:
  explicit KeyEncryptionKey(SecretBytes key) : key_(std::move(key)) {}
  SecretBytes key_;
};

}  // namespace mte::crypto
