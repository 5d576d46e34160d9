// The Enrolment Portal REST API (seed 8.y.3 steps 1-4, docs/conventions.md §3): login and lockout, bearer
// sessions, proof of control, tenant isolation, strict input handling and response headers.
#include "portal/portal.h"

#include <gtest/gtest.h>

#include <string>

#include "service_world.h"

namespace mte::testing {
namespace {

constexpr const char* kAlicePassword = "alice: a long enough passphrase";
constexpr const char* kBobPassword = "bob: another long passphrase";
constexpr const char* kDevice1 = "urn:dev:acme:lamp-0001";
constexpr const char* kCode1 = "LAMP-0001-CODE";
constexpr const char* kDevice2 = "urn:dev:acme:lamp-0002";
constexpr const char* kCode2 = "LAMP-0002-CODE";
constexpr const char* kPeer = "198.51.100.7";
constexpr const char* kOtherPeer = "198.51.100.8";

class PortalTest : public ::testing::Test {
 protected:
  static constexpr int64_t kSession = 3600;
  static constexpr int64_t kLockout = 300;

  PortalTest() : portal_(*world_.store, world_.kek, world_.rng, world_.clock, Settings()) {}

  static PortalSettings Settings() {
    PortalSettings settings;
    settings.session_seconds = kSession;
    settings.max_failures = 5;
    settings.lockout_seconds = kLockout;
    return settings;
  }

  void SetUp() override {
    world_.ImportDevice(kDevice1, "kpm-lamp-0001", kCode1);
    world_.ImportDevice(kDevice2, "kpm-lamp-0002", kCode2);
    world_.AddStakeholder("alice", kAlicePassword);
    world_.AddStakeholder("bob", kBobPassword);
  }

  proto::HttpResponse Handle(const proto::HttpRequest& request, const std::string& peer = kPeer) {
    proto::HttpResponse response = portal_.Handle(request, peer);
    // Every portal response, errors included, carries the security headers.
    EXPECT_EQ(Header(response, "Cache-Control"), "no-store") << request.target;
    std::string csp = Header(response, "Content-Security-Policy");
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
    EXPECT_EQ(Header(response, "X-Content-Type-Options"), "nosniff");
    return response;
  }

  proto::HttpResponse Login(const std::string& name, const std::string& password,
                            const std::string& peer = kPeer) {
    nlohmann::json body = {{"name", name}, {"password", password}};
    return Handle(JsonRequest("POST", "/api/v1/login", body.dump()), peer);
  }

  std::string TokenFor(const std::string& name, const std::string& password) {
    proto::HttpResponse response = Login(name, password);
    EXPECT_EQ(response.status, 200) << response.body;
    return JsonBody(response).value("token", "");
  }

  static proto::HttpRequest WithBearer(proto::HttpRequest request, const std::string& token) {
    request.headers.Set("Authorization", "Bearer " + token);
    return request;
  }

  proto::HttpResponse AddEnrolee(const std::string& token, const nlohmann::json& body,
                                 const std::string& peer = kPeer) {
    return Handle(WithBearer(JsonRequest("POST", "/api/v1/enrolees", body.dump()), token), peer);
  }

  proto::HttpResponse Get(const std::string& token, const std::string& target) {
    return Handle(WithBearer(JsonRequest("GET", target, "", ""), token));
  }

  ServiceWorld world_;
  Portal portal_;
};

TEST_F(PortalTest, LoginReturnsABearerToken) {
  proto::HttpResponse response = Login("alice", kAlicePassword);
  ASSERT_EQ(response.status, 200) << response.body;
  nlohmann::json body = JsonBody(response);
  std::string token = body.value("token", "");
  EXPECT_GE(token.size(), 43u);  // 256 random bits, base64url
  EXPECT_EQ(token.find_first_not_of(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos);
  EXPECT_EQ(body.value("tokenType", ""), "Bearer");
  EXPECT_EQ(Get(token, "/api/v1/enrolees").status, 200);
  // A second login gives another token.
  EXPECT_NE(TokenFor("alice", kAlicePassword), token);
}

TEST_F(PortalTest, WrongPasswordAndUnknownAccountAre401) {
  proto::HttpResponse wrong = Login("alice", "not the password");
  EXPECT_EQ(wrong.status, 401);
  proto::HttpResponse unknown = Login("mallory", "whatever");
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(wrong.body, unknown.body);  // accounts cannot be probed
}

TEST_F(PortalTest, FiveFailuresLockTheAddressAndTheAccountForFailedAddressesOnly) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Login("alice", "wrong " + std::to_string(i)).status, 401) << i;
  }
  // The failing address is locked, for every account, even with the right password.
  proto::HttpResponse locked = Login("alice", kAlicePassword);
  EXPECT_EQ(locked.status, 429);
  EXPECT_EQ(Header(locked, "Retry-After"), std::to_string(kLockout));
  EXPECT_EQ(Login("bob", kBobPassword).status, 429);
  world_.clock.Advance(100);
  EXPECT_EQ(Header(Login("bob", kBobPassword), "Retry-After"), std::to_string(kLockout - 100));
  // The owner, from an address that has not failed, still signs in: no lockout abuse.
  EXPECT_EQ(Login("alice", kAlicePassword, kOtherPeer).status, 200);
  EXPECT_EQ(Login("bob", kBobPassword, kOtherPeer).status, 200);

  world_.clock.Advance(kLockout - 100 - 1);
  EXPECT_EQ(Login("alice", kAlicePassword).status, 429);
  world_.clock.Advance(1);
  EXPECT_EQ(Login("alice", kAlicePassword).status, 200);
  EXPECT_EQ(Login("bob", kBobPassword).status, 200);
}

TEST_F(PortalTest, ALockedAccountGivesEachCleanAddressOneTry) {
  const std::string hostile[] = {"203.0.113.1", "203.0.113.2", "203.0.113.3"};
  // Failures spread over addresses lock the account without locking any one address.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Login("alice", "wrong", hostile[i % 2]).status, 401) << i;
  }
  // An address that failed is refused for the locked account, but not for another account.
  EXPECT_EQ(Login("alice", kAlicePassword, hostile[0]).status, 429);
  EXPECT_EQ(Login("bob", kBobPassword, hostile[0]).status, 200);
  // A clean address gets its try; once it has failed, it is refused like the others.
  EXPECT_EQ(Login("alice", "still wrong", hostile[2]).status, 401);
  proto::HttpResponse refused = Login("alice", kAlicePassword, hostile[2]);
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(Header(refused, "Retry-After"), std::to_string(kLockout));
  // The owner from the address they use is unaffected.
  EXPECT_EQ(Login("alice", kAlicePassword, kOtherPeer).status, 200);
}

TEST_F(PortalTest, RepeatedLockoutsOfOneAddressGrowLonger) {
  for (int64_t expected : {kLockout, 2 * kLockout, 4 * kLockout}) {
    for (int i = 0; i < 5; ++i) EXPECT_EQ(Login("alice", "wrong").status, 401) << expected;
    proto::HttpResponse locked = Login("alice", kAlicePassword);
    EXPECT_EQ(locked.status, 429);
    EXPECT_EQ(Header(locked, "Retry-After"), std::to_string(expected));
    world_.clock.Advance(expected);
  }
  // Capped at max_lockout_seconds (an hour by default).
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 5; ++i) Login("alice", "wrong");
    int64_t wait = std::stoll(Header(Login("alice", kAlicePassword), "Retry-After"));
    EXPECT_LE(wait, 3600);
    world_.clock.Advance(wait);
  }
  // A successful login clears the account; the address keeps its history.
  EXPECT_EQ(Login("alice", kAlicePassword).status, 200);
}

TEST_F(PortalTest, AFreshFailureAfterALockoutStartsCountingAgain) {
  for (int i = 0; i < 5; ++i) Login("alice", "wrong");
  world_.clock.Advance(kLockout);
  EXPECT_EQ(Login("alice", "wrong again").status, 401);
  EXPECT_EQ(Login("alice", kAlicePassword).status, 200);
}

TEST_F(PortalTest, EnroleesNeedABearerToken) {
  for (const auto& request :
       {JsonRequest("GET", "/api/v1/enrolees", "", ""),
        JsonRequest("POST", "/api/v1/enrolees", "{}"),
        JsonRequest("GET", "/api/v1/enrolees/1", "", "")}) {
    proto::HttpResponse response = Handle(request);
    EXPECT_EQ(response.status, 401) << request.method << " " << request.target;
    EXPECT_EQ(Header(response, "WWW-Authenticate").rfind("Bearer", 0), 0u);
  }
  proto::HttpResponse garbage = Get("not-a-token", "/api/v1/enrolees");
  EXPECT_EQ(garbage.status, 401);
  EXPECT_EQ(Header(garbage, "WWW-Authenticate").rfind("Bearer", 0), 0u);
  proto::HttpRequest basic = JsonRequest("GET", "/api/v1/enrolees", "", "");
  basic.headers.Set("Authorization", "Basic YWxpY2U6cGFzcw==");
  EXPECT_EQ(Handle(basic).status, 401);
}

TEST_F(PortalTest, ClaimWithTheRightCodeCreatesTheEnrolee) {
  std::string token = TokenFor("alice", kAlicePassword);
  proto::HttpResponse response =
      AddEnrolee(token, {{"deviceId", kDevice1}, {"claimCode", kCode1}, {"label", "hall lamp"}});
  ASSERT_EQ(response.status, 201) << response.body;
  nlohmann::json body = JsonBody(response);
  int64_t id = body.value("id", int64_t{0});
  ASSERT_GT(id, 0);
  EXPECT_EQ(Header(response, "Location"), "/api/v1/enrolees/" + std::to_string(id));
  EXPECT_EQ(body.value("deviceId", ""), kDevice1);
  EXPECT_EQ(body.value("label", ""), "hall lamp");
  EXPECT_EQ(body.value("state", ""), "pending");
  EXPECT_EQ(body.value("stakeholder", ""), "alice");
  EXPECT_EQ(response.body.find(kCode1), std::string::npos);

  proto::HttpResponse got = Get(token, "/api/v1/enrolees/" + std::to_string(id));
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(JsonBody(got).value("deviceId", ""), kDevice1);
  auto audit = world_.store->ListAudit();
  ASSERT_TRUE(Ok(audit));
  bool audited = false;
  for (const auto& e : *audit) audited |= e.action == "enrolee.add";
  EXPECT_TRUE(audited);
}

TEST_F(PortalTest, WrongClaimCodeAndUnknownDeviceGiveTheSame403) {
  std::string token = TokenFor("alice", kAlicePassword);
  proto::HttpResponse wrong_code =
      AddEnrolee(token, {{"deviceId", kDevice1}, {"claimCode", "LAMP-0001-XXXX"}});
  proto::HttpResponse unknown =
      AddEnrolee(token, {{"deviceId", "urn:dev:acme:nope"}, {"claimCode", kCode1}});
  EXPECT_EQ(wrong_code.status, 403);
  EXPECT_EQ(unknown.status, 403);
  EXPECT_EQ(wrong_code.body, unknown.body);
  auto list = world_.store->ListEnrolees(std::nullopt);
  ASSERT_TRUE(Ok(list));
  EXPECT_TRUE(list->empty());
}

TEST_F(PortalTest, RepeatedWrongClaimsAreRateLimited) {
  std::string token = TokenFor("alice", kAlicePassword);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(AddEnrolee(token, {{"deviceId", kDevice1}, {"claimCode", "guess"}}).status, 403);
  }
  proto::HttpResponse limited = AddEnrolee(token, {{"deviceId", kDevice1}, {"claimCode", kCode1}});
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(Header(limited, "Retry-After"), std::to_string(kLockout));
  world_.clock.Advance(kLockout);
  EXPECT_EQ(AddEnrolee(token, {{"deviceId", kDevice1}, {"claimCode", kCode1}}).status, 201);
}

TEST_F(PortalTest, AlreadyClaimedDeviceIs409) {
  std::string alice = TokenFor("alice", kAlicePassword);
  std::string bob = TokenFor("bob", kBobPassword);
  ASSERT_EQ(AddEnrolee(alice, {{"deviceId", kDevice1}, {"claimCode", kCode1}}).status, 201);
  EXPECT_EQ(AddEnrolee(alice, {{"deviceId", kDevice1}, {"claimCode", kCode1}}).status, 409);
  EXPECT_EQ(AddEnrolee(bob, {{"deviceId", kDevice1}, {"claimCode", kCode1}}).status, 409);
}

TEST_F(PortalTest, StakeholdersSeeOnlyTheirOwnEnrolees) {
  std::string alice = TokenFor("alice", kAlicePassword);
  std::string bob = TokenFor("bob", kBobPassword);
  proto::HttpResponse a = AddEnrolee(alice, {{"deviceId", kDevice1}, {"claimCode", kCode1}});
  proto::HttpResponse b = AddEnrolee(bob, {{"deviceId", kDevice2}, {"claimCode", kCode2}});
  ASSERT_EQ(a.status, 201);
  ASSERT_EQ(b.status, 201);
  int64_t a_id = JsonBody(a).value("id", int64_t{0});
  int64_t b_id = JsonBody(b).value("id", int64_t{0});

  proto::HttpResponse bob_reads_alice = Get(bob, "/api/v1/enrolees/" + std::to_string(a_id));
  proto::HttpResponse bob_reads_missing = Get(bob, "/api/v1/enrolees/999999");
  EXPECT_EQ(bob_reads_alice.status, 404);
  EXPECT_EQ(bob_reads_alice.body, bob_reads_missing.body);  // indistinguishable from missing
  EXPECT_EQ(bob_reads_alice.body.find(kDevice1), std::string::npos);

  proto::HttpResponse bob_list = Get(bob, "/api/v1/enrolees");
  ASSERT_EQ(bob_list.status, 200);
  nlohmann::json bob_items = JsonBody(bob_list)["enrolees"];
  ASSERT_EQ(bob_items.size(), 1u);
  EXPECT_EQ(bob_items[0].value("id", int64_t{0}), b_id);
  EXPECT_EQ(bob_list.body.find(kDevice1), std::string::npos);

  proto::HttpResponse alice_list = Get(alice, "/api/v1/enrolees");
  ASSERT_EQ(alice_list.status, 200);
  nlohmann::json alice_items = JsonBody(alice_list)["enrolees"];
  ASSERT_EQ(alice_items.size(), 1u);
  EXPECT_EQ(alice_items[0].value("id", int64_t{0}), a_id);
  EXPECT_EQ(Get(alice, "/api/v1/enrolees/" + std::to_string(a_id)).status, 200);

  for (const char* odd : {"/api/v1/enrolees/abc", "/api/v1/enrolees/0", "/api/v1/enrolees/-1",
                          "/api/v1/enrolees/1x", "/api/v1/enrolees/1/2"}) {
    EXPECT_EQ(Get(alice, odd).status, 404) << odd;
  }
}

TEST_F(PortalTest, AnAdminSeesEveryEnroleeAndTheAuditLogOthersDoNot) {
  std::string alice = TokenFor("alice", kAlicePassword);
  ASSERT_EQ(AddEnrolee(alice, {{"deviceId", kDevice1}, {"claimCode", kCode1}}).status, 201);
  world_.AddStakeholder("root", "the admin's passphrase");
  ASSERT_TRUE(Ok(world_.store->SetStakeholderAdmin("root", true)));
  std::string root = TokenFor("root", "the admin's passphrase");
  std::string bob = TokenFor("bob", kBobPassword);

  EXPECT_EQ(JsonBody(Get(root, "/api/v1/enrolees"))["enrolees"].size(), 1u);
  EXPECT_EQ(JsonBody(Get(bob, "/api/v1/enrolees"))["enrolees"].size(), 0u);
  EXPECT_EQ(Get(root, "/api/v1/enrolees/1").status, 200);
  EXPECT_EQ(Get(bob, "/api/v1/enrolees/1").status, 404);

  proto::HttpResponse audit = Get(root, "/api/v1/audit");
  ASSERT_EQ(audit.status, 200) << audit.body;
  bool claim_seen = false;
  const nlohmann::json entries = JsonBody(audit)["entries"];
  for (const auto& entry : entries) {
    claim_seen |= entry.value("action", "") == "enrolee.add" &&
                  entry.value("actor", "") == "stakeholder:alice";
    EXPECT_EQ(entry.size(), 6u);  // id, at, actor, action, subject, detail
  }
  EXPECT_TRUE(claim_seen) << audit.body;
  EXPECT_EQ(Get(alice, "/api/v1/audit").status, 403);
  EXPECT_EQ(Handle(JsonRequest("GET", "/api/v1/audit", "", "")).status, 401);
  proto::HttpRequest post = JsonRequest("POST", "/api/v1/audit", "{}");
  post.headers.Set("Authorization", "Bearer " + root);
  EXPECT_EQ(Handle(post).status, 405);
  // The role can be taken away; the session then sees only its own (none).
  ASSERT_TRUE(Ok(world_.store->SetStakeholderAdmin("root", false)));
  EXPECT_EQ(Get(root, "/api/v1/audit").status, 403);
  EXPECT_EQ(Get(root, "/api/v1/enrolees/1").status, 404);
}

TEST_F(PortalTest, ExpiredSessionTokenIs401) {
  std::string token = TokenFor("alice", kAlicePassword);
  world_.clock.Advance(kSession - 1);
  EXPECT_EQ(Get(token, "/api/v1/enrolees").status, 200);
  world_.clock.Advance(1);
  proto::HttpResponse expired = Get(token, "/api/v1/enrolees");
  EXPECT_EQ(expired.status, 401);
  EXPECT_EQ(Header(expired, "WWW-Authenticate").rfind("Bearer", 0), 0u);
}

// An unknown member is quoted cut at 64 octets; cut inside a UTF-8 sequence (or not UTF-8 at all)
// it still gives a JSON answer, with U+FFFD in its place.
TEST_F(PortalTest, AnUnknownMemberThatIsNotUtf8WhenCutIsStillAnswered) {
  const std::string token = TokenFor("alice", kAlicePassword);
  const std::string name = std::string(63, 'm') + "\xc3\xa9";  // the cut falls inside "é"
  proto::HttpResponse response = Handle(WithBearer(
      JsonRequest("POST", "/api/v1/enrolees", "{\"" + name + "\":1}"), token));
  EXPECT_EQ(response.status, 400);
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << response.body;
  EXPECT_EQ(body.value("error", ""), "unknown member '" + std::string(63, 'm') + "\xef\xbf\xbd'");
}

TEST_F(PortalTest, MalformedRequestsAre400) {
  std::string token = TokenFor("alice", kAlicePassword);
  auto login = [&](std::string body, std::string content_type = "application/json") {
    return Handle(JsonRequest("POST", "/api/v1/login", std::move(body), std::move(content_type)))
        .status;
  };
  EXPECT_EQ(login("{\"name\":\"alice\","), 400);
  EXPECT_EQ(login("[]"), 400);
  EXPECT_EQ(login("{\"name\":\"alice\"}"), 400);
  EXPECT_EQ(login("{\"password\":\"x\"}"), 400);
  EXPECT_EQ(login("{\"name\":1,\"password\":\"x\"}"), 400);
  EXPECT_EQ(login(nlohmann::json{{"name", std::string(65, 'a')}, {"password", "x"}}.dump()), 400);
  EXPECT_EQ(login(nlohmann::json{{"name", "alice"}, {"password", std::string(257, 'p')}}.dump()),
            400);
  EXPECT_EQ(login(nlohmann::json{{"name", "alice"}, {"password", kAlicePassword}}.dump(),
                  "text/plain"),
            400);

  auto add = [&](std::string body) {
    return Handle(WithBearer(JsonRequest("POST", "/api/v1/enrolees", std::move(body)), token))
        .status;
  };
  EXPECT_EQ(add("{\"deviceId\":"), 400);
  EXPECT_EQ(add("\"text\""), 400);
  EXPECT_EQ(add(nlohmann::json{{"claimCode", kCode1}}.dump()), 400);
  EXPECT_EQ(add(nlohmann::json{{"deviceId", kDevice1}}.dump()), 400);
  EXPECT_EQ(add(nlohmann::json{{"deviceId", kDevice1}, {"claimCode", 1234}}.dump()), 400);
  EXPECT_EQ(add(nlohmann::json{{"deviceId", kDevice1}, {"claimCode", kCode1},
                               {"label", std::string(257, 'l')}}
                    .dump()),
            400);
  EXPECT_EQ(add(nlohmann::json{{"deviceId", kDevice1}, {"claimCode", ""}}.dump()), 400);
  EXPECT_EQ(add(nlohmann::json{{"deviceId", kDevice1}, {"claimCode", std::string(129, 'c')}}
                    .dump()),
            400);
  // None of these created anything; a 256-byte label is still accepted.
  auto list = world_.store->ListEnrolees(std::nullopt);
  ASSERT_TRUE(Ok(list));
  EXPECT_TRUE(list->empty());
  EXPECT_EQ(add(nlohmann::json{{"deviceId", kDevice1}, {"claimCode", kCode1},
                               {"label", std::string(256, 'l')}}
                    .dump()),
            201);
}

TEST_F(PortalTest, UnknownRoutesAndMethods) {
  std::string token = TokenFor("alice", kAlicePassword);
  EXPECT_EQ(Handle(JsonRequest("GET", "/api/v1/login", "", "")).status, 405);
  EXPECT_EQ(Handle(JsonRequest("GET", "/api/v2/enrolees", "", "")).status, 404);
  EXPECT_EQ(Handle(WithBearer(JsonRequest("DELETE", "/api/v1/enrolees", "", ""), token)).status,
            405);
  EXPECT_EQ(Handle(JsonRequest("GET", "/api/v1/health", "", "")).status, 200);
}

}  // namespace
}  // namespace mte::testing
