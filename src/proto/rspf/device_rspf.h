// The device side of a Remote Security Provisioning Framework (TS-0003 §8.3.2): what the
// enrolee's state machine (proto/enrolment_client.h) asks of the RSPF it runs. One
// implementation per RSPF: ppsk_device.h (pre-provisioned symmetric key), cert_device.h
// (device certificate). The state machine names none of them.
// Thread-safety: single-threaded, like the state machine that owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/secret.h"
#include "crypto/tls_engine.h"

namespace mte::proto {

// TLS versions and TLS 1.2 suites of an RSPF's session. Defaults: TLS 1.3 and 1.2 offered, the
// RSPF's preferred suites first.
struct RspfTlsOptions {
  bool tls12 = true;
  bool tls13 = true;
  std::string tls12_ciphers;  // OpenSSL syntax; empty = the product's default list
};

class DeviceRspf {
 public:
  virtual ~DeviceRspf() = default;
  // The identifier sent to the MEF in Flow B (seed 8.y.4 step 13).
  virtual std::string_view name() const = 0;
  // The client engine of this RSPF's handshake with the MEF `mef_fqdn`: directly on the socket
  // (Flow A) or inside the outer session (Flow B). `mef_trust_pem` holds the MEF's trust anchors
  // (may be empty for an RSPF whose handshake authenticates the MEF by other means, as a PSK does).
  virtual Result<std::unique_ptr<crypto::TlsEngine>> NewEngine(
      const std::string& mef_fqdn, const std::string& mef_trust_pem) = 0;
  // Who the device says it is in X-M2M-Origin before it has an AE-ID (KpmID, certificate CN).
  virtual std::string origin() const = 0;
  // The credential, as recorded in the enrolee's state (JSON member name and value).
  virtual std::pair<std::string, std::string> credential_record() const = 0;
};

}  // namespace mte::proto
