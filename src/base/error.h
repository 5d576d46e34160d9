// Error values for all of OpenMTE (docs/conventions.md §1).
//
// An Error names who is at fault (ErrorKind), what went wrong (Errc) and carries a human-readable
// detail. `detail` never contains secret material; it is written for operators and logs. Whether
// and how much of it reaches a peer is decided at the edge (net/, proto/), not here.
// Thread-safety: plain values.
#pragma once

#include <string>
#include <string_view>

namespace mte {

// Whose fault an error is. Edges map this to TLS alerts, HTTP status / oneM2M RSC and exit codes.
enum class ErrorKind {
  kPeerProtocol,  // the peer sent bytes that violate the protocol (malformed, oversized, ...)
  kPeerAuth,      // the peer failed authentication or authorization
  kLocalUsage,    // our caller misused an API or gave bad configuration / input
  kIo,            // the operating system or the network failed
  kTimeout,       // a deadline expired
  kStorage,       // the database failed
  kCrypto,        // a cryptographic library call failed unexpectedly
  kInternal,      // a bug
};

// What went wrong; stable identifiers used in tests and in docs/errors.md.
enum class Errc {
  kMalformed,       // bytes or text could not be parsed
  kTooLarge,        // a size limit was exceeded
  kUnsupported,     // a version, algorithm or option we do not support
  kAuthFailed,      // authentication failed (all causes look the same to the peer)
  kForbidden,       // authenticated, but not allowed
  kNotClaimed,      // the device has not been claimed by a stakeholder (no proof of control)
  kNotFound,        // an identifier does not exist
  kConflict,        // the operation conflicts with the current state
  kExpired,         // a credential or token expired or is no longer valid (spent, revoked)
  kRateLimited,     // too many attempts
  kUnavailable,     // the peer could not serve the request now (it answered HTTP 5xx)
  kClosed,          // the peer closed the connection
  kDeadline,        // a deadline expired
  kIoFailed,        // a system call failed
  kDatabase,        // the database reported an error
  kCryptoFailed,    // OpenSSL (or libargon2) reported an error
  kConfig,          // configuration is missing or invalid
  kInvariant,       // an internal invariant did not hold
};

struct Error {
  ErrorKind kind;
  Errc code;
  std::string detail;
  // How long the peer asked us to wait before trying again (an HTTP Retry-After in seconds,
  // RFC 9110 §10.2.3); 0 when it did not say.
  int64_t retry_after_s = 0;
};

std::string_view ToString(ErrorKind kind);
std::string_view ToString(Errc code);

// "<code>: <detail>", for logs and CLI output.
std::string Describe(const Error& error);

}  // namespace mte
