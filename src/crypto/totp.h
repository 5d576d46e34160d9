// One-time passwords for the portal's second factor: HOTP (RFC 4226) and TOTP (RFC 6238) with
// the parameters every authenticator app takes by default (HMAC-SHA-1, 6 digits, 30-second
// steps from the Unix epoch), and the otpauth:// URI such apps read from a QR code.
//
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/secret.h"

namespace mte::crypto {

inline constexpr size_t kTotpSecretSize = 20;  // 160 bits, RFC 4226 §4 R6 recommends it
inline constexpr int64_t kTotpPeriodSeconds = 30;
inline constexpr int kTotpDigits = 6;

// The HOTP value of `counter` (RFC 4226 §5.3: HMAC, dynamic truncation, modulo 10^digits),
// as `digits` decimal digits with leading zeros. `hash` is "SHA1", "SHA256" or "SHA512" (the
// last two for RFC 6238's own test vectors); digits 6..8. kLocalUsage/kMalformed otherwise.
Result<std::string> Hotp(const SecretBytes& key, uint64_t counter, int digits = kTotpDigits,
                         std::string_view hash = "SHA1");

// The TOTP time step of a Unix time (RFC 6238 §4.2, T0 = 0, X = 30 s); negative times are
// step 0.
int64_t TotpStep(int64_t unix_seconds);

// The time step in [step(now) - window, step(now) + window] whose 6-digit code is `code`, or
// nullopt (a code that is not 6 ASCII digits matches nothing). Every candidate is computed and
// compared in constant time, so the answer's timing does not tell which step matched.
Result<std::optional<int64_t>> MatchTotp(const SecretBytes& key, std::string_view code,
                                         int64_t now, int window = 1);

// otpauth://totp/<issuer>:<account>?secret=<base32>&issuer=<issuer>&algorithm=SHA1&digits=6
// &period=30 (the "Key Uri Format" of Google Authenticator, read by every common app); issuer
// and account are percent-encoded.
std::string OtpauthUri(std::string_view issuer, std::string_view account,
                       std::string_view secret_base32);

}  // namespace mte::crypto
