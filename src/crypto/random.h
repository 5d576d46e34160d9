// The system CSPRNG (OpenSSL RAND_bytes) behind the injected base::Rng interface.
#pragma once

#include "base/bytes.h"
#include "base/clock.h"
#include "base/secret.h"

namespace mte::crypto {

class SystemRng final : public Rng {
 public:
  void Fill(std::span<uint8_t> out) override;
};

// Convenience: `n` random bytes as a secret.
SecretBytes RandomSecret(Rng& rng, size_t n);

}  // namespace mte::crypto
