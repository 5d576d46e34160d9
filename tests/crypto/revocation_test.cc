// OCSP and CRL checks against responses and CRLs made by the independent openssl CLI
// (`openssl ocsp` as a responder over an index file, `openssl ca -revoke/-gencrl`).
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "crypto/crl.h"
#include "crypto/device_cert.h"
#include "crypto/ocsp.h"
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
constexpr int64_t kRevokedAt = 1735689600;  // 2025-01-01T00:00:00Z, as written in the index

Bytes NonceOf(uint8_t fill, size_t n = 16) { return Bytes(n, fill); }

class RevocationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    pki_ = new CliPki(dir_->path());
    CliPki& p = *pki_;
    ASSERT_TRUE(p.SelfSigned("ca", "Test Device CA"));
    ASSERT_TRUE(p.SelfSigned("other", "Other Maker CA"));
    ASSERT_TRUE(p.SelfSigned("twin", "Test Device CA"));  // same name as "ca", another key
    ASSERT_TRUE(p.Issue("dev", "dev-1", "ca", "leaf", "1001"));
    ASSERT_TRUE(p.Issue("dev2", "dev-2", "ca", "leaf", "1002"));
    ASSERT_TRUE(p.Issue("revoked", "dev-revoked", "ca", "leaf", "1003"));
    ASSERT_TRUE(p.Issue("unlisted", "dev-unlisted", "ca", "leaf", "1004"));
    ASSERT_TRUE(p.Issue("responder", "OCSP responder", "ca", "ocsp_signer", "1100"));
    ASSERT_TRUE(p.Issue("not_responder", "Not a responder", "ca", "ocsp_not_signer", "1101"));
    ASSERT_TRUE(p.Issue("other_responder", "OCSP responder", "other", "ocsp_signer", "1102"));
    ASSERT_TRUE(p.Issue("int1", "Test Intermediate", "ca", "v3_ca", "2001"));
    ASSERT_TRUE(p.Issue("leaf1", "dev-via-int1", "int1", "leaf", "3001"));
    // RFC 6960 responder database: V(alid) / R(evoked), expiry, revocation, serial, file, name.
    testlib::WriteText(p.Path("index.txt"),
                       CliPki::IndexLine("1001", "dev-1") + CliPki::IndexLine("1002", "dev-2") +
                           CliPki::IndexLine("1003", "dev-revoked", "250101000000Z,keyCompromise") +
                           CliPki::IndexLine("3001", "dev-via-int1"));
  }

  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
    pki_ = nullptr;
    dir_ = nullptr;
  }

  static Bytes Der(const std::string& name) { return pki_->Der(name); }

  // A request made by `openssl ocsp` for <cert> issued by <issuer>.
  static Bytes CliRequest(const std::string& cert, bool nonce = true,
                          const std::string& issuer = "ca") {
    pki_->Run("openssl ocsp -issuer " + issuer + ".crt -cert " + cert + ".crt -reqout req.der" +
              (nonce ? "" : " -no_nonce"));
    return testlib::ReadBytes(pki_->Path("req.der"));
  }

  // `openssl ocsp` as a responder for <ca> answering `request`, signed by <signer>.
  static Bytes Respond(const Bytes& request, const std::string& signer = "ca",
                       const std::string& options = "-nmin 10", const std::string& ca = "ca") {
    return pki_->OcspRespond(request, signer, options, ca);
  }

  static Result<OcspVerdict> Check(const Bytes& response, const std::string& cert,
                                   std::optional<ByteSpan> nonce = std::nullopt,
                                   int64_t now = RealNow(), const std::string& issuer = "ca") {
    OcspCheck check;
    check.expected_nonce = nonce;
    check.now = now;
    return VerifyOcspResponse(response, Der(cert), Der(issuer), check);
  }

  static TempDir* dir_;
  static CliPki* pki_;
};

TempDir* RevocationTest::dir_ = nullptr;
CliPki* RevocationTest::pki_ = nullptr;

// ---- OCSP: verdicts ----------------------------------------------------------------------------

TEST_F(RevocationTest, OcspGood) {
  const int64_t before = RealNow();
  auto v = Check(Respond(CliRequest("dev")), "dev");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->status, CertStatus::kGood);
  EXPECT_EQ(ToString(v->status), "good");
  EXPECT_GE(v->this_update, before - 2);
  EXPECT_LE(v->this_update, RealNow() + 2);
  EXPECT_EQ(v->next_update, v->this_update + 600);  // -nmin 10
  EXPECT_EQ(v->revoked_at, 0);
}

TEST_F(RevocationTest, OcspRevokedWithTimeAndReason) {
  auto v = Check(Respond(CliRequest("revoked")), "revoked");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->status, CertStatus::kRevoked);
  EXPECT_EQ(ToString(v->status), "revoked");
  EXPECT_EQ(v->revoked_at, kRevokedAt);
  EXPECT_EQ(v->revocation_reason, "keyCompromise");
}

TEST_F(RevocationTest, OcspUnknownForASerialMissingFromTheIndex) {
  auto v = Check(Respond(CliRequest("unlisted")), "unlisted");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->status, CertStatus::kUnknown);
  EXPECT_EQ(ToString(v->status), "unknown");
}

TEST_F(RevocationTest, OcspNextUpdateFromNdays) {
  auto v =
      Check(Respond(CliRequest("dev"), "ca", "-ndays 2"), "dev", std::nullopt, RealNow() + kDay);
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->next_update, v->this_update + 2 * kDay);
}

// ---- OCSP: our request -------------------------------------------------------------------------

TEST_F(RevocationTest, MakeOcspRequestIsAnsweredByOpensslOcsp) {
  const Bytes nonce = NonceOf(0xa5, 32);
  auto request = MakeOcspRequest(Der("dev"), Der("ca"), nonce);
  ASSERT_TRUE(Ok(request));
  EXPECT_EQ(request->nonce, nonce);
  // The responder found our CertID in its index (a mismatched CertID would be "unknown").
  auto good = Check(Respond(request->der), "dev", ByteSpan(nonce));
  ASSERT_TRUE(Ok(good));
  EXPECT_EQ(good->status, CertStatus::kGood);
  auto request2 = MakeOcspRequest(Der("revoked"), Der("ca"), nonce);
  ASSERT_TRUE(Ok(request2));
  auto revoked = Check(Respond(request2->der), "revoked", ByteSpan(nonce));
  ASSERT_TRUE(Ok(revoked));
  EXPECT_EQ(revoked->status, CertStatus::kRevoked);
}

TEST_F(RevocationTest, MakeOcspRequestDecodesAsSha1CertIdWithNonce) {
  auto request = MakeOcspRequest(Der("dev"), Der("ca"), NonceOf(0x5a, 16));
  ASSERT_TRUE(Ok(request));
  testlib::WriteBytes(pki_->Path("ours.der"), request->der);
  const std::string text = pki_->Output("openssl ocsp -reqin ours.der -req_text -noverify");
  EXPECT_NE(text.find("Hash Algorithm: sha1"), std::string::npos) << text;
  EXPECT_NE(text.find("Serial Number: 1001"), std::string::npos) << text;
  EXPECT_NE(text.find("OCSP Nonce:"), std::string::npos) << text;
  EXPECT_NE(text.find("04105A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A"), std::string::npos) << text;
  // Same CertID bytes as openssl's own request (which differs only in its random nonce).
  const std::string cli = pki_->Output(
      "openssl ocsp -issuer ca.crt -cert dev.crt -no_nonce -reqout cli.der && "
      "openssl ocsp -reqin cli.der -req_text");
  const auto cert_id = [](const std::string& s) {
    const size_t at = s.find("Certificate ID:");
    return at == std::string::npos ? std::string() : s.substr(at, s.find("Serial", at) - at);
  };
  EXPECT_FALSE(cert_id(text).empty());
  EXPECT_EQ(cert_id(text), cert_id(cli));
}

TEST_F(RevocationTest, MakeOcspRequestRefusesShortAndLongNonces) {
  EXPECT_TRUE(IsError(MakeOcspRequest(Der("dev"), Der("ca"), NonceOf(1, 15)),
                      ErrorKind::kLocalUsage, Errc::kMalformed));
  EXPECT_TRUE(IsError(MakeOcspRequest(Der("dev"), Der("ca"), NonceOf(1, 33)),
                      ErrorKind::kLocalUsage, Errc::kMalformed));
  EXPECT_TRUE(IsError(MakeOcspRequest(AsBytes("junk"), Der("ca"), NonceOf(1)),
                      ErrorKind::kLocalUsage, Errc::kMalformed));
}

// ---- OCSP: refusals ----------------------------------------------------------------------------

TEST_F(RevocationTest, OcspResponseForAnotherCertificateIsRefused) {
  EXPECT_TRUE(IsError(Check(Respond(CliRequest("dev2")), "dev"), ErrorKind::kPeerProtocol,
                      Errc::kAuthFailed, "OCSP response is for another certificate"));
}

TEST_F(RevocationTest, OcspStaleResponseIsRefused) {
  const Bytes response = Respond(CliRequest("dev"));
  EXPECT_TRUE(Ok(Check(response, "dev", std::nullopt, RealNow() + 500)));
  EXPECT_TRUE(IsError(Check(response, "dev", std::nullopt, RealNow() + 3600),
                      ErrorKind::kPeerProtocol, Errc::kExpired,
                      "OCSP response is stale (nextUpdate "));
}

TEST_F(RevocationTest, OcspWithoutNextUpdateIsUsableForMaxAge) {
  const Bytes response = Respond(CliRequest("dev"), "ca", "");
  auto v = Check(response, "dev");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->next_update, 0);
  EXPECT_TRUE(Ok(Check(response, "dev", std::nullopt, RealNow() + 3000)));
  EXPECT_TRUE(IsError(Check(response, "dev", std::nullopt, RealNow() + 7200),
                      ErrorKind::kPeerProtocol, Errc::kExpired, "no nextUpdate"));
}

TEST_F(RevocationTest, OcspThisUpdateFarInTheFutureIsRefused) {
  const Bytes response = Respond(CliRequest("dev"));
  EXPECT_TRUE(Ok(Check(response, "dev", std::nullopt, RealNow() - 200)));  // within the skew
  EXPECT_TRUE(IsError(Check(response, "dev", std::nullopt, RealNow() - 3600),
                      ErrorKind::kPeerProtocol, Errc::kExpired,
                      "OCSP response is not yet valid (thisUpdate "));
}

TEST_F(RevocationTest, OcspWithoutNonceWhenOneIsExpectedIsRefused) {
  const Bytes response = Respond(CliRequest("dev", /*nonce=*/false));
  const Bytes nonce = NonceOf(7);
  EXPECT_TRUE(IsError(Check(response, "dev", ByteSpan(nonce)), ErrorKind::kPeerProtocol,
                      Errc::kAuthFailed, "OCSP response has no nonce"));
  EXPECT_TRUE(Ok(Check(response, "dev")));  // stapled: no nonce required
}

TEST_F(RevocationTest, OcspWithWrongNonceIsRefused) {
  auto request = MakeOcspRequest(Der("dev"), Der("ca"), NonceOf(0x11));
  ASSERT_TRUE(Ok(request));
  const Bytes response = Respond(request->der);
  const Bytes wrong = NonceOf(0x12);
  EXPECT_TRUE(IsError(Check(response, "dev", ByteSpan(wrong)), ErrorKind::kPeerProtocol,
                      Errc::kAuthFailed, "OCSP response nonce does not match"));
  const Bytes shorter = NonceOf(0x11, 15);
  EXPECT_TRUE(IsError(Check(response, "dev", ByteSpan(shorter)), ErrorKind::kPeerProtocol,
                      Errc::kAuthFailed, "nonce does not match"));
  EXPECT_TRUE(Ok(Check(response, "dev", ByteSpan(request->nonce))));
}

TEST_F(RevocationTest, OcspSignedByAnUnrelatedCaIsRefused) {
  // The other CA answers for our CA's certificate and signs with its own key.
  EXPECT_TRUE(IsError(Check(Respond(CliRequest("dev"), "other"), "dev"), ErrorKind::kPeerProtocol,
                      Errc::kAuthFailed,
                      "OCSP response is not signed by the CA or a delegated responder"));
  // A CA with the same name but another key.
  EXPECT_TRUE(IsError(Check(Respond(CliRequest("dev"), "twin"), "dev"), ErrorKind::kPeerProtocol,
                      Errc::kAuthFailed, "not signed by the CA or a delegated responder"));
  // A responder with id-kp-OCSPSigning issued by the other CA.
  EXPECT_TRUE(IsError(Check(Respond(CliRequest("dev"), "other_responder"), "dev"),
                      ErrorKind::kPeerProtocol, Errc::kAuthFailed,
                      "not signed by the CA or a delegated responder"));
}

TEST_F(RevocationTest, OcspSignedByTheIssuerWithoutCertsIsAccepted) {
  auto v = Check(Respond(CliRequest("dev"), "ca", "-nmin 10 -resp_no_certs"), "dev");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->status, CertStatus::kGood);
}

TEST_F(RevocationTest, OcspDelegatedResponderWithOcspSigningIsAccepted) {
  auto v = Check(Respond(CliRequest("revoked"), "responder"), "revoked");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->status, CertStatus::kRevoked);
  // The responder certificate must be valid at `now` (openssl made it valid for 365 days).
  EXPECT_TRUE(IsError(Check(Respond(CliRequest("dev"), "responder", "-ndays 1000"), "dev",
                            std::nullopt, RealNow() + 400 * kDay),
                      ErrorKind::kPeerProtocol, Errc::kAuthFailed,
                      "not signed by the CA or a delegated responder"));
  // Without its certificate in the response, the delegate cannot be checked.
  EXPECT_TRUE(
      IsError(Check(Respond(CliRequest("dev"), "responder", "-nmin 10 -resp_no_certs"), "dev"),
              ErrorKind::kPeerProtocol, Errc::kAuthFailed,
              "not signed by the CA or a delegated responder"));
}

TEST_F(RevocationTest, OcspDelegatedResponderWithoutOcspSigningIsRefused) {
  EXPECT_TRUE(IsError(Check(Respond(CliRequest("dev"), "not_responder"), "dev"),
                      ErrorKind::kPeerProtocol, Errc::kAuthFailed,
                      "OCSP response is not signed by the CA or a delegated responder"));
}

TEST_F(RevocationTest, OcspForACertificateOfAnIntermediateCa) {
  auto v = Check(Respond(CliRequest("leaf1", true, "int1"), "int1", "-nmin 10", "int1"), "leaf1",
                 std::nullopt, RealNow(), "int1");
  ASSERT_TRUE(Ok(v));
  EXPECT_EQ(v->status, CertStatus::kGood);
}

TEST_F(RevocationTest, OcspResponderStatusesAreErrors) {
  // RFC 6960 §4.2.1: OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } without bytes.
  const struct {
    uint8_t code;
    const char* name;
  } cases[] = {{1, "malformedRequest"}, {2, "internalError"}, {3, "tryLater"},
               {5, "sigRequired"},      {6, "unauthorized"},  {4, "an undefined status (4)"}};
  for (const auto& c : cases) {
    const Bytes der = {0x30, 0x03, 0x0a, 0x01, c.code};
    EXPECT_TRUE(IsError(Check(der, "dev"), ErrorKind::kPeerProtocol, Errc::kMalformed,
                        std::string("OCSP responder answered ") + c.name))
        << c.name;
  }
  // "successful" without responseBytes is not a usable response either.
  const Bytes empty_success = {0x30, 0x03, 0x0a, 0x01, 0x00};
  EXPECT_TRUE(IsError(Check(empty_success, "dev"), ErrorKind::kPeerProtocol, Errc::kMalformed));
}

TEST_F(RevocationTest, OcspGarbageIsRefused) {
  EXPECT_TRUE(IsError(Check(Bytes{}, "dev"), ErrorKind::kPeerProtocol, Errc::kMalformed,
                      "OCSP response is not valid DER"));
  EXPECT_TRUE(IsError(Check(Bytes{0xde, 0xad, 0xbe, 0xef}, "dev"), ErrorKind::kPeerProtocol,
                      Errc::kMalformed, "OCSP response is not valid DER"));
  Bytes trailing = Respond(CliRequest("dev"));
  trailing.push_back(0x00);
  EXPECT_TRUE(IsError(Check(trailing, "dev"), ErrorKind::kPeerProtocol, Errc::kMalformed,
                      "OCSP response is not valid DER"));
}

TEST_F(RevocationTest, OcspTruncatedAtEveryByteIsAnError) {
  const Bytes response = Respond(CliRequest("dev"));
  ASSERT_TRUE(Ok(Check(response, "dev")));
  const Bytes leaf = Der("dev");
  const Bytes issuer = Der("ca");
  OcspCheck check;
  check.now = RealNow();
  for (size_t n = 0; n < response.size(); ++n) {
    auto r = VerifyOcspResponse(ByteSpan(response).first(n), leaf, issuer, check);
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().kind, ErrorKind::kPeerProtocol) << n;
  }
}

TEST_F(RevocationTest, OcspLargerThan64KiBIsRefused) {
  const Bytes big(64 * 1024 + 1, 0x30);
  EXPECT_TRUE(IsError(Check(big, "dev"), ErrorKind::kPeerProtocol, Errc::kTooLarge,
                      "OCSP response larger than 65536 bytes"));
  const Bytes limit(64 * 1024, 0x30);
  EXPECT_TRUE(IsError(Check(limit, "dev"), ErrorKind::kPeerProtocol, Errc::kMalformed));
}

// ---- CRL ---------------------------------------------------------------------------------------

class CrlTest : public RevocationTest {
 protected:
  static void SetUpTestSuite() {
    RevocationTest::SetUpTestSuite();
    CliPki& p = *pki_;
    before_revoke_ = RealNow();
    ASSERT_TRUE(
        p.Run("openssl ca -batch -config ca.cnf -revoke revoked.crt "
              "-crl_reason keyCompromise"));
    after_revoke_ = RealNow();
    ASSERT_TRUE(p.Run("openssl ca -batch -config ca.cnf -gencrl -out crl.pem"));
    ASSERT_TRUE(p.Run("openssl crl -in crl.pem -outform DER -out crl.der"));
    // CRLs of other CAs, with their own openssl ca configuration.
    for (const std::string ca : {"other", "twin"}) {
      const std::string cnf = testlib::ReadText(p.Path("ca.cnf"));
      std::string own = cnf;
      for (const std::string file : {"ca.crt", "ca.key", "ca-db.txt"}) {
        const std::string replacement = ca + file.substr(2);
        own.replace(own.find("$dir/" + file), file.size() + 5, "$dir/" + replacement);
      }
      testlib::WriteText(p.Path(ca + ".cnf"), own);
      testlib::WriteText(p.Path(ca + "-db.txt"), "");
      ASSERT_TRUE(
          p.Run("openssl ca -batch -config " + ca + ".cnf -gencrl -out " + ca + "-crl.pem"));
    }
  }

  static Result<Crl> ParseFile(const std::string& file, int64_t now = RealNow(),
                               const std::string& issuer = "ca") {
    return Crl::Parse(testlib::ReadBytes(pki_->Path(file)), Der(issuer), now);
  }

  static int64_t before_revoke_;
  static int64_t after_revoke_;
};

int64_t CrlTest::before_revoke_ = 0;
int64_t CrlTest::after_revoke_ = 0;

TEST_F(CrlTest, GoodAndRevoked) {
  auto crl = ParseFile("crl.pem");
  ASSERT_TRUE(Ok(crl));
  const OcspVerdict good = crl->Status(Der("dev"));
  EXPECT_EQ(good.status, CertStatus::kGood);
  EXPECT_EQ(good.next_update, crl->next_update());
  EXPECT_EQ(good.next_update - good.this_update, 7 * kDay);  // default_crl_days = 7
  const OcspVerdict revoked = crl->Status(Der("revoked"));
  EXPECT_EQ(revoked.status, CertStatus::kRevoked);
  EXPECT_GE(revoked.revoked_at, before_revoke_ - 1);
  EXPECT_LE(revoked.revoked_at, after_revoke_ + 1);
  EXPECT_EQ(revoked.revocation_reason, "keyCompromise");
  // A certificate of another CA is not judged by this CRL.
  EXPECT_EQ(crl->Status(Der("other_responder")).status, CertStatus::kUnknown);
  EXPECT_EQ(crl->Status(AsBytes("junk")).status, CertStatus::kUnknown);
}

TEST_F(CrlTest, IssuerAndSerialOfAVerifiedChainGiveTheSameVerdicts) {
  auto crl = ParseFile("crl.pem");
  ASSERT_TRUE(Ok(crl));
  const std::vector<DeviceCa> cas{{"maker", pki_->Pem("ca"), 2}};
  for (const auto& [leaf, expected] : std::vector<std::pair<std::string, CertStatus>>{
           {"dev", CertStatus::kGood}, {"revoked", CertStatus::kRevoked}}) {
    auto chain = VerifyDeviceChain({Der(leaf)}, cas, RealNow());
    ASSERT_TRUE(Ok(chain)) << leaf;
    EXPECT_EQ(crl->Status(chain->leaf_issuer_name_der, chain->leaf_serial_der).status, expected)
        << leaf;
    EXPECT_EQ(crl->Status(Der(leaf)).status, expected) << leaf;
  }
  auto revoked = VerifyDeviceChain({Der("revoked")}, cas, RealNow());
  ASSERT_TRUE(Ok(revoked));
  EXPECT_EQ(crl->Status(revoked->leaf_issuer_name_der, revoked->leaf_serial_der).revocation_reason,
            "keyCompromise");
  // Another issuer's name, or bytes that do not decode: not judged by this CRL.
  auto other = VerifyDeviceChain({Der("leaf1")}, {{"line", pki_->Pem("int1"), 2}}, RealNow());
  ASSERT_TRUE(Ok(other));
  EXPECT_EQ(crl->Status(other->leaf_issuer_name_der, revoked->leaf_serial_der).status,
            CertStatus::kUnknown);
  EXPECT_EQ(crl->Status(AsBytes("junk"), revoked->leaf_serial_der).status, CertStatus::kUnknown);
  EXPECT_EQ(crl->Status(revoked->leaf_issuer_name_der, ByteSpan()).status, CertStatus::kUnknown);
}

TEST_F(CrlTest, DerFormIsAccepted) {
  auto crl = ParseFile("crl.der");
  ASSERT_TRUE(Ok(crl));
  EXPECT_EQ(crl->Status(Der("revoked")).status, CertStatus::kRevoked);
  Crl moved = std::move(*crl);
  EXPECT_EQ(moved.Status(Der("dev")).status, CertStatus::kGood);
}

TEST_F(CrlTest, StaleCrlIsRefused) {
  EXPECT_TRUE(Ok(ParseFile("crl.pem", RealNow() + 6 * kDay)));
  EXPECT_TRUE(IsError(ParseFile("crl.pem", RealNow() + 8 * kDay), ErrorKind::kLocalUsage,
                      Errc::kConfig, "CRL is stale (nextUpdate "));
}

TEST_F(CrlTest, CrlOfAnotherSignerIsRefused) {
  EXPECT_TRUE(IsError(ParseFile("other-crl.pem"), ErrorKind::kLocalUsage, Errc::kConfig,
                      "CRL is not signed by device CA 'CN=Test Device CA'"));
  // Same issuer name, another key: the signature decides.
  EXPECT_TRUE(IsError(ParseFile("twin-crl.pem"), ErrorKind::kLocalUsage, Errc::kConfig,
                      "CRL is not signed by device CA 'CN=Test Device CA'"));
  EXPECT_TRUE(Ok(ParseFile("twin-crl.pem", RealNow(), "twin")));
}

TEST_F(CrlTest, NotACrlIsRefused) {
  static_cast<void>(Der("ca"));  // writes ca.der
  for (const std::string file : {"ca.crt", "ca.der", "index.txt"}) {
    EXPECT_TRUE(
        IsError(ParseFile(file), ErrorKind::kLocalUsage, Errc::kConfig, "CRL file is not a CRL"))
        << file;
  }
  EXPECT_TRUE(IsError(Crl::Parse({}, Der("ca"), RealNow()), ErrorKind::kLocalUsage, Errc::kConfig,
                      "CRL file is not a CRL"));
  const Bytes der = testlib::ReadBytes(pki_->Path("crl.der"));
  const Bytes issuer = Der("ca");
  for (size_t n = 0; n < der.size(); ++n) {
    ASSERT_FALSE(Crl::Parse(ByteSpan(der).first(n), issuer, RealNow()).has_value()) << n;
  }
}

}  // namespace
}  // namespace mte::crypto
