#include "proto/onem2m.h"

#include <set>
#include <vector>

#include <nlohmann/json.hpp>
#include <strings.h>

namespace mte::proto {

int HttpStatusFor(Rsc rsc) {
  switch (rsc) {
    case Rsc::kOk: return 200;
    case Rsc::kCreated: return 201;
    case Rsc::kBadRequest: return 400;
    case Rsc::kNotFound: return 404;
    case Rsc::kOperationNotAllowed: return 405;
    case Rsc::kRequestTimeout: return 504;
    case Rsc::kUnsupportedMediaType: return 415;
    case Rsc::kOriginatorHasNoPrivilege: return 403;
    case Rsc::kConflict: return 409;
    case Rsc::kOriginatorNotAuthenticated: return 403;
    case Rsc::kSecurityAssociationRequired: return 403;
    case Rsc::kInternalServerError: return 500;
    case Rsc::kNotImplemented: return 501;
    case Rsc::kTargetNotReachable: return 404;
  }
  return 500;
}

std::string_view RscName(Rsc rsc) {
  switch (rsc) {
    case Rsc::kOk: return "OK";
    case Rsc::kCreated: return "CREATED";
    case Rsc::kBadRequest: return "BAD_REQUEST";
    case Rsc::kNotFound: return "NOT_FOUND";
    case Rsc::kOperationNotAllowed: return "OPERATION_NOT_ALLOWED";
    case Rsc::kRequestTimeout: return "REQUEST_TIMEOUT";
    case Rsc::kUnsupportedMediaType: return "UNSUPPORTED_MEDIA_TYPE";
    case Rsc::kOriginatorHasNoPrivilege: return "ORIGINATOR_HAS_NO_PRIVILEGE";
    case Rsc::kConflict: return "CONFLICT";
    case Rsc::kOriginatorNotAuthenticated: return "ORIGINATOR_NOT_AUTHENTICATED";
    case Rsc::kSecurityAssociationRequired: return "SECURITY_ASSOCIATION_REQUIRED";
    case Rsc::kInternalServerError: return "INTERNAL_SERVER_ERROR";
    case Rsc::kNotImplemented: return "NOT_IMPLEMENTED";
    case Rsc::kTargetNotReachable: return "TARGET_NOT_REACHABLE";
  }
  return "INTERNAL_SERVER_ERROR";
}

Rsc RscFor(const Error& error) {
  switch (error.code) {
    case Errc::kMalformed:
    case Errc::kTooLarge:
      return Rsc::kBadRequest;
    case Errc::kUnsupported: return Rsc::kNotImplemented;
    case Errc::kAuthFailed: return Rsc::kOriginatorNotAuthenticated;
    case Errc::kForbidden:
    case Errc::kNotClaimed:
    case Errc::kExpired:
    case Errc::kRateLimited:
      return Rsc::kOriginatorHasNoPrivilege;
    case Errc::kNotFound: return Rsc::kNotFound;
    case Errc::kConflict: return Rsc::kConflict;
    case Errc::kDeadline: return Rsc::kRequestTimeout;
    case Errc::kUnavailable:
    case Errc::kClosed:
    case Errc::kIoFailed:
    case Errc::kDatabase:
    case Errc::kCryptoFailed:
    case Errc::kConfig:
    case Errc::kInvariant:
      return Rsc::kInternalServerError;
  }
  return Rsc::kInternalServerError;
}

HttpResponse MakeResponse(Rsc rsc, std::string json_body, std::string_view request_id) {
  HttpResponse response;
  response.status = HttpStatusFor(rsc);
  response.reason_phrase = false;  // TS-0009 §6.3.3
  response.headers.Set("Content-Type", "application/json");
  response.headers.Set(kHeaderRsc, std::to_string(static_cast<int>(rsc)));
  if (!request_id.empty()) response.headers.Set(kHeaderRequestId, request_id);
  response.headers.Set(kHeaderRvi, kReleaseVersion);
  response.body = std::move(json_body);
  return response;
}

HttpResponse MakeErrorResponse(Rsc rsc, std::string_view message, std::string_view request_id) {
  nlohmann::json body = {{"m2m:dbg", std::string(message)}};
  // A message may quote the peer (a member name, a transfer coding), cut to a length that can
  // split a UTF-8 sequence: such bytes become U+FFFD instead of making dump() throw.
  return MakeResponse(rsc, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                      request_id);
}

std::string RequestIdOf(const HttpRequest& request) {
  auto ri = request.headers.Get(kHeaderRequestId);
  if (!ri || ri->empty() || ri->size() > kMaxRequestIdLength) return {};
  for (char c : *ri) {
    if (c < 0x21 || c > 0x7e) return {};
  }
  return std::string(*ri);
}

nlohmann::json ParseJsonStrict(std::string_view text, std::string* duplicate) {
  using Event = nlohmann::json::parse_event_t;
  std::vector<std::set<std::string>> names;  // of each object being parsed, innermost last
  std::string repeated;
  auto callback = [&](int /*depth*/, Event event, nlohmann::json& parsed) {
    if (event == Event::object_start) {
      names.emplace_back();
    } else if (event == Event::object_end) {
      if (!names.empty()) names.pop_back();
    } else if (event == Event::key && !names.empty() && repeated.empty()) {
      if (!names.back().insert(parsed.get<std::string>()).second) {
        repeated = parsed.get<std::string>();
      }
    }
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(text, callback, /*allow_exceptions=*/false);
  if (duplicate != nullptr) *duplicate = j.is_discarded() ? std::string() : repeated;
  if (!repeated.empty()) return nlohmann::json(nlohmann::json::value_t::discarded);
  return j;
}

bool IsJsonContentType(const HttpRequest& request) {
  auto ct = request.headers.Get("Content-Type");
  if (!ct) return false;
  std::string_view v = *ct;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  return strncasecmp(v.data(), "application/json", v.size()) == 0 && v.size() == 16
             ? true
             : (v.size() == 31 && strncasecmp(v.data(), "application/vnd.onem2m-res+json", 31) == 0);
}

std::optional<int64_t> JsonInteger(const nlohmann::json& value, int64_t lo, int64_t hi) {
  if (value.is_number_unsigned()) {
    uint64_t u = value.get<uint64_t>();
    if (hi < 0 || u > static_cast<uint64_t>(hi) || static_cast<int64_t>(u) < lo) {
      return std::nullopt;
    }
    return static_cast<int64_t>(u);
  }
  if (!value.is_number_integer()) return std::nullopt;
  int64_t v = value.get<int64_t>();
  if (v < lo || v > hi) return std::nullopt;
  return v;
}

}  // namespace mte::proto
