// oneM2M HTTP binding facts (TS-0009 V3.9.1, TS-0004 V3.32.0 §6.6.3) used on every interface:
// the X-M2M-* headers, Response Status Codes and their HTTP status mapping, and the error body.
// Thread-safety: free functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "proto/http.h"

namespace mte::proto {

inline constexpr std::string_view kHeaderOrigin = "X-M2M-Origin";   // From
inline constexpr std::string_view kHeaderRequestId = "X-M2M-RI";    // Request Identifier
inline constexpr std::string_view kHeaderRsc = "X-M2M-RSC";         // Response Status Code
inline constexpr std::string_view kHeaderRvi = "X-M2M-RVI";         // Release Version Indicator
inline constexpr std::string_view kReleaseVersion = "3";
inline constexpr size_t kMaxRequestIdLength = 128;

// TS-0004 §6.6.3 Response Status Codes used by OpenMTE.
enum class Rsc {
  kOk = 2000,
  kCreated = 2001,
  kBadRequest = 4000,
  kNotFound = 4004,
  kOperationNotAllowed = 4005,
  kRequestTimeout = 4008,
  kUnsupportedMediaType = 4015,
  kOriginatorHasNoPrivilege = 4103,
  kConflict = 4105,
  kOriginatorNotAuthenticated = 4106,
  kSecurityAssociationRequired = 4107,
  kInternalServerError = 5000,
  kNotImplemented = 5001,
  kTargetNotReachable = 5103,
};

// TS-0009 Table 6.3.2-1.
int HttpStatusFor(Rsc rsc);
std::string_view RscName(Rsc rsc);

// The RSC an Error is reported with at an edge.
Rsc RscFor(const Error& error);

// A oneM2M response: status from the RSC, X-M2M-RSC, X-M2M-RI echoed (if given), X-M2M-RVI,
// Content-Type application/json.
HttpResponse MakeResponse(Rsc rsc, std::string json_body, std::string_view request_id);
// An error response whose body is {"m2m:dbg": message} (TS-0004 debugInfo).
HttpResponse MakeErrorResponse(Rsc rsc, std::string_view message, std::string_view request_id);

// The request identifier to echo: the request's X-M2M-RI if it is printable ASCII of at most
// kMaxRequestIdLength characters, else "".
std::string RequestIdOf(const HttpRequest& request);

// True if Content-Type is application/json or application/vnd.onem2m-res+json (parameters such
// as "; ty=" or "; charset=utf-8" allowed).
bool IsJsonContentType(const HttpRequest& request);

// Parses a JSON text like nlohmann::json::parse, but an object that names a member twice is
// refused as well: RFC 8259 §4 leaves duplicates to the implementation, and a last-wins parser
// lets a second member override what another component read from the first. Returns a discarded
// value for either; *duplicate (if given) is then the repeated name, or empty for invalid JSON.
nlohmann::json ParseJsonStrict(std::string_view text, std::string* duplicate = nullptr);

// The value of an integer member in [lo, hi], or nullopt: a number with a fraction or an
// exponent (1.5, 1e3), one outside the range (also one beyond int64, which the parser keeps as
// unsigned or as a double) and any other type are all refused; nothing is rounded or wrapped.
std::optional<int64_t> JsonInteger(const nlohmann::json& value, int64_t lo, int64_t hi);

}  // namespace mte::proto
