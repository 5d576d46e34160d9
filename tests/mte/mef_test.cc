// The MEF's Enrolment Exchange (TS-0003 §8.3.2.1): every refusal answers with the right oneM2M
// RSC and HTTP status and changes nothing (enrolee row, outbox, audit); indications; re-enrolment
// rotates the Enrolment Key; a concurrent enrolment that won makes the loser fail with 4105.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "mef/mef.h"
#include "service_world.h"

namespace mte::testing {
namespace {

constexpr const char* kDeviceId = "urn:dev:acme:meter-0001";
constexpr const char* kKpmId = "kpm-meter-0001";

// The system RNG with a one-shot hook that runs before the next Fill. The MEF draws randomness
// (to seal Ke) after it has read the enrolee and before it commits, so the hook lets another
// writer commit in exactly that window.
class HookedRng final : public Rng {
 public:
  std::function<void()> before_next_fill;

  void Fill(std::span<uint8_t> out) override {
    if (before_next_fill) {
      auto hook = std::move(before_next_fill);
      before_next_fill = nullptr;
      hook();
    }
    inner_.Fill(out);
  }

 private:
  crypto::SystemRng inner_;
};

class MefTest : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = world_.ImportDevice(kDeviceId, kKpmId, "CLAIM-METER-0001");
    alice_ = world_.AddStakeholder("alice", "alice's long password");
    enrolee_ = world_.Claim(alice_, device_);
    ASSERT_GT(enrolee_.id, 0);
  }

  proto::HttpResponse Call(const proto::HttpRequest& request) {
    auto response = world_.CallMef(device_, request);
    EXPECT_TRUE(Ok(response));
    return response ? *response : proto::HttpResponse{0, {}, "", false};
  }

  proto::HttpResponse Enrol(const std::string& body = "{}") {
    return Call(JsonRequest("POST", "/enrolment", body));
  }

  // Sends `request`, expects the refusal (status, RSC) and no state change; returns the m2m:dbg.
  std::string ExpectRefused(const proto::HttpRequest& request, int status, int rsc) {
    StateSnapshot before = Snapshot(*world_.store, kDeviceId);
    proto::HttpResponse response = Call(request);
    EXPECT_EQ(response.status, status) << response.body;
    EXPECT_EQ(Header(response, "X-M2M-RSC"), std::to_string(rsc));
    EXPECT_EQ(Snapshot(*world_.store, kDeviceId), before);
    nlohmann::json body = JsonBody(response);
    EXPECT_TRUE(body.contains("m2m:dbg")) << response.body;
    return body.value("m2m:dbg", "");
  }

  ServiceWorld world_;
  TestDevice device_;
  store::StakeholderRecord alice_;
  store::EnroleeRecord enrolee_;
};

TEST_F(MefTest, UnclaimedDeviceIsRefusedForLackOfProofOfControl) {
  TestDevice other = world_.ImportDevice("urn:dev:acme:meter-0002", "kpm-meter-0002", "CODE-2");
  StateSnapshot before = Snapshot(*world_.store, other.device_id);
  auto response = world_.CallMef(other, JsonRequest("POST", "/enrolment", "{}"));
  ASSERT_TRUE(Ok(response));
  EXPECT_EQ(response->status, 403);
  EXPECT_EQ(Header(*response, "X-M2M-RSC"), "4103");
  EXPECT_NE(JsonBody(*response).value("m2m:dbg", "").find("proof of control"), std::string::npos)
      << response->body;
  EXPECT_EQ(Snapshot(*world_.store, other.device_id), before);
  EXPECT_FALSE(before.enrolee.exists);
}

TEST_F(MefTest, WrongContentTypeIs415) {
  ExpectRefused(JsonRequest("POST", "/enrolment", "{}", "text/plain"), 415, 4015);
  ExpectRefused(JsonRequest("POST", "/enrolment", "{}", ""), 415, 4015);
}

TEST_F(MefTest, MalformedJsonIs400) {
  ExpectRefused(JsonRequest("POST", "/enrolment", "{\"mafEnrolment\": tru"), 400, 4000);
  ExpectRefused(JsonRequest("POST", "/enrolment", ""), 400, 4000);
  ExpectRefused(JsonRequest("POST", "/enrolment", "[]"), 400, 4000);
}

TEST_F(MefTest, UnknownMemberIs400) {
  std::string dbg =
      ExpectRefused(JsonRequest("POST", "/enrolment", "{\"mafEnrolmnt\": true}"), 400, 4000);
  EXPECT_NE(dbg.find("mafEnrolmnt"), std::string::npos) << dbg;
}

TEST_F(MefTest, NonBooleanIndicationIs400) {
  ExpectRefused(JsonRequest("POST", "/enrolment", "{\"mafEnrolment\": \"yes\"}"), 400, 4000);
  ExpectRefused(JsonRequest("POST", "/enrolment", "{\"remoteManagement\": 1}"), 400, 4000);
  ExpectRefused(JsonRequest("POST", "/enrolment", "{\"certificateEnrolment\": null}"), 400, 4000);
}

TEST_F(MefTest, GetIs405WithAllowPost) {
  StateSnapshot before = Snapshot(*world_.store, kDeviceId);
  proto::HttpResponse response = Call(JsonRequest("GET", "/enrolment", "", ""));
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(Header(response, "X-M2M-RSC"), "4005");
  EXPECT_EQ(Header(response, "Allow"), "POST");
  EXPECT_EQ(Snapshot(*world_.store, kDeviceId), before);
}

TEST_F(MefTest, OtherPathIs404) {
  ExpectRefused(JsonRequest("POST", "/enrolments", "{}"), 404, 4004);
  ExpectRefused(JsonRequest("POST", "/", "{}"), 404, 4004);
}

TEST_F(MefTest, RequestIdentifierIsEchoed) {
  proto::HttpRequest request = JsonRequest("POST", "/nowhere", "{}");
  request.headers.Set("X-M2M-RI", "ri-42");
  EXPECT_EQ(Header(Call(request), "X-M2M-RI"), "ri-42");
}

TEST_F(MefTest, UnknownKpmIdFailsTheHandshake) {
  TestDevice ghost{"urn:dev:ghost", "kpm-ghost", crypto::RandomSecret(world_.rng, 32), ""};
  StateSnapshot before = Snapshot(*world_.store, kDeviceId);
  auto link = world_.MefLink(ghost.kpm_id, ghost.kpm);
  ASSERT_NE(link, nullptr);
  EXPECT_FALSE(link->Handshake());
  ASSERT_TRUE(link->server_error().has_value());
  EXPECT_EQ(link->server_error()->kind, ErrorKind::kPeerAuth);
  EXPECT_EQ(Snapshot(*world_.store, kDeviceId), before);
}

TEST_F(MefTest, WithoutMafEnrolmentEnrolsWithoutOutboxOrCredentialIds) {
  proto::HttpResponse response = Enrol("{\"mafEnrolment\": false}");
  EXPECT_EQ(response.status, 201) << response.body;
  EXPECT_EQ(Header(response, "X-M2M-RSC"), "2001");
  nlohmann::json body = JsonBody(response);
  EXPECT_EQ(body["credentialIds"], nlohmann::json::array()) << response.body;
  EXPECT_EQ(body["instructions"], nlohmann::json::array()) << response.body;

  EnroleeSnapshot after = SnapshotEnrolee(*world_.store, kDeviceId);
  EXPECT_EQ(after.state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(after.generation, 1);
  EXPECT_TRUE(after.credential_ids.empty());
  EXPECT_EQ(after.maf_delivery, store::DeliveryStatus::kNone);  // nothing will be delivered
  EXPECT_EQ(CountOutbox(*world_.store), 0);
}

TEST_F(MefTest, ReEnrolmentRotatesTheEnrolmentKey) {
  proto::HttpResponse first = Enrol();
  ASSERT_EQ(first.status, 201) << first.body;
  std::string first_ke_id = JsonBody(first).value("keId", "");
  world_.clock.Advance(60);

  proto::HttpResponse second = Enrol();
  ASSERT_EQ(second.status, 201) << second.body;
  std::string second_ke_id = JsonBody(second).value("keId", "");
  EXPECT_NE(second_ke_id, first_ke_id);

  EnroleeSnapshot after = SnapshotEnrolee(*world_.store, kDeviceId);
  EXPECT_EQ(after.state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(after.generation, 2);
  EXPECT_EQ(after.ke_id, second_ke_id);
  EXPECT_EQ(after.credential_ids, std::vector<std::string>{"11-" + second_ke_id});
  auto items = AllOutbox(*world_.store);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].generation, 1);
  EXPECT_EQ(items[1].generation, 2);
  EXPECT_EQ(items[1].enrolee_id, enrolee_.id);
  auto payload = world_.kek.Open(items[1].payload_sealed,
                                 "outbox|" + std::to_string(enrolee_.id) + "|2");
  ASSERT_TRUE(Ok(payload));
  EXPECT_EQ(nlohmann::json::parse(ExposeText(*payload)).value("kmId", ""), second_ke_id);

  auto audit = world_.store->ListAudit();
  ASSERT_TRUE(Ok(audit));
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().action, "enrolment.reenrol");
}

TEST_F(MefTest, ConcurrentEnrolmentWithStaleGenerationIs409) {
  HookedRng racing_rng;
  Mef racing_mef(*world_.store, world_.kek, racing_rng, world_.clock, world_.mef_settings);
  world_.AddRspfs(racing_mef);
  int commits = 0;
  racing_mef.set_on_commit([&] { ++commits; });

  StateSnapshot between;
  racing_rng.before_next_fill = [&] {
    // Another enrolment of the same device commits generation 1 first.
    store::EnrolmentCommit winner;
    winner.enrolee_id = enrolee_.id;
    winner.expected_generation = 0;
    winner.rspf = "PPSK";
    winner.ke_id = std::string("0123456789ABCDEF0123456789ABCDEF@") + kMefFqdn;
    auto ke_sealed = world_.kek.Seal(crypto::RandomSecret(world_.rng, 32),
                                     "ke|" + std::to_string(enrolee_.id) + "|1", world_.rng);
    ASSERT_TRUE(Ok(ke_sealed));
    winner.ke_sealed = *ke_sealed;
    winner.ke_expires_at = world_.clock.seconds() + 100;
    winner.credential_ids = {"11-" + winner.ke_id};
    winner.outbox.enrolee_id = enrolee_.id;
    winner.outbox.generation = 1;
    winner.outbox.target = "maf";
    auto payload = world_.kek.Seal(SecretFromText("{}"),
                                   "outbox|" + std::to_string(enrolee_.id) + "|1", world_.rng);
    ASSERT_TRUE(Ok(payload));
    winner.outbox.payload_sealed = *payload;
    winner.now = world_.clock.seconds();
    ASSERT_TRUE(Ok(world_.store->CommitEnrolment(winner)));
    between = Snapshot(*world_.store, kDeviceId);
  };

  auto link = MakePskLink(
      kMefFqdn, kKpmId, device_.kpm, PskProfile::kTls12PskCbc,
      [&](std::string_view id) { return racing_mef.LookupPsk(id); },
      [&](const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
        return racing_mef.Handle(request, tls);
      });
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(link->Handshake());
  auto response = link->Exchange(JsonRequest("POST", "/enrolment", "{}"));
  ASSERT_TRUE(Ok(response));
  EXPECT_EQ(response->status, 409) << response->body;
  EXPECT_EQ(Header(*response, "X-M2M-RSC"), "4105");
  EXPECT_TRUE(between.enrolee.exists);
  EXPECT_EQ(between.enrolee.generation, 1);
  EXPECT_EQ(Snapshot(*world_.store, kDeviceId), between);  // the loser changed nothing
  EXPECT_EQ(commits, 0);
}

// A fault on the MEF's side (here a MAF-ID the Km derivation refuses) is the server's error: the
// enrolee gets 500/5000 "internal error", not a 4xx that blames its request, and no detail of
// the server's configuration.
TEST_F(MefTest, ServerSideFaultIsReportedAsInternalError) {
  MefSettings broken = world_.mef_settings;
  broken.maf_id = "";
  Mef broken_mef(*world_.store, world_.kek, world_.rng, world_.clock, broken);
  world_.AddRspfs(broken_mef);
  auto link = MakePskLink(
      kMefFqdn, kKpmId, device_.kpm, PskProfile::kTls12PskCbc,
      [&](std::string_view id) { return broken_mef.LookupPsk(id); },
      [&](const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
        return broken_mef.Handle(request, tls);
      });
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(link->Handshake());
  StateSnapshot before = Snapshot(*world_.store, kDeviceId);
  auto response = link->Exchange(JsonRequest("POST", "/enrolment", "{}"));
  ASSERT_TRUE(Ok(response));
  EXPECT_EQ(response->status, 500) << response->body;
  EXPECT_EQ(Header(*response, "X-M2M-RSC"), "5000");
  EXPECT_EQ(JsonBody(*response).value("m2m:dbg", ""), "internal error");
  EXPECT_EQ(Snapshot(*world_.store, kDeviceId), before);
}

}  // namespace
}  // namespace mte::testing
