// The TLS profile of every OpenMTE context (TS-0003 §10.2, docs/conventions.md §2), as OpenSSL lists.
// crypto::TlsContext applies them; the bare-OpenSSL benchmark (bench/bare_nested.cc) uses the
// same lists and settings so that its floor is measured with exactly the product's profile.
#pragma once

#include <openssl/types.h>

#include "base/result.h"

namespace mte::crypto::tls_profile {

// TS-0003 §10.2.2 mandates TLS_PSK_WITH_AES_128_CBC_SHA256; ECDHE-PSK is preferred when the
// client offers it (docs/conventions.md §2: forward secrecy where both sides can).
inline constexpr const char* kPsk12Ciphers =
    "ECDHE-PSK-AES128-CBC-SHA256:PSK-AES128-GCM-SHA256:PSK-AES128-CBC-SHA256";
// TS-0003 §10.2.3: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 must work; AEAD suites first.
inline constexpr const char* kCert12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-SHA256";
// An external TLS 1.3 PSK is bound to SHA-256 (OpenSSL 3.0 silently ignores a PSK whose hash differs from the suite's): only offer suites
// with that hash, or OpenSSL silently ignores the PSK.
inline constexpr const char* kTls13Suites = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
// P-256 must be listed for TLS 1.2 with ECDSA P-256 certificates (gotcha 3).
inline constexpr const char* kGroups = "X25519:P-256";

// The settings every context shares: protocol versions (nothing below TLS 1.2), no
// renegotiation, tickets, session cache or compression, server suite preference, kGroups and
// kTls13Suites. kLocalUsage/kConfig if neither version is enabled; kCrypto if OpenSSL refuses.
Result<void> ApplyCommon(SSL_CTX* ctx, bool tls12, bool tls13);

}  // namespace mte::crypto::tls_profile
