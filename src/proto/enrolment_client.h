// The enrolee's side of enrolment as a sans-IO state machine: ciphertext in, ciphertext out.
//
// Flow A (seed 8.y.3, TS-0003 §8.3.2.1): one TLS-PSK session to the MEF (psk_identity = KpmID),
// then POST /enrolment.
// Flow B (seed 8.y.4 steps 12-17): server-authenticated TLS to the MEF (trust anchors and FQDN
// from the token bundle), POST /enrolment/token with the token and the supported RSPFs, the MEF's
// selection, GET /enrolment/rspf with Upgrade, then the PPSK-RSPF's TLS-PSK handshake INSIDE the
// outer session and POST /enrolment there, carrying the outer session's channel binding.
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
#include "proto/tls_stack.h"

namespace mte::proto {

struct PpskCredential {
  std::string kpm_id;
  SecretBytes kpm;
};

// What the OBF delivers (seed 8.y.4 step 11).
struct TokenBundle {
  std::string token;
  std::string mef_fqdn;
  std::string mef_trust_pem;  // one or more PEM certificates
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

// TLS versions and TLS 1.2 suites of the RSPF's (inner) TLS-PSK session. Defaults: TLS 1.3 and
// 1.2 offered, ECDHE-PSK preferred; TS-0003's mandatory TLS_PSK_WITH_AES_128_CBC_SHA256 is
// "tls13 = false, tls12_ciphers = PSK-AES128-CBC-SHA256".
struct RspfTlsOptions {
  bool tls12 = true;
  bool tls13 = true;
  std::string tls12_ciphers;
};

class EnrolmentClient {
 public:
  enum class Phase {
    kOuterHandshake,   // Flow B step 12
    kTokenExchange,    // steps 13-16
    kUpgrade,          // step 17 starts
    kRspfHandshake,    // the PPSK-RSPF TLS-PSK handshake (Flow A: the only one)
    kEnrolmentExchange,
    kDone,
    kFailed,
  };

  static Result<std::unique_ptr<EnrolmentClient>> Direct(std::string mef_fqdn,
                                                         PpskCredential credential,
                                                         RspfTlsOptions rspf_tls = {});
  static Result<std::unique_ptr<EnrolmentClient>> ViaToken(TokenBundle bundle,
                                                           PpskCredential credential,
                                                           std::vector<std::string> rspfs,
                                                           RspfTlsOptions rspf_tls = {});

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

  Phase phase_ = Phase::kRspfHandshake;
  bool via_token_ = false;
  std::string mef_fqdn_;
  TokenBundle bundle_;
  std::vector<std::string> rspfs_;
  PpskCredential credential_;
  RspfTlsOptions rspf_tls_;
  TlsStack stack_;
  ResponseDecoder decoder_;
  std::optional<Bytes> binding_override_;
  Bytes outer_binding_;
  EnrolmentResult result_;
};

}  // namespace mte::proto
