#include "crypto/random.h"

#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

namespace mte::crypto {

void SystemRng::Fill(std::span<uint8_t> out) {
  if (out.empty()) return;
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    std::fputs("fatal: the system random number generator failed\n", stderr);
    std::abort();
  }
}

SecretBytes RandomSecret(Rng& rng, size_t n) {
  SecretBytes s(n);
  rng.Fill(s.ExposeMutable(SecretAccess::ForCrypto()));
  return s;
}

}  // namespace mte::crypto
