// Building certificates for the development PKIs (pki.cc: the MTE's CA and FQDN leaves;
// device_pki.cc: a device maker's CA and device certificates): P-256 keys (TS-0003 §10.1.1),
// random serials, extensions from their text form, ECDSA-with-SHA-256 signatures, PEM output.
// Private to src/crypto.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/result.h"
#include "base/secret.h"
#include "crypto/ossl.h"

namespace mte::crypto::internal {

// 1..64 printable ASCII characters (RFC 5280 Appendix A: ub-common-name); kLocalUsage/kConfig.
Result<void> CheckCommonName(std::string_view cn, std::string_view what);
// `t` plus `n` calendar years (29 February becomes 28 February).
SystemTime AddYears(SystemTime t, int n);
Result<EvpPkeyPtr> GenerateP256Key();
// A positive random 128-bit serial (RFC 5280 §4.1.2.2).
Result<void> SetRandomSerial(X509* cert);
// An extension from its OpenSSL configuration text, e.g. "critical,CA:TRUE".
Result<void> AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value);
// A v3 certificate for `key` named CN=`cn`, valid [not_before, not_after] (Unix seconds),
// without extensions. `issuer_name` is null for a self-signed certificate.
Result<X509Ptr> NewCertificate(const std::string& cn, EVP_PKEY* key, const X509_NAME* issuer_name,
                               int64_t not_before, int64_t not_after);
// ECDSA with SHA-256 (TS-0003 §10.1.1).
Result<void> Sign(X509* cert, EVP_PKEY* issuer_key);
Result<Bytes> CertificatePem(X509* cert);
// PKCS#8, unencrypted; the buffer is wiped when released.
Result<SecretBytes> PrivateKeyPem(EVP_PKEY* key);

}  // namespace mte::crypto::internal
