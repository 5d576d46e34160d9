// RFC 9285 Base45: two octets become three characters of the 45-character alphabet
// "0-9A-Z $%*+-./:", which is exactly the QR code alphanumeric set (ISO/IEC 18004 §7.3.4), so a
// Base45 text fills a QR code in alphanumeric mode (5.5 bits per character).
// Thread-safety: free functions, no shared state.
#pragma once

#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::qr {

// RFC 9285 §4: each pair [a, b] is n = a * 256 + b = c + d * 45 + e * 45^2, written "c d e"; a last
// single octet a = c + d * 45 is written "c d".
std::string Base45Encode(ByteSpan bytes);

// RFC 9285 §4.2. kPeerProtocol/kMalformed for a character outside the alphabet (lower case
// included), a length of 3k + 1, or a triple above 65535 (a pair above 255). The detail names the
// position, never the text.
Result<Bytes> Base45Decode(std::string_view text);

}  // namespace mte::qr
