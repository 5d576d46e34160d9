// Revoking an enrolee (docs/protocol.md §12, POST /api/v1/enrolees/{id}/revoke): through the portal's REST API, the enrolee's tokens
// and Ke become invalid, the MAF retires its Km through the outbox (once, whatever the repeats),
// the MEF refuses the device, and a new Enrolment-Token re-arms the entry for a fresh enrolment.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "crypto/keys.h"
#include "crypto/password.h"
#include "mef/outbox.h"
#include "mte/enrolees.h"
#include "portal/portal.h"
#include "service_world.h"

namespace mte::testing {
namespace {

constexpr const char* kPassword = "correct horse battery staple";
constexpr const char* kDeviceId = "urn:dev:acme:sensor-0007";
constexpr const char* kKpmId = "kpm-0007@acme.example";
constexpr const char* kClaimCode = "R3V0-K3D0-0007";
constexpr const char* kPeer = "192.0.2.30";

class RevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = world_.ImportDevice(kDeviceId, kKpmId, kClaimCode);
    alice_ = world_.AddStakeholder("alice", kPassword);
    world_.AddStakeholder("mallory", kPassword);
    enrolee_ = world_.Claim(alice_, device_);
    ASSERT_GT(enrolee_.id, 0);
  }

  std::string Bearer(const std::string& name) {
    nlohmann::json login = {{"name", name}, {"password", kPassword}};
    auto response =
        world_.FlowBPortal().Handle(JsonRequest("POST", "/api/v1/login", login.dump()), kPeer);
    EXPECT_EQ(response.status, 200) << response.body;
    return JsonBody(response).value("token", "");
  }

  proto::HttpResponse Post(const std::string& who, const std::string& target) {
    proto::HttpRequest request = JsonRequest("POST", target, "{}");
    request.headers.Set("Authorization", "Bearer " + Bearer(who));
    return world_.FlowBPortal().Handle(request, kPeer);
  }

  std::string Path(const std::string& action) {
    return "/api/v1/enrolees/" + std::to_string(enrolee_.id) + "/" + action;
  }

  // A Flow A enrolment over (KpmID, Kpm); the Km the device derives itself, "" if refused.
  struct Enrolment {
    int status = 0;
    std::string body;
    std::string km_id;
    Bytes km;
  };
  Enrolment EnrolFlowA() {
    Enrolment out;
    auto link = world_.MefLink(kKpmId, device_.kpm, PskProfile::kTls12PskCbc);
    if (link == nullptr || !link->Handshake()) return out;
    auto exported = link->client().Export("EXPORTER-oneM2M-Bootstrap", 48);
    EXPECT_TRUE(Ok(exported));
    Bytes bytes = ExposeBytes(*exported);
    auto response = link->Exchange(JsonRequest("POST", "/enrolment", "{}"));
    EXPECT_TRUE(Ok(response));
    if (!response) return out;
    out.status = response->status;
    out.body = response->body;
    if (response->status == 201) {
      out.km_id = HexUpper(ByteSpan(bytes).first(16)) + "@" + kMefFqdn;
      out.km = IndependentKm(Bytes(bytes.begin() + 16, bytes.end()), kMafId);
    }
    return out;
  }

  // Delivers what the outbox holds to the in-memory MAF; the payloads delivered.
  std::vector<nlohmann::json> RunOutbox() {
    std::vector<nlohmann::json> delivered;
    OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                        [&](const SecretBytes& payload) -> Result<void> {
                          std::string text = ExposeText(payload);
                          delivered.push_back(nlohmann::json::parse(text, nullptr, false));
                          auto answer = world_.Deliver(text);
                          if (!answer) return Fail(answer.error());
                          if (answer->status / 100 != 2) {
                            return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                                        "MAF answered " + answer->body);
                          }
                          return {};
                        });
    worker.RunOnce();
    return delivered;
  }

  bool MafAccepts(const Enrolment& e) {
    auto link = world_.MafDeviceLink(e.km_id, SecretBytes(e.km, SecretAccess::ForCrypto()));
    return link != nullptr && link->Handshake();
  }

  store::EnroleeRecord Current() {
    auto e = world_.store->GetEnrolee(enrolee_.id);
    EXPECT_TRUE(Ok(e));
    return e && e->has_value() ? **e : store::EnroleeRecord{};
  }

  ServiceWorld world_;
  TestDevice device_;
  store::StakeholderRecord alice_;
  store::EnroleeRecord enrolee_;
};

TEST_F(RevocationTest, RevokedEnroleeLosesItsCredentialsAndANewTokenReArmsIt) {
  Enrolment first = EnrolFlowA();
  ASSERT_EQ(first.status, 201) << first.body;
  ASSERT_EQ(RunOutbox().size(), 1u);
  ASSERT_TRUE(MafAccepts(first));
  // An unused token of the enrolee, revoked with it.
  auto bundle = Post("alice", Path("tokens"));
  ASSERT_EQ(bundle.status, 201);
  const std::string token = JsonBody(bundle).value("token", "");

  auto revoked = Post("alice", Path("revoke"));
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_EQ(JsonBody(revoked).value("state", ""), "revoked");
  store::EnroleeRecord after = Current();
  EXPECT_EQ(after.state, store::EnroleeState::kRevoked);
  EXPECT_EQ(after.generation, 2);  // the revocation is a generation of its own
  EXPECT_TRUE(after.ke_sealed.empty());
  EXPECT_TRUE(after.credential_ids.empty());
  EXPECT_EQ(after.ke_expires_at, world_.clock.seconds());
  EXPECT_EQ(after.maf_delivery, store::DeliveryStatus::kPending);
  auto stored = world_.store->FindToken(crypto::Sha256(AsBytes(token)));
  ASSERT_TRUE(Ok(stored));
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->state, store::TokenState::kRevoked);

  // The MAF still accepts Km until the retirement arrives; then it refuses it in the handshake.
  EXPECT_TRUE(MafAccepts(first));
  std::vector<nlohmann::json> delivered = RunOutbox();
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0], (nlohmann::json{{"retire", true},
                                          {"enroleeId", enrolee_.id},
                                          {"generation", 2}}));
  EXPECT_FALSE(world_.maf.LookupKm(first.km_id).has_value());
  EXPECT_FALSE(MafAccepts(first));
  EXPECT_EQ(Current().maf_delivery, store::DeliveryStatus::kDelivered);
  EXPECT_TRUE(RunOutbox().empty());  // exactly once

  // The MEF refuses the revoked device, and records nothing.
  Enrolment refused = EnrolFlowA();
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("has been revoked by its stakeholder"), std::string::npos)
      << refused.body;
  EXPECT_EQ(Current().generation, 2);
  EXPECT_EQ(CountOutbox(*world_.store), 2);

  // Revoking again changes nothing.
  auto again = Post("alice", Path("revoke"));
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(Current().generation, 2);
  EXPECT_EQ(CountOutbox(*world_.store), 2);

  // A new token re-arms the entry; the device enrols afresh and the MAF takes the new Km.
  ASSERT_EQ(Post("alice", Path("tokens")).status, 201);
  EXPECT_EQ(Current().state, store::EnroleeState::kPending);
  Enrolment second = EnrolFlowA();
  ASSERT_EQ(second.status, 201) << second.body;
  EXPECT_EQ(Current().generation, 3);
  ASSERT_EQ(RunOutbox().size(), 1u);
  EXPECT_TRUE(MafAccepts(second));
  EXPECT_FALSE(MafAccepts(first));
}

TEST_F(RevocationTest, HealthReportsTheStoreAndHowFarTheOutboxIsBehind) {
  auto health = [&] {
    auto response =
        world_.FlowBPortal().Handle(JsonRequest("GET", "/api/v1/health", "", ""), kPeer);
    EXPECT_EQ(response.status, 200) << response.body;
    return JsonBody(response);
  };
  EXPECT_EQ(health(), (nlohmann::json{{"status", "ok"},
                                      {"store", "ok"},
                                      {"outbox", {{"pending", 0}, {"oldestPendingSeconds", 0}}}}));
  ASSERT_EQ(EnrolFlowA().status, 201);
  world_.clock.Advance(7);
  ASSERT_EQ(Post("alice", Path("revoke")).status, 200);
  world_.clock.Advance(5);
  // Two undelivered items: the Km (written 12 s ago) and the retirement (5 s ago).
  EXPECT_EQ(health()["outbox"], (nlohmann::json{{"pending", 2}, {"oldestPendingSeconds", 12}}));
  EXPECT_EQ(RunOutbox().size(), 2u);
  EXPECT_EQ(health()["outbox"], (nlohmann::json{{"pending", 0}, {"oldestPendingSeconds", 0}}));
}

TEST_F(RevocationTest, OnlyAnEntryThatIsNotEnrolledCanBeDeleted) {
  auto del = [&](const std::string& who) {
    proto::HttpRequest request =
        JsonRequest("DELETE", "/api/v1/enrolees/" + std::to_string(enrolee_.id), "", "");
    request.headers.Set("Authorization", "Bearer " + Bearer(who));
    return world_.FlowBPortal().Handle(request, kPeer);
  };
  ASSERT_EQ(EnrolFlowA().status, 201);
  proto::HttpResponse enrolled = del("alice");
  EXPECT_EQ(enrolled.status, 409);
  EXPECT_NE(enrolled.body.find("is enrolled; revoke it first"), std::string::npos) << enrolled.body;
  ASSERT_EQ(RunOutbox().size(), 1u);
  ASSERT_EQ(Post("alice", Path("revoke")).status, 200);
  // The retirement has not reached the MAF yet.
  proto::HttpResponse pending = del("alice");
  EXPECT_EQ(pending.status, 409);
  EXPECT_NE(pending.body.find("delivery to the MAF pending"), std::string::npos) << pending.body;
  ASSERT_EQ(RunOutbox().size(), 1u);
  EXPECT_EQ(del("mallory").status, 404);
  proto::HttpResponse deleted = del("alice");
  EXPECT_EQ(deleted.status, 200) << deleted.body;
  EXPECT_EQ(JsonBody(deleted).value("deleted", int64_t{0}), enrolee_.id);
  EXPECT_EQ(del("alice").status, 404);
  auto gone = world_.store->GetEnrolee(enrolee_.id);
  ASSERT_TRUE(Ok(gone));
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ(CountOutbox(*world_.store), 0);
  // The device can be claimed again; the new entry has a new id.
  store::EnroleeRecord again = world_.Claim(alice_, device_);
  EXPECT_GT(again.id, enrolee_.id);
  auto audit = world_.store->ListAudit();
  ASSERT_TRUE(Ok(audit));
  int deletes = 0;
  for (const auto& a : *audit) deletes += a.action == "enrolee.delete";
  EXPECT_EQ(deletes, 1);
}

TEST_F(RevocationTest, APasswordChangeEndsTheSessionsAndAnAccountWithEnroleesStays) {
  const std::string old_bearer = Bearer("alice");
  auto list = [&](const std::string& bearer) {
    proto::HttpRequest request = JsonRequest("GET", "/api/v1/enrolees", "", "");
    request.headers.Set("Authorization", "Bearer " + bearer);
    return world_.FlowBPortal().Handle(request, kPeer).status;
  };
  ASSERT_EQ(list(old_bearer), 200);
  const std::string new_password = "a brand new passphrase";
  auto hash = crypto::HashPassword(SecretString(new_password), world_.rng);
  ASSERT_TRUE(Ok(hash));
  ASSERT_TRUE(Ok(world_.store->SetStakeholderPassword("alice", *hash)));
  EXPECT_EQ(list(old_bearer), 401);
  nlohmann::json old_login = {{"name", "alice"}, {"password", kPassword}};
  EXPECT_EQ(world_.FlowBPortal()
                .Handle(JsonRequest("POST", "/api/v1/login", old_login.dump()), "192.0.2.99")
                .status,
            401);
  nlohmann::json login = {{"name", "alice"}, {"password", new_password}};
  EXPECT_EQ(world_.FlowBPortal()
                .Handle(JsonRequest("POST", "/api/v1/login", login.dump()), "192.0.2.99")
                .status,
            200);
  EXPECT_TRUE(testlib::IsError(world_.store->SetStakeholderPassword("nobody", *hash),
                               ErrorKind::kLocalUsage, Errc::kNotFound));
  // alice has an enrolee: she stays; mallory has none: she goes, with her sessions.
  EXPECT_TRUE(testlib::IsError(world_.store->RemoveStakeholder("alice"), ErrorKind::kLocalUsage,
                               Errc::kConflict, "has 1 enrolee(s)"));
  const std::string mallory = Bearer("mallory");
  ASSERT_TRUE(Ok(world_.store->RemoveStakeholder("mallory")));
  EXPECT_EQ(list(mallory), 401);
  auto gone = world_.store->FindStakeholder("mallory");
  ASSERT_TRUE(Ok(gone));
  EXPECT_FALSE(gone->has_value());
}

TEST_F(RevocationTest, AnotherStakeholdersEnroleeIsNotFoundAndUntouched) {
  Enrolment first = EnrolFlowA();
  ASSERT_EQ(first.status, 201) << first.body;
  auto response = Post("mallory", Path("revoke"));
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(Current().state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(Post("alice", "/api/v1/enrolees/999999/revoke").status, 404);
  EXPECT_EQ(Post("alice", "/api/v1/enrolees/x/revoke").status, 404);
  proto::HttpRequest get = JsonRequest("GET", Path("revoke"), "");
  get.headers.Set("Authorization", "Bearer " + Bearer("alice"));
  EXPECT_EQ(world_.FlowBPortal().Handle(get, kPeer).status, 405);
  EXPECT_EQ(Current().state, store::EnroleeState::kEnrolled);
}

TEST_F(RevocationTest, NeverEnrolledEnroleeIsRevokedWithoutAMafRetirement) {
  auto response = Post("alice", Path("revoke"));
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(Current().state, store::EnroleeState::kRevoked);
  EXPECT_EQ(CountOutbox(*world_.store), 0);
  EXPECT_EQ(EnrolFlowA().status, 403);
  auto audit = world_.store->ListAudit();
  ASSERT_TRUE(Ok(audit));
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->back().action, "enrolee.revoke");
  EXPECT_EQ(audit->back().actor, "stakeholder:alice");
  EXPECT_NE(audit->back().detail.find("nothing at the MAF"), std::string::npos);
}

TEST_F(RevocationTest, ARevocationAgainstAMovedGenerationIsRefusedAndRetried) {
  // The store refuses a revocation whose generation moved; RevokeEnrolee reads again.
  Enrolment first = EnrolFlowA();
  ASSERT_EQ(first.status, 201);
  store::OutboxItem stale = *MafRetirement(world_.kek, world_.rng, enrolee_.id, 1, 0);
  EXPECT_TRUE(testlib::IsError(world_.store->RevokeEnrolee(enrolee_.id, 0, stale, world_.clock.seconds()),
                      ErrorKind::kLocalUsage, Errc::kConflict));
  EXPECT_EQ(Current().state, store::EnroleeState::kEnrolled);
  auto revoked = RevokeEnrolee(*world_.store, world_.kek, world_.rng, enrolee_.id,
                               world_.clock.seconds(), "admin", "");
  ASSERT_TRUE(Ok(revoked));
  EXPECT_TRUE(revoked->revoked_now);
  EXPECT_EQ(revoked->enrolee.generation, 2);
}

}  // namespace
}  // namespace mte::testing
