// The token bundle of Flow B as the device reads it (docs/protocol.md §9.1): from the OBF link,
// from `mte-enrolee enrol-token --bundle`, or as the MTB1 payload of its QR code (docs/qr.md).
// Internal to libmte-enrolee.
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "base/result.h"
#include "client/socket.h"
#include "proto/enrolment_client.h"

namespace mte::enrolee {

inline constexpr size_t kMaxBundleBytes = 64 * 1024;

struct ParsedBundle {
  proto::TokenBundle bundle;
  client::Endpoint mef;  // from mefUri
};

// {"token","mefUri":"https://HOST:PORT[/...]","mefFqdn"?,"mefTrustAnchors":[PEM],...}, with
// "mefTrustAnchorPins":[base64url SHA-256] instead of the anchors, or the same as an MTB1 QR
// payload. kLocalUsage/kMalformed ("token bundle: ...") or kTooLarge (over kMaxBundleBytes).
// The token's length and the MEF FQDN are checked by proto::EnrolmentClient::ViaToken.
Result<ParsedBundle> ParseBundle(const std::string& text);

}  // namespace mte::enrolee
