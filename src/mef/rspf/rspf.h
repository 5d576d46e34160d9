// The MEF side of a Remote Security Provisioning Framework (TS-0003 §8.3.2): the seam between the
// MEF's flow code (tokens, selection, the Enrolment Exchange, the commit) and what differs per
// RSPF: how the device authenticates, and how its identity maps to a device of the manifest.
//
// Each RSPF is one folder below src/mef/rspf/ (ppsk/, cert/); the flow code names none of them.
// An RSPF takes part in three places:
//   - the MEF port (Flow A, direct): ConfigureDirect adds what the RSPF needs to the port's one
//     TLS context (PSK callbacks, a CertificateRequest); after the handshake Claims() says whether
//     this RSPF authenticated it;
//   - Flow B: NewInnerEngine is the server engine of the handshake nested in the outer session;
//   - both: Authenticate maps the completed handshake to a device (possibly after asking a
//     certificate status responder) and EnrolmentKey gives Ke/KeID.
// docs/architecture.md §10 shows how the GBA RSPF (whose Ub exchange precedes its TLS-PSK
// handshake, and whose Ke is Ks) fits this seam.
// Thread-safety: every method may be called from any I/O thread concurrently.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/secret.h"
#include "crypto/keys.h"
#include "crypto/tls_engine.h"
#include "store/store.h"

namespace mte::mef {

// Who the RSPF authenticated, and how.
struct AuthenticatedDevice {
  std::string device_id;
  std::string rspf;        // "PPSK", "CERT" (proto/enrolment.h)
  std::string credential;  // names the credential in logs, e.g. "KpmID 'kpm-1@maker'"
  std::string audit;       // what the audit trail records of the check, e.g. "OCSP good, ..."
};

// The Enrolment Key and its identifier.
struct EnrolmentKey {
  std::string ke_id;
  SecretBytes ke;
};

// The outcome of Authenticate, delivered exactly once, on the calling thread or later on another.
using AuthenticateDone = std::function<void(Result<AuthenticatedDevice>)>;

class Rspf {
 public:
  virtual ~Rspf() = default;

  // The identifier exchanged in Flow B (seed 8.y.4 steps 13-15).
  virtual std::string_view name() const = 0;

  // Adds this RSPF's part to the TLS context of the MEF port.
  virtual void ConfigureDirect(crypto::TlsServerOptions& options) const = 0;
  // The PSK for an identity, for RSPFs that authenticate with a PSK; nullopt if the identity is
  // not this RSPF's (unknown devices included). Called during a handshake.
  virtual std::optional<SecretBytes> LookupPsk(std::string_view identity) {
    static_cast<void>(identity);
    return std::nullopt;
  }
  // Did this RSPF authenticate the completed handshake `tls` (on the MEF port)?
  virtual bool Claims(const crypto::TlsEngine& tls) const = 0;

  // Whether the device has a bootstrap credential of this RSPF (Flow B selection, step 15).
  virtual bool Serves(const store::DeviceRecord& device) const = 0;
  // The server engine of this RSPF's handshake inside a Flow B outer session (step 17).
  virtual Result<std::unique_ptr<crypto::TlsEngine>> NewInnerEngine() = 0;

  // Maps the authenticated identity of the completed handshake `tls` to a device of the manifest.
  // Refusals are kPeerAuth with a detail the device may see. `tls` is read only during this
  // call (an RSPF that answers later copies what it needs).
  virtual void Authenticate(const crypto::TlsEngine& tls, int64_t now, AuthenticateDone done) = 0;

  // The Enrolment Key of the authenticated session: by default the TS-0003 §10.3.1 exporter, with
  // KeID = UPPER-HEX(RelativeKeID) "@" MEF-FQDN (§10.3.4). (GBA: Ke = Ks, KeID = B-TID.)
  virtual Result<EnrolmentKey> DeriveEnrolmentKey(const crypto::TlsEngine& tls,
                                                  std::string_view mef_fqdn) const;
};

}  // namespace mte::mef
