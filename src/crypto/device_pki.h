// Development device CA: a P-256 CA for device certificates and the device certificates
// themselves, for tests and the `mte admin pki` commands. Device makers use their own CA in
// production. Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "base/clock.h"
#include "base/result.h"

namespace mte::crypto {

// Creates <dir>/ca.crt (mode 0644) and <dir>/ca.key (PKCS#8 PEM, mode 0600): a self-signed P-256
// CA named CN=<name> (printable ASCII, 1 to 64 characters) with basicConstraints CA:TRUE and
// keyUsage keyCertSign+cRLSign, both critical, valid 10 years from now minus 1 hour.
// Creates `dir` if needed. Errors: kLocalUsage/kConfig (name), kLocalUsage/kConflict (a file
// exists; nothing is overwritten), kIo/kIoFailed, kCrypto/kCryptoFailed.
Result<void> CreateDeviceCa(const std::filesystem::path& dir, const std::string& name,
                            SystemTime now);

struct DeviceCertSpec {
  std::string device_id;  // subject CN; printable ASCII, 1 to 64 characters
  std::string ocsp_url;   // optional AIA OCSP access location, must start with "http://"
  int64_t valid_seconds = int64_t{2} * 365 * 86400;  // notAfter = notBefore + valid_seconds
  int64_t not_before_offset_seconds = -3600;         // notBefore = now + offset
};

// Writes <out>/device.crt (0644) and <out>/device.key (PKCS#8 PEM, 0600): a P-256 leaf with
// subject CN=<device_id>, a random 128-bit positive serial, basicConstraints CA:FALSE and
// keyUsage digitalSignature (both critical), extendedKeyUsage clientAuth, an AIA OCSP URL when
// spec.ocsp_url is set, signed ecdsa-with-SHA256 by <ca_dir>/ca.crt + <ca_dir>/ca.key.
// Creates `out` if needed. Errors: kLocalUsage/kConfig (spec, unreadable or mismatched CA
// files), kLocalUsage/kConflict (a file exists), kIo/kIoFailed, kCrypto/kCryptoFailed.
Result<void> IssueDeviceCert(const std::filesystem::path& ca_dir, const DeviceCertSpec& spec,
                             const std::filesystem::path& out, SystemTime now);

// Revokes the device certificate `cert_file` (issued by the CA in `ca_dir`) and rewrites
// <ca_dir>/crl.pem: a CRL (RFC 5280 §5) signed by the CA, listing every certificate revoked so far
// (remembered in <ca_dir>/revoked.txt, one "SERIALHEX UNIXTIME" line each), thisUpdate = now,
// nextUpdate = now + `valid_days`. With no `cert_file` the CRL is only reissued (a fresh
// nextUpdate). kLocalUsage/kConfig for a certificate of another CA.
Result<void> RevokeDeviceCert(const std::filesystem::path& ca_dir, const std::string& cert_file,
                              SystemTime now, int valid_days = 30);

}  // namespace mte::crypto
