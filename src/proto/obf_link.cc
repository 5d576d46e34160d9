#include "proto/obf_link.h"

#include <nlohmann/json.hpp>

#include <cstdint>

#include "crypto/hkdf.h"
#include "proto/onem2m.h"

namespace mte::proto {

std::string NewSetupCode(Rng& rng) {
  Bytes raw(kSetupCodeBytes);
  rng.Fill(raw);
  std::string code = Base32Encode(raw);
  SecureWipe(raw.data(), raw.size());
  return code;
}

Result<SecretBytes> ParseSetupCode(std::string_view text) {
  auto raw = Base32Decode(text);
  if (!raw || raw->size() != kSetupCodeBytes) {
    if (raw) SecureWipe(raw->data(), raw->size());
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                "a setup code is 26 base32 characters (A-Z, 2-7)");
  }
  SecretBytes code(*raw, SecretAccess::ForCrypto());
  SecureWipe(raw->data(), raw->size());
  return code;
}

namespace {

// A member of the device's answer that must be a string; `fallback` when it is absent or of
// another type (json::value would throw type_error for the latter).
std::string StringMember(const nlohmann::json& body, const char* name, std::string fallback) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

}  // namespace

Result<ObfOutcome> ParseObfOutcome(const HttpResponse& response) {
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (!body.is_object()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "the device sent an unreadable answer");
  }
  ObfOutcome outcome;
  outcome.device_id = StringMember(body, "deviceId", outcome.device_id);
  outcome.enrolled = response.status == 200 && StringMember(body, "outcome", "") == "enrolled";
  if (outcome.enrolled) {
    outcome.ke_id = StringMember(body, "keId", outcome.ke_id);
    outcome.rspf = StringMember(body, "rspf", outcome.rspf);
    if (auto it = body.find("enroleeId"); it != body.end()) {
      outcome.enrolee_id = JsonInteger(*it, 1, INT64_MAX).value_or(0);
    }
  } else {
    outcome.error = StringMember(body, "error", outcome.error);
  }
  return outcome;
}

Result<SecretBytes> ObfLinkPsk(const SecretBytes& setup_code) {
  return crypto::HkdfSha256(setup_code, {}, kObfLinkPskInfo, 32);
}

Result<std::shared_ptr<const crypto::TlsContext>> ObfLinkServerContext() {
  crypto::TlsServerOptions options;
  options.server_name = std::string(kObfLinkServerName);
  options.psk = true;
  options.tls12 = false;
  return crypto::TlsContext::Server(options);
}

Result<std::shared_ptr<const crypto::TlsContext>> ObfLinkClientContext() {
  crypto::TlsClientOptions options;
  options.server_name = std::string(kObfLinkServerName);
  options.psk_identity = std::string(kObfLinkIdentity);
  options.tls12 = false;
  return crypto::TlsContext::Client(options);
}

}  // namespace mte::proto
