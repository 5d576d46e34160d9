// Device client certificates: facts for matching and logs, and the MEF's own judgement of the
// chain a device presented. The TLS handshake accepts any client certificate (it proves
// possession of the key); this module then decides, so a refusal can be explained in HTTP.
// Sans-IO: the caller passes the time; no system clock and no system trust store are used.
// Depends on base only. Thread-safety: free functions, no shared state; a DeviceCaSet is
// immutable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"

namespace mte::crypto {

inline constexpr size_t kMaxDeviceChainCerts = 8;
inline constexpr size_t kMaxDeviceCertSize = 16 * 1024;
// A PEM file of certificates (a chain, trust anchors) as the tools read it.
inline constexpr size_t kMaxPemFileSize = 64 * 1024;

// One trusted device CA (root or intermediate) of a device maker.
struct DeviceCa {
  std::string name;
  std::string cert_pem;     // exactly one CA certificate
  int max_chain_depth = 2;  // max number of untrusted intermediate CA certs between the device
                            // cert and this CA
  bool operator==(const DeviceCa&) const = default;
};

// A list of DeviceCa parsed once, for verifying many chains against it. Immutable after Load;
// VerifyDeviceChain may use one set from several threads at once.
class DeviceCaSet {
 public:
  // kLocalUsage/kConfig when a DeviceCa is not exactly one CA certificate or has a negative
  // max_chain_depth.
  static Result<std::shared_ptr<const DeviceCaSet>> Load(std::vector<DeviceCa> cas);
  ~DeviceCaSet();
  const std::vector<DeviceCa>& cas() const { return cas_; }

 private:
  friend struct DeviceCaSetAccess;
  struct Parsed;
  DeviceCaSet();
  std::vector<DeviceCa> cas_;
  std::unique_ptr<Parsed> parsed_;
};

// Facts about one certificate, for matching and logs.
struct CertFacts {
  std::string cert_sha256;  // lowercase hex SHA-256 of the DER certificate
  std::string spki_sha256;  // lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (RFC 6920)
  std::string subject;      // RFC 2253 one-line subject, bounded to 256 chars, for logs
  std::string common_name;  // the subject's (last) CN, "" if none
  std::string serial_hex;   // uppercase hex
  int64_t not_before = 0;   // Unix seconds
  int64_t not_after = 0;    // Unix seconds
  std::string ocsp_url;     // first http:// OCSP URL of the AIA extension, "" if none
};

// Parses one DER certificate (no trailing bytes allowed, at most kMaxDeviceCertSize).
// Errors: kPeerProtocol/kMalformed (undecodable), kPeerProtocol/kTooLarge.
Result<CertFacts> DescribeCertificate(ByteSpan der);

// The certificates of a PEM text, in order, as DER. kLocalUsage/kConfig when there is none or a
// block does not decode; at most kMaxDeviceChainCerts.
Result<std::vector<Bytes>> CertificatesFromPem(std::string_view pem);

// One DER certificate as a PEM block. kPeerProtocol/kMalformed when it does not decode.
Result<std::string> CertificateToPem(ByteSpan der);

// DescribeCertificate for a PEM text holding exactly one certificate (a device certificate file).
// Errors: kLocalUsage/kConfig (no certificate, more than one, larger than kMaxDeviceCertSize).
Result<CertFacts> DescribePemCertificate(const std::string& pem);

// A device CA certificate as an operator supplies it (TS-0003 §8.3.2.2: the MEF trusts the
// device maker's CA), after the checks of CheckDeviceCaCertificate.
struct DeviceCaCertificate {
  Bytes der;                // the DER encoding of the one certificate
  CertFacts facts;          // facts.cert_sha256 is the digest the store lists
  std::string common_name;  // the subject's first commonName as encoded, "" if none (max 256)
};

// Reads exactly one PEM certificate from `pem` (at most kMaxDeviceCertSize octets of DER, no
// second certificate) and checks that it can anchor device chains: basicConstraints cA TRUE
// (RFC 5280 §4.2.1.9), keyUsage, if present, with keyCertSign (RFC 5280 §4.2.1.3), an EC P-256
// key and an ecdsa-with-SHA256 signature (TS-0003 §10.1.1). Validity dates are not checked (a CA
// may be configured before it is valid).
// Errors: kLocalUsage/kConfig with a detail for the operator.
Result<DeviceCaCertificate> ReadDeviceCaCertificate(const std::string& pem);

// ReadDeviceCaCertificate without the result.
Result<void> CheckDeviceCaCertificate(const std::string& pem);

// The result of a successful verification.
struct VerifiedChain {
  CertFacts leaf;
  Bytes leaf_der;
  Bytes issuer_der;     // the certificate that issued the leaf (for OCSP/CRL); empty when the
                        // leaf was accepted by key only (CheckPinnedLeaf)
  std::string ca_name;  // DeviceCa.name that anchored it; "" when accepted by key only
  // The leaf's issuer Name and serialNumber INTEGER, DER-encoded: what a CRL lookup needs, so that
  // the leaf need not be parsed again (crypto::Crl::Status).
  Bytes leaf_issuer_name_der;
  Bytes leaf_serial_der;
};

// Verifies `chain_der` (leaf first, as the peer presented it) against `cas` at `now` (Unix
// seconds). Any configured CA, root or intermediate, can be the trust anchor; the anchor is the
// configured CA nearest to the leaf on the verified path.
// Rules: leaf key EC P-256 and every signature on the path ecdsa-with-SHA256; leaf keyUsage, if
// present, contains digitalSignature; leaf extendedKeyUsage, if present, contains clientAuth;
// the leaf is not a CA; every certificate is valid at `now`; at most the anchoring CA's
// max_chain_depth intermediates; at most kMaxDeviceChainCerts certificates of at most
// kMaxDeviceCertSize bytes each.
// Errors: kPeerAuth/kAuthFailed with a detail a device operator can act on; kPeerProtocol/
// kMalformed for undecodable DER; kPeerProtocol/kTooLarge for the size limits; kLocalUsage/
// kConfig when a DeviceCa is not exactly one CA certificate.
Result<VerifiedChain> VerifyDeviceChain(const std::vector<Bytes>& chain_der,
                                        const std::vector<DeviceCa>& cas, int64_t now);
// The same against a set loaded once (no parsing of the CA certificates per call).
Result<VerifiedChain> VerifyDeviceChain(const std::vector<Bytes>& chain_der,
                                        const DeviceCaSet& cas, int64_t now);

// The same leaf rules (P-256, keyUsage, extendedKeyUsage, not a CA, validity at `now`) without a
// chain, for devices pinned by SPKI hash (the caller compares spki_sha256). Same errors.
Result<VerifiedChain> CheckPinnedLeaf(ByteSpan leaf_der, int64_t now);

}  // namespace mte::crypto
