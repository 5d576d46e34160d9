#include "qr/base45.h"

#include <algorithm>
#include <array>

namespace mte::qr {
namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

// The value of each character, or -1.
constexpr std::array<int, 256> MakeValues() {
  std::array<int, 256> values{};
  for (int& v : values) v = -1;
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    values[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int>(i);
  }
  return values;
}

constexpr std::array<int, 256> kValues = MakeValues();

Error Malformed(std::string what) {
  return Error{ErrorKind::kPeerProtocol, Errc::kMalformed, "bad Base45: " + std::move(what)};
}

}  // namespace

std::string Base45Encode(ByteSpan bytes) {
  std::string out;
  out.reserve(bytes.size() / 2 * 3 + 2);
  size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) {
    unsigned n = bytes[i] * 256u + bytes[i + 1];
    out += kAlphabet[n % 45];
    out += kAlphabet[n / 45 % 45];
    out += kAlphabet[n / 2025];
  }
  if (i < bytes.size()) {
    unsigned n = bytes[i];
    out += kAlphabet[n % 45];
    out += kAlphabet[n / 45];
  }
  return out;
}

Result<Bytes> Base45Decode(std::string_view text) {
  if (text.size() % 3 == 1) {
    return Fail(Malformed("length " + std::to_string(text.size()) + " is 3k+1"));
  }
  Bytes out;
  out.reserve(text.size() / 3 * 2 + 1);
  for (size_t i = 0; i < text.size(); i += 3) {
    size_t group = std::min<size_t>(3, text.size() - i);
    unsigned n = 0;
    unsigned weight = 1;
    for (size_t k = 0; k < group; ++k) {
      int v = kValues[static_cast<unsigned char>(text[i + k])];
      if (v < 0) return Fail(Malformed("character " + std::to_string(i + k) + " is not Base45"));
      n += static_cast<unsigned>(v) * weight;
      weight *= 45;
    }
    if (group == 3) {
      if (n > 0xFFFF) return Fail(Malformed("triple at " + std::to_string(i) + " exceeds 65535"));
      out.push_back(static_cast<uint8_t>(n >> 8));
      out.push_back(static_cast<uint8_t>(n & 0xFF));
    } else {
      if (n > 0xFF) return Fail(Malformed("final pair exceeds 255"));
      out.push_back(static_cast<uint8_t>(n));
    }
  }
  return out;
}

}  // namespace mte::qr
