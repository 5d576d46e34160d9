#include "qr/payload.h"

#include <array>
#include <cstdint>

#include "base/secret.h"
#include "crypto/device_cert.h"
#include "proto/onem2m.h"
#include "qr/base45.h"

namespace mte::qr {
namespace {

using nlohmann::json;

constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr size_t kPinChars = 43;  // ceil(32 * 8 / 6)
constexpr size_t kSetupCodeChars = 26;
constexpr size_t kSetupCodeBytes = 16;

// The members a bundle payload carries, in the order of docs/protocol.md §9.1.
constexpr std::array<std::string_view, 5> kScalarMembers = {"token", "mefUri", "mefFqdn",
                                                            "expiresAt", "enroleeId"};

Error Bad(ErrorKind kind, Errc code, std::string what) {
  return Error{kind, code, std::move(what)};
}

// Strips one trailing line end (a QR decoder or a file may add one; Base45 has no CR/LF).
std::string_view TrimLineEnd(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  return text;
}

// Splits "FAMILYn:" off `payload`; the body, or the reason it is not a version-1 payload of
// `family`. `what` names the payload kind for errors.
Result<std::string_view> Body(std::string_view payload, std::string_view family,
                              std::string_view what) {
  payload = TrimLineEnd(payload);
  std::string prefix = std::string(family) + "1:";
  if (payload.size() > kMaxPayloadChars) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kTooLarge,
                std::string(what) + " QR payload longer than " + std::to_string(kMaxPayloadChars) +
                    " characters");
  }
  if (payload.substr(0, prefix.size()) == prefix) return payload.substr(prefix.size());
  if (payload.substr(0, family.size()) == family) {
    size_t end = family.size();
    while (end < payload.size() && end < family.size() + 9 && payload[end] >= '0' &&
           payload[end] <= '9') {
      ++end;
    }
    if (end > family.size() && end < payload.size() && payload[end] == ':') {
      return Fail(ErrorKind::kPeerProtocol, Errc::kUnsupported,
                  std::string(what) + " QR payload version " +
                      std::string(payload.substr(family.size(), end - family.size())) +
                      " is not supported (this implementation reads " + prefix + ")");
    }
  }
  return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
              "not an OpenMTE " + std::string(what) + " QR payload (expected " + prefix + "...)");
}

std::string Base64UrlNoPad(ByteSpan bytes) {
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += kBase64Url[n >> 18];
    out += kBase64Url[(n >> 12) & 63];
    out += kBase64Url[(n >> 6) & 63];
    out += kBase64Url[n & 63];
  }
  if (bytes.size() - i == 1) {
    uint32_t n = bytes[i] << 16;
    out += kBase64Url[n >> 18];
    out += kBase64Url[(n >> 12) & 63];
  } else if (bytes.size() - i == 2) {
    uint32_t n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += kBase64Url[n >> 18];
    out += kBase64Url[(n >> 12) & 63];
    out += kBase64Url[(n >> 6) & 63];
  }
  return out;
}

bool IsStringArray(const json& j) {
  if (!j.is_array() || j.empty()) return false;
  for (const auto& item : j) {
    if (!item.is_string()) return false;
  }
  return true;
}

// The bundle rules shared by the encoder (kind kLocalUsage: our caller's input) and the decoder
// (kPeerProtocol: bytes from a picture).
Result<void> CheckBundle(const json& b, ErrorKind kind) {
  auto bad = [kind](const std::string& what) {
    return Fail(Bad(kind, Errc::kMalformed, "not a token bundle: " + what));
  };
  if (!b.is_object()) return bad("not a map/object");
  if (!b.contains("token") || !b["token"].is_string() || b["token"].get_ref<const std::string&>().empty()) {
    return bad("missing token");
  }
  if (!b.contains("mefUri") || !b["mefUri"].is_string()) return bad("missing mefUri");
  for (const char* name : {"mefFqdn", "expiresAt"}) {
    if (b.contains(name) && !b[name].is_string()) return bad(std::string(name) + " is not a string");
  }
  if (b.contains("enroleeId") && !proto::JsonInteger(b["enroleeId"], 1, INT64_MAX)) {
    return bad("enroleeId is not an integer from 1 to 2^63-1");
  }
  bool anchors = b.contains("mefTrustAnchors");
  bool pins = b.contains("mefTrustAnchorPins");
  if (anchors == pins) return bad("exactly one of mefTrustAnchors and mefTrustAnchorPins is needed");
  if (anchors && !IsStringArray(b["mefTrustAnchors"])) {
    return bad("mefTrustAnchors must be a non-empty array of PEM strings");
  }
  if (pins) {
    if (!IsStringArray(b["mefTrustAnchorPins"])) {
      return bad("mefTrustAnchorPins must be a non-empty array of strings");
    }
    for (const auto& pin : b["mefTrustAnchorPins"]) {
      if (auto ok = DecodePin(pin.get_ref<const std::string&>()); !ok) {
        return Fail(Bad(kind, Errc::kMalformed, "not a token bundle: " + ok.error().detail));
      }
    }
  }
  return {};
}

std::string Encode(const json& object) {
  std::vector<uint8_t> cbor = json::to_cbor(object);
  std::string out = std::string(kBundlePrefix) + Base45Encode(cbor);
  SecureWipe(cbor.data(), cbor.size());
  return out;
}

void Wipe(std::string& s) { SecureWipe(s.data(), s.size()); }

// The CBOR item of a payload body, or a discarded value. strict: no bytes after the item; tags
// are refused (the default handler). allow_exceptions=false does not cover everything: the DOM
// builder of nlohmann/json 3.11 still throws out_of_range (408) for a map or an array that
// declares more members than a container can hold, before reading any of them.
json ParseCbor(const Bytes& cbor) {
  try {
    return json::from_cbor(cbor, /*strict=*/true, /*allow_exceptions=*/false);
  } catch (const json::exception&) {
    return json(json::value_t::discarded);
  }
}

}  // namespace

Result<std::string> SpkiPin(ByteSpan certificate_der) {
  MTE_TRY_ASSIGN(auto facts, crypto::DescribeCertificate(certificate_der));
  MTE_TRY_ASSIGN(Bytes digest, HexDecode(facts.spki_sha256));
  return Base64UrlNoPad(digest);
}

Result<std::vector<std::string>> TrustAnchorPins(const json& anchors) {
  if (!IsStringArray(anchors)) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                "mefTrustAnchors must be a non-empty array of PEM strings");
  }
  std::vector<std::string> pins;
  for (const auto& pem : anchors) {
    auto certs = crypto::CertificatesFromPem(pem.get_ref<const std::string&>());
    if (!certs) {
      return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                  "mefTrustAnchors: " + certs.error().detail);
    }
    for (const Bytes& der : *certs) {
      MTE_TRY_ASSIGN(std::string pin, SpkiPin(der));
      pins.push_back(std::move(pin));
    }
  }
  return pins;
}

Result<Bytes> DecodePin(std::string_view pin) {
  auto bad = []() {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "a mefTrustAnchorPins entry must be 43 base64url characters (a SHA-256 of 32 octets)");
  };
  if (pin.size() != kPinChars) return bad();
  Bytes out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : pin) {
    size_t v = kBase64Url.find(c);
    if (v == std::string_view::npos) return bad();
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>(acc >> bits));
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0 || out.size() != kPinBytes) return bad();  // RFC 4648 §3.5: zero trailing bits
  return out;
}

Result<std::string> EncodeBundlePayload(const json& bundle, BundleTrust trust) {
  MTE_TRY(CheckBundle(bundle, ErrorKind::kLocalUsage));
  json out = json::object();
  for (std::string_view name : kScalarMembers) {
    std::string key(name);
    if (bundle.contains(key)) out[key] = bundle[key];
  }
  if (bundle.contains("mefTrustAnchors") && trust == BundleTrust::kAnchorsIfTheyFit) {
    out["mefTrustAnchors"] = bundle["mefTrustAnchors"];
    std::string payload = Encode(out);
    if (payload.size() <= kMaxQrAlphanumericM) {
      Wipe(out["token"].get_ref<std::string&>());
      return payload;
    }
    Wipe(payload);
    out.erase("mefTrustAnchors");
  }
  if (bundle.contains("mefTrustAnchorPins")) {
    out["mefTrustAnchorPins"] = bundle["mefTrustAnchorPins"];
  } else {
    MTE_TRY_ASSIGN(auto pins, TrustAnchorPins(bundle["mefTrustAnchors"]));
    out["mefTrustAnchorPins"] = pins;
  }
  std::string payload = Encode(out);
  Wipe(out["token"].get_ref<std::string&>());
  if (payload.size() > kMaxQrAlphanumericM) {
    size_t size = payload.size();
    Wipe(payload);
    return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge,
                "the token bundle does not fit one QR code even with trust anchor pins (" +
                    std::to_string(size) + " characters; version 40-M holds " +
                    std::to_string(kMaxQrAlphanumericM) + ")");
  }
  return payload;
}

bool IsBundlePayload(std::string_view text) {
  return text.size() > 3 && text.substr(0, 3) == "MTB" && text[3] >= '0' && text[3] <= '9';
}

Result<json> DecodeBundlePayload(std::string_view payload) {
  MTE_TRY_ASSIGN(std::string_view body, Body(payload, "MTB", "token bundle"));
  auto cbor = Base45Decode(body);
  if (!cbor) return Fail(cbor.error());
  json bundle = ParseCbor(*cbor);
  SecureWipe(cbor->data(), cbor->size());
  if (bundle.is_discarded()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "bad CBOR in the token bundle QR payload");
  }
  if (auto ok = CheckBundle(bundle, ErrorKind::kPeerProtocol); !ok) {
    if (bundle.is_object() && bundle.contains("token") && bundle["token"].is_string()) {
      Wipe(bundle["token"].get_ref<std::string&>());
    }
    return Fail(ok.error());
  }
  return bundle;
}

Result<std::string> EncodeSetupCodePayload(std::string_view setup_code) {
  auto raw = Base32Decode(setup_code);
  if (!raw || raw->size() != kSetupCodeBytes) {
    if (raw) SecureWipe(raw->data(), raw->size());
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                "a setup code is 26 base32 characters (A-Z, 2-7)");
  }
  std::string code = Base32Encode(*raw);
  SecureWipe(raw->data(), raw->size());
  std::string out = std::string(kSetupCodePrefix) + code;
  Wipe(code);
  return out;
}

Result<std::string> DecodeSetupCodePayload(std::string_view payload) {
  MTE_TRY_ASSIGN(std::string_view body, Body(payload, "MTS", "setup code"));
  auto bad = []() {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "the setup code QR payload does not hold 26 base32 characters (A-Z, 2-7)");
  };
  if (body.size() != kSetupCodeChars) return bad();
  for (char c : body) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7'))) return bad();
  }
  auto raw = Base32Decode(body);  // also refuses non-zero trailing bits
  if (!raw || raw->size() != kSetupCodeBytes) {
    if (raw) SecureWipe(raw->data(), raw->size());
    return bad();
  }
  SecureWipe(raw->data(), raw->size());
  return std::string(body);
}

}  // namespace mte::qr
