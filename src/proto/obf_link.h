// The OBF <-> enrolee link (seed 8.y.4 steps 1, 9-11; docs/protocol.md §9.2).
//
// The device has a setup code: 128 random bits, printed on its label in base32 (26 characters,
// RFC 4648 alphabet, no padding; '-' and spaces are ignored when typed back). Only someone who
// read the label can talk to the device: the link is TLS 1.3 with an external PSK derived from the
// setup code, with (EC)DHE (psk_dhe_ke), so it authenticates both ends and the device thereby
// authorizes the OBF (seed 8.y.4 pre-conditions):
//   PSK          = HKDF-SHA-256(salt = "" , IKM = the 16 setup-code octets,
//                               info = "OpenMTE OBF link PSK v1", L = 32)
//   psk_identity = "openmte-obf-v1"
// Over it the OBF sends POST /obf/v1/bundle with the token bundle; the device enrols (steps
// 12-17) and answers with the outcome (docs/protocol.md).
#pragma once

#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/result.h"
#include "base/secret.h"
#include "crypto/tls_engine.h"
#include "proto/http.h"

namespace mte::proto {

inline constexpr size_t kSetupCodeBytes = 16;
inline constexpr std::string_view kObfLinkPskInfo = "OpenMTE OBF link PSK v1";
inline constexpr std::string_view kObfLinkIdentity = "openmte-obf-v1";
inline constexpr std::string_view kObfLinkServerName = "enrolee.obf.local";
inline constexpr std::string_view kObfBundlePath = "/obf/v1/bundle";

// A new random setup code, as printed on a label (base32, 26 characters).
std::string NewSetupCode(Rng& rng);
// Parses a typed setup code. kLocalUsage/kMalformed unless it decodes to exactly 16 octets.
Result<SecretBytes> ParseSetupCode(std::string_view text);
// The link PSK for a setup code.
Result<SecretBytes> ObfLinkPsk(const SecretBytes& setup_code);

// The device's answer to POST /obf/v1/bundle, as the OBF reads it (docs/protocol.md §9.2). A
// member of another type than the table gives reads as absent.
struct ObfOutcome {
  bool enrolled = false;        // 200 with "outcome":"enrolled"
  std::string device_id = "?";  // "?" when the device did not say
  // When enrolled:
  std::string ke_id = "?";
  std::string rspf = "?";
  int64_t enrolee_id = 0;       // 0 when the device did not say
  // When not: the device's one-line error message.
  std::string error = "unknown error";
};
// kPeerProtocol/kMalformed when the body is not a JSON object.
Result<ObfOutcome> ParseObfOutcome(const HttpResponse& response);

// TLS 1.3-only contexts for the two ends of the link.
Result<std::shared_ptr<const crypto::TlsContext>> ObfLinkServerContext();
Result<std::shared_ptr<const crypto::TlsContext>> ObfLinkClientContext();

}  // namespace mte::proto
