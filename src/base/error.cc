#include "base/error.h"

namespace mte {

std::string_view ToString(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kPeerProtocol: return "peer-protocol";
    case ErrorKind::kPeerAuth: return "peer-auth";
    case ErrorKind::kLocalUsage: return "local-usage";
    case ErrorKind::kIo: return "io";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kStorage: return "storage";
    case ErrorKind::kCrypto: return "crypto";
    case ErrorKind::kInternal: return "internal";
  }
  return "unknown";
}

std::string_view ToString(Errc code) {
  switch (code) {
    case Errc::kMalformed: return "malformed";
    case Errc::kTooLarge: return "too-large";
    case Errc::kUnsupported: return "unsupported";
    case Errc::kAuthFailed: return "auth-failed";
    case Errc::kForbidden: return "forbidden";
    case Errc::kNotClaimed: return "not-claimed";
    case Errc::kNotFound: return "not-found";
    case Errc::kConflict: return "conflict";
    case Errc::kExpired: return "expired";
    case Errc::kRateLimited: return "rate-limited";
    case Errc::kUnavailable: return "unavailable";
    case Errc::kClosed: return "closed";
    case Errc::kDeadline: return "deadline";
    case Errc::kIoFailed: return "io-failed";
    case Errc::kDatabase: return "database";
    case Errc::kCryptoFailed: return "crypto-failed";
    case Errc::kConfig: return "config";
    case Errc::kInvariant: return "invariant";
  }
  return "unknown";
}

std::string Describe(const Error& error) {
  std::string out(ToString(error.code));
  if (!error.detail.empty()) {
    out += ": ";
    out += error.detail;
  }
  return out;
}

}  // namespace mte
