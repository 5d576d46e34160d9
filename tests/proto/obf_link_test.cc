// The OBF's reading of the device's answer to POST /obf/v1/bundle (docs/protocol.md §9.2): the
// answers the device sends, and answers of any shape from a device that is not ours.
#include "proto/obf_link.h"

#include <gtest/gtest.h>

#include <string>

namespace mte::proto {
namespace {

HttpResponse Answer(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.headers.Set("Content-Type", "application/json");
  response.body = std::move(body);
  return response;
}

TEST(ObfOutcomeTest, ReadsAnEnrolment) {
  auto outcome = ParseObfOutcome(Answer(
      200, R"({"deviceId":"sensor-0001","enroleeId":3,"expiresAt":"2027-11-28T08:45:53Z",)"
           R"("keId":"5CA7@mef.example.com","kmId":"5CA7@mef.example.com","outcome":"enrolled",)"
           R"("rspf":"PPSK"})"));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_TRUE(outcome->enrolled);
  EXPECT_EQ(outcome->device_id, "sensor-0001");
  EXPECT_EQ(outcome->ke_id, "5CA7@mef.example.com");
  EXPECT_EQ(outcome->rspf, "PPSK");
  EXPECT_EQ(outcome->enrolee_id, 3);
}

TEST(ObfOutcomeTest, ReadsAFailure) {
  auto outcome = ParseObfOutcome(Answer(
      502, R"({"deviceId":"sensor-0001","error":"MEF answered HTTP 403","outcome":"failed"})"));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(outcome->enrolled);
  EXPECT_EQ(outcome->error, "MEF answered HTTP 403");
}

TEST(ObfOutcomeTest, EnrolledOnlyWith200) {
  auto outcome = ParseObfOutcome(Answer(502, R"({"outcome":"enrolled"})"));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(outcome->enrolled);
  EXPECT_EQ(outcome->error, "unknown error");
}

TEST(ObfOutcomeTest, RefusesABodyThatIsNotAnObject) {
  for (const char* body : {"", "enrolled", "[]", "null", "{"}) {
    auto outcome = ParseObfOutcome(Answer(200, body));
    ASSERT_FALSE(outcome.has_value()) << body;
    EXPECT_EQ(outcome.error().kind, ErrorKind::kPeerProtocol);
  }
}

// Members of another type are the device's mistake; they read as absent instead of throwing out
// of the OBF (found by fuzz/obf_link_fuzz.cc: {"deviceId":3} ended mte-obf with an uncaught
// nlohmann::json::type_error).
TEST(ObfOutcomeTest, MembersOfAnotherTypeReadAsAbsent) {
  auto enrolled = ParseObfOutcome(
      Answer(200, R"({"outcome":"enrolled","deviceId":3,"keId":[],"rspf":null,"enroleeId":"3"})"));
  ASSERT_TRUE(enrolled.has_value());
  EXPECT_TRUE(enrolled->enrolled);
  EXPECT_EQ(enrolled->device_id, "?");
  EXPECT_EQ(enrolled->ke_id, "?");
  EXPECT_EQ(enrolled->rspf, "?");
  EXPECT_EQ(enrolled->enrolee_id, 0);

  auto failed = ParseObfOutcome(Answer(502, R"({"outcome":1,"error":{"x":1}})"));
  ASSERT_TRUE(failed.has_value());
  EXPECT_FALSE(failed->enrolled);
  EXPECT_EQ(failed->error, "unknown error");
}

// An enroleeId that no integer holds is absent too, not converted (1e300 overflowed int64).
TEST(ObfOutcomeTest, AnEnroleeIdOutOfRangeReadsAsAbsent) {
  for (const char* id : {"1e300", "-1", "2.5", "18446744073709551615"}) {
    auto outcome = ParseObfOutcome(
        Answer(200, std::string(R"({"outcome":"enrolled","enroleeId":)") + id + "}"));
    ASSERT_TRUE(outcome.has_value()) << id;
    EXPECT_EQ(outcome->enrolee_id, 0) << id;
  }
}

}  // namespace
}  // namespace mte::proto
