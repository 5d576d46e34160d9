// Byte containers and hex codecs for public (non-secret) data. Secrets use base/secret.h.
// Thread-safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace mte {

using Bytes = std::vector<uint8_t>;
using ByteSpan = std::span<const uint8_t>;

inline ByteSpan AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::string_view AsText(ByteSpan b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Upper-case hex (xs:hexBinary canonical form), e.g. {0xab} -> "AB".
std::string HexUpper(ByteSpan bytes);
// Lower-case hex, as printed by openssl.
std::string HexLower(ByteSpan bytes);
// Accepts either case; fails (kPeerProtocol/kMalformed) on odd length or a non-hex character.
Result<Bytes> HexDecode(std::string_view hex);

// RFC 4648 base32 (alphabet A-Z2-7), upper case, without padding.
std::string Base32Encode(ByteSpan bytes);
// Accepts either case and ignores '-' and ' ' separators; no padding. kMalformed on any other
// character or on trailing bits that are not zero.
Result<Bytes> Base32Decode(std::string_view text);

// RFC 4648 §5 base64url without padding.
std::string Base64UrlEncode(ByteSpan bytes);

// RFC 3986 §2.1: every octet but the unreserved characters (ALPHA DIGIT - . _ ~) as %XX (upper
// case hex), e.g. for a URI component.
std::string PercentEncode(std::string_view text);

}  // namespace mte
