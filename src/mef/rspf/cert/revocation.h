// Revocation status of a device certificate before the MEF accepts it (TS-0003 §8.1.2.2):
// OCSP (RFC 6960) or an operator-supplied CRL (RFC 5280 §5).
//
// OCSP: a request with a fresh nonce goes to the certificate's AIA responder, else to the device
// CA's configured one, through the injected transport, which must never block the calling thread
// (net::HttpFetcher runs it on its own thread, with a deadline). The answer is checked by
// crypto::VerifyOcspResponse (signature by the CA or its delegated responder, CertID, freshness,
// nonce). Good answers are cached until nextUpdate (at most `cache_limit` certificates; without
// nextUpdate for an hour). A CRL, when the device CA has one, is used instead of OCSP, reparsed
// whenever the file changes.
//
// Outcome: accepted (with a line for the audit trail) or refused (kPeerAuth/kForbidden, a detail
// the device may see: "device certificate revoked (OCSP)"). No answer to be had (responder down,
// silent, garbage, a stale CRL) refuses, unless the device CA is fail-open, which accepts and says
// so in the audit line.
// Thread-safety: Check may be called from any thread; `done` runs on the calling thread or on the
// transport's.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/result.h"
#include "crypto/crl.h"
#include "crypto/device_cert.h"
#include "crypto/ocsp.h"

namespace mte::mef {

// POSTs a DER OCSP request to `url` (RFC 6960 Appendix A.1) and hands the DER response body (or
// the failure) to `done`, once, from any thread.
using OcspTransport =
    std::function<void(const std::string& url, Bytes request, std::function<void(Result<Bytes>)>)>;

// What the device CA says about checking its certificates.
struct RevocationPolicy {
  std::string ca_name;
  std::string ocsp_url;  // used when the certificate names no OCSP responder (AIA)
  std::string crl_file;  // a CRL instead of OCSP
  bool fail_open = false;
};

class RevocationChecker {
 public:
  RevocationChecker(OcspTransport transport, Rng& rng, const Clock& clock,
                    size_t cache_limit = 10000);

  // Decides on `chain`, as VerifyDeviceChain or CheckPinnedLeaf made it (its leaf, issuer, and
  // the leaf's issuer Name and serial). `done` gets the audit line, or the refusal.
  void Check(const crypto::VerifiedChain& chain, const RevocationPolicy& policy,
             std::function<void(Result<std::string>)> done);

 private:
  struct CachedGood {
    int64_t until;
    std::string audit;
  };
  struct CachedCrl {
    int64_t mtime_ns = 0;
    uintmax_t size = 0;
    std::shared_ptr<const crypto::Crl> crl;
  };
  void CheckCrl(const crypto::VerifiedChain& chain, const RevocationPolicy& policy, int64_t now,
                const std::function<void(Result<std::string>)>& done);
  // The verdict of a usable status answer from `source` ("OCSP", "CRL").
  static Result<std::string> Judge(const crypto::OcspVerdict& verdict, std::string_view source,
                                   const std::string& responder);
  // No status could be had: refused, or accepted under the fail-open policy.
  static Result<std::string> Unavailable(const RevocationPolicy& policy, const std::string& why);
  void Remember(const std::string& cert_sha256, int64_t until, const std::string& audit);

  OcspTransport transport_;
  Rng& rng_;
  const Clock& clock_;
  size_t cache_limit_;
  std::mutex mutex_;
  std::unordered_map<std::string, CachedGood> good_;  // by certificate SHA-256
  std::list<std::string> order_;                      // insertion order, for eviction
  std::unordered_map<std::string, CachedCrl> crls_;   // by file
};

}  // namespace mte::mef
