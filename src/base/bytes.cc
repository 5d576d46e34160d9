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

namespace {

// Big-endian bit packing shared by the base32 and base64url encoders (RFC 4648, no padding).
std::string EncodeBits(ByteSpan bytes, const char* alphabet, int bits_per_char) {
  const uint32_t mask = (1u << bits_per_char) - 1;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= bits_per_char) {
      bits -= bits_per_char;
      out.push_back(alphabet[(acc >> bits) & mask]);
    }
  }
  if (bits > 0) out.push_back(alphabet[(acc << (bits_per_char - bits)) & mask]);
  return out;
}

}  // namespace

std::string Base32Encode(ByteSpan bytes) {
  return EncodeBits(bytes, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 5);
}

Result<Bytes> Base32Decode(std::string_view text) {
  Bytes out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a';
    else if (c >= '2' && c <= '7') v = c - '2' + 26;
    else if (c == '-' || c == ' ') continue;
    else return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "not a base32 string");
    acc = (acc << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "base32 string has a bad length");
  }
  return out;
}

std::string Base64UrlEncode(ByteSpan bytes) {
  return EncodeBits(bytes, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 6);
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

}  // namespace mte
