// Flow A (docs/protocol.md) in one process: manifest import, proof of control, the PSK bootstrap
// handshake and Enrolment Exchange with the MEF, durable delivery of Km to the MAF over mutual
// TLS, and the MAF handshake with (KmID, Km). Expected keys come from the client side of the
// session and from OpenSSL's HMAC directly, never from the code under test. The whole run is
// logged at trace level and the log must not contain any secret (docs/conventions.md §3).
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <string>
#include <vector>

#include "mef/outbox.h"
#include "portal/portal.h"
#include "proto/onem2m.h"
#include "service_world.h"

namespace mte::testing {
namespace {

constexpr const char* kPassword = "correct horse battery staple";
constexpr const char* kClaimCode = "K7Q2-9XRM-4TPA";
constexpr const char* kDeviceId = "urn:dev:acme:sensor-0001";
constexpr const char* kKpmId = "kpm-0001@acme.example";


std::string PskProfileName(const ::testing::TestParamInfo<PskProfile>& info) {
  return info.param == PskProfile::kTls12PskCbc ? "Tls12PskAes128CbcSha256" : "Tls13Psk";
}

class FlowATest : public ::testing::TestWithParam<PskProfile> {};

TEST_P(FlowATest, EnrolsDeliversKmToTheMafAndTheMafHandshakeWorks) {
  LogCapture logs;
  ServiceWorld world;
  int commits = 0;
  world.mef.set_on_commit([&] { ++commits; });

  // Manifest and proof of control (seed 8.y.3 steps 1-4).
  TestDevice device = world.ImportDevice(kDeviceId, kKpmId, kClaimCode);
  store::StakeholderRecord alice = world.AddStakeholder("alice", kPassword);
  store::EnroleeRecord claimed = world.Claim(alice, device);
  ASSERT_GT(claimed.id, 0);
  ASSERT_EQ(claimed.state, store::EnroleeState::kPending);

  // Bootstrap handshake with (KpmID, Kpm).
  auto link = world.MefLink(kKpmId, device.kpm, GetParam());
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(link->Handshake()) << (link->server_error() ? Describe(*link->server_error()) : "")
                                 << (link->client_error() ? Describe(*link->client_error()) : "");
  if (GetParam() == PskProfile::kTls12PskCbc) {
    EXPECT_EQ(link->client().version(), "TLSv1.2");
    EXPECT_EQ(link->client().cipher(), "PSK-AES128-CBC-SHA256");
  } else {
    EXPECT_EQ(link->client().version(), "TLSv1.3");
  }

  // The enrolee's own view of the Enrolment Key (TS-0003 §10.3.1), computed on the client.
  auto exported = link->client().Export("EXPORTER-oneM2M-Bootstrap", 48);
  ASSERT_TRUE(Ok(exported));
  Bytes export_bytes = ExposeBytes(*exported);
  ASSERT_EQ(export_bytes.size(), 48u);
  Bytes relative_ke_id(export_bytes.begin(), export_bytes.begin() + 16);
  Bytes ke(export_bytes.begin() + 16, export_bytes.end());
  const std::string expected_ke_id = HexUpper(relative_ke_id) + "@" + kMefFqdn;
  const Bytes expected_km = IndependentKm(ke, kMafId);

  // The Enrolment Exchange.
  proto::HttpRequest request = JsonRequest("POST", "/enrolment", "{}");
  request.headers.Set("X-M2M-RI", "enrol-0001");
  auto response = link->Exchange(request);
  ASSERT_TRUE(Ok(response));
  EXPECT_EQ(response->status, 201) << response->body;
  EXPECT_EQ(Header(*response, "X-M2M-RSC"), "2001");
  EXPECT_EQ(Header(*response, "X-M2M-RI"), "enrol-0001");
  nlohmann::json body = JsonBody(*response);
  EXPECT_EQ(body.value("keId", ""), expected_ke_id);
  EXPECT_EQ(body["credentialIds"], nlohmann::json::array({"11-" + expected_ke_id}));
  ASSERT_TRUE(body["instructions"].is_array());
  ASSERT_EQ(body["instructions"].size(), 1u);
  EXPECT_EQ(body["instructions"][0].value("kmId", ""), expected_ke_id);
  EXPECT_EQ(body["instructions"][0].value("mafFqdn", ""), kMafFqdn);
  EXPECT_EQ(body["instructions"][0].value("mafId", ""), kMafId);
  EXPECT_EQ(body.value("endOfEnrolment", false), true);
  EXPECT_FALSE(response->keep_alive);  // the MEF closes the session after the exchange
  EXPECT_EQ(commits, 1);

  // The MTE Enrolee Database records the enrolment.
  auto enrolee = world.store->GetEnrolee(claimed.id);
  ASSERT_TRUE(Ok(enrolee));
  ASSERT_TRUE(enrolee->has_value());
  EXPECT_EQ((*enrolee)->state, store::EnroleeState::kEnrolled);
  EXPECT_EQ((*enrolee)->generation, 1);
  EXPECT_EQ((*enrolee)->ke_id, expected_ke_id);
  EXPECT_EQ((*enrolee)->ke_expires_at, world.clock.seconds() + kEnrolmentExpiry);
  EXPECT_EQ((*enrolee)->credential_ids, std::vector<std::string>{"11-" + expected_ke_id});
  EXPECT_EQ((*enrolee)->maf_delivery, store::DeliveryStatus::kPending);
  auto ke_at_rest = world.kek.Open((*enrolee)->ke_sealed,
                                   "ke|" + std::to_string(claimed.id) + "|1");
  ASSERT_TRUE(Ok(ke_at_rest));
  EXPECT_EQ(ExposeBytes(*ke_at_rest), ke);  // sealed, and the same Ke as the enrolee's
  EXPECT_EQ(CountOutbox(*world.store), 1);

  // The outbox worker delivers the credential over mutual TLS to the MAF.
  world.clock.Advance(5);
  std::vector<nlohmann::json> delivered;
  std::vector<int> statuses;
  OutboxWorker worker(*world.store, world.kek, world.clock,
                      [&](const SecretBytes& payload) -> Result<void> {
                        std::string text = ExposeText(payload);
                        delivered.push_back(nlohmann::json::parse(text, nullptr, false));
                        auto answer = world.Deliver(text);
                        if (!answer) return Fail(answer.error());
                        statuses.push_back(answer->status);
                        if (answer->status / 100 != 2) {
                          return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                                      "MAF answered " + std::to_string(answer->status));
                        }
                        return {};
                      });
  EXPECT_EQ(worker.RunOnce(), 1);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(statuses, std::vector<int>{201});
  EXPECT_EQ(delivered[0].value("kmId", ""), expected_ke_id);
  EXPECT_EQ(delivered[0].value("km", ""), HexLower(expected_km));
  EXPECT_EQ(delivered[0].value("enroleeId", int64_t{0}), claimed.id);
  EXPECT_EQ(delivered[0].value("generation", int64_t{0}), 1);

  auto after = world.store->GetEnrolee(claimed.id);
  ASSERT_TRUE(Ok(after));
  ASSERT_TRUE(after->has_value());
  EXPECT_EQ((*after)->maf_delivery, store::DeliveryStatus::kDelivered);
  auto items = AllOutbox(*world.store);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].delivered_at, world.clock.seconds());
  auto due = world.store->DueOutbox(world.clock.seconds() + 3600, 10);
  ASSERT_TRUE(Ok(due));
  EXPECT_TRUE(due->empty());
  EXPECT_EQ(worker.RunOnce(), 0);  // nothing left to deliver

  // The MAF holds exactly the Km the enrolee derives from its own Ke.
  auto km = world.maf.LookupKm(expected_ke_id);
  ASSERT_TRUE(km.has_value());
  EXPECT_EQ(ExposeBytes(*km), expected_km);
  std::string lower_ke_id = HexLower(relative_ke_id) + "@" + kMefFqdn;  // KeIDs are case-blind
  auto km_lower = world.maf.LookupKm(lower_ke_id);
  ASSERT_TRUE(km_lower.has_value());
  EXPECT_EQ(ExposeBytes(*km_lower), expected_km);

  // The MAF handshake (TS-0003 §8.8.2.2): psk_identity = KmID, psk = Km.
  SecretBytes enrolee_km(expected_km, SecretAccess::ForCrypto());
  auto maf_link = world.MafDeviceLink(expected_ke_id, enrolee_km, GetParam());
  ASSERT_NE(maf_link, nullptr);
  ASSERT_TRUE(maf_link->Handshake());
  auto session = maf_link->Exchange(JsonRequest("GET", "/maf/v1/session", "", ""));
  ASSERT_TRUE(Ok(session));
  EXPECT_EQ(session->status, 200) << session->body;
  EXPECT_EQ(JsonBody(*session).value("kmId", ""), expected_ke_id);
  EXPECT_EQ(JsonBody(*session).value("enroleeId", int64_t{0}), claimed.id);

  // A wrong Km does not get through the handshake.
  Bytes wrong = expected_km;
  wrong[0] ^= 0x01;
  auto bad_link =
      world.MafDeviceLink(expected_ke_id, SecretBytes(wrong, SecretAccess::ForCrypto()),
                          GetParam());
  ASSERT_NE(bad_link, nullptr);
  EXPECT_FALSE(bad_link->Handshake());
  EXPECT_FALSE(bad_link->session().HandshakeComplete());
  ASSERT_TRUE(bad_link->server_error().has_value());
  EXPECT_EQ(bad_link->server_error()->kind, ErrorKind::kPeerAuth)
      << Describe(*bad_link->server_error());

  // A wrong Kpm does not reach the MEF either.
  Bytes wrong_kpm = ExposeBytes(device.kpm);
  wrong_kpm[31] ^= 0x80;
  auto bad_mef = world.MefLink(kKpmId, SecretBytes(wrong_kpm, SecretAccess::ForCrypto()),
                               GetParam());
  ASSERT_NE(bad_mef, nullptr);
  EXPECT_FALSE(bad_mef->Handshake());
  EXPECT_FALSE(bad_mef->session().HandshakeComplete());

  // The audit log has the claim, the enrolment and the receipt, in that order.
  auto audit = world.store->ListAudit();
  ASSERT_TRUE(Ok(audit));
  std::vector<std::string> actions;
  for (const auto& entry : *audit) actions.push_back(entry.action);
  EXPECT_EQ(actions, (std::vector<std::string>{"enrolee.add", "enrolment.commit",
                                               "credential.receive"}));

  // Secrets never reach the log (the capture itself saw the run).
  std::string log = logs.text();
  EXPECT_NE(log.find(expected_ke_id), std::string::npos) << "log capture saw nothing";
  ExpectNoSecretsIn(log, {ExposeBytes(device.kpm), wrong_kpm, export_bytes, ke, expected_km, wrong},
                    {kClaimCode, kPassword});
}

INSTANTIATE_TEST_SUITE_P(PskProfiles, FlowATest,
                         ::testing::Values(PskProfile::kTls12PskCbc, PskProfile::kTls13),
                         PskProfileName);

// Refusals on every service, logged at trace level, leak none of the secrets they carried.
TEST(SecretsInLogsTest, RefusalsDoNotLogSecrets) {
  LogCapture logs;
  ServiceWorld world;
  TestDevice device = world.ImportDevice(kDeviceId, kKpmId, kClaimCode);
  TestDevice unclaimed = world.ImportDevice("urn:dev:acme:sensor-0002", "kpm-0002@acme.example",
                                            "ZZZZ-YYYY-XXXX");
  world.AddStakeholder("alice", kPassword);
  Portal portal(*world.store, world.kek, world.rng, world.clock, PortalSettings{});
  const std::string peer = "192.0.2.10";
  const std::string wrong_password = "Tr0ub4dor&3-wrong";
  const std::string wrong_code = "WRNG-CODE-0000";

  // Portal: a failed and a good login, a wrong claim code, then the right one.
  nlohmann::json bad_login = {{"name", "alice"}, {"password", wrong_password}};
  EXPECT_EQ(portal.Handle(JsonRequest("POST", "/api/v1/login", bad_login.dump()), peer).status,
            401);
  nlohmann::json login = {{"name", "alice"}, {"password", kPassword}};
  auto logged_in = portal.Handle(JsonRequest("POST", "/api/v1/login", login.dump()), peer);
  ASSERT_EQ(logged_in.status, 200);
  std::string token = JsonBody(logged_in).value("token", "");
  ASSERT_FALSE(token.empty());
  auto authed = [&](proto::HttpRequest request) {
    request.headers.Set("Authorization", "Bearer " + token);
    return request;
  };
  nlohmann::json bad_claim = {{"deviceId", kDeviceId}, {"claimCode", wrong_code}};
  EXPECT_EQ(
      portal.Handle(authed(JsonRequest("POST", "/api/v1/enrolees", bad_claim.dump())), peer).status,
      403);
  nlohmann::json claim = {{"deviceId", kDeviceId}, {"claimCode", kClaimCode}, {"label", "lab"}};
  EXPECT_EQ(
      portal.Handle(authed(JsonRequest("POST", "/api/v1/enrolees", claim.dump())), peer).status,
      201);

  // MEF: an unclaimed device, a malformed request, a wrong Kpm.
  auto refused = world.CallMef(unclaimed, JsonRequest("POST", "/enrolment", "{}"));
  ASSERT_TRUE(Ok(refused));
  EXPECT_EQ(refused->status, 403);
  auto malformed = world.CallMef(device, JsonRequest("POST", "/enrolment", "{\"mafEnrolment\":"));
  ASSERT_TRUE(Ok(malformed));
  EXPECT_EQ(malformed->status, 400);
  Bytes wrong_kpm = ExposeBytes(device.kpm);
  wrong_kpm[0] ^= 0xff;
  TestDevice impostor{device.device_id, device.kpm_id,
                      SecretBytes(wrong_kpm, SecretAccess::ForCrypto()), ""};
  EXPECT_FALSE(Ok(world.CallMef(impostor, JsonRequest("POST", "/enrolment", "{}"))));

  // MAF: a delivery from the wrong client and one with a malformed key, both carrying key bytes.
  Bytes km = ExposeBytes(crypto::RandomSecret(world.rng, 32));
  Bytes short_km(km.begin(), km.begin() + 31);
  nlohmann::json payload = {{"kmId", "00112233445566778899AABBCCDDEEFF@mef.example.com"},
                            {"km", HexLower(km)},
                            {"enroleeId", 1},
                            {"generation", 1},
                            {"expiresAt", world.clock.seconds() + 3600}};
  auto intruder = world.Deliver(payload.dump(), "intruder");
  ASSERT_TRUE(Ok(intruder));
  EXPECT_EQ(intruder->status, 403);
  payload["km"] = HexUpper(short_km);
  auto short_key = world.Deliver(payload.dump());
  ASSERT_TRUE(Ok(short_key));
  EXPECT_EQ(short_key->status, 400);

  std::string log = logs.text();
  EXPECT_NE(log.find("failed login"), std::string::npos) << "log capture saw nothing";
  EXPECT_NE(log.find("proof of control"), std::string::npos);
  ExpectNoSecretsIn(log, {ExposeBytes(device.kpm), ExposeBytes(unclaimed.kpm), wrong_kpm, km,
                          short_km},
                    {kPassword, wrong_password, kClaimCode, wrong_code, "ZZZZ-YYYY-XXXX", token});
}

// The secret scan is not vacuous: a key logged in either hex case, or a code, is caught.
TEST(SecretsInLogsTest, TheScanCatchesALeak) {
  Bytes key = {0xde, 0xad, 0xbe, 0xef, 0x01};
  for (const std::string& leaked : {HexLower(key), HexUpper(key), std::string("CODE-1234")}) {
    LogCapture logs;
    spdlog::trace("leak: {}", leaked);
    std::string log = logs.text();
    EXPECT_NONFATAL_FAILURE(ExpectNoSecretsIn(log, {key}, {"CODE-1234"}), "in logs");
  }
}

}  // namespace
}  // namespace mte::testing
