// mef::RevocationChecker (src/mef/rspf/cert/revocation.h) against answers of the openssl command
// line: a fresh nonce per request, good answers cached until nextUpdate and no longer, the cache
// bounded, a certificate's own responder preferred to the CA's, and a CRL file re-read when it
// changes (made by `openssl ca -revoke/-gencrl`).
#include "mef/rspf/cert/revocation.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "crypto/device_cert.h"
#include "crypto/keys.h"
#include "crypto/openssl_cli.h"
#include "service_harness.h"

namespace mte::testing {
namespace {

using testlib::CliPki;
using testlib::RealNow;

class RevocationCheckerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    pki_ = new CliPki(dir_->path());
    CliPki& p = *pki_;
    ASSERT_TRUE(p.SelfSigned("ca", "Checker Device CA"));
    for (int i = 1; i <= 3; ++i) {
      ASSERT_TRUE(p.Issue("dev" + std::to_string(i), "checker-dev-" + std::to_string(i), "ca",
                          "leaf", "10" + std::to_string(i)));
    }
    ASSERT_TRUE(p.Issue("bare", "checker-bare", "ca", "leaf_bare", "200"));  // no AIA
    testlib::WriteText(p.Path("index.txt"),
                       CliPki::IndexLine("101", "checker-dev-1") +
                           CliPki::IndexLine("102", "checker-dev-2") +
                           CliPki::IndexLine("103", "checker-dev-3") +
                           CliPki::IndexLine("200", "checker-bare"));
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
  }

  RevocationCheckerTest() : clock_(RealNow()) {}

  // The chain VerifyDeviceChain makes of <name> under the CA (the checker's input).
  static crypto::VerifiedChain Chain(const std::string& name) {
    auto chain = crypto::VerifyDeviceChain({pki_->Der(name)}, {{"maker", pki_->Pem("ca"), 2}},
                                           RealNow());
    EXPECT_TRUE(testlib::Ok(chain));
    return chain ? *chain : crypto::VerifiedChain{};
  }

  mef::RevocationChecker Checker(size_t cache_limit = 100) {
    return mef::RevocationChecker(
        [this](const std::string& url, Bytes request, std::function<void(Result<Bytes>)> done) {
          urls_.push_back(url);
          requests_.push_back(request);
          done(pki_->OcspRespond(request, "ca", "-nmin " + std::to_string(nmin_)));
        },
        rng_, clock_, cache_limit);
  }

  static Result<std::string> Check(mef::RevocationChecker& checker,
                                   const crypto::VerifiedChain& chain,
                                   const mef::RevocationPolicy& policy) {
    std::optional<Result<std::string>> out;
    checker.Check(chain, policy, [&](Result<std::string> r) { out = std::move(r); });
    EXPECT_TRUE(out.has_value()) << "the transport answers at once: so must the checker";
    return out ? *out : Result<std::string>(Fail(ErrorKind::kInternal, Errc::kInvariant, "none"));
  }

  // The nonce of a request, as `openssl ocsp -req_text` prints it.
  static std::string NonceText(const Bytes& request) {
    testlib::WriteBytes(pki_->Path("seen.der"), request);
    std::string text = pki_->Output("openssl ocsp -reqin seen.der -req_text");
    auto at = text.find("OCSP Nonce:");
    EXPECT_NE(at, std::string::npos) << text;
    return at == std::string::npos ? "" : text.substr(at, 80);
  }

  static TempDir* dir_;
  static CliPki* pki_;
  crypto::SystemRng rng_;
  FakeClock clock_;
  int nmin_ = 10;
  std::vector<std::string> urls_;
  std::vector<Bytes> requests_;
};

TempDir* RevocationCheckerTest::dir_ = nullptr;
CliPki* RevocationCheckerTest::pki_ = nullptr;

TEST_F(RevocationCheckerTest, GoodAnswersAreCachedUntilNextUpdateAndEachRequestHasItsOwnNonce) {
  auto checker = Checker();
  const mef::RevocationPolicy policy{"maker", "", "", false};
  auto first = Check(checker, Chain("dev1"), policy);
  ASSERT_TRUE(testlib::Ok(first));
  EXPECT_NE(first->find("OCSP good from http://ocsp.example.test:8080/ocsp"), std::string::npos)
      << *first;
  // Within nextUpdate (10 minutes): from the cache, no request.
  clock_.Advance(9 * 60);
  auto cached = Check(checker, Chain("dev1"), policy);
  ASSERT_TRUE(testlib::Ok(cached));
  EXPECT_NE(cached->find("(cached)"), std::string::npos) << *cached;
  EXPECT_EQ(requests_.size(), 1u);
  // Past nextUpdate: asked again, with a fresh nonce (the new answer is valid for 30 minutes).
  clock_.Advance(2 * 60);
  nmin_ = 30;
  auto fresh = Check(checker, Chain("dev1"), policy);
  ASSERT_TRUE(testlib::Ok(fresh));
  EXPECT_EQ(fresh->find("(cached)"), std::string::npos) << *fresh;
  EXPECT_EQ(requests_.size(), 2u);
  EXPECT_NE(NonceText(requests_[0]), NonceText(requests_[1]));
}

TEST_F(RevocationCheckerTest, TheCacheIsBounded) {
  auto checker = Checker(/*cache_limit=*/2);
  const mef::RevocationPolicy policy{"maker", "", "", false};
  for (const char* name : {"dev1", "dev2", "dev3"}) {
    ASSERT_TRUE(testlib::Ok(Check(checker, Chain(name), policy))) << name;
  }
  EXPECT_EQ(requests_.size(), 3u);
  // dev1 was evicted by dev3; dev2 and dev3 are still cached.
  ASSERT_TRUE(testlib::Ok(Check(checker, Chain("dev3"), policy)));
  ASSERT_TRUE(testlib::Ok(Check(checker, Chain("dev2"), policy)));
  EXPECT_EQ(requests_.size(), 3u);
  ASSERT_TRUE(testlib::Ok(Check(checker, Chain("dev1"), policy)));
  EXPECT_EQ(requests_.size(), 4u);
}

TEST_F(RevocationCheckerTest, TheCertificatesOwnResponderWinsOverTheCas) {
  auto checker = Checker();
  const mef::RevocationPolicy policy{"maker", "http://ca-responder.example.test/", "", false};
  ASSERT_TRUE(testlib::Ok(Check(checker, Chain("dev2"), policy)));
  ASSERT_TRUE(testlib::Ok(Check(checker, Chain("bare"), policy)));
  EXPECT_EQ(urls_, (std::vector<std::string>{"http://ocsp.example.test:8080/ocsp",
                                             "http://ca-responder.example.test/"}));
  // No responder anywhere and no CRL: no status to be had (a checker without the cached answer).
  auto other = Checker();
  const mef::RevocationPolicy none{"maker", "", "", false};
  auto refused = Check(other, Chain("bare"), none);
  EXPECT_TRUE(testlib::IsError(refused, ErrorKind::kPeerAuth, Errc::kForbidden,
                               "the certificate names no OCSP responder and device CA 'maker' has "
                               "neither an OCSP URL nor a CRL"));
}

TEST_F(RevocationCheckerTest, ACrlFileIsReadAgainWhenItChanges) {
  // A CRL of its own CA database, so that revoking here does not touch the other tests' CA.
  TempDir crl_dir;
  CliPki p(crl_dir.path());
  ASSERT_TRUE(p.SelfSigned("ca", "CRL Device CA"));
  ASSERT_TRUE(p.IssueDated("dev", "crl-dev", "250101000000Z", "351231235959Z"));
  ASSERT_TRUE(p.Run("openssl ca -batch -config ca.cnf -gencrl -out crl.pem"));
  auto chain = crypto::VerifyDeviceChain({p.Der("dev")}, {{"crl-maker", p.Pem("ca"), 2}},
                                         RealNow());
  ASSERT_TRUE(testlib::Ok(chain));
  auto checker = Checker();
  const mef::RevocationPolicy policy{"crl-maker", "", p.Path("crl.pem").string(), false};
  auto good = Check(checker, *chain, policy);
  ASSERT_TRUE(testlib::Ok(good));
  EXPECT_EQ(good->rfind("CRL good", 0), 0u) << *good;

  ASSERT_TRUE(p.Run("openssl ca -batch -config ca.cnf -revoke dev.crt -crl_reason keyCompromise"));
  ASSERT_TRUE(p.Run("openssl ca -batch -config ca.cnf -gencrl -out crl.new && mv crl.new crl.pem"));
  auto revoked = Check(checker, *chain, policy);
  EXPECT_TRUE(testlib::IsError(revoked, ErrorKind::kPeerAuth, Errc::kForbidden,
                               "device certificate revoked (CRL, at "));
  EXPECT_TRUE(requests_.empty());  // a CRL instead of OCSP

  std::filesystem::remove(p.Path("crl.pem"));
  EXPECT_TRUE(testlib::IsError(Check(checker, *chain, policy), ErrorKind::kPeerAuth,
                               Errc::kForbidden, "is missing"));
}

}  // namespace
}  // namespace mte::testing
