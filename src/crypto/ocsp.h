// OCSP (RFC 6960) for device certificates, sans-IO: builds the request bytes and judges the
// response bytes; the caller does the HTTP exchange (or takes a stapled response, RFC 6066 §8).
// Neither the system clock nor the system trust store is used: time and issuer are passed in.
// Depends on base only. Thread-safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::crypto {

inline constexpr size_t kMaxOcspResponseSize = 64 * 1024;
inline constexpr size_t kMinOcspNonceSize = 16;
inline constexpr size_t kMaxOcspNonceSize = 32;

enum class CertStatus { kGood, kRevoked, kUnknown };

// "good", "revoked", "unknown".
std::string_view ToString(CertStatus status);

struct OcspRequest {
  Bytes der;
  Bytes nonce;
};

// A DER OCSPRequest for one certificate: CertID with SHA-1 (RFC 6960 §4.1.1, the openssl
// default, so `openssl ocsp` responders match it) and a nonce extension (RFC 6960 §4.4.1)
// holding `nonce`. `leaf_der` and `issuer_der` are DER certificates; the issuer is the one that
// signed the leaf. Errors: kLocalUsage/kMalformed when the nonce is not 16..32 bytes or a
// certificate cannot be decoded; kCrypto/kCryptoFailed.
Result<OcspRequest> MakeOcspRequest(ByteSpan leaf_der, ByteSpan issuer_der, ByteSpan nonce);

struct OcspVerdict {
  CertStatus status = CertStatus::kUnknown;
  int64_t this_update = 0;        // Unix seconds
  int64_t next_update = 0;        // Unix seconds; 0 = absent
  int64_t revoked_at = 0;         // Unix seconds; kRevoked only
  std::string revocation_reason;  // RFC 5280 §5.3.1 name ("keyCompromise"), "" if absent
};

struct OcspCheck {
  std::optional<ByteSpan> expected_nonce;      // nullopt: no nonce required (stapled responses)
  int64_t now = 0;                             // Unix seconds
  int64_t max_skew_seconds = 300;              // thisUpdate may be this far in the future
  int64_t max_age_without_next_update = 3600;  // responses lacking nextUpdate are usable this
                                               // long after thisUpdate
};

// Verifies a DER OCSPResponse (at most kMaxOcspResponseSize bytes) about `leaf_der`, issued by
// `issuer_der`: responseStatus successful; a basic response; signed by the issuer itself or by a
// delegated responder certificate issued directly by the issuer with id-kp-OCSPSigning (RFC 6960
// §4.2.2.2), valid at check.now; a SingleResponse whose CertID matches the leaf; thisUpdate <=
// now + max_skew_seconds; nextUpdate >= now when present, else now <= thisUpdate +
// max_age_without_next_update; the nonce present and equal when expected.
// A revoked or unknown status is the verdict, not an error.
// Errors: kPeerProtocol/kTooLarge (size), kPeerProtocol/kMalformed (DER, structure, responder
// status), kPeerProtocol/kAuthFailed (signature, responder authority, certificate mismatch,
// nonce), kPeerProtocol/kExpired (stale or not yet valid); kLocalUsage/kMalformed when
// `leaf_der` or `issuer_der` cannot be decoded.
Result<OcspVerdict> VerifyOcspResponse(ByteSpan response_der, ByteSpan leaf_der,
                                       ByteSpan issuer_der, const OcspCheck& check);

}  // namespace mte::crypto
