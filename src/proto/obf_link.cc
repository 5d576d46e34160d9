#include "proto/obf_link.h"

#include <nlohmann/json.hpp>

#include "crypto/hkdf.h"

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

Result<ObfOutcome> ParseObfOutcome(const HttpResponse& response) {
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (!body.is_object()) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "the device sent an unreadable answer");
  }
  ObfOutcome outcome;
  outcome.device_id = body.value("deviceId", outcome.device_id);
  outcome.enrolled = response.status == 200 && body.value("outcome", "") == "enrolled";
  if (outcome.enrolled) {
    outcome.ke_id = body.value("keId", outcome.ke_id);
    outcome.rspf = body.value("rspf", outcome.rspf);
    outcome.enrolee_id = body.value("enroleeId", outcome.enrolee_id);
  } else {
    outcome.error = body.value("error", outcome.error);
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
