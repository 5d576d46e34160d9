#include "base/bytes.h"

namespace mte {
namespace {

std::string Hex(ByteSpan bytes, const char* digits) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0x0f]);
  }
  return out;
}

int Nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string HexUpper(ByteSpan bytes) { return Hex(bytes, "0123456789ABCDEF"); }

std::string HexLower(ByteSpan bytes) { return Hex(bytes, "0123456789abcdef"); }

Result<Bytes> HexDecode(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "hex string has odd length");
  }
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = Nibble(hex[2 * i]);
    int lo = Nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "not a hex string");
    }
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return out;
}

}  // namespace mte
