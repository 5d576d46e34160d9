// The MAF's credential delivery listener (mutual TLS, only the MEF may deliver) and key store:
// refusals store nothing; delivery is idempotent per (enrolee, generation); a newer generation
// replaces the older credential; an expired credential is not usable.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "maf/maf.h"
#include "service_world.h"

namespace mte::testing {
namespace {

class MafTest : public ::testing::Test {
 protected:
  struct Credential {
    std::string km_id;
    Bytes km;
    int64_t enrolee_id = 0;
    int64_t generation = 0;
    int64_t expires_at = 0;
  };

  Credential NewCredential(int64_t enrolee_id, int64_t generation, int64_t lifetime = 3600) {
    Credential c;
    c.km_id = HexUpper(ExposeBytes(crypto::RandomSecret(world_.rng, 16))) + "@" + kMefFqdn;
    c.km = ExposeBytes(crypto::RandomSecret(world_.rng, 32));
    c.enrolee_id = enrolee_id;
    c.generation = generation;
    c.expires_at = world_.clock.seconds() + lifetime;
    return c;
  }

  static nlohmann::json Payload(const Credential& c) {
    return {{"kmId", c.km_id},
            {"km", HexLower(c.km)},
            {"enroleeId", c.enrolee_id},
            {"generation", c.generation},
            {"expiresAt", c.expires_at}};
  }

  proto::HttpResponse Deliver(const std::string& body, const std::string& client = "mef",
                              const std::string& target = "/maf/v1/credentials") {
    auto response = world_.Deliver(body, client, target);
    EXPECT_TRUE(Ok(response));
    return response ? *response : proto::HttpResponse{0, {}, "", false};
  }

  size_t StoredCredentials() {
    auto list = world_.store->ListMafCredentials();
    EXPECT_TRUE(Ok(list));
    return list ? list->size() : 0;
  }

  int AuditCount(std::string_view action) {
    auto audit = world_.store->ListAudit();
    EXPECT_TRUE(Ok(audit));
    int n = 0;
    if (audit) {
      for (const auto& e : *audit) n += e.action == action ? 1 : 0;
    }
    return n;
  }

  void ExpectLookup(const Credential& c) {
    auto km = world_.maf.LookupKm(c.km_id);
    ASSERT_TRUE(km.has_value()) << c.km_id;
    EXPECT_EQ(ExposeBytes(*km), c.km);
  }

  ServiceWorld world_;
};

TEST_F(MafTest, DeliveryIsStored) {
  Credential c = NewCredential(1, 1);
  proto::HttpResponse response = Deliver(Payload(c).dump());
  EXPECT_EQ(response.status, 201) << response.body;
  EXPECT_EQ(JsonBody(response).value("stored", false), true);
  EXPECT_EQ(JsonBody(response).value("kmId", ""), c.km_id);
  ExpectLookup(c);
  EXPECT_EQ(AuditCount("credential.receive"), 1);
}

TEST_F(MafTest, ClientCertificateNamingAnotherFqdnIs403AndStoresNothing) {
  Credential c = NewCredential(1, 1);
  size_t audit_before = CountAudit(*world_.store);
  proto::HttpResponse response = Deliver(Payload(c).dump(), "intruder");
  EXPECT_EQ(response.status, 403) << response.body;
  EXPECT_EQ(Header(response, "X-M2M-RSC"), "4103");
  EXPECT_EQ(StoredCredentials(), 0u);
  EXPECT_EQ(CountAudit(*world_.store), audit_before);
  EXPECT_FALSE(world_.maf.LookupKm(c.km_id).has_value());
}

TEST_F(MafTest, ClientWithoutCertificateCannotConnect) {
  auto link = world_.DeliveryLink("");
  ASSERT_NE(link, nullptr);
  EXPECT_FALSE(link->Handshake());
  EXPECT_EQ(StoredCredentials(), 0u);
}

TEST_F(MafTest, MalformedBodiesAre400AndStoreNothing) {
  Credential c = NewCredential(1, 1);
  nlohmann::json missing = Payload(c);
  missing.erase("generation");
  nlohmann::json wrong_type = Payload(c);
  wrong_type["enroleeId"] = "1";
  nlohmann::json bad_id = Payload(c);
  bad_id["kmId"] = "has space@mef.example.com";
  for (const std::string& body : {std::string("{\"kmId\":"), std::string("[]"), std::string(""),
                                  missing.dump(), wrong_type.dump(), bad_id.dump()}) {
    proto::HttpResponse response = Deliver(body);
    EXPECT_EQ(response.status, 400) << body << " -> " << response.body;
    EXPECT_EQ(Header(response, "X-M2M-RSC"), "4000") << body;
  }
  EXPECT_EQ(StoredCredentials(), 0u);
  EXPECT_EQ(CountAudit(*world_.store), 0u);
}

TEST_F(MafTest, NumbersThatAreNotIntegersInRangeAre400AndStoreNothing) {
  Credential c = NewCredential(1, 1);
  // The member written as raw JSON text, so that 1e3 and 2^70 reach the parser as sent.
  auto with = [&](const std::string& name, const std::string& raw) {
    nlohmann::json payload = Payload(c);
    payload.erase(name);
    std::string body = payload.dump();
    body.insert(body.size() - 1, ",\"" + name + "\":" + raw);
    return body;
  };
  const std::string kTooBig[] = {"1180591620717411303424", "18446744073709551616",
                                 "9223372036854775808"};  // 2^70, 2^64, 2^63
  std::vector<std::string> bodies;
  for (const std::string name : {"enroleeId", "generation", "expiresAt"}) {
    for (const std::string raw : {"1.5", "1e3", "1.0", "0", "-5", "true", "null", "\"7\""}) {
      bodies.push_back(with(name, raw));
    }
    for (const std::string& raw : kTooBig) bodies.push_back(with(name, raw));
  }
  bodies.push_back(with("expiresAt", "253402300800"));  // after 9999-12-31T23:59:59Z
  for (const std::string raw : {"1.5", "-5", "18446744073709551616", "9223372036854775808"}) {
    bodies.push_back("{\"enroleeId\":" + raw + ",\"generation\":2,\"retire\":true}");
    bodies.push_back("{\"enroleeId\":1,\"generation\":" + raw + ",\"retire\":true}");
  }
  for (const std::string& body : bodies) {
    proto::HttpResponse response = Deliver(body);
    EXPECT_EQ(response.status, 400) << body << " -> " << response.body;
    EXPECT_EQ(Header(response, "X-M2M-RSC"), "4000") << body;
  }
  EXPECT_EQ(StoredCredentials(), 0u);
  EXPECT_EQ(CountAudit(*world_.store), 0u);
  // The bounds themselves are accepted.
  EXPECT_EQ(Deliver(with("expiresAt", "253402300799")).status, 201);
  EXPECT_NE(Deliver(with("expiresAt", "253402300799")).body.find("\"stored\":false"),
            std::string::npos);
}

TEST_F(MafTest, WrongKmLengthOrEncodingIs400) {
  Credential c = NewCredential(1, 1);
  for (const std::string& km : {HexLower(Bytes(c.km.begin(), c.km.end() - 1)),
                                HexLower(c.km) + "00", HexLower(c.km).substr(1), std::string(),
                                std::string(64, 'g')}) {
    nlohmann::json payload = Payload(c);
    payload["km"] = km;
    proto::HttpResponse response = Deliver(payload.dump());
    EXPECT_EQ(response.status, 400) << km.size() << " -> " << response.body;
    EXPECT_EQ(Header(response, "X-M2M-RSC"), "4000");
  }
  EXPECT_EQ(StoredCredentials(), 0u);
  EXPECT_FALSE(world_.maf.LookupKm(c.km_id).has_value());
}

TEST_F(MafTest, WrongPathOrMethodIsRefused) {
  Credential c = NewCredential(1, 1);
  EXPECT_EQ(Deliver(Payload(c).dump(), "mef", "/maf/v1/credential").status, 404);
  auto link = world_.DeliveryLink("mef");
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(link->Handshake());
  auto response = link->Exchange(JsonRequest("GET", "/maf/v1/credentials", "", ""));
  ASSERT_TRUE(Ok(response));
  EXPECT_EQ(response->status, 405);
  EXPECT_EQ(StoredCredentials(), 0u);
}

TEST_F(MafTest, RepeatDeliveryIsAcknowledgedAndStoredOnce) {
  Credential c = NewCredential(7, 1);
  ASSERT_EQ(Deliver(Payload(c).dump()).status, 201);
  proto::HttpResponse repeat = Deliver(Payload(c).dump());
  EXPECT_EQ(repeat.status, 200) << repeat.body;
  EXPECT_EQ(Header(repeat, "X-M2M-RSC"), "2000");
  EXPECT_EQ(JsonBody(repeat).value("stored", true), false);
  EXPECT_EQ(StoredCredentials(), 1u);
  EXPECT_EQ(AuditCount("credential.receive"), 1);
  ExpectLookup(c);
}

TEST_F(MafTest, NewerGenerationReplacesOlder) {
  Credential old_credential = NewCredential(7, 1);
  Credential new_credential = NewCredential(7, 2);
  ASSERT_EQ(Deliver(Payload(old_credential).dump()).status, 201);
  ExpectLookup(old_credential);
  ASSERT_EQ(Deliver(Payload(new_credential).dump()).status, 201);
  EXPECT_FALSE(world_.maf.LookupKm(old_credential.km_id).has_value());
  ExpectLookup(new_credential);
  EXPECT_EQ(StoredCredentials(), 1u);

  // A late repeat of the older generation does not bring it back.
  proto::HttpResponse late = Deliver(Payload(old_credential).dump());
  EXPECT_EQ(late.status, 200) << late.body;
  EXPECT_EQ(JsonBody(late).value("stored", true), false);
  EXPECT_FALSE(world_.maf.LookupKm(old_credential.km_id).has_value());
  ExpectLookup(new_credential);

  // Other enrolees are unaffected.
  Credential other = NewCredential(8, 1);
  ASSERT_EQ(Deliver(Payload(other).dump()).status, 201);
  ExpectLookup(other);
  ExpectLookup(new_credential);
}

// POST /maf/v1/credentials/batch: one answer per delivery, in order, each what the single
// delivery would have answered; a malformed item is refused alone.
TEST_F(MafTest, BatchAnswersEachDeliveryAsASingleDeliveryWould) {
  Credential a = NewCredential(7, 1), b = NewCredential(8, 1);
  ASSERT_EQ(Deliver(Payload(a).dump()).status, 201);
  nlohmann::json malformed = Payload(NewCredential(9, 1));
  malformed["km"] = "00";
  nlohmann::json batch = {{"deliveries",
                           {Payload(b),
                            Payload(a),
                            malformed,
                            {{"retire", true}, {"enroleeId", 7}, {"generation", 2}}}}};
  proto::HttpResponse response = Deliver(batch.dump(), "mef", "/maf/v1/credentials/batch");
  ASSERT_EQ(response.status, 200) << response.body;
  nlohmann::json results = JsonBody(response)["results"];
  ASSERT_EQ(results.size(), 4u) << response.body;
  EXPECT_EQ(results[0], (nlohmann::json{{"status", 201}, {"kmId", b.km_id}, {"stored", true}}));
  EXPECT_EQ(results[1], (nlohmann::json{{"status", 200}, {"kmId", a.km_id}, {"stored", false}}));
  EXPECT_EQ(results[2],
            (nlohmann::json{{"status", 400}, {"error", "km must be 32 octets in hex"}}));
  EXPECT_EQ(results[3], (nlohmann::json{{"status", 201}, {"enroleeId", 7}, {"retired", true}}));
  ExpectLookup(b);
  EXPECT_FALSE(world_.maf.LookupKm(a.km_id).has_value()) << "retired in the same batch";
  EXPECT_EQ(StoredCredentials(), 1u);
  EXPECT_EQ(AuditCount("credential.receive"), 2);
  EXPECT_EQ(AuditCount("credential.retire"), 1);
}

TEST_F(MafTest, MalformedBatchesAre400AndStoreNothing) {
  nlohmann::json one = Payload(NewCredential(7, 1));
  nlohmann::json too_many = {{"deliveries", nlohmann::json::array()}};
  for (size_t i = 0; i <= Maf::kMaxBatch; ++i) too_many["deliveries"].push_back(one);
  for (const std::string& body :
       {std::string(R"({"deliveries":[]})"), std::string(R"({"deliveries":{}})"),
        std::string(R"([{"deliveries":[]}])"),
        nlohmann::json{{"deliveries", {one}}, {"extra", 1}}.dump(), too_many.dump()}) {
    proto::HttpResponse response = Deliver(body, "mef", "/maf/v1/credentials/batch");
    EXPECT_EQ(response.status, 400) << body.substr(0, 80) << ": " << response.body;
  }
  EXPECT_EQ(
      Deliver(nlohmann::json{{"deliveries", {one}}}.dump(), "intruder", "/maf/v1/credentials/batch")
          .status,
      403);
  EXPECT_EQ(StoredCredentials(), 0u);
}

TEST_F(MafTest, ExpiredCredentialIsNotUsable) {
  Credential c = NewCredential(3, 1, /*lifetime=*/100);
  ASSERT_EQ(Deliver(Payload(c).dump()).status, 201);
  world_.clock.Advance(99);
  ExpectLookup(c);
  SecretBytes km(c.km, SecretAccess::ForCrypto());
  auto link = world_.MafDeviceLink(c.km_id, km);
  ASSERT_NE(link, nullptr);
  EXPECT_TRUE(link->Handshake());

  world_.clock.Advance(1);
  EXPECT_FALSE(world_.maf.LookupKm(c.km_id).has_value());
  auto expired_link = world_.MafDeviceLink(c.km_id, km);
  ASSERT_NE(expired_link, nullptr);
  EXPECT_FALSE(expired_link->Handshake());
}

TEST_F(MafTest, DeviceSessionNeedsTheRightPathAndMethod) {
  Credential c = NewCredential(3, 1);
  ASSERT_EQ(Deliver(Payload(c).dump()).status, 201);
  SecretBytes km(c.km, SecretAccess::ForCrypto());
  auto link = world_.MafDeviceLink(c.km_id, km, PskProfile::kTls12PskCbc);
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(link->Handshake());
  auto wrong_path = link->Exchange(JsonRequest("GET", "/maf/v1/sessions", "", ""));
  ASSERT_TRUE(Ok(wrong_path));
  EXPECT_EQ(wrong_path->status, 404);
  auto wrong_method = link->Exchange(JsonRequest("POST", "/maf/v1/session", "{}"));
  ASSERT_TRUE(Ok(wrong_method));
  EXPECT_EQ(wrong_method->status, 405);
  auto ok = link->Exchange(JsonRequest("GET", "/maf/v1/session", "", ""));
  ASSERT_TRUE(Ok(ok));
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(JsonBody(*ok).value("kmId", ""), c.km_id);
}

}  // namespace
}  // namespace mte::testing
