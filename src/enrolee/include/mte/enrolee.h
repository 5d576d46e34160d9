// libmte-enrolee: the device side of OpenMTE enrolment, for AEs and CSEs to link against.
//
// EnrolDirect    Flow A (seed 8.y.3): a session to the MEF authenticated by the device's bootstrap
//                credential, either TLS-PSK with psk_identity = KpmID (PPSK-RSPF, TS-0003
//                §8.3.2.1) or mutual TLS with the device certificate (certificate RSPF,
//                §8.3.2.2); the Enrolment Exchange, the Enrolment Key from the session's exporter,
//                and Km for the MAF named in the MEF's instruction.
// EnrolWithToken Flow B steps 12-17 (seed 8.y.4): server-authenticated TLS to the MEF from a token
//                bundle, the token and the RSPFs the device holds credentials for, then the RSPF
//                the MEF selects inside that session.
// AwaitObf       Flow B steps 10-11 and on: waits for the OBF on a local TLS link authenticated
//                by the device's setup code, takes the bundle, enrols, reports the outcome back.
// CheckMaf       the MAF handshake (TLS-PSK, psk_identity = KmID, psk = Km) with stored state.
//
// Results are stored in a state directory (mode 0700, files 0600): enrolment.json (identifiers
// and expiry), ke and km (32 raw octets each).
// Blocking; no Boost, no OpenSSL types in this interface. Thread-safety: calls are independent.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#if defined(MTE_ENROLEE_BUILD)
#define MTE_EXPORT __attribute__((visibility("default")))
#else
#define MTE_EXPORT
#endif

namespace mte::enrolee {

// The device's pre-provisioned symmetric key (PPSK-RSPF).
struct PpskCredential {
  std::string kpm_id;   // KpmID (psk_identity)
  std::string kpm_hex;  // Kpm in hex (16..64 octets); the caller should wipe its copy
};

// The device's certificate (certificate RSPF): ECDSA P-256, issued by the maker's device CA (or
// self-signed and registered by its key).
struct CertCredential {
  std::string cert_file;  // PEM: the device certificate, then any intermediate CA certificates
  std::string key_file;   // PEM private key; refused when readable by group or others
};

// The bootstrap credentials a device holds; an empty kpm_id / cert_file means none of that kind.
// Flow B offers the MEF every RSPF the device holds credentials for (certificate first).
struct Credentials {
  PpskCredential ppsk;
  CertCredential cert;
  // Refuse a MEF whose certificate-authenticated session carries no stapled OCSP response
  // (RFC 6066 §8). A stapled response is always checked when present.
  bool require_staple = false;
};

struct Enrolment {
  std::string ke_id;
  std::string expires_at;  // RFC 3339
  std::string rspf;        // "PPSK", "CERT"
  int64_t enrolee_id = 0;
  std::string km_id;       // empty if the MEF gave no MAF instruction
  std::string maf_fqdn;
  std::string maf_id;
  std::string tls_version;        // of the session that produced Ke (Flow B: the inner one)
  std::string cipher;
  std::string outer_tls_version;  // Flow B only
};

struct EnrolOutcome {
  bool ok = false;
  // One line, when !ok: what the failure means in plain words, then the technical detail in
  // parentheses ("the MEF refused the pre-shared key: wrong Kpm or unknown KpmID (...)").
  std::string error;
  // The failure may pass by itself (no connection, a dropped connection, a timeout, HTTP 5xx or
  // 429): trying again later can succeed. Otherwise the MEF refused, and only a change helps.
  bool transient = false;
  // For a transient failure: the seconds the MEF asked to wait first (its Retry-After); 0 = not said.
  int64_t retry_after_s = 0;
  Enrolment enrolment;
};

using Progress = std::function<void(const std::string& line)>;

struct DirectEnrolOptions {
  std::string mef_address;  // "host:port" or "[v6]:port"
  std::string mef_fqdn;     // sent as SNI; the KeID's domain
  Credentials credentials;  // exactly one kind: a Kpm or a certificate
  std::string state_dir;    // created if missing
  // MEF trust anchors (PEM file): required with a certificate; with a Kpm only recorded for later
  // server-authenticated use.
  std::string ca_file;
  int timeout_ms = 15000;
};

MTE_EXPORT EnrolOutcome EnrolDirect(const DirectEnrolOptions& options);

struct TokenEnrolOptions {
  // {"token","mefUri","mefFqdn","mefTrustAnchors":[PEM],...}, or with "mefTrustAnchorPins"
  // (base64url SHA-256 of each anchor's SubjectPublicKeyInfo) instead of the anchors, or an
  // MTB1 QR payload (docs/qr.md)
  std::string bundle_json;
  Credentials credentials;
  std::string state_dir;
  int timeout_ms = 15000;
  Progress progress;  // optional
};

MTE_EXPORT EnrolOutcome EnrolWithToken(const TokenEnrolOptions& options);

struct AwaitObfOptions {
  std::string listen;       // "host:port" to listen on for the OBF
  std::string device_id;    // reported to the OBF
  std::string setup_code;   // printed on the device label
  Credentials credentials;
  std::string state_dir;
  int timeout_s = 0;        // give up after this long without an enrolment (0 = never)
  int max_link_failures = 5;  // give up after this many failed OBF handshakes (wrong codes)
  Progress progress;          // optional
  std::function<void(int port)> on_listening;  // optional: the bound port
};

MTE_EXPORT EnrolOutcome AwaitObf(const AwaitObfOptions& options);

struct MafCheckOptions {
  std::string maf_address;  // "host:port"
  std::string maf_fqdn;     // SNI
  std::string state_dir;    // as written by an enrolment
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

// A new random setup code for a device label (26 base32 characters).
MTE_EXPORT std::string NewSetupCode();

}  // namespace mte::enrolee
