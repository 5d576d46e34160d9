// The development PKI is checked with the independent openssl CLI (verify, x509) and with
// OpenSSL's own host-name matching.
#include "testlib/temp_dir.h"
#include "crypto/pki.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

namespace fs = std::filesystem;

using testlib::TempDir;

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    return result;
  }
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    result.output.append(buf.data(), n);
  }
  result.status = ::pclose(pipe);
  return result;
}

std::string Q(const fs::path& p) {
  return "'" + p.string() + "'";
}

unsigned ModeOf(const fs::path& path) {
  struct stat st {};

  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

X509Ptr LoadCert(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  EXPECT_TRUE(bio) << path;
  if (!bio) {
    return nullptr;
  }
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

std::time_t TimeOf(const ASN1_TIME* t) {
  std::tm tm{};
  EXPECT_EQ(ASN1_TIME_to_tm(t, &tm), 1);
  return ::timegm(&tm);
}

std::vector<LeafSpec> StandardLeaves() {
  LeafSpec server;
  server.file_stem = "mef";
  server.common_name = "mef.example.com";
  server.dns_names = {"mef.example.com", "localhost"};
  server.ip_addresses = {"127.0.0.1", "::1"};
  LeafSpec client;
  client.file_stem = "device-1";
  client.common_name = "device-1";
  client.dns_names = {"device-1.example.com"};
  client.server_auth = false;
  client.client_auth = true;
  LeafSpec both;
  both.file_stem = "maf";
  both.common_name = "maf.example.com";
  both.dns_names = {"maf.example.com"};
  both.client_auth = true;
  return {server, client, both};
}

// 2026-03-01T12:00:00Z, a fixed "now" so validity dates are checkable.
SystemTime FixedNow() {
  return std::chrono::system_clock::from_time_t(1772366400);
}

class PkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = CreateDevPki(dir_.path() / "pki", "OpenMTE Dev CA", StandardLeaves(),
                          std::chrono::system_clock::now());
    ASSERT_TRUE(r.has_value()) << Describe(r.error());
  }

  fs::path P(const std::string& name) const { return dir_.path() / "pki" / name; }

  TempDir dir_;
};

TEST_F(PkiTest, WritesFilesWithTheRightModes) {
  for (std::string stem : {"ca", "mef", "device-1", "maf"}) {
    EXPECT_EQ(ModeOf(P(stem + ".key")), 0600u) << stem;
    EXPECT_EQ(ModeOf(P(stem + ".crt")), 0644u) << stem;
    std::ifstream key(P(stem + ".key"));
    std::string first;
    std::getline(key, first);
    EXPECT_EQ(first, "-----BEGIN PRIVATE KEY-----") << stem;  // PKCS#8, unencrypted
    auto r = RunCommand("openssl pkey -noout -in " + Q(P(stem + ".key")));
    EXPECT_EQ(r.status, 0) << r.output;
  }
}

TEST_F(PkiTest, OpensslVerifiesLeavesAgainstTheCa) {
  for (std::string stem : {"mef", "device-1", "maf"}) {
    auto r = RunCommand("openssl verify -x509_strict -CAfile " + Q(P("ca.crt")) + " " +
                        Q(P(stem + ".crt")));
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(": OK"), std::string::npos) << r.output;
  }
  auto server =
      RunCommand("openssl verify -purpose sslserver -verify_hostname mef.example.com -CAfile " +
                 Q(P("ca.crt")) + " " + Q(P("mef.crt")));
  EXPECT_EQ(server.status, 0) << server.output;
  auto client = RunCommand("openssl verify -purpose sslclient -CAfile " + Q(P("ca.crt")) + " " +
                           Q(P("device-1.crt")));
  EXPECT_EQ(client.status, 0) << client.output;
  auto maf = RunCommand("openssl verify -purpose sslclient -CAfile " + Q(P("ca.crt")) + " " +
                        Q(P("maf.crt")));
  EXPECT_EQ(maf.status, 0) << maf.output;
}

TEST_F(PkiTest, OpensslRejectsWrongPurposeHostAndCa) {
  auto client_as_server = RunCommand("openssl verify -purpose sslserver -CAfile " + Q(P("ca.crt")) +
                                     " " + Q(P("device-1.crt")));
  EXPECT_NE(client_as_server.status, 0) << client_as_server.output;
  auto server_as_client = RunCommand("openssl verify -purpose sslclient -CAfile " + Q(P("ca.crt")) +
                                     " " + Q(P("mef.crt")));
  EXPECT_NE(server_as_client.status, 0) << server_as_client.output;
  auto wrong_host = RunCommand("openssl verify -verify_hostname other.example.com -CAfile " +
                               Q(P("ca.crt")) + " " + Q(P("mef.crt")));
  EXPECT_NE(wrong_host.status, 0) << wrong_host.output;

  // A second, independent CA does not vouch for our leaves.
  TempDir other;
  ASSERT_TRUE(
      CreateDevPki(other.path(), "Other CA", {}, std::chrono::system_clock::now()).has_value());
  auto foreign =
      RunCommand("openssl verify -CAfile " + Q(other.path() / "ca.crt") + " " + Q(P("mef.crt")));
  EXPECT_NE(foreign.status, 0) << foreign.output;
}

TEST_F(PkiTest, SubjectAltNameAndExtendedKeyUsage) {
  auto mef =
      RunCommand("openssl x509 -noout -ext subjectAltName,extendedKeyUsage -in " + Q(P("mef.crt")));
  ASSERT_EQ(mef.status, 0) << mef.output;
  EXPECT_NE(mef.output.find("DNS:mef.example.com, DNS:localhost, IP Address:127.0.0.1, "
                            "IP Address:0:0:0:0:0:0:0:1"),
            std::string::npos)
      << mef.output;
  EXPECT_NE(mef.output.find("TLS Web Server Authentication"), std::string::npos) << mef.output;
  EXPECT_EQ(mef.output.find("TLS Web Client Authentication"), std::string::npos) << mef.output;

  auto device = RunCommand("openssl x509 -noout -ext subjectAltName,extendedKeyUsage -in " +
                           Q(P("device-1.crt")));
  ASSERT_EQ(device.status, 0) << device.output;
  EXPECT_NE(device.output.find("DNS:device-1.example.com"), std::string::npos) << device.output;
  EXPECT_NE(device.output.find("TLS Web Client Authentication"), std::string::npos);
  EXPECT_EQ(device.output.find("TLS Web Server Authentication"), std::string::npos);

  auto maf = RunCommand("openssl x509 -noout -ext extendedKeyUsage -in " + Q(P("maf.crt")));
  EXPECT_NE(maf.output.find("TLS Web Server Authentication, TLS Web Client Authentication"),
            std::string::npos)
      << maf.output;
}

TEST_F(PkiTest, CaProfile) {
  auto ca = RunCommand("openssl x509 -noout -text -in " + Q(P("ca.crt")));
  ASSERT_EQ(ca.status, 0) << ca.output;
  for (const char* want :
       {"Version: 3 (0x2)", "Signature Algorithm: ecdsa-with-SHA256", "ASN1 OID: prime256v1",
        "Issuer: CN = OpenMTE Dev CA", "Subject: CN = OpenMTE Dev CA",
        "X509v3 Basic Constraints: critical", "CA:TRUE", "X509v3 Key Usage: critical",
        "Certificate Sign, CRL Sign", "X509v3 Subject Key Identifier"}) {
    EXPECT_NE(ca.output.find(want), std::string::npos) << want << "\n" << ca.output;
  }
}

TEST_F(PkiTest, LeafProfile) {
  auto leaf = RunCommand("openssl x509 -noout -text -in " + Q(P("mef.crt")));
  ASSERT_EQ(leaf.status, 0) << leaf.output;
  for (const char* want :
       {"Version: 3 (0x2)", "Signature Algorithm: ecdsa-with-SHA256", "ASN1 OID: prime256v1",
        "Issuer: CN = OpenMTE Dev CA", "Subject: CN = mef.example.com", "CA:FALSE",
        "X509v3 Key Usage: critical", "Digital Signature", "X509v3 Authority Key Identifier",
        "X509v3 Subject Key Identifier"}) {
    EXPECT_NE(leaf.output.find(want), std::string::npos) << want << "\n" << leaf.output;
  }
  EXPECT_EQ(leaf.output.find("Certificate Sign"), std::string::npos);
  EXPECT_EQ(leaf.output.find('*'), std::string::npos);
}

TEST_F(PkiTest, HostNameMatching) {
  X509Ptr mef = LoadCert(P("mef.crt"));
  ASSERT_TRUE(mef);
  EXPECT_EQ(X509_check_host(mef.get(), "mef.example.com", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(mef.get(), "MEF.Example.COM", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(mef.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(mef.get(), "maf.example.com", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_host(mef.get(), "x.mef.example.com", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_host(mef.get(), "example.com", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(mef.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(mef.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(mef.get(), "127.0.0.2", 0), 0);
}

TEST_F(PkiTest, SerialsAreRandomPositiveAndDistinct) {
  std::set<std::string> serials;
  for (std::string stem : {"ca", "mef", "device-1", "maf"}) {
    X509Ptr cert = LoadCert(P(stem + ".crt"));
    ASSERT_TRUE(cert);
    const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
    EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER) << "negative serial";
    BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
    ASSERT_TRUE(bn);
    EXPECT_LE(BN_num_bits(bn.get()), 128);
    EXPECT_GT(BN_num_bits(bn.get()), 64);
    serials.insert(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(serial)),
                               static_cast<size_t>(ASN1_STRING_length(serial))));
  }
  EXPECT_EQ(serials.size(), 4u);
}

TEST(PkiValidityTest, DatesFollowTheDocumentedValidity) {
  TempDir dir;
  ASSERT_TRUE(CreateDevPki(dir.path(), "CA", StandardLeaves(), FixedNow()).has_value());
  const std::time_t now = std::chrono::system_clock::to_time_t(FixedNow());
  X509Ptr ca = LoadCert(dir.path() / "ca.crt");
  X509Ptr leaf = LoadCert(dir.path() / "mef.crt");
  ASSERT_TRUE(ca && leaf);
  EXPECT_EQ(TimeOf(X509_get0_notBefore(ca.get())), now - 3600);
  EXPECT_EQ(TimeOf(X509_get0_notBefore(leaf.get())), now - 3600);
  // 2036-03-01T11:00:00Z and 2028-03-01T11:00:00Z (calendar years).
  EXPECT_EQ(TimeOf(X509_get0_notAfter(ca.get())), 2087982000);
  EXPECT_EQ(TimeOf(X509_get0_notAfter(leaf.get())), 1835521200);
}

// ---- refusals ------------------------------------------------------------------------------

void ExpectConfigRefusal(const std::vector<LeafSpec>& leaves, const std::string& needle) {
  TempDir dir;
  fs::path out = dir.path() / "pki";
  auto r = CreateDevPki(out, "CA", leaves, std::chrono::system_clock::now());
  ASSERT_FALSE(r.has_value()) << needle;
  EXPECT_EQ(r.error().kind, ErrorKind::kLocalUsage);
  EXPECT_EQ(r.error().code, Errc::kConfig);
  EXPECT_NE(r.error().detail.find(needle), std::string::npos) << r.error().detail;
  EXPECT_FALSE(fs::exists(out)) << "nothing is written when the input is refused";
}

LeafSpec Leaf(std::vector<std::string> dns, std::vector<std::string> ips = {}) {
  LeafSpec l;
  l.file_stem = "leaf";
  l.common_name = "leaf";
  l.dns_names = std::move(dns);
  l.ip_addresses = std::move(ips);
  return l;
}

TEST(PkiRefusalTest, WildcardDnsNamesAreRefused) {
  ExpectConfigRefusal({Leaf({"*.example.com"})}, "wildcard");
  ExpectConfigRefusal({Leaf({"mef.example.com", "*"})}, "wildcard");
  ExpectConfigRefusal({Leaf({"m*f.example.com"})}, "wildcard");
}

TEST(PkiRefusalTest, BadDnsNamesAreRefused) {
  for (const std::string& bad : std::vector<std::string>{
           "", ".", "a..b", "-a.example.com", "a-.example.com", "a.example.com.", "a b.example.com",
           "a_b.example.com", "caf\xc3\xa9.example", "a,DNS:evil.example",
           std::string(64, 'a') + ".com", std::string(254, 'a')}) {
    ExpectConfigRefusal({Leaf({bad})}, "DNS name");
  }
}

TEST(PkiRefusalTest, BadIpAddressesAreRefused) {
  for (std::string bad : {"1.2.3", "1.2.3.4x", "256.1.1.1", "01.2.3.4", "1.2.3.4.5", "", "::g",
                          "1:2:3:4:5:6:7:8:9", "localhost", " 1.2.3.4"}) {
    ExpectConfigRefusal({Leaf({}, {bad})}, "is not an IPv4 or IPv6 address");
  }
}

TEST(PkiRefusalTest, BadLeavesAreRefused) {
  ExpectConfigRefusal({Leaf({})}, "at least one DNS name or IP address");
  LeafSpec no_eku = Leaf({"a.example"});
  no_eku.server_auth = false;
  ExpectConfigRefusal({no_eku}, "serverAuth");
  for (std::string stem : {"", "../x", "a/b", ".hidden", "ca", "a b"}) {
    LeafSpec l = Leaf({"a.example"});
    l.file_stem = stem;
    ExpectConfigRefusal({l}, "file stem");
  }
  ExpectConfigRefusal({Leaf({"a.example"}), Leaf({"b.example"})}, "used twice");
  LeafSpec long_cn = Leaf({"a.example"});
  long_cn.common_name = std::string(65, 'c');
  ExpectConfigRefusal({long_cn}, "common name");
  LeafSpec empty_cn = Leaf({"a.example"});
  empty_cn.common_name = "";
  ExpectConfigRefusal({empty_cn}, "common name");
}

TEST(PkiRefusalTest, RefusesToOverwriteExistingFiles) {
  TempDir dir;
  ASSERT_TRUE(
      CreateDevPki(dir.path(), "CA", {Leaf({"a.example"})}, std::chrono::system_clock::now())
          .has_value());
  std::ifstream before_in(dir.path() / "ca.key");
  std::string before((std::istreambuf_iterator<char>(before_in)), std::istreambuf_iterator<char>());
  auto again =
      CreateDevPki(dir.path(), "CA", {Leaf({"a.example"})}, std::chrono::system_clock::now());
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::kConflict);
  std::ifstream after_in(dir.path() / "ca.key");
  std::string after((std::istreambuf_iterator<char>(after_in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(before, after);

  // A leaf file alone in the way also blocks the whole run, before anything is written.
  TempDir dir2;
  std::ofstream(dir2.path() / "leaf.crt") << "x";
  auto blocked =
      CreateDevPki(dir2.path(), "CA", {Leaf({"a.example"})}, std::chrono::system_clock::now());
  ASSERT_FALSE(blocked.has_value());
  EXPECT_EQ(blocked.error().code, Errc::kConflict);
  EXPECT_FALSE(fs::exists(dir2.path() / "ca.key"));
}

TEST(PkiRefusalTest, CreatesMissingDirectories) {
  TempDir dir;
  fs::path nested = dir.path() / "a" / "b" / "pki";
  ASSERT_TRUE(CreateDevPki(nested, "CA", {}, std::chrono::system_clock::now()).has_value());
  EXPECT_TRUE(fs::exists(nested / "ca.crt"));
  EXPECT_EQ(ModeOf(nested / "ca.key"), 0600u);
}

}  // namespace
}  // namespace mte::crypto
