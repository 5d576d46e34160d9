// oneM2M key derivations (TS-0003 §10.3), byte-exact (docs/conventions.md §2).
//
// Enrolment Key: RFC 5705 exporter, label "EXPORTER-oneM2M-Bootstrap", no context, 48 octets;
// RelativeKeID = octets 0-15, Ke = octets 16-47; KeID = UPPERCASE-HEX(RelativeKeID) "@" MEF-FQDN.
// Km / Kpsa / usage-constrained key: HMAC-SHA-256(Ke, label || id) with the labels below.
// Identifiers are UTF-8 after NFKC; OpenMTE accepts printable ASCII identifiers only (for which
// NFKC is the identity) and refuses others with kMalformed, so no normalisation library is needed.
// Thread-safety: free functions, no shared state.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/result.h"
#include "base/secret.h"

namespace mte::crypto {

inline constexpr std::string_view kBootstrapExporterLabel = "EXPORTER-oneM2M-Bootstrap";  // §10.3.1
inline constexpr size_t kBootstrapExportLength = 48;                                      // §10.3.1
inline constexpr std::string_view kKmLabel =
    "oneM2M Enrolment Key to Master Credential derivation";  // §10.3.2
inline constexpr std::string_view kKpsaLabel =
    "oneM2M Enrolment Key to Provisioned Secure Connection Key derivation";  // §10.3.3
inline constexpr std::string_view kUsageConstrainedLabel =
    "oneM2M Enrolment Key to Usage-Constrained Symmetric Key derivation";  // §10.3.7

// The public half of the exporter output.
struct RelativeKeId {
  std::array<uint8_t, 16> bytes{};
};

struct EnrolmentKey {
  RelativeKeId relative_ke_id;
  SecretBytes ke;  // 32 octets
};

// Splits the 48-octet exporter output. Fails (kInternal/kInvariant) on any other length.
Result<EnrolmentKey> SplitBootstrapExport(const SecretBytes& exported);

// UPPERCASE-HEX(RelativeKeID) "@" MEF-FQDN (TS-0003 §10.3.4).
std::string MakeKeId(const RelativeKeId& rel, std::string_view mef_fqdn);

// Compares KeIDs case-insensitively (hex case is not fixed by the spec).
bool KeIdEquals(std::string_view a, std::string_view b);

// Checks that an identifier is non-empty printable ASCII (0x21..0x7e), at most 255 bytes.
Result<void> CheckIdentifier(std::string_view id, std::string_view what);

// HMAC-SHA-256(key, data).
Result<SecretBytes> HmacSha256(const SecretBytes& key, ByteSpan data);

// Km = HMAC-SHA-256(Ke, kKmLabel || MAF-ID)  (TS-0003 §10.3.2).
Result<SecretBytes> DeriveKm(const SecretBytes& ke, std::string_view maf_id);
// Kpsa = HMAC-SHA-256(Ke, kKpsaLabel || Enrolee-B-ID)  (TS-0003 §10.3.3).
Result<SecretBytes> DeriveKpsa(const SecretBytes& ke, std::string_view enrolee_b_id);
// K = HMAC-SHA-256(Ke, kUsageConstrainedLabel || SUID || Target-ID)  (TS-0003 §10.3.7);
// SUID as decimal ASCII digits (a documented choice; the spec is silent).
Result<SecretBytes> DeriveUsageConstrainedKey(const SecretBytes& ke, unsigned suid,
                                              std::string_view target_id);

// SHA-256 of public data (token and session hashes).
std::array<uint8_t, 32> Sha256(ByteSpan data);

}  // namespace mte::crypto
