// Wire constants of the OpenMTE enrolment protocol (docs/protocol.md), shared by the MEF and the
// enrolee.
#pragma once

#include <cstddef>
#include <string_view>

namespace mte::proto {

// Flow A and the inner session of Flow B: the Enrolment Exchange (TS-0003 §8.3.2.1).
inline constexpr std::string_view kEnrolmentPath = "/enrolment";
// Flow B, outer session: token + supported RSPFs (seed 8.y.4 steps 13-16).
inline constexpr std::string_view kTokenPath = "/enrolment/token";
// Flow B, outer session: switch to the RSPF handshake (seed 8.y.4 step 17).
inline constexpr std::string_view kRspfPath = "/enrolment/rspf";
inline constexpr std::string_view kUpgradeProtocol = "oneM2M-RSPF";

// RSPF identifiers exchanged in Flow B (TS-0003 defines none; docs/protocol.md §9.4 fixes these).
inline constexpr std::string_view kRspfPpsk = "PPSK";
inline constexpr std::string_view kRspfCert = "CERT";
inline constexpr std::string_view kRspfGba = "GBA";

// Binding of the inner session to the outer one (docs/conventions.md §2): the RFC 9266 tls-exporter
// channel binding of the OUTER session (label "EXPORTER-Channel-Binding", empty context,
// 32 octets), sent in hex inside the inner session as member "channelBinding".
inline constexpr std::string_view kChannelBindingLabel = "EXPORTER-Channel-Binding";
inline constexpr size_t kChannelBindingLength = 32;

// Enrolment-Tokens: 256-bit random, base64url without padding (43 characters).
inline constexpr size_t kTokenBytes = 32;
inline constexpr size_t kTokenTextLength = 43;

}  // namespace mte::proto
