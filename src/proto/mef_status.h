// The enrolee's check of the MEF certificate's status: the OCSP response the MEF stapled to a
// certificate-authenticated handshake (RFC 6066 §8; TS-0003 §8.1.2.2 names stapling as an
// alternative to the client's own CRL or OCSP check). A stapled response carries no nonce; it is
// judged by its signature (the issuer of the MEF's certificate or its delegated responder),
// its CertID and its thisUpdate/nextUpdate window at `now`.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "crypto/tls_engine.h"

namespace mte::proto {

// `tls` is a completed client handshake that verified the MEF's certificate against
// `mef_trust_pem`. No staple: fine unless `required`. A staple for a revoked or unknown
// certificate, or one that does not verify, fails (kPeerAuth/kAuthFailed).
Result<void> CheckMefStaple(const crypto::TlsEngine& tls, const std::string& mef_trust_pem,
                            int64_t now, bool required);

}  // namespace mte::proto
