// Versioned QR payloads of Flow B (docs/qr.md): the token bundle the portal shows and the setup
// code on the device label, in the QR alphanumeric character set.
//
//   payload   = family version ":" body
//   family    = "MTB" (token bundle) / "MTS" (setup code)
//   version   = 1*DIGIT; only "1" is defined
//   MTB1 body = Base45( CBOR map )  (RFC 9285, RFC 8949): the bundle's members under their JSON
//               names: token, mefUri, mefFqdn, expiresAt, enroleeId, and either
//               mefTrustAnchors (PEM strings) or mefTrustAnchorPins (base64url SHA-256 of each
//               anchor's SubjectPublicKeyInfo)
//   MTS1 body = the 26-character base32 setup code (A-Z2-7, upper case)
//
// Payloads carry secrets (the Enrolment-Token, the setup code): no error detail ever quotes one.
// Thread-safety: free functions, no shared state.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::qr {

inline constexpr std::string_view kBundlePrefix = "MTB1:";
inline constexpr std::string_view kSetupCodePrefix = "MTS1:";
// The most characters one QR code holds in alphanumeric mode at error correction level M:
// version 40-M (ISO/IEC 18004:2015 Table 7). A bundle payload is made to fit this.
inline constexpr size_t kMaxQrAlphanumericM = 3391;
// Decoders accept up to the largest alphanumeric QR code, version 40-L.
inline constexpr size_t kMaxPayloadChars = 4296;
// An SPKI pin: SHA-256, 32 octets, 43 base64url characters without padding.
inline constexpr size_t kPinBytes = 32;

// How EncodeBundlePayload carries the MEF trust anchors.
enum class BundleTrust {
  kAnchorsIfTheyFit,  // the PEM anchors; their pins only when the anchors do not fit one QR code
  kPins,              // always the pins (tests, and callers that want the smallest code)
};

// The MTB1 payload of a token bundle as the portal returns it (docs/protocol.md §9.1). Members
// other than the six listed above are dropped. A bundle that already holds mefTrustAnchorPins
// keeps them.
// Errors: kLocalUsage/kMalformed for a bundle without token, mefUri or trust anchors, or an anchor
// that is not PEM; kLocalUsage/kTooLarge when even the pins do not fit kMaxQrAlphanumericM.
Result<std::string> EncodeBundlePayload(const nlohmann::json& bundle,
                                        BundleTrust trust = BundleTrust::kAnchorsIfTheyFit);

// True when `text` claims to be a bundle payload of any version ("MTB" followed by a digit): the
// device and the OBF then decode it instead of reading JSON.
bool IsBundlePayload(std::string_view text);

// The bundle object of an MTB1 payload (one trailing CR/LF is ignored), checked as a bundle:
// token and mefUri strings, exactly one of a non-empty mefTrustAnchors (strings) or a non-empty
// mefTrustAnchorPins (each 32 octets in base64url), optional mefFqdn/expiresAt strings and
// enroleeId integer. Errors, all kPeerProtocol: kMalformed (not MTB, bad Base45, bad CBOR, not a
// bundle), kUnsupported (another version), kTooLarge (longer than kMaxPayloadChars).
Result<nlohmann::json> DecodeBundlePayload(std::string_view payload);

// "MTS1:" + the setup code in canonical form. `setup_code` may be typed as the label shows it
// (any case, '-' and spaces ignored); it must decode to 16 octets. kLocalUsage/kMalformed otherwise.
Result<std::string> EncodeSetupCodePayload(std::string_view setup_code);

// The setup code of an MTS1 payload: exactly 26 canonical base32 characters after the prefix
// (one trailing CR/LF is ignored). Errors as DecodeBundlePayload.
Result<std::string> DecodeSetupCodePayload(std::string_view payload);

// The pin of one DER certificate: base64url (RFC 4648 §5, no padding) of the SHA-256 of its
// DER SubjectPublicKeyInfo (the RFC 7469 pin-sha256 value, in base64url). kPeerProtocol/kMalformed
// for DER that is not a certificate.
Result<std::string> SpkiPin(ByteSpan certificate_der);

// The pins of every certificate in `anchors` (PEM strings, each holding one or more
// certificates), in order. kLocalUsage/kMalformed when a string holds no certificate.
Result<std::vector<std::string>> TrustAnchorPins(const nlohmann::json& anchors);

// A pin back to its 32 octets. kPeerProtocol/kMalformed unless it is 43 base64url characters
// decoding to 32 octets (with zero trailing bits).
Result<Bytes> DecodePin(std::string_view pin);

}  // namespace mte::qr
