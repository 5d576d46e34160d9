// The enrolee's side of enrolment as a sans-IO state machine: ciphertext in, ciphertext out.
//
// Flow A (seed 8.y.3, TS-0003 §8.3.2.1/§8.3.2.2): one session to the MEF authenticated by the
// RSPF's credential, then POST /enrolment.
// Flow B (seed 8.y.4 steps 12-17): server-authenticated TLS to the MEF (trust anchors and FQDN
// from the token bundle), POST /enrolment/token with the token and the supported RSPFs, the MEF's
// selection, GET /enrolment/rspf with Upgrade, then the selected RSPF's handshake INSIDE the
// outer session and POST /enrolment there, carrying the outer session's channel binding.
// The RSPF is a DeviceRspf (proto/rspf/): PPSK (TLS-PSK with KpmID/Kpm) or certificate.
// Both flows end with Ke/KeID from the (inner) mutually authenticated session's exporter.
//
// The blocking library (libmte-enrolee) pumps this over a socket; tests pump it in memory.
// Thread-safety: single-threaded.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/result.h"
#include "base/secret.h"
#include "proto/http.h"
#include "proto/rspf/device_rspf.h"
#include "proto/tls_stack.h"

namespace mte::proto {

// What the OBF delivers (seed 8.y.4 step 11).
// The MEF is trusted by its anchors (mef_trust_pem) or, for a bundle from a QR code too small
// for them, by pinned keys (mef_spki_pins; docs/qr.md): exactly one of the two is set.
struct TokenBundle {
  std::string token;
  std::string mef_fqdn;
  std::string mef_trust_pem;        // one or more PEM certificates
  std::vector<Bytes> mef_spki_pins;  // SHA-256 of DER SubjectPublicKeyInfos, 32 octets each
};

struct EnrolmentResult {
  std::string ke_id;
  SecretBytes ke;
  std::string expires_at;
  std::string rspf;
  int64_t enrolee_id = 0;
  std::string km_id;  // empty when the MEF gave no MAF instruction
  std::string maf_fqdn;
  std::string maf_id;
  SecretBytes km;
  std::string tls_version;  // of the session that produced Ke
  std::string cipher;
  std::string outer_tls_version;  // Flow B only
};

// How the enrolee judges the MEF's certificate beyond its chain and name: the OCSP response the
// MEF stapled (proto/mef_status.h).
struct MefCertificateChecks {
  int64_t now = 0;  // Unix seconds at which a staple is judged
  bool require_staple = false;  // the first certificate-authenticated session must carry one
};

class EnrolmentClient {
 public:
  enum class Phase {
    kOuterHandshake,   // Flow B step 12
    kTokenExchange,    // steps 13-16
    kUpgrade,          // step 17 starts
    kRspfHandshake,    // the RSPF's handshake (Flow A: the only one)
    kEnrolmentExchange,
    kDone,
    kFailed,
  };

  // Flow A: `rspf`'s handshake directly with the MEF. `mef_trust_pem` holds the MEF's trust
  // anchors (needed by RSPFs that authenticate the MEF by its certificate).
  static Result<std::unique_ptr<EnrolmentClient>> Direct(std::string mef_fqdn,
                                                         std::string mef_trust_pem,
                                                         std::unique_ptr<DeviceRspf> rspf,
                                                         MefCertificateChecks checks = {});
  // Flow B: offers every RSPF of `rspfs` (in order) and runs the one the MEF selects. With pins,
  // the outer session accepts the MEF's chain up to a presented certificate whose key is pinned;
  // that certificate is then the MEF trust anchor for the rest of the enrolment (the stapled
  // OCSP response, the certificate RSPF's inner session).
  static Result<std::unique_ptr<EnrolmentClient>> ViaToken(
      TokenBundle bundle, std::vector<std::unique_ptr<DeviceRspf>> rspfs,
      MefCertificateChecks checks = {});

  // Produces the first flight (ClientHello).
  Result<void> Start();
  // Bytes from the MEF. Errors are final; the detail says which step failed.
  Result<void> FeedCiphertext(ByteSpan data);
  // Bytes to send to the MEF.
  Bytes TakeCiphertext() { return stack_.TakeCiphertext(); }
  // The MEF closed the connection (EOF): an error unless the exchange is done.
  Result<void> FeedEof();

  Phase phase() const { return phase_; }
  static const char* PhaseName(Phase phase);
  // REQUIRES: phase() == kDone. Moves the result out.
  EnrolmentResult TakeResult() { return std::move(result_); }

  // Negative tests only: the channel binding sent in the inner session.
  void OverrideChannelBindingForTest(Bytes binding) { binding_override_ = std::move(binding); }

 private:
  EnrolmentClient() = default;
  Result<void> Step();
  Result<void> SendRequest(const HttpRequest& request);
  Result<void> StartRspf();
  Result<void> SendEnrolment();
  Result<void> OnResponse(HttpResponse response);
  Result<void> Failed(Error error);
  // With pins: the presented certificate a pin names becomes mef_trust_pem_.
  Result<void> AdoptPinnedAnchor(const crypto::TlsEngine& tls);
  // The stapled status of a certificate-authenticated session to the MEF.
  Result<void> CheckStaple(const crypto::TlsEngine& tls);

  Phase phase_ = Phase::kRspfHandshake;
  bool via_token_ = false;
  std::string mef_fqdn_;
  std::string mef_trust_pem_;
  TokenBundle bundle_;
  std::vector<std::unique_ptr<DeviceRspf>> rspfs_;  // Flow B: the offered ones
  std::unique_ptr<DeviceRspf> rspf_;                // the one that runs
  MefCertificateChecks checks_;
  bool staple_checked_ = false;
  TlsStack stack_;
  ResponseDecoder decoder_;
  std::optional<Bytes> binding_override_;
  Bytes outer_binding_;
  EnrolmentResult result_;
};

}  // namespace mte::proto
