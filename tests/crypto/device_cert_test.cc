// Device chain judgement, certificate facts and the development device CA, checked against
// certificates made (and judged) by the independent openssl CLI.
#include "crypto/device_cert.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "crypto/device_pki.h"
#include "crypto/openssl_cli.h"
#include "testlib/result_assertions.h"
#include "testlib/temp_dir.h"

namespace mte::crypto {
namespace {

using testlib::CliPki;
using testlib::IsError;
using testlib::Ok;
using testlib::RealNow;
using testlib::TempDir;

constexpr int64_t kDay = 86400;

class DeviceCertTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    pki_ = new CliPki(dir_->path());
    CliPki& p = *pki_;
    ASSERT_TRUE(p.SelfSigned("ca", "Test Device CA"));
    ASSERT_TRUE(p.SelfSigned("other", "Other Maker CA"));
    ASSERT_TRUE(p.Issue("dev", "dev-1", "ca", "leaf", "1001"));
    ASSERT_TRUE(
        p.Issue("int1", "Test Intermediate 1", "ca", "v3_ca", "2001", "P-256", "sha256", 3000));
    ASSERT_TRUE(
        p.Issue("int2", "Test Intermediate 2", "int1", "v3_ca", "2002", "P-256", "sha256", 3000));
    ASSERT_TRUE(p.Issue("leaf1", "dev-via-int1", "int1", "leaf", "3001"));
    ASSERT_TRUE(p.Issue("leaf2", "dev-via-int2", "int2", "leaf", "3002"));
    ASSERT_TRUE(p.Issue("foreign", "dev-foreign", "other", "leaf", "4001"));
    ASSERT_TRUE(p.Issue("rsa", "dev-rsa", "ca", "leaf", "1002", "rsa"));
    ASSERT_TRUE(p.Issue("p384", "dev-p384", "ca", "leaf", "1003", "P-384"));
    ASSERT_TRUE(p.Issue("sha384", "dev-sha384", "ca", "leaf", "1004", "P-256", "sha384"));
    ASSERT_TRUE(p.Issue("nods", "dev-nods", "ca", "leaf_no_ds", "1005"));
    ASSERT_TRUE(p.Issue("server", "dev-server", "ca", "leaf_server", "1006"));
    ASSERT_TRUE(p.Issue("caleaf", "dev-ca", "ca", "leaf_ca", "1007"));
    ASSERT_TRUE(p.Issue("bare", "dev-bare", "ca", "leaf_bare", "1008"));
    ASSERT_TRUE(p.IssueDated("expired", "dev-expired", "200101000000Z", "210101000000Z"));
    ASSERT_TRUE(p.IssueDated("future", "dev-future", "400101000000Z", "410101000000Z"));
    ASSERT_TRUE(p.SelfSigned("pinned", "dev-pinned", "leaf", 30));
  }

  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
    pki_ = nullptr;
    dir_ = nullptr;
  }

  static Bytes Der(const std::string& name) { return pki_->Der(name); }

  static DeviceCa Ca(const std::string& name, const std::string& file, int depth = 2) {
    return DeviceCa{name, pki_->Pem(file), depth};
  }

  static Result<VerifiedChain> Verify(const std::vector<std::string>& chain,
                                      const std::vector<DeviceCa>& cas, int64_t now = RealNow()) {
    std::vector<Bytes> der;
    for (const auto& name : chain) {
      der.push_back(Der(name));
    }
    return VerifyDeviceChain(der, cas, now);
  }

  static Result<VerifiedChain> VerifyByRoot(const std::string& leaf, int64_t now = RealNow()) {
    return Verify({leaf}, {Ca("maker", "ca")}, now);
  }

  static TempDir* dir_;
  static CliPki* pki_;
};

TempDir* DeviceCertTest::dir_ = nullptr;
CliPki* DeviceCertTest::pki_ = nullptr;

// ---- DescribeCertificate -----------------------------------------------------------------------

TEST_F(DeviceCertTest, DescribeDigestsEqualOpensslAndSha256sum) {
  auto facts = DescribeCertificate(Der("dev"));
  ASSERT_TRUE(Ok(facts));
  const std::string cert_sum =
      pki_->Output("openssl x509 -in dev.crt -outform DER | sha256sum | cut -d' ' -f1");
  const std::string spki_sum = pki_->Output(
      "openssl x509 -in dev.crt -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum | "
      "cut -d' ' -f1");
  EXPECT_EQ(facts->cert_sha256 + "\n", cert_sum);
  EXPECT_EQ(facts->spki_sha256 + "\n", spki_sum);
  EXPECT_EQ(facts->cert_sha256.size(), 64u);
}

TEST_F(DeviceCertTest, DescribeSubjectSerialAndOcspUrlEqualOpenssl) {
  auto facts = DescribeCertificate(Der("dev"));
  ASSERT_TRUE(Ok(facts));
  EXPECT_EQ("serial=" + facts->serial_hex + "\n",
            pki_->Output("openssl x509 -in dev.crt -noout -serial"));
  EXPECT_EQ(facts->serial_hex, "1001");
  EXPECT_EQ("subject=" + facts->subject + "\n",
            pki_->Output("openssl x509 -in dev.crt -noout -subject -nameopt RFC2253"));
  EXPECT_EQ(facts->subject, "CN=dev-1");
  EXPECT_EQ(facts->ocsp_url + "\n", pki_->Output("openssl x509 -in dev.crt -noout -ocsp_uri"));
  EXPECT_EQ(facts->ocsp_url, "http://ocsp.example.test:8080/ocsp");
  auto ca = DescribeCertificate(Der("ca"));
  ASSERT_TRUE(Ok(ca));
  EXPECT_EQ(ca->ocsp_url, "");
}

TEST_F(DeviceCertTest, DescribeDatesAreTheOnesGivenToOpensslCa) {
  auto facts = DescribeCertificate(Der("expired"));
  ASSERT_TRUE(Ok(facts));
  EXPECT_EQ(facts->not_before, 1577836800);  // 2020-01-01T00:00:00Z
  EXPECT_EQ(facts->not_after, 1609459200);   // 2021-01-01T00:00:00Z
  auto future = DescribeCertificate(Der("future"));
  ASSERT_TRUE(Ok(future));
  EXPECT_EQ(future->not_before, 2208988800);  // 2040-01-01T00:00:00Z
}

TEST_F(DeviceCertTest, DescribeRefusesGarbageTruncationAndTrailingBytes) {
  Bytes der = Der("dev");
  EXPECT_TRUE(IsError(DescribeCertificate({}), ErrorKind::kPeerProtocol, Errc::kMalformed));
  EXPECT_TRUE(IsError(DescribeCertificate(AsBytes("not a certificate")), ErrorKind::kPeerProtocol,
                      Errc::kMalformed));
  for (size_t n = 0; n < der.size(); ++n) {
    ASSERT_FALSE(DescribeCertificate(ByteSpan(der).first(n)).has_value()) << n;
  }
  Bytes trailing = der;
  trailing.push_back(0);
  EXPECT_TRUE(IsError(DescribeCertificate(trailing), ErrorKind::kPeerProtocol, Errc::kMalformed));
}

// ---- VerifyDeviceChain -------------------------------------------------------------------------

TEST_F(DeviceCertTest, GoodDirectlyUnderTheRoot) {
  auto v = VerifyByRoot("dev");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->ca_name, "maker");
  EXPECT_EQ(v->issuer_der, Der("ca"));
  EXPECT_EQ(v->leaf_der, Der("dev"));
  EXPECT_EQ(v->leaf.subject, "CN=dev-1");
  // openssl agrees.
  EXPECT_TRUE(pki_->Run("openssl verify -CAfile ca.crt -purpose sslclient dev.crt"));
}

TEST_F(DeviceCertTest, GoodViaAnIntermediate) {
  auto v = Verify({"leaf1", "int1"}, {Ca("maker", "ca")});
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->ca_name, "maker");
  EXPECT_EQ(v->issuer_der, Der("int1"));
  EXPECT_TRUE(pki_->Run("openssl verify -CAfile ca.crt -untrusted int1.crt leaf1.crt"));
}

TEST_F(DeviceCertTest, AnIntermediateCanBeTheTrustAnchor) {
  auto v = Verify({"leaf1"}, {Ca("other-maker", "other"), Ca("line-1", "int1")});
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->ca_name, "line-1");
  EXPECT_EQ(v->issuer_der, Der("int1"));
  // With both configured, the CA nearest to the leaf anchors it.
  auto both = Verify({"leaf1", "int1"}, {Ca("maker", "ca"), Ca("line-1", "int1")});
  ASSERT_TRUE(Ok(both));
  EXPECT_EQ(both->ca_name, "line-1");
}

TEST_F(DeviceCertTest, ChainDeeperThanTheCaAllowsIsRefused) {
  EXPECT_TRUE(Ok(Verify({"leaf2", "int2", "int1"}, {Ca("maker", "ca", 2)})));
  EXPECT_TRUE(IsError(Verify({"leaf2", "int2", "int1"}, {Ca("maker", "ca", 1)}),
                      ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate chain is deeper than device CA 'maker' allows (1)"));
  EXPECT_TRUE(IsError(Verify({"leaf1", "int1"}, {Ca("maker", "ca", 0)}), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed, "deeper than device CA 'maker' allows (0)"));
  EXPECT_TRUE(Ok(Verify({"leaf1"}, {Ca("line-1", "int1", 0)})));
}

TEST_F(DeviceCertTest, CertificateOfAnotherCaIsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("foreign"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate was not issued by a trusted device CA"));
  // Presenting the foreign root alongside does not help.
  EXPECT_TRUE(IsError(Verify({"foreign", "other"}, {Ca("maker", "ca")}), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed, "not issued by a trusted device CA"));
  EXPECT_TRUE(IsError(Verify({"dev"}, {}), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "not issued by a trusted device CA"));
}

TEST_F(DeviceCertTest, MissingIntermediateIsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("leaf1"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate was not issued by a trusted device CA"));
}

TEST_F(DeviceCertTest, ExpiredLeafIsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("expired"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate has expired (notAfter 2021-01-01T00:00:00Z)"));
  // And a current certificate at a later injected time.
  EXPECT_TRUE(IsError(VerifyByRoot("dev", RealNow() + 400 * kDay), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed, "device certificate has expired"));
}

TEST_F(DeviceCertTest, NotYetValidLeafIsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("future"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate is not yet valid (notBefore 2040-01-01T00:00:00Z)"));
  // Inside the leaf's validity but before the CA's: the CA is named.
  EXPECT_TRUE(IsError(VerifyByRoot("expired", 1590000000), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device CA certificate 'CN=Test Device CA' is not yet valid"));
}

TEST_F(DeviceCertTest, RsaAndP384KeysAreRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("rsa"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate key is not EC P-256"));
  EXPECT_TRUE(IsError(VerifyByRoot("p384"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate key is not EC P-256"));
}

TEST_F(DeviceCertTest, SignatureOtherThanEcdsaSha256IsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("sha384"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "not signed with ecdsa-with-SHA256"));
}

TEST_F(DeviceCertTest, KeyUsageWithoutDigitalSignatureIsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("nods"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate keyUsage lacks digitalSignature"));
}

TEST_F(DeviceCertTest, ServerAuthOnlyExtendedKeyUsageIsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("server"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate extendedKeyUsage lacks clientAuth"));
}

TEST_F(DeviceCertTest, LeafWithoutKeyUsageOrEkuIsAccepted) {
  EXPECT_TRUE(Ok(VerifyByRoot("bare")));
}

TEST_F(DeviceCertTest, CaCertificateAsLeafIsRefused) {
  EXPECT_TRUE(IsError(VerifyByRoot("caleaf"), ErrorKind::kPeerAuth, Errc::kAuthFailed,
                      "device certificate is a CA certificate"));
  EXPECT_TRUE(IsError(Verify({"int1"}, {Ca("maker", "ca")}), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed, "is a CA certificate"));
}

TEST_F(DeviceCertTest, SizeLimitsAndUndecodableEntries) {
  std::vector<Bytes> nine(9, Der("dev"));
  EXPECT_TRUE(IsError(VerifyDeviceChain(nine, {Ca("maker", "ca")}, RealNow()),
                      ErrorKind::kPeerProtocol, Errc::kTooLarge));
  std::vector<Bytes> big = {Bytes(16 * 1024 + 1, 0x30)};
  EXPECT_TRUE(IsError(VerifyDeviceChain(big, {Ca("maker", "ca")}, RealNow()),
                      ErrorKind::kPeerProtocol, Errc::kTooLarge));
  std::vector<Bytes> garbage = {Der("dev"), Bytes{0x30, 0x03, 0x02, 0x01}};
  EXPECT_TRUE(IsError(VerifyDeviceChain(garbage, {Ca("maker", "ca")}, RealNow()),
                      ErrorKind::kPeerProtocol, Errc::kMalformed));
  EXPECT_TRUE(IsError(VerifyDeviceChain({}, {Ca("maker", "ca")}, RealNow()), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed));
}

TEST_F(DeviceCertTest, BadDeviceCaConfigurationIsALocalError) {
  EXPECT_TRUE(IsError(Verify({"dev"}, {DeviceCa{"two", pki_->Pem("ca") + pki_->Pem("other"), 2}}),
                      ErrorKind::kLocalUsage, Errc::kConfig, "exactly one certificate"));
  EXPECT_TRUE(IsError(Verify({"dev"}, {Ca("leaf", "dev")}), ErrorKind::kLocalUsage, Errc::kConfig,
                      "is not a CA certificate"));
  EXPECT_TRUE(
      IsError(Verify({"dev"}, {DeviceCa{"empty", "", 2}}), ErrorKind::kLocalUsage, Errc::kConfig));
}

TEST_F(DeviceCertTest, OneLoadedCaSetVerifiesManyChainsFromSeveralThreads) {
  auto set = DeviceCaSet::Load({Ca("maker", "ca"), Ca("line-1", "int1")});
  ASSERT_TRUE(Ok(set));
  EXPECT_EQ((*set)->cas().size(), 2u);
  EXPECT_EQ((*set)->cas()[1], Ca("line-1", "int1"));
  EXPECT_NE((*set)->cas()[0], Ca("maker", "ca", 1));  // the depth is part of the configuration
  const std::vector<Bytes> dev{Der("dev")}, leaf1{Der("leaf1")}, foreign{Der("foreign")};
  std::atomic<int> good{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto a = VerifyDeviceChain(dev, **set, RealNow());
        auto b = VerifyDeviceChain(leaf1, **set, RealNow());
        auto c = VerifyDeviceChain(foreign, **set, RealNow());
        if (a && a->ca_name == "maker" && b && b->ca_name == "line-1") good.fetch_add(1);
        if (!c && c.error().detail.find("not issued by a trusted device CA") != std::string::npos)
          refused.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 80);
  EXPECT_EQ(refused.load(), 80);
}

TEST_F(DeviceCertTest, CaSetWithABadEntryDoesNotLoad) {
  EXPECT_TRUE(IsError(DeviceCaSet::Load({Ca("maker", "ca"), Ca("leaf", "dev")}),
                      ErrorKind::kLocalUsage, Errc::kConfig, "'leaf' is not a CA certificate"));
  EXPECT_TRUE(IsError(DeviceCaSet::Load({Ca("maker", "ca", -1)}), ErrorKind::kLocalUsage,
                      Errc::kConfig, "negative max_chain_depth"));
}

// ---- ReadDeviceCaCertificate, DescribePemCertificate -------------------------------------------

TEST_F(DeviceCertTest, DeviceCaCertificateFactsEqualOpenssl) {
  auto ca = ReadDeviceCaCertificate(pki_->Pem("ca"));
  ASSERT_TRUE(Ok(ca));
  EXPECT_EQ(ca->der, Der("ca"));
  EXPECT_EQ(ca->facts.cert_sha256 + "\n",
            pki_->Output("openssl x509 -in ca.crt -outform DER | sha256sum | cut -d' ' -f1"));
  EXPECT_EQ(ca->common_name, "Test Device CA");
  // An intermediate can be configured too.
  auto intermediate = ReadDeviceCaCertificate(pki_->Pem("int1"));
  ASSERT_TRUE(Ok(intermediate));
  EXPECT_EQ(intermediate->common_name, "Test Intermediate 1");
  auto pem_facts = DescribePemCertificate(pki_->Pem("dev"));
  ASSERT_TRUE(Ok(pem_facts));
  auto der_facts = DescribeCertificate(Der("dev"));
  ASSERT_TRUE(Ok(der_facts));
  EXPECT_EQ(pem_facts->cert_sha256, der_facts->cert_sha256);
  EXPECT_EQ(pem_facts->spki_sha256, der_facts->spki_sha256);
}

TEST_F(DeviceCertTest, DeviceCaCertificateRefusals) {
  EXPECT_TRUE(IsError(ReadDeviceCaCertificate(pki_->Pem("dev")), ErrorKind::kLocalUsage,
                      Errc::kConfig, "not a CA certificate"));
  EXPECT_TRUE(IsError(ReadDeviceCaCertificate(pki_->Pem("pinned")), ErrorKind::kLocalUsage,
                      Errc::kConfig, "not a CA certificate"));
  EXPECT_TRUE(IsError(ReadDeviceCaCertificate(pki_->Pem("ca") + pki_->Pem("other")),
                      ErrorKind::kLocalUsage, Errc::kConfig, "exactly one certificate"));
  EXPECT_TRUE(IsError(ReadDeviceCaCertificate(""), ErrorKind::kLocalUsage, Errc::kConfig,
                      "no PEM certificate"));
  EXPECT_TRUE(IsError(CheckDeviceCaCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                               "-----END CERTIFICATE-----\n"),
                      ErrorKind::kLocalUsage, Errc::kConfig));
  EXPECT_TRUE(Ok(CheckDeviceCaCertificate(pki_->Pem("other"))));
  EXPECT_TRUE(IsError(DescribePemCertificate(pki_->Pem("dev") + pki_->Pem("ca")),
                      ErrorKind::kLocalUsage, Errc::kConfig, "exactly one certificate"));
}

// ---- CheckPinnedLeaf ---------------------------------------------------------------------------

TEST_F(DeviceCertTest, PinnedLeafIsAcceptedByKey) {
  auto v = CheckPinnedLeaf(Der("pinned"), RealNow());
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->ca_name, "");
  EXPECT_TRUE(v->issuer_der.empty());
  EXPECT_EQ(v->leaf.spki_sha256 + "\n",
            pki_->Output("openssl x509 -in pinned.crt -pubkey -noout | openssl pkey -pubin "
                         "-outform DER | sha256sum | cut -d' ' -f1"));
}

TEST_F(DeviceCertTest, PinnedLeafExpiredOrWrongKindIsRefused) {
  EXPECT_TRUE(IsError(CheckPinnedLeaf(Der("pinned"), RealNow() + 31 * kDay), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed, "device certificate has expired"));
  EXPECT_TRUE(IsError(CheckPinnedLeaf(Der("rsa"), RealNow()), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed, "not EC P-256"));
  EXPECT_TRUE(IsError(CheckPinnedLeaf(Der("server"), RealNow()), ErrorKind::kPeerAuth,
                      Errc::kAuthFailed, "lacks clientAuth"));
  EXPECT_TRUE(IsError(CheckPinnedLeaf(AsBytes("x"), RealNow()), ErrorKind::kPeerProtocol,
                      Errc::kMalformed));
}

// ---- the development device CA -----------------------------------------------------------------

unsigned ModeOf(const std::filesystem::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(DevicePkiTest, CaAndDeviceCertificateAreAcceptedByOpenssl) {
  TempDir dir;
  const auto now = std::chrono::system_clock::now();
  ASSERT_TRUE(Ok(CreateDeviceCa(dir.path() / "ca", "OpenMTE Device CA", now)));
  DeviceCertSpec spec;
  spec.device_id = "dev-42";
  spec.ocsp_url = "http://ocsp.example.test/ocsp";
  ASSERT_TRUE(Ok(IssueDeviceCert(dir.path() / "ca", spec, dir.path() / "dev", now)));
  EXPECT_EQ(ModeOf(dir.path() / "ca" / "ca.key"), 0600u);
  EXPECT_EQ(ModeOf(dir.path() / "dev" / "device.key"), 0600u);

  CliPki tool(dir.path());
  EXPECT_EQ(tool.Output("openssl verify -CAfile ca/ca.crt -purpose sslclient dev/device.crt"),
            "dev/device.crt: OK\n");
  const std::string text = tool.Output("openssl x509 -in dev/device.crt -noout -text");
  EXPECT_NE(text.find("Subject: CN = dev-42"), std::string::npos) << text;
  EXPECT_NE(text.find("OCSP - URI:http://ocsp.example.test/ocsp"), std::string::npos) << text;
  EXPECT_NE(text.find("TLS Web Client Authentication"), std::string::npos) << text;
  EXPECT_NE(text.find("X509v3 Key Usage: critical\n                Digital Signature\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ecdsa-with-SHA256"), std::string::npos) << text;
  EXPECT_NE(text.find("NIST CURVE: P-256"), std::string::npos) << text;
  const std::string ca_text = tool.Output("openssl x509 -in ca/ca.crt -noout -text");
  EXPECT_NE(ca_text.find("X509v3 Basic Constraints: critical\n                CA:TRUE\n"),
            std::string::npos)
      << ca_text;
  EXPECT_NE(
      ca_text.find("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign\n"),
      std::string::npos)
      << ca_text;
  EXPECT_EQ(tool.Output("openssl x509 -in dev/device.crt -noout -ocsp_uri"),
            "http://ocsp.example.test/ocsp\n");
  // The key file matches the certificate.
  EXPECT_EQ(tool.Output("openssl x509 -in dev/device.crt -noout -pubkey"),
            tool.Output("openssl pkey -in dev/device.key -pubout"));

  // And this module accepts what it issued.
  tool.Run("openssl x509 -in dev/device.crt -outform DER -out dev/device.der");
  auto v = VerifyDeviceChain({testlib::ReadBytes(dir.path() / "dev" / "device.der")},
                             {DeviceCa{"dev", testlib::ReadText(dir.path() / "ca" / "ca.crt"), 0}},
                             UnixSeconds(now));
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->leaf.ocsp_url, "http://ocsp.example.test/ocsp");
  EXPECT_LE(v->leaf.serial_hex.size(), 32u);  // 128-bit positive serial
  EXPECT_EQ(v->leaf.not_before, UnixSeconds(now) - 3600);
  EXPECT_EQ(v->leaf.not_after, UnixSeconds(now) - 3600 + spec.valid_seconds);
}

TEST(DevicePkiTest, NoOcspUrlMeansNoAuthorityInfoAccess) {
  TempDir dir;
  const auto now = std::chrono::system_clock::now();
  ASSERT_TRUE(Ok(CreateDeviceCa(dir.path(), "CA", now)));
  DeviceCertSpec spec;
  spec.device_id = "dev-1";
  ASSERT_TRUE(Ok(IssueDeviceCert(dir.path(), spec, dir.path() / "out", now)));
  CliPki tool(dir.path());
  const std::string text = tool.Output("openssl x509 -in out/device.crt -noout -text");
  EXPECT_EQ(text.find("Authority Information Access"), std::string::npos) << text;
}

TEST(DevicePkiTest, RefusesOverwriteAndBadInput) {
  TempDir dir;
  const auto now = std::chrono::system_clock::now();
  ASSERT_TRUE(Ok(CreateDeviceCa(dir.path(), "CA", now)));
  EXPECT_TRUE(
      IsError(CreateDeviceCa(dir.path(), "CA", now), ErrorKind::kLocalUsage, Errc::kConflict));
  EXPECT_TRUE(
      IsError(CreateDeviceCa(dir.path() / "x", "", now), ErrorKind::kLocalUsage, Errc::kConfig));
  DeviceCertSpec spec;
  spec.device_id = "dev-1";
  spec.ocsp_url = "ftp://ocsp.example.test/";
  EXPECT_TRUE(IsError(IssueDeviceCert(dir.path(), spec, dir.path() / "a", now),
                      ErrorKind::kLocalUsage, Errc::kConfig));
  spec.ocsp_url = "http://ocsp.example.test/ x";
  EXPECT_TRUE(IsError(IssueDeviceCert(dir.path(), spec, dir.path() / "a", now),
                      ErrorKind::kLocalUsage, Errc::kConfig));
  spec.ocsp_url = "";
  spec.valid_seconds = 0;
  EXPECT_TRUE(IsError(IssueDeviceCert(dir.path(), spec, dir.path() / "a", now),
                      ErrorKind::kLocalUsage, Errc::kConfig));
  spec.valid_seconds = 86400;
  EXPECT_TRUE(IsError(IssueDeviceCert(dir.path() / "nowhere", spec, dir.path() / "a", now),
                      ErrorKind::kLocalUsage, Errc::kConfig));
  ASSERT_TRUE(Ok(IssueDeviceCert(dir.path(), spec, dir.path() / "a", now)));
  EXPECT_TRUE(IsError(IssueDeviceCert(dir.path(), spec, dir.path() / "a", now),
                      ErrorKind::kLocalUsage, Errc::kConflict));
}

}  // namespace
}  // namespace mte::crypto
