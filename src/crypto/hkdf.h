// HKDF-SHA-256 (RFC 5869) through OpenSSL's EVP_KDF.
#pragma once

#include <string_view>

#include "base/bytes.h"
#include "base/result.h"
#include "base/secret.h"

namespace mte::crypto {

// OKM = HKDF-Expand(HKDF-Extract(salt, ikm), info, length). An empty salt means HashLen zeros
// (RFC 5869 §2.2).
Result<SecretBytes> HkdfSha256(const SecretBytes& ikm, ByteSpan salt, std::string_view info,
                               size_t length);

}  // namespace mte::crypto
