// DIR/mte.json: SaveConfig/LoadConfig round trip, and every invalid file is refused with a
// kLocalUsage/kConfig error that names the file.
#include "mte/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "service_harness.h"

namespace mte {
namespace {

using testing::Ok;
using testing::TempDir;

Config SampleConfig(const std::filesystem::path& dir) {
  Config c;
  c.data_dir = dir;
  c.mef_fqdn = "mef.test.example";
  c.maf_fqdn = "maf.test.example";
  c.maf_id = "MAF-ID-7";
  c.bind_address = "0.0.0.0";
  c.mef_port = 18443;
  c.maf_port = 18444;
  c.maf_delivery_port = 18445;
  c.portal_port = 18446;
  c.enrolment_expiry_seconds = 86400;
  c.portal_session_seconds = 1800;
  c.handshake_timeout_ms = 2500;
  c.idle_timeout_ms = 7000;
  c.request_timeout_ms = 4000;
  c.max_connections = 300;
  c.max_connections_per_address = 40;
  c.io_threads = 3;
  c.worker_threads = 5;
  c.rspfs = {"PPSK"};
  c.ocsp_timeout_ms = 1500;
  c.mef_ocsp_url = "http://ocsp.test.example/";
  return c;
}

nlohmann::json SampleJson() {
  return {{"mefFqdn", "mef.test.example"}, {"mafFqdn", "maf.test.example"},
          {"mafId", "MAF-ID-7"},           {"mefPort", 8443},
          {"mafPort", 8444},               {"mafDeliveryPort", 8445},
          {"portalPort", 8446},            {"enrolmentExpirySeconds", 86400},
          {"portalSessionSeconds", 1800},  {"handshakeTimeoutMs", 2500},
          {"idleTimeoutMs", 7000}};
}

class ConfigTest : public ::testing::Test {
 protected:
  std::filesystem::path File() const { return dir_.path() / "mte.json"; }

  void Write(const std::string& text) {
    std::ofstream out(File(), std::ios::trunc);
    out << text;
  }

  // Expects LoadConfig to refuse the current file with kLocalUsage/kConfig naming it.
  void ExpectRefused(const std::string& why) {
    auto loaded = LoadConfig(dir_.path());
    ASSERT_FALSE(loaded.has_value()) << why << ": accepted";
    EXPECT_EQ(loaded.error().kind, ErrorKind::kLocalUsage) << why;
    EXPECT_EQ(loaded.error().code, Errc::kConfig) << why << ": " << Describe(loaded.error());
    EXPECT_NE(loaded.error().detail.find(File().string()), std::string::npos)
        << why << ": " << loaded.error().detail;
  }

  void ExpectRefusedWith(const std::string& member, const nlohmann::json& value) {
    nlohmann::json j = SampleJson();
    j[member] = value;
    Write(j.dump());
    ExpectRefused(member + " = " + value.dump());
  }

  TempDir dir_;
};

TEST_F(ConfigTest, SaveThenLoadRoundTrips) {
  Config saved = SampleConfig(dir_.path());
  ASSERT_TRUE(Ok(SaveConfig(saved)));
  EXPECT_TRUE(std::filesystem::exists(File()));
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "mte.json.tmp"));
  auto loaded = LoadConfig(dir_.path());
  ASSERT_TRUE(Ok(loaded));
  EXPECT_EQ(loaded->data_dir, saved.data_dir);
  EXPECT_EQ(loaded->mef_fqdn, saved.mef_fqdn);
  EXPECT_EQ(loaded->maf_fqdn, saved.maf_fqdn);
  EXPECT_EQ(loaded->maf_id, saved.maf_id);
  EXPECT_EQ(loaded->bind_address, saved.bind_address);
  EXPECT_EQ(loaded->mef_port, saved.mef_port);
  EXPECT_EQ(loaded->maf_port, saved.maf_port);
  EXPECT_EQ(loaded->maf_delivery_port, saved.maf_delivery_port);
  EXPECT_EQ(loaded->portal_port, saved.portal_port);
  EXPECT_EQ(loaded->enrolment_expiry_seconds, saved.enrolment_expiry_seconds);
  EXPECT_EQ(loaded->portal_session_seconds, saved.portal_session_seconds);
  EXPECT_EQ(loaded->handshake_timeout_ms, saved.handshake_timeout_ms);
  EXPECT_EQ(loaded->idle_timeout_ms, saved.idle_timeout_ms);
  EXPECT_EQ(loaded->request_timeout_ms, saved.request_timeout_ms);
  EXPECT_EQ(loaded->max_connections, saved.max_connections);
  EXPECT_EQ(loaded->max_connections_per_address, saved.max_connections_per_address);
  EXPECT_EQ(loaded->io_threads, saved.io_threads);
  EXPECT_EQ(loaded->worker_threads, saved.worker_threads);
  EXPECT_EQ(loaded->rspfs, saved.rspfs);
  EXPECT_EQ(loaded->ocsp_timeout_ms, saved.ocsp_timeout_ms);
  EXPECT_EQ(loaded->mef_ocsp_url, saved.mef_ocsp_url);

  // Saving again replaces the file.
  saved.mef_fqdn = "mef2.test.example";
  ASSERT_TRUE(Ok(SaveConfig(saved)));
  auto reloaded = LoadConfig(dir_.path());
  ASSERT_TRUE(Ok(reloaded));
  EXPECT_EQ(reloaded->mef_fqdn, "mef2.test.example");
}

TEST_F(ConfigTest, OptionalMembersTakeTheirDefaults) {
  nlohmann::json j = SampleJson();
  j.erase("mafId");
  j.erase("enrolmentExpirySeconds");
  j.erase("idleTimeoutMs");
  Write(j.dump());
  auto loaded = LoadConfig(dir_.path());
  ASSERT_TRUE(Ok(loaded));
  EXPECT_EQ(loaded->maf_id, "maf.test.example");  // MAF-ID defaults to the MAF FQDN
  EXPECT_EQ(loaded->enrolment_expiry_seconds, Config{}.enrolment_expiry_seconds);
  EXPECT_EQ(loaded->idle_timeout_ms, Config{}.idle_timeout_ms);
  EXPECT_EQ(loaded->request_timeout_ms, Config{}.request_timeout_ms);
  EXPECT_EQ(loaded->bind_address, "127.0.0.1");
  EXPECT_EQ(loaded->rspfs, (std::vector<std::string>{"CERT", "PPSK"}));  // certificate first
  EXPECT_EQ(loaded->ocsp_timeout_ms, 3000);
  EXPECT_EQ(loaded->mef_ocsp_url, "");
}

TEST_F(ConfigTest, BadRspfAndOcspSettingsAreRefused) {
  ExpectRefusedWith("rspfs", nlohmann::json::array());
  ExpectRefusedWith("rspfs", {"PPSK", "GBA"});  // not offered by this MEF (yet)
  ExpectRefusedWith("rspfs", "PPSK");
  ExpectRefusedWith("ocspTimeoutMs", 0);
  ExpectRefusedWith("ocspTimeoutMs", -5);
  ExpectRefusedWith("mefOcspUrl", "https://ocsp.test.example/");
  ExpectRefusedWith("mefOcspUrl", 7);
}

// The store: "" (the embedded SQLite file) or a PostgreSQL URI without a password; a URI round
// trips with its outbox lease.
TEST_F(ConfigTest, StoreIsAPostgresUriWithoutAPassword) {
  for (const std::string uri :
       {"postgresql:///mte?host=/run/pg", "postgres://mte@db.example:5433/mte",
        "postgresql://db.example/mte?sslmode=verify-full&passfile=/etc/mte/pgpass"}) {
    nlohmann::json j = SampleJson();
    j["store"] = uri;
    j["outboxLeaseSeconds"] = 15;
    Write(j.dump());
    auto loaded = LoadConfig(dir_.path());
    ASSERT_TRUE(Ok(loaded)) << uri;
    EXPECT_EQ(loaded->store, uri);
    EXPECT_EQ(loaded->store_location(), uri);
    EXPECT_EQ(loaded->outbox_lease_seconds, 15);
    ASSERT_TRUE(Ok(SaveConfig(*loaded)));
    auto again = LoadConfig(dir_.path());
    ASSERT_TRUE(Ok(again));
    EXPECT_EQ(again->store, uri);
    EXPECT_EQ(again->outbox_lease_seconds, 15);
  }
  Write(SampleJson().dump());
  auto embedded = LoadConfig(dir_.path());
  ASSERT_TRUE(Ok(embedded));
  EXPECT_EQ(embedded->store_location(), (dir_.path() / "mte.db").string());
  ExpectRefusedWith("store", "postgresql://mte:secret@db.example/mte");
  ExpectRefusedWith("store", "postgresql://db.example/mte?sslmode=require&password=secret");
  ExpectRefusedWith("store", "/var/lib/mte/other.db");
  ExpectRefusedWith("store", "mysql://db.example/mte");
  ExpectRefusedWith("store", "postgresql://db.example/m te");
  ExpectRefusedWith("store", "postgresql://db.example/" + std::string(1100, 'x'));
  ExpectRefusedWith("store", 5);
  ExpectRefusedWith("outboxLeaseSeconds", 0);
  ExpectRefusedWith("outboxLeaseSeconds", 3601);
}

// Integer members must be integers of the field's range: nothing is rounded, wrapped or cast
// (1e300 made the conversion to int undefined; found by fuzz/config_fuzz.cc's sanitizers).
TEST_F(ConfigTest, IntegerMembersThatNoFieldHoldsAreRefused) {
  ExpectRefusedWith("ioThreads", 1e300);
  ExpectRefusedWith("ioThreads", 2.5);
  ExpectRefusedWith("ioThreads", 4294967298LL);  // 2^32 + 2 would wrap to 2
  ExpectRefusedWith("workerThreads", "2");
  ExpectRefusedWith("handshakeTimeoutMs", 1e300);
  ExpectRefusedWith("maxConnections", 18446744073709551615ULL);
  ExpectRefusedWith("tokenLifetimeSeconds", true);
}

TEST_F(ConfigTest, MissingFileIsAConfigErrorNamingThePath) {
  auto loaded = LoadConfig(dir_.path() / "nowhere");
  ASSERT_FALSE(loaded.has_value());
  EXPECT_EQ(loaded.error().kind, ErrorKind::kLocalUsage);
  EXPECT_EQ(loaded.error().code, Errc::kConfig);
  EXPECT_NE(loaded.error().detail.find((dir_.path() / "nowhere" / "mte.json").string()),
            std::string::npos)
      << loaded.error().detail;
}

TEST_F(ConfigTest, BadJsonIsRefused) {
  Write("{\"mefFqdn\": \"mef.test.example\",");
  ExpectRefused("truncated JSON");
  Write("[1, 2, 3]");
  ExpectRefused("array");
  Write("");
  ExpectRefused("empty file");
  Write(SampleJson().dump() + " trailing");
  ExpectRefused("trailing garbage");
}

TEST_F(ConfigTest, MissingOrMistypedRequiredMembersAreRefused) {
  for (const char* member : {"mefFqdn", "mafFqdn", "mefPort", "mafPort", "mafDeliveryPort",
                             "portalPort"}) {
    nlohmann::json j = SampleJson();
    j.erase(member);
    Write(j.dump());
    ExpectRefused(std::string("missing ") + member);
  }
  ExpectRefusedWith("mefFqdn", 42);
  ExpectRefusedWith("mefPort", "8443");
  ExpectRefusedWith("handshakeTimeoutMs", "fast");
}

TEST_F(ConfigTest, EmptyFqdnIsRefused) {
  ExpectRefusedWith("mefFqdn", "");
  ExpectRefusedWith("mafFqdn", "");
  ExpectRefusedWith("mafId", "");
  ExpectRefusedWith("mefFqdn", "mef example.com");
}

// TS-0003 §8.1.2.5: FQDNs are matched exactly against subjectAltName, no wildcards.
TEST_F(ConfigTest, WildcardFqdnIsRefused) {
  ExpectRefusedWith("mefFqdn", "*.example.com");
  ExpectRefusedWith("mafFqdn", "*.example.com");
}

TEST_F(ConfigTest, NonPositiveTimeoutsAndLifetimesAreRefused) {
  for (const char* member : {"handshakeTimeoutMs", "idleTimeoutMs", "requestTimeoutMs",
                             "enrolmentExpirySeconds"}) {
    ExpectRefusedWith(member, 0);
    ExpectRefusedWith(member, -1);
  }
  ExpectRefusedWith("ioThreads", 0);
  ExpectRefusedWith("workerThreads", -2);
}

TEST_F(ConfigTest, ConnectionLimitsOutOfRangeAreRefused) {
  ExpectRefusedWith("maxConnections", 0);
  ExpectRefusedWith("maxConnectionsPerAddress", 0);
  ExpectRefusedWith("maxConnectionsPerAddress", 5000);  // more than maxConnections (4096)
  ExpectRefusedWith("maxConnections", 2000000);
}

TEST_F(ConfigTest, NonPositivePortalSessionLifetimeIsRefused) {
  ExpectRefusedWith("portalSessionSeconds", 0);
  ExpectRefusedWith("portalSessionSeconds", -60);
}

TEST_F(ConfigTest, OutOfRangePortsAreRefused) {
  ExpectRefusedWith("mefPort", 70000);
  ExpectRefusedWith("portalPort", -1);
}

}  // namespace
}  // namespace mte
