// The portal's web application and its security properties (docs/web.md): cookie flags, a new
// session id at sign-in, CSRF tokens on every state-changing form, security headers on every
// page, tenant isolation on every page and route, idle and absolute session expiry, logout,
// and lockout that leaves the owner a way in. Also the REST API's personal API tokens, password
// change and enrolee timeline.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <string>

#include "portal/portal.h"
#include "service_world.h"

namespace mte::testing {
namespace {

constexpr const char* kAlicePassword = "alice: a long enough passphrase";
constexpr const char* kBobPassword = "bob: another long passphrase";
constexpr const char* kDevice1 = "urn:dev:acme:lamp-0001";
constexpr const char* kCode1 = "LAMP-0001-CODE";
constexpr const char* kPeer = "198.51.100.7";
constexpr const char* kHost = "portal.example.com:8443";
constexpr int64_t kSession = 8 * 3600;
constexpr int64_t kIdle = 1800;
constexpr int64_t kLockout = 300;

std::string FormEncode(const std::map<std::string, std::string>& fields) {
  std::string out;
  for (const auto& [name, value] : fields) {
    if (!out.empty()) out += '&';
    for (const std::string* s : {&name, &value}) {
      for (unsigned char c : *s) {
        if (std::isalnum(c)) {
          out += static_cast<char>(c);
        } else {
          char buf[4];
          std::snprintf(buf, sizeof buf, "%%%02X", c);
          out += buf;
        }
      }
      if (s == &name) out += '=';
    }
  }
  return out;
}

// Set-Cookie "NAME=VALUE; attrs" -> name, value, attribute text.
struct SetCookie {
  std::string name, value, attributes;
};

std::vector<SetCookie> SetCookies(const proto::HttpResponse& response) {
  std::vector<SetCookie> out;
  for (const auto& h : response.headers.all()) {
    if (strcasecmp(h.name.c_str(), "Set-Cookie") != 0) continue;
    const size_t eq = h.value.find('=');
    const size_t semi = h.value.find(';');
    out.push_back({h.value.substr(0, eq), h.value.substr(eq + 1, semi - eq - 1),
                   semi == std::string::npos ? "" : h.value.substr(semi)});
  }
  return out;
}

// A browser of one user: keeps cookies, sends forms, checks what every page must carry.
class Browser {
 public:
  Browser(Portal& portal, std::string peer) : portal_(portal), peer_(std::move(peer)) {}

  proto::HttpResponse Get(const std::string& target) { return Send("GET", target, ""); }

  // POSTs a form; `csrf` "" sends none, nullopt sends the one of the last page.
  proto::HttpResponse Post(const std::string& target, std::map<std::string, std::string> fields,
                           std::optional<std::string> csrf = std::nullopt) {
    std::string token = csrf.value_or(last_csrf_);
    if (!token.empty()) fields["csrf"] = token;
    return Send("POST", target, FormEncode(fields));
  }

  proto::HttpResponse SignIn(const std::string& name, const std::string& password) {
    Get("/login");
    return Post("/login", {{"name", name}, {"password", password}});
  }

  proto::HttpResponse Send(const std::string& method, const std::string& target,
                           const std::string& body) {
    proto::HttpRequest request;
    request.method = method;
    request.target = target;
    request.headers.Set("Host", kHost);
    if (!origin_.empty() && method == "POST") request.headers.Set("Origin", origin_);
    if (method == "POST") {
      request.headers.Set("Content-Type", "application/x-www-form-urlencoded");
    }
    std::string cookie;
    for (const auto& [name, value] : cookies_) {
      if (!cookie.empty()) cookie += "; ";
      cookie += name + "=" + value;
    }
    if (!cookie.empty()) request.headers.Set("Cookie", cookie);
    request.body = body;
    proto::HttpResponse response = portal_.Handle(request, peer_);
    CheckHeaders(target, response);
    for (const auto& c : SetCookies(response)) {
      if (c.value.empty()) {
        cookies_.erase(c.name);
      } else {
        cookies_[c.name] = c.value;
      }
    }
    static const std::regex kCsrf("name=\"csrf\" value=\"([A-Za-z0-9_-]+)\"");
    std::smatch m;
    if (std::regex_search(response.body, m, kCsrf)) last_csrf_ = m[1];
    return response;
  }

  static void CheckHeaders(const std::string& target, const proto::HttpResponse& response) {
    const std::string csp = Header(response, "Content-Security-Policy");
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << target << ": " << csp;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << target;
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << target;
    EXPECT_EQ(csp.find("unsafe-eval"), std::string::npos) << target;
    EXPECT_EQ(Header(response, "X-Content-Type-Options"), "nosniff") << target;
    EXPECT_EQ(Header(response, "Referrer-Policy"), "same-origin") << target;
    EXPECT_NE(Header(response, "Strict-Transport-Security").find("max-age="), std::string::npos)
        << target;
    if (Header(response, "Content-Type").starts_with("text/html")) {
      EXPECT_EQ(Header(response, "Cache-Control"), "no-store") << target;
      // No inline script, event handler or style attribute for the CSP to refuse.
      EXPECT_EQ(response.body.find("<script>"), std::string::npos) << target;
      EXPECT_EQ(response.body.find(" style="), std::string::npos) << target;
      static const std::regex kHandler(" on[a-z]+=");
      EXPECT_FALSE(std::regex_search(response.body, kHandler)) << target;
    }
    for (const auto& c : SetCookies(response)) {
      EXPECT_TRUE(c.name.starts_with("__Host-")) << c.name;
      for (const char* flag : {"; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict"}) {
        EXPECT_NE(c.attributes.find(flag), std::string::npos) << c.name << " lacks " << flag;
      }
      EXPECT_EQ(c.attributes.find("Domain"), std::string::npos) << c.name;
    }
  }

  std::string Cookie(const std::string& name) const {
    auto it = cookies_.find(name);
    return it == cookies_.end() ? "" : it->second;
  }
  void SetCookieValue(const std::string& name, const std::string& value) {
    cookies_[name] = value;
  }
  const std::string& csrf() const { return last_csrf_; }
  void set_origin(std::string origin) { origin_ = std::move(origin); }

 private:
  Portal& portal_;
  std::string peer_;
  std::map<std::string, std::string> cookies_;
  std::string last_csrf_;
  std::string origin_;
};

class PortalWebTest : public ::testing::Test {
 protected:
  PortalWebTest()
      : portal_(*world_.store, world_.kek, world_.rng, world_.clock, Settings(world_)) {}

  static PortalSettings Settings(ServiceWorld& world) {
    PortalSettings settings;
    settings.session_seconds = kSession;
    settings.browser_idle_seconds = kIdle;
    settings.lockout_seconds = kLockout;
    settings.mef_uri = "https://mef.example.com:8443";
    settings.mef_fqdn = "mef.example.com";
    settings.mef_trust_anchors = {world.FlowBCaPem()};
    return settings;
  }

  void SetUp() override {
    world_.ImportDevice(kDevice1, "kpm-lamp-0001", kCode1);
    world_.AddStakeholder("alice", kAlicePassword);
    world_.AddStakeholder("bob", kBobPassword);
  }

  // Alice signed in, with one Flow B entry; returns its id.
  int64_t AliceWithEntry(Browser& alice) {
    EXPECT_EQ(alice.SignIn("alice", kAlicePassword).status, 303);
    EXPECT_EQ(alice.Get("/enrolees").status, 200);
    auto added = alice.Post("/enrolees", {{"flow", "B"}, {"label", "hall lamp"}});
    EXPECT_EQ(added.status, 303) << added.body;
    const std::string location = Header(added, "Location");
    return std::stoll(location.substr(std::string("/enrolees/").size()));
  }

  size_t EnroleeCount() {
    auto all = world_.store->ListEnrolees(std::nullopt);
    return all ? all->size() : 0;
  }

  proto::HttpResponse Api(const std::string& method, const std::string& target,
                          const std::string& bearer, const std::string& body = "") {
    auto request = JsonRequest(method, target, body);
    if (!bearer.empty()) request.headers.Set("Authorization", "Bearer " + bearer);
    return portal_.Handle(request, kPeer);
  }

  std::string ApiLogin(const std::string& name, const std::string& password) {
    auto response = Api("POST", "/api/v1/login", "",
                        nlohmann::json{{"name", name}, {"password", password}}.dump());
    EXPECT_EQ(response.status, 200) << response.body;
    return JsonBody(response).value("token", "");
  }

  ServiceWorld world_;
  Portal portal_;
};

TEST_F(PortalWebTest, SignInSetsAFreshHostOnlySessionCookie) {
  Browser alice(portal_, kPeer);
  auto root = alice.Get("/");
  EXPECT_EQ(root.status, 303);
  EXPECT_EQ(Header(root, "Location"), "/login");
  auto form = alice.Get("/login");
  EXPECT_EQ(form.status, 200);
  EXPECT_NE(form.body.find("<label for=\"name\">"), std::string::npos);
  const std::string before = alice.Cookie("__Host-mte_login");
  ASSERT_FALSE(before.empty());
  // A session id planted before sign-in is ignored, never adopted.
  alice.SetCookieValue("__Host-mte_session", "planted-by-an-attacker");

  auto signed_in = alice.Post("/login", {{"name", "alice"}, {"password", kAlicePassword}});
  ASSERT_EQ(signed_in.status, 303) << signed_in.body;
  EXPECT_EQ(Header(signed_in, "Location"), "/enrolees");
  const std::string first = alice.Cookie("__Host-mte_session");
  EXPECT_EQ(first.size(), 43u);
  EXPECT_NE(first, "planted-by-an-attacker");
  EXPECT_NE(first, before);
  EXPECT_TRUE(alice.Cookie("__Host-mte_login").empty());  // cleared at sign-in
  EXPECT_EQ(alice.Get("/enrolees").status, 200);

  // Signing in again gives another session id.
  ASSERT_EQ(alice.SignIn("alice", kAlicePassword).status, 303);
  EXPECT_NE(alice.Cookie("__Host-mte_session"), first);
}

TEST_F(PortalWebTest, SignInNeedsTheFormsCsrfToken) {
  Browser mallory(portal_, kPeer);
  mallory.Get("/login");
  auto missing = mallory.Post("/login", {{"name", "alice"}, {"password", kAlicePassword}}, "");
  EXPECT_EQ(missing.status, 403);
  auto wrong = mallory.Post("/login", {{"name", "alice"}, {"password", kAlicePassword}},
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
  EXPECT_EQ(wrong.status, 403);
  EXPECT_TRUE(mallory.Cookie("__Host-mte_session").empty());
  // Without the sign-in cookie the form's token is worth nothing either.
  Browser other(portal_, kPeer);
  other.Get("/login");
  const std::string token = other.csrf();
  Browser cookieless(portal_, kPeer);
  auto replayed = cookieless.Post("/login", {{"name", "alice"}, {"password", kAlicePassword}},
                                  token);
  EXPECT_EQ(replayed.status, 403);
  EXPECT_TRUE(cookieless.Cookie("__Host-mte_session").empty());
}

TEST_F(PortalWebTest, EveryStateChangingFormNeedsTheSessionsCsrfToken) {
  Browser alice(portal_, kPeer);
  const int64_t id = AliceWithEntry(alice);
  const std::string e = "/enrolees/" + std::to_string(id);
  const std::string good = alice.csrf();
  ASSERT_FALSE(good.empty());
  // Another session's token is wrong for this one.
  Browser bob(portal_, kPeer);
  ASSERT_EQ(bob.SignIn("bob", kBobPassword).status, 303);
  bob.Get("/enrolees");
  const std::string bobs = bob.csrf();
  ASSERT_NE(bobs, good);

  const std::vector<std::pair<std::string, std::map<std::string, std::string>>> forms = {
      {"/enrolees", {{"flow", "B"}, {"label", "forged"}}},
      {e + "/tokens", {}},
      {e + "/revoke", {}},
      {e + "/delete", {}},
      {"/account/tokens", {{"name", "forged"}}},
      {"/account/password",
       {{"currentPassword", kAlicePassword}, {"newPassword", "a forged new password"}}},
      {"/account/totp", {}},
      {"/account/totp/confirm", {{"code", "123456"}}},
      {"/account/totp/disable", {{"code", "123456"}}},
      {"/account/recovery-codes", {{"code", "123456"}}},
      {"/logout", {}},
  };
  for (const auto& [target, fields] : forms) {
    // The session's token with its last character changed (never into itself).
    const std::string altered = good.substr(0, good.size() - 1) + (good.back() == 'A' ? 'B' : 'A');
    for (const std::string& csrf : {std::string(), bobs, altered}) {
      auto refused = alice.Post(target, fields, csrf);
      EXPECT_EQ(refused.status, 403) << target << " with '" << csrf << "'";
    }
  }
  // Nothing changed: one entry, still pending with no token, no API token, no TOTP setup, the
  // password and the session as they were.
  EXPECT_EQ(EnroleeCount(), 1u);
  auto entry = world_.store->GetEnrolee(id);
  ASSERT_TRUE(entry && entry->has_value());
  EXPECT_EQ((*entry)->state, store::EnroleeState::kPending);
  EXPECT_EQ((*entry)->token_expires_at, 0);
  auto tokens = world_.store->ListApiTokens((*entry)->stakeholder_id);
  ASSERT_TRUE(Ok(tokens));
  EXPECT_TRUE(tokens->empty());
  auto totp = world_.store->FindTotp((*entry)->stakeholder_id);
  ASSERT_TRUE(Ok(totp));
  EXPECT_FALSE(totp->has_value()) << "no TOTP setup was started";
  EXPECT_EQ(alice.Get("/enrolees").status, 200);
  EXPECT_FALSE(ApiLogin("alice", kAlicePassword).empty());

  // With the right token the same forms work.
  auto issued = alice.Post(e + "/tokens", {}, good);
  EXPECT_EQ(issued.status, 201) << issued.body;
  EXPECT_NE(issued.body.find("expires at"), std::string::npos);
  EXPECT_NE(issued.body.find("<div id=\"bundle-qr\""), std::string::npos);
  EXPECT_NE(issued.body.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(issued.body.find("href=\"data:application/json;charset=utf-8,"), std::string::npos);
  auto revoked = alice.Post(e + "/revoke", {}, good);
  EXPECT_EQ(revoked.status, 200);
  auto after = world_.store->GetEnrolee(id);
  ASSERT_TRUE(after && after->has_value());
  EXPECT_EQ((*after)->state, store::EnroleeState::kRevoked);
}

TEST_F(PortalWebTest, AFormFromAnotherOriginIsRefused) {
  Browser alice(portal_, kPeer);
  AliceWithEntry(alice);
  for (const char* origin : {"https://evil.example.net", "null", "http://portal.example.com:8443"}) {
    alice.set_origin(origin);
    auto refused = alice.Post("/enrolees", {{"flow", "B"}, {"label", "from elsewhere"}});
    EXPECT_EQ(refused.status, 403) << origin;
    EXPECT_EQ(EnroleeCount(), 1u);
  }
  alice.set_origin(std::string("https://") + kHost);
  EXPECT_EQ(alice.Post("/enrolees", {{"flow", "B"}, {"label", "from here"}}).status, 303);
  EXPECT_EQ(EnroleeCount(), 2u);
}

TEST_F(PortalWebTest, AnotherStakeholdersEnroleeIsNotFoundOnEveryPageAndRoute) {
  Browser alice(portal_, kPeer);
  const int64_t id = AliceWithEntry(alice);
  const std::string e = "/enrolees/" + std::to_string(id);
  ASSERT_EQ(alice.Get(e).status, 200);
  Browser bob(portal_, kPeer);
  ASSERT_EQ(bob.SignIn("bob", kBobPassword).status, 303);
  bob.Get("/enrolees");
  auto missing = bob.Get("/enrolees/999999");
  EXPECT_EQ(missing.status, 404);
  auto theirs = bob.Get(e);
  EXPECT_EQ(theirs.status, 404);
  EXPECT_EQ(theirs.body, missing.body);  // indistinguishable from a missing one
  for (const char* action : {"/tokens", "/revoke", "/delete"}) {
    EXPECT_EQ(bob.Post(e + action, {}).status, 404) << action;
  }
  auto states = bob.Get("/states");
  EXPECT_EQ(states.status, 200);
  EXPECT_EQ(states.body, "{}");
  EXPECT_EQ(bob.Get("/enrolees").body.find("hall lamp"), std::string::npos);
  EXPECT_EQ(bob.Get("/audit").status, 403);
  EXPECT_EQ(bob.Get("/audit.jsonl").status, 403);

  // The REST API answers the same.
  const std::string bearer = ApiLogin("bob", kBobPassword);
  const std::string api = "/api/v1/enrolees/" + std::to_string(id);
  EXPECT_EQ(Api("GET", api, bearer).status, 404);
  EXPECT_EQ(Api("GET", api + "/timeline", bearer).status, 404);
  EXPECT_EQ(Api("DELETE", api, bearer).status, 404);
  EXPECT_EQ(Api("POST", api + "/tokens", bearer, "{}").status, 404);
  EXPECT_EQ(Api("POST", api + "/revoke", bearer, "{}").status, 404);
  auto entry = world_.store->GetEnrolee(id);
  ASSERT_TRUE(entry && entry->has_value());
  EXPECT_EQ((*entry)->state, store::EnroleeState::kPending);
  EXPECT_EQ((*entry)->token_expires_at, 0);
}

TEST_F(PortalWebTest, SessionsEndWhenIdleAtTheirAbsoluteExpiryAndAtLogout) {
  Browser alice(portal_, kPeer);
  ASSERT_EQ(alice.SignIn("alice", kAlicePassword).status, 303);
  // Used every 20 minutes, it lives on past the idle time ...
  for (int i = 0; i < 4; ++i) {
    world_.clock.Advance(1200);
    ASSERT_EQ(alice.Get("/enrolees").status, 200) << i;
  }
  // ... and ends after 30 idle minutes.
  world_.clock.Advance(kIdle + 1);
  auto idle = alice.Get("/enrolees");
  EXPECT_EQ(idle.status, 303);
  EXPECT_EQ(Header(idle, "Location"), "/login");

  // Used all the time, it still ends 8 hours after sign-in.
  ASSERT_EQ(alice.SignIn("alice", kAlicePassword).status, 303);
  for (int64_t t = 0; t + 1500 < kSession; t += 1500) {
    ASSERT_EQ(alice.Get("/enrolees").status, 200) << t;
    world_.clock.Advance(1500);
  }
  world_.clock.Advance(kSession % 1500 + 1);
  EXPECT_EQ(alice.Get("/enrolees").status, 303);

  // Logout ends it on the server: the old cookie is worthless afterwards.
  ASSERT_EQ(alice.SignIn("alice", kAlicePassword).status, 303);
  alice.Get("/enrolees");
  const std::string cookie = alice.Cookie("__Host-mte_session");
  auto out = alice.Post("/logout", {});
  EXPECT_EQ(out.status, 303);
  EXPECT_TRUE(alice.Cookie("__Host-mte_session").empty());
  alice.SetCookieValue("__Host-mte_session", cookie);
  EXPECT_EQ(alice.Get("/enrolees").status, 303);
}

TEST_F(PortalWebTest, TheOwnerSignsInFromACleanAddressWhileAHostileOneIsLockedOut) {
  Browser hostile(portal_, "203.0.113.66");
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(hostile.SignIn("alice", "guess " + std::to_string(i)).status, 401) << i;
  }
  auto locked = hostile.SignIn("alice", kAlicePassword);
  EXPECT_EQ(locked.status, 429);
  EXPECT_EQ(Header(locked, "Retry-After"), std::to_string(kLockout));
  EXPECT_TRUE(hostile.Cookie("__Host-mte_session").empty());
  Browser owner(portal_, "192.0.2.10");
  EXPECT_EQ(owner.SignIn("alice", kAlicePassword).status, 303);
  EXPECT_FALSE(owner.Cookie("__Host-mte_session").empty());
}

TEST_F(PortalWebTest, TheAdminSeesEveryEnroleeAndTheAuditLog) {
  Browser alice(portal_, kPeer);
  AliceWithEntry(alice);
  ASSERT_TRUE(Ok(world_.store->AddStakeholder("root", "", world_.clock.seconds())));
  world_.AddStakeholder("carol", "carol: the admin's passphrase");
  ASSERT_TRUE(Ok(world_.store->SetStakeholderAdmin("carol", true)));
  Browser carol(portal_, kPeer);
  ASSERT_EQ(carol.SignIn("carol", "carol: the admin's passphrase").status, 303);
  auto list = carol.Get("/enrolees");
  EXPECT_NE(list.body.find("hall lamp"), std::string::npos);
  auto audit = carol.Get("/audit");
  EXPECT_EQ(audit.status, 200);
  EXPECT_NE(audit.body.find("enrolee.add"), std::string::npos);
  auto jsonl = carol.Get("/audit.jsonl");
  EXPECT_EQ(jsonl.status, 200);
  EXPECT_EQ(Header(jsonl, "Content-Type"), "application/x-ndjson");
  std::istringstream lines(jsonl.body);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("action")) << line;
    ++count;
  }
  EXPECT_GE(count, 3);
}

TEST_F(PortalWebTest, PersonalApiTokensWorkAreListedWithLastUseAndCanBeRevoked) {
  const std::string login = ApiLogin("alice", kAlicePassword);
  auto created = Api("POST", "/api/v1/account/tokens", login, R"({"name":"ci"})");
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string token = JsonBody(created).value("token", "");
  EXPECT_TRUE(token.starts_with("mtept_"));
  EXPECT_EQ(token.size(), 6u + 43u);
  EXPECT_EQ(Api("POST", "/api/v1/account/tokens", login, R"({"name":"ci"})").status, 409);
  EXPECT_EQ(Api("POST", "/api/v1/account/tokens", login, R"({"name":"has space"})").status, 400);

  world_.clock.Advance(60);
  EXPECT_EQ(Api("GET", "/api/v1/enrolees", token).status, 200);
  auto list = Api("GET", "/api/v1/account/tokens", login);
  ASSERT_EQ(list.status, 200);
  nlohmann::json tokens = JsonBody(list)["tokens"];
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].value("name", ""), "ci");
  EXPECT_FALSE(tokens[0].value("lastUsedAt", "").empty());
  EXPECT_FALSE(tokens[0].contains("token"));  // the text is never shown again
  // Nothing stores the text: only its hash is in the database.
  auto audit = world_.store->ListAudit();
  ASSERT_TRUE(Ok(audit));
  for (const auto& a : *audit) EXPECT_EQ(a.detail.find(token), std::string::npos);

  // An API token is no session: it cannot log out, and it stops at revocation.
  EXPECT_EQ(Api("POST", "/api/v1/logout", token, "{}").status, 400);
  const std::string id = std::to_string(tokens[0].value("id", 0));
  Browser bob(portal_, kPeer);
  const std::string bob_login = ApiLogin("bob", kBobPassword);
  EXPECT_EQ(Api("DELETE", "/api/v1/account/tokens/" + id, bob_login).status, 404);
  EXPECT_EQ(Api("GET", "/api/v1/enrolees", token).status, 200);
  EXPECT_EQ(Api("DELETE", "/api/v1/account/tokens/" + id, login).status, 200);
  auto refused = Api("GET", "/api/v1/enrolees", token);
  EXPECT_EQ(refused.status, 401);
  EXPECT_NE(refused.body.find("revoked"), std::string::npos);
}

TEST_F(PortalWebTest, LogoutEndsABearerSession) {
  const std::string login = ApiLogin("alice", kAlicePassword);
  EXPECT_EQ(Api("POST", "/api/v1/logout", login, "{}").status, 200);
  EXPECT_EQ(Api("GET", "/api/v1/enrolees", login).status, 401);
}

TEST_F(PortalWebTest, PasswordChangeNeedsTheCurrentPasswordAndEndsEverySession) {
  const std::string login = ApiLogin("alice", kAlicePassword);
  Browser browser(portal_, kPeer);
  ASSERT_EQ(browser.SignIn("alice", kAlicePassword).status, 303);
  const nlohmann::json wrong = {{"currentPassword", "not it"},
                                {"newPassword", "a brand new passphrase"}};
  EXPECT_EQ(Api("POST", "/api/v1/account/password", login, wrong.dump()).status, 403);
  const nlohmann::json short_one = {{"currentPassword", kAlicePassword}, {"newPassword", "short"}};
  EXPECT_EQ(Api("POST", "/api/v1/account/password", login, short_one.dump()).status, 400);
  EXPECT_EQ(Api("GET", "/api/v1/enrolees", login).status, 200);  // still signed in

  const nlohmann::json good = {{"currentPassword", kAlicePassword},
                               {"newPassword", "a brand new passphrase"}};
  auto changed = Api("POST", "/api/v1/account/password", login, good.dump());
  EXPECT_EQ(changed.status, 200) << changed.body;
  EXPECT_EQ(Api("GET", "/api/v1/enrolees", login).status, 401);
  EXPECT_EQ(browser.Get("/enrolees").status, 303);
  auto old = Api("POST", "/api/v1/login", "",
                 nlohmann::json{{"name", "alice"}, {"password", kAlicePassword}}.dump());
  EXPECT_EQ(old.status, 401);
  EXPECT_FALSE(ApiLogin("alice", "a brand new passphrase").empty());
}

TEST_F(PortalWebTest, TheTimelineHasEveryEventOfTheEnroleeOnlyInOrder) {
  Browser alice(portal_, kPeer);
  const int64_t id = AliceWithEntry(alice);
  const int64_t other = [&] {
    auto added = alice.Post("/enrolees", {{"flow", "B"}, {"label", "porch lamp"}});
    return std::stoll(Header(added, "Location").substr(10));
  }();
  const std::string e = "/enrolees/" + std::to_string(id);
  ASSERT_EQ(alice.Post(e + "/tokens", {}).status, 201);
  world_.clock.Advance(5);
  ASSERT_EQ(alice.Post(e + "/revoke", {}).status, 200);
  const std::string login = ApiLogin("alice", kAlicePassword);
  auto timeline = Api("GET", "/api/v1" + e + "/timeline", login);
  ASSERT_EQ(timeline.status, 200);
  std::vector<std::string> actions;
  const nlohmann::json body = JsonBody(timeline);
  for (const auto& entry : body["entries"]) {
    actions.push_back(entry.value("action", ""));
    EXPECT_EQ(entry.value("subject", "").find("enrolee " + std::to_string(other)),
              std::string::npos);
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"enrolee.add", "token.issue", "enrolee.revoke"}));
  auto page = alice.Get(e);
  EXPECT_NE(page.body.find("enrolee.revoke"), std::string::npos);
  EXPECT_NE(page.body.find("from " + std::string(kPeer)), std::string::npos);
}

}  // namespace
}  // namespace mte::testing
