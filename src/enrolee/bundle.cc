#include "enrolee/bundle.h"

#include <nlohmann/json.hpp>

#include "base/secret.h"
#include "qr/payload.h"

namespace mte::enrolee {

Result<ParsedBundle> ParseBundle(const std::string& text) {
  if (text.size() > kMaxBundleBytes) {
    return Fail(ErrorKind::kLocalUsage, Errc::kTooLarge, "token bundle larger than 64 KiB");
  }
  auto bad = [](const std::string& what) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "token bundle: " + what);
  };
  nlohmann::json j;
  if (qr::IsBundlePayload(text)) {
    auto decoded = qr::DecodeBundlePayload(text);
    if (!decoded) return bad(decoded.error().detail);
    j = std::move(*decoded);
  } else {
    j = nlohmann::json::parse(text, nullptr, false);
  }
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("token") || !j["token"].is_string()) return bad("missing token");
  if (!j.contains("mefUri") || !j["mefUri"].is_string()) return bad("missing mefUri");
  bool anchors = j.contains("mefTrustAnchors");
  bool pins = j.contains("mefTrustAnchorPins");
  if (anchors && pins) return bad("give mefTrustAnchors or mefTrustAnchorPins, not both");
  if (!pins && (!anchors || !j["mefTrustAnchors"].is_array() || j["mefTrustAnchors"].empty())) {
    return bad("missing mefTrustAnchors");
  }
  ParsedBundle out;
  out.bundle.token = j["token"].get<std::string>();
  if (anchors) {
    for (const auto& pem : j["mefTrustAnchors"]) {
      if (!pem.is_string()) return bad("mefTrustAnchors must be PEM strings");
      out.bundle.mef_trust_pem += pem.get<std::string>();
    }
  } else {
    const auto& list = j["mefTrustAnchorPins"];
    if (!list.is_array() || list.empty())
      return bad("mefTrustAnchorPins must be a non-empty array");
    for (const auto& pin : list) {
      if (!pin.is_string()) return bad("mefTrustAnchorPins must be strings");
      auto digest = qr::DecodePin(pin.get<std::string>());
      if (!digest) return bad(digest.error().detail);
      out.bundle.mef_spki_pins.push_back(std::move(*digest));
    }
  }
  std::string uri = j["mefUri"].get<std::string>();
  constexpr std::string_view kScheme = "https://";
  if (uri.rfind(kScheme, 0) != 0) return bad("mefUri must start with https://");
  std::string authority = uri.substr(kScheme.size());
  authority = authority.substr(0, authority.find('/'));
  auto endpoint = client::ParseEndpoint(authority);
  if (!endpoint) return bad("mefUri must name HOST:PORT");
  out.mef = *endpoint;
  out.bundle.mef_fqdn = j.contains("mefFqdn") && j["mefFqdn"].is_string()
                            ? j["mefFqdn"].get<std::string>()
                            : endpoint->host;
  SecureWipe(j["token"].get_ptr<std::string*>()->data(),
             j["token"].get_ptr<std::string*>()->size());
  return out;
}

}  // namespace mte::enrolee
