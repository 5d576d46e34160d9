// Certificate revocation lists (RFC 5280 §5) supplied by the operator for a device CA.
// Sans-IO: the caller reads the file and passes the time.
// Depends on base and crypto/ocsp.h (for the verdict type). Thread-safety: a Crl is immutable
// after Parse; const methods may be called from several threads.
#pragma once

#include <cstdint>
#include <memory>

#include "base/bytes.h"
#include "base/result.h"
#include "crypto/ocsp.h"

namespace mte::crypto {

inline constexpr size_t kMaxCrlSize = 16 * 1024 * 1024;

class Crl {
 public:
  // Parses a PEM or DER CRL issued by `issuer_der` (a DER certificate) and checks it: issuer
  // name equal to the issuer's subject, the issuer's keyUsage (if present) allows cRLSign, the
  // signature verifies with the issuer's key, and nextUpdate >= now (a CRL without nextUpdate is
  // refused). Errors: kLocalUsage/kConfig with a detail for the operator ("CRL is not signed by
  // device CA '...'", "CRL is stale (nextUpdate ...)", "CRL file is not a CRL", ...).
  static Result<Crl> Parse(ByteSpan pem_or_der, ByteSpan issuer_der, int64_t now);

  Crl(Crl&&) noexcept;
  Crl& operator=(Crl&&) noexcept;
  Crl(const Crl&) = delete;
  Crl& operator=(const Crl&) = delete;
  ~Crl();

  // REQUIRES: *this was not moved from.
  // kRevoked (with revoked_at and, if present, revocation_reason) when the leaf's serial is
  // listed, else kGood; kUnknown when `leaf_der` is not a certificate of this CRL's issuer.
  // this_update and next_update are the CRL's.
  OcspVerdict Status(ByteSpan leaf_der) const;
  // The same for a leaf given by its issuer Name and serialNumber INTEGER (both DER), as
  // VerifiedChain carries them; kUnknown when either does not decode.
  OcspVerdict Status(ByteSpan issuer_name_der, ByteSpan serial_der) const;

  // Unix seconds.
  int64_t next_update() const;

 private:
  struct Impl;
  explicit Crl(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mte::crypto
