// oneM2M HTTP binding helpers: the RSC -> HTTP status mapping of TS-0009 Table 6.3.2-1, the
// X-M2M-* headers and debugInfo body of responses, request-identifier echoing and the JSON
// media types.
#include "proto/onem2m.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace mte::proto {
namespace {

HttpRequest WithHeader(std::string_view name, std::string_view value) {
  HttpRequest r;
  r.method = "POST";
  r.target = "/";
  r.headers.Add(name, value);
  return r;
}

TEST(OneM2mTest, HttpStatusForFollowsTs0009Table) {
  EXPECT_EQ(HttpStatusFor(Rsc::kOk), 200);                          // 2000
  EXPECT_EQ(HttpStatusFor(Rsc::kCreated), 201);                     // 2001
  EXPECT_EQ(HttpStatusFor(Rsc::kBadRequest), 400);                  // 4000
  EXPECT_EQ(HttpStatusFor(Rsc::kNotFound), 404);                    // 4004
  EXPECT_EQ(HttpStatusFor(Rsc::kOperationNotAllowed), 405);         // 4005
  EXPECT_EQ(HttpStatusFor(Rsc::kUnsupportedMediaType), 415);        // 4015
  EXPECT_EQ(HttpStatusFor(Rsc::kOriginatorHasNoPrivilege), 403);    // 4103
  EXPECT_EQ(HttpStatusFor(Rsc::kConflict), 409);                    // 4105
  EXPECT_EQ(HttpStatusFor(Rsc::kOriginatorNotAuthenticated), 403);  // 4106
  EXPECT_EQ(HttpStatusFor(Rsc::kInternalServerError), 500);         // 5000
  EXPECT_EQ(HttpStatusFor(Rsc::kNotImplemented), 501);              // 5001
}

TEST(OneM2mTest, RscNumericValues) {
  // TS-0004 §6.6.3.
  EXPECT_EQ(static_cast<int>(Rsc::kCreated), 2001);
  EXPECT_EQ(static_cast<int>(Rsc::kBadRequest), 4000);
  EXPECT_EQ(static_cast<int>(Rsc::kOriginatorHasNoPrivilege), 4103);
  EXPECT_EQ(static_cast<int>(Rsc::kConflict), 4105);
  EXPECT_EQ(static_cast<int>(Rsc::kOriginatorNotAuthenticated), 4106);
  EXPECT_EQ(static_cast<int>(Rsc::kUnsupportedMediaType), 4015);
}

TEST(OneM2mTest, RscForErrors) {
  EXPECT_EQ(RscFor(Error{ErrorKind::kPeerProtocol, Errc::kMalformed, ""}), Rsc::kBadRequest);
  EXPECT_EQ(RscFor(Error{ErrorKind::kPeerProtocol, Errc::kTooLarge, ""}), Rsc::kBadRequest);
  EXPECT_EQ(RscFor(Error{ErrorKind::kPeerAuth, Errc::kAuthFailed, ""}),
            Rsc::kOriginatorNotAuthenticated);
  EXPECT_EQ(RscFor(Error{ErrorKind::kPeerAuth, Errc::kForbidden, ""}),
            Rsc::kOriginatorHasNoPrivilege);
  EXPECT_EQ(RscFor(Error{ErrorKind::kLocalUsage, Errc::kNotFound, ""}), Rsc::kNotFound);
  EXPECT_EQ(RscFor(Error{ErrorKind::kLocalUsage, Errc::kConflict, ""}), Rsc::kConflict);
  EXPECT_EQ(RscFor(Error{ErrorKind::kStorage, Errc::kDatabase, ""}), Rsc::kInternalServerError);
}

TEST(OneM2mTest, MakeErrorResponse) {
  HttpResponse r = MakeErrorResponse(Rsc::kBadRequest, "bad \"field\"\n\x01 <x>", "req-42");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.headers.Get("X-M2M-RSC"), "4000");
  EXPECT_EQ(r.headers.Get("X-M2M-RI"), "req-42");
  EXPECT_EQ(r.headers.Get("X-M2M-RVI"), "3");
  EXPECT_EQ(r.headers.Get("Content-Type"), "application/json");
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(body.is_discarded()) << r.body;
  ASSERT_TRUE(body.is_object());
  EXPECT_EQ(body.size(), 1u);
  ASSERT_TRUE(body.contains("m2m:dbg"));
  EXPECT_EQ(body["m2m:dbg"], "bad \"field\"\n\x01 <x>");
}

TEST(OneM2mTest, MakeErrorResponseWithoutRequestId) {
  HttpResponse r = MakeErrorResponse(Rsc::kOriginatorNotAuthenticated, "no", "");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.headers.Get("X-M2M-RSC"), "4106");
  EXPECT_EQ(r.headers.Get("X-M2M-RI"), std::nullopt);
  EXPECT_EQ(r.headers.Get("X-M2M-RVI"), "3");
  EXPECT_EQ(r.body, R"({"m2m:dbg":"no"})");
}

TEST(OneM2mTest, MakeResponse) {
  HttpResponse r = MakeResponse(Rsc::kCreated, R"({"m2m:ae":{}})", "abc");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.headers.Get("X-M2M-RSC"), "2001");
  EXPECT_EQ(r.headers.Get("X-M2M-RI"), "abc");
  EXPECT_EQ(r.body, R"({"m2m:ae":{}})");
  EXPECT_TRUE(r.keep_alive);
}

TEST(OneM2mTest, RequestIdOf) {
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", "req-0001")), "req-0001");
  EXPECT_EQ(RequestIdOf(WithHeader("x-m2m-ri", "a/b:c")), "a/b:c");
  EXPECT_EQ(RequestIdOf(HttpRequest{}), "");
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", "")), "");
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", "a\x01z")), "");
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", "a\tb")), "");
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", "a\x7f")), "");
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", "caf\xc3\xa9")), "");
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", "a\r\nX-Evil: 1")), "");
  const std::string max(128, 'r');
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", max)), max);
  EXPECT_EQ(RequestIdOf(WithHeader("X-M2M-RI", std::string(129, 'r'))), "");
}

TEST(OneM2mTest, ParseJsonStrictRefusesDuplicateMembersAtAnyDepth) {
  std::string duplicate;
  EXPECT_TRUE(ParseJsonStrict(R"({"a":1,"a":2})", &duplicate).is_discarded());
  EXPECT_EQ(duplicate, "a");
  EXPECT_TRUE(ParseJsonStrict(R"({"x":{"b":true,"c":1,"b":false}})", &duplicate).is_discarded());
  EXPECT_EQ(duplicate, "b");
  EXPECT_TRUE(ParseJsonStrict(R"([{"k":1},{"k":2,"k":3}])", &duplicate).is_discarded());
  EXPECT_EQ(duplicate, "k");
  // The same name in sibling or nested objects is no duplicate.
  auto ok = ParseJsonStrict(R"({"a":{"a":1},"b":[{"a":2},{"a":3}]})", &duplicate);
  ASSERT_FALSE(ok.is_discarded());
  EXPECT_EQ(duplicate, "");
  EXPECT_EQ(ok["b"][1]["a"], 3);
  EXPECT_TRUE(ParseJsonStrict("{\"a\":", &duplicate).is_discarded());
  EXPECT_EQ(duplicate, "") << "invalid JSON is no duplicate";
  EXPECT_TRUE(ParseJsonStrict(R"({"a":1,"\u0061":2})").is_discarded()) << "escapes are decoded";
}

TEST(OneM2mTest, IsJsonContentType) {
  EXPECT_TRUE(IsJsonContentType(WithHeader("Content-Type", "application/json")));
  EXPECT_TRUE(IsJsonContentType(WithHeader("Content-Type", "application/json; charset=utf-8")));
  EXPECT_TRUE(IsJsonContentType(WithHeader("content-type", "Application/JSON")));
  EXPECT_TRUE(
      IsJsonContentType(WithHeader("Content-Type", "application/vnd.onem2m-res+json; ty=4")));
  EXPECT_TRUE(IsJsonContentType(WithHeader("Content-Type", "application/vnd.onem2m-res+json")));
  EXPECT_FALSE(IsJsonContentType(WithHeader("Content-Type", "text/plain")));
  EXPECT_FALSE(IsJsonContentType(WithHeader("Content-Type", "application/jsonx")));
  EXPECT_FALSE(IsJsonContentType(WithHeader("Content-Type", "application/js")));
  EXPECT_FALSE(IsJsonContentType(WithHeader("Content-Type", "")));
  EXPECT_FALSE(IsJsonContentType(WithHeader("Content-Type", "application/vnd.onem2m-res+xml")));
  EXPECT_FALSE(
      IsJsonContentType(WithHeader("Content-Type", "application/xml; x=application/json")));
  EXPECT_FALSE(IsJsonContentType(HttpRequest{}));
}

TEST(OneM2mTest, JsonIntegerTakesOnlyIntegersInRange) {
  auto at = [](const char* text) { return JsonInteger(nlohmann::json::parse(text), 1, 100); };
  EXPECT_EQ(at("1"), 1);
  EXPECT_EQ(at("100"), 100);
  EXPECT_EQ(at("0"), std::nullopt);
  EXPECT_EQ(at("101"), std::nullopt);
  EXPECT_EQ(at("-5"), std::nullopt);
  EXPECT_EQ(at("1.5"), std::nullopt);
  EXPECT_EQ(at("1.0"), std::nullopt);
  EXPECT_EQ(at("1e1"), std::nullopt);
  EXPECT_EQ(at("\"7\""), std::nullopt);
  EXPECT_EQ(at("true"), std::nullopt);
  EXPECT_EQ(at("null"), std::nullopt);
  auto wide = [](const char* text) {
    return JsonInteger(nlohmann::json::parse(text), INT64_MIN, INT64_MAX);
  };
  EXPECT_EQ(wide("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(wide("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(wide("9223372036854775808"), std::nullopt);   // 2^63: unsigned in the parser
  EXPECT_EQ(wide("18446744073709551616"), std::nullopt);  // 2^64: a double in the parser
  EXPECT_EQ(wide("1180591620717411303424"), std::nullopt);  // 2^70
}

// A message that quotes the peer may hold bytes that are not UTF-8, or a sequence cut short by a
// length limit: the body is still valid JSON (found by fuzz/mef_json_fuzz.cc: a 64-octet cut of
// an unknown member's name made json::dump throw out of Mef::Handle).
TEST(OneM2mTest, ErrorBodiesReplaceBytesThatAreNotUtf8) {
  HttpResponse r = MakeErrorResponse(Rsc::kBadRequest, "unknown member 'caf\xc3' \xff", "");
  auto body = nlohmann::json::parse(r.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << r.body;
  EXPECT_EQ(body["m2m:dbg"], "unknown member 'caf\xef\xbf\xbd' \xef\xbf\xbd");
}

}  // namespace
}  // namespace mte::proto
