// Password and claim-code hashing: Argon2id (libargon2), PHC string format
// ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"). Parameters: OWASP minimum (19 MiB, t=2, p=1).
// Thread-safety: free functions; CPU- and memory-heavy (~70 ms): never call on an I/O thread.
#pragma once

#include <string>

#include "base/clock.h"
#include "base/result.h"
#include "base/secret.h"

namespace mte::crypto {

Result<std::string> HashPassword(const SecretString& password, Rng& rng);
// False on mismatch or on a malformed hash string; never fails loudly for a wrong password.
bool VerifyPassword(const SecretString& password, const std::string& phc_hash);
// For an unknown account or device: spends what VerifyPassword spends, then returns false, so
// that a missing record cannot be told apart from a wrong password by timing.
bool VerifyAgainstNothing(const SecretString& password);

}  // namespace mte::crypto
