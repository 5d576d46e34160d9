// libmte-enrolee: the device side of OpenMTE enrolment, for AEs and CSEs to link against.
//
// EnrolWithPpsk runs TS-0003 §8.3.2.1 / seed 8.y.3 step 6 (enrolment without an OBF): a TLS-PSK
// session to the MEF with psk_identity = KpmID, the Enrolment Exchange (POST /enrolment), the
// Enrolment Key from the session's exporter, and Km for the MAF named in the MEF's instruction.
// The result is stored in a state directory (files mode 0600): enrolment.json (identifiers and
// expiry), ke and km (32 raw octets each).
// CheckMaf performs the MAF handshake (TLS-PSK, psk_identity = KmID, psk = Km) with that state.
//
// Blocking; no Boost, no OpenSSL types in this interface. Thread-safety: calls are independent.
#pragma once

#include <cstdint>
#include <string>

#if defined(MTE_ENROLEE_BUILD)
#define MTE_EXPORT __attribute__((visibility("default")))
#else
#define MTE_EXPORT
#endif

namespace mte::enrolee {

struct PpskEnrolOptions {
  std::string mef_address;  // "host:port" or "[v6]:port"
  std::string mef_fqdn;     // sent as SNI; the KeID's domain
  std::string kpm_id;       // KpmID (psk_identity)
  std::string kpm_hex;      // Kpm in hex (16..64 octets); the caller should wipe its copy
  std::string state_dir;    // created if missing (mode 0700)
  std::string ca_file;      // optional: MEF trust anchors, recorded for later server-auth use
  int timeout_ms = 15000;
};

struct Enrolment {
  std::string ke_id;
  std::string expires_at;  // RFC 3339
  std::string km_id;       // empty if the MEF gave no MAF instruction
  std::string maf_fqdn;
  std::string maf_id;
  std::string tls_version;
  std::string cipher;
};

struct EnrolOutcome {
  bool ok = false;
  std::string error;  // one line, when !ok
  int rsc = 0;        // oneM2M Response Status Code from the MEF, when it answered
  Enrolment enrolment;
};

MTE_EXPORT EnrolOutcome EnrolWithPpsk(const PpskEnrolOptions& options);

struct MafCheckOptions {
  std::string maf_address;  // "host:port"
  std::string maf_fqdn;     // SNI
  std::string state_dir;    // as written by EnrolWithPpsk
  int timeout_ms = 15000;
};

struct MafCheckOutcome {
  bool ok = false;
  std::string error;
  std::string km_id;
  std::string tls_version;
  std::string cipher;
};

MTE_EXPORT MafCheckOutcome CheckMaf(const MafCheckOptions& options);

}  // namespace mte::enrolee
