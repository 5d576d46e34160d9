// Flow B with the certificate RSPF (docs/protocol.md §17) in one process over memory buffers: the
// enrolee's EnrolmentClient presents the token in the outer session, the MEF selects CERT, and
// the inner handshake is a mutually authenticated one with a device certificate that the openssl
// command line issued. The MEF checks the certificate's revocation status through an in-memory
// OCSP transport answered by `openssl ocsp` over an index file, which can also fail, answer
// garbage, or hold its answer (the connection then waits as a pending reply while other
// enrolments go on).
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "crypto/keys.h"
#include "crypto/openssl_cli.h"
#include "mef/rspf/cert/cert_rspf.h"
#include "mef/rspf/cert/revocation.h"
#include "portal/portal.h"
#include "proto/enrolment.h"
#include "proto/enrolment_client.h"
#include "proto/onem2m.h"
#include "proto/rspf/cert_device.h"
#include "proto/rspf/ppsk_device.h"
#include "service_world.h"

namespace mte::testing {
namespace {

using Phase = proto::EnrolmentClient::Phase;
using testlib::CliPki;
using testlib::RealNow;

constexpr const char* kPassword = "alice: a long enough passphrase";
constexpr const char* kPeer = "192.0.2.10";
constexpr const char* kAiaUrl = "http://ocsp.example.test:8080/ocsp";  // CliPki's [leaf]

// How the in-memory OCSP transport answers.
enum class Responder { kOpenssl, kDown, kGarbage, kHold };

class FlowBCertTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    pki_ = new CliPki(dir_->path());
    CliPki& p = *pki_;
    ASSERT_TRUE(p.SelfSigned("ca", "Acme Device CA"));
    ASSERT_TRUE(p.SelfSigned("rogue", "Rogue Device CA"));
    ASSERT_TRUE(p.Issue("dev", "meter-cert-1", "ca", "leaf", "1001"));
    ASSERT_TRUE(p.Issue("dev2", "meter-cert-2", "ca", "leaf", "1002"));
    ASSERT_TRUE(p.Issue("revoked", "meter-revoked", "ca", "leaf", "1003"));
    ASSERT_TRUE(p.Issue("unlisted", "meter-unlisted", "ca", "leaf", "1004"));
    ASSERT_TRUE(p.Issue("both", "meter-both", "ca", "leaf", "1005"));
    ASSERT_TRUE(p.Issue("stranger", "meter-stranger", "ca", "leaf", "1006"));
    ASSERT_TRUE(p.Issue("foreign", "meter-foreign", "rogue", "leaf", "2001"));
    testlib::WriteText(p.Path("index.txt"),
                       CliPki::IndexLine("1001", "meter-cert-1") +
                           CliPki::IndexLine("1002", "meter-cert-2") +
                           CliPki::IndexLine("1003", "meter-revoked", "250101000000Z,keyCompromise") +
                           CliPki::IndexLine("1005", "meter-both") +
                           CliPki::IndexLine("1006", "meter-stranger"));
  }

  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
    pki_ = nullptr;
    dir_ = nullptr;
  }

  // SHA-256 of the DER certificate, by the openssl command line.
  static std::string CliCertSha256(const std::string& name) {
    std::string out = pki_->Output("openssl x509 -in " + name +
                                   ".crt -outform DER | openssl dgst -sha256 -r");
    return out.substr(0, 64);
  }

  void SetUp() override {
    // OpenSSL and `openssl ocsp` judge validity against real time: so does the MEF here.
    world_.clock.Advance(RealNow() - world_.clock.seconds());
    revocation_ = std::make_unique<mef::RevocationChecker>(
        [this](const std::string& url, Bytes request, std::function<void(Result<Bytes>)> done) {
          Transport(url, std::move(request), std::move(done));
        },
        world_.rng, world_.clock);
    mef::CertRspfOptions options;
    options.mef_fqdn = kMefFqdn;
    options.cert_chain_pem_file = (world_.FlowBPki() / "mef-server.crt").string();
    options.key_pem_file = (world_.FlowBPki() / "mef-server.key").string();
    auto cert = mef::CertRspf::Create(*world_.store, *revocation_, options);
    ASSERT_TRUE(Ok(cert));
    world_.mef.AddRspf(std::move(*cert));
    AddDeviceCa("acme", "ca", false);
    for (const char* name : {"dev", "dev2", "revoked", "unlisted"}) ImportCertDevice(name);

    world_.AddStakeholder("alice", kPassword);
    nlohmann::json login = {{"name", "alice"}, {"password", kPassword}};
    auto response = world_.FlowBPortal().Handle(
        JsonRequest("POST", "/api/v1/login", login.dump()), "198.51.100.1");
    ASSERT_EQ(response.status, 200) << response.body;
    bearer_ = JsonBody(response).value("token", "");
  }

  void TearDown() override {
    // A held answer is given (as a failure) so that no callback outlives the fixture.
    ReleaseHeld(std::nullopt);
  }

  void AddDeviceCa(const std::string& name, const std::string& file, bool fail_open) {
    store::DeviceCaRecord ca;
    ca.name = name;
    ca.cert_pem = pki_->Pem(file);
    ca.cert_sha256 = CliCertSha256(file);
    ca.ocsp_fail_open = fail_open;
    ca.created_at = world_.clock.seconds();
    ASSERT_TRUE(Ok(world_.store->AddDeviceCa(ca)));
  }

  // A manifest entry "meter-<name>" matching the certificate <name>.crt by its SHA-256; with
  // `kpm_id`, the device has a PPSK credential too.
  std::string ImportCertDevice(const std::string& name, const std::string& kpm_id = "",
                               const SecretBytes* kpm = nullptr) {
    store::DeviceRecord record;
    record.device_id = "meter-" + name;
    record.claim_hash = "$argon2id$unused";
    record.created_at = world_.clock.seconds();
    record.credentials.push_back({store::CredentialKind::kCertSha256, CliCertSha256(name), {}});
    if (!kpm_id.empty()) {
      auto sealed = world_.kek.Seal(*kpm, "kpm|" + record.device_id, world_.rng);
      EXPECT_TRUE(Ok(sealed));
      record.credentials.push_back({store::CredentialKind::kKpm, kpm_id, sealed ? *sealed : Bytes{}});
    }
    EXPECT_TRUE(Ok(world_.store->ImportDevices({record})));
    return record.device_id;
  }

  // The in-memory OCSP transport (it runs on the calling thread, or later for kHold).
  void Transport(const std::string& url, Bytes request, std::function<void(Result<Bytes>)> done) {
    {
      std::lock_guard lock(mu_);
      urls_.push_back(url);
      requests_.push_back(request);
    }
    switch (responder_) {
      case Responder::kDown:
        return done(Fail(ErrorKind::kIo, Errc::kIoFailed, "connection refused"));
      case Responder::kGarbage:
        return done(Bytes{0x30, 0x03, 0x0a, 0x01});
      case Responder::kHold: {
        std::lock_guard lock(mu_);
        held_request_ = std::move(request);
        held_ = std::move(done);
        held_cv_.notify_all();
        return;
      }
      case Responder::kOpenssl:
        return done(OpensslAnswer(request));
    }
  }

  // `openssl ocsp` as the responder over index.txt, signed by the CA.
  static Result<Bytes> OpensslAnswer(const Bytes& request) {
    Bytes answer = pki_->OcspRespond(request);
    if (answer.empty()) return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "no answer");
    return answer;
  }

  bool WaitHeld() {
    std::unique_lock lock(mu_);
    return held_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return held_ != nullptr; });
  }

  // Answers the held request: with `openssl ocsp`, or (nullopt) with a failure.
  void ReleaseHeld(std::optional<bool> with_openssl) {
    std::function<void(Result<Bytes>)> done;
    Bytes request;
    {
      std::lock_guard lock(mu_);
      done = std::move(held_);
      held_ = nullptr;
      request = held_request_;
    }
    if (!done) return;
    if (with_openssl.value_or(false)) {
      done(OpensslAnswer(request));
    } else {
      done(Fail(ErrorKind::kIo, Errc::kIoFailed, "responder gone"));
    }
  }

  proto::HttpResponse PortalCall(proto::HttpRequest request) {
    request.headers.Set("Authorization", "Bearer " + bearer_);
    return world_.FlowBPortal().Handle(request, "198.51.100.1");
  }

  // A Flow B entry and its token bundle.
  std::pair<int64_t, proto::TokenBundle> EntryAndBundle() {
    nlohmann::json add = {{"label", "gas meter"}, {"deviceInfo", "basement"}};
    auto added = PortalCall(JsonRequest("POST", "/api/v1/enrolees", add.dump()));
    EXPECT_EQ(added.status, 201) << added.body;
    int64_t id = JsonBody(added).value("id", int64_t{0});
    auto issued = PortalCall(
        JsonRequest("POST", "/api/v1/enrolees/" + std::to_string(id) + "/tokens", ""));
    EXPECT_EQ(issued.status, 201) << issued.body;
    nlohmann::json j = JsonBody(issued);
    proto::TokenBundle bundle;
    bundle.token = j.value("token", "");
    bundle.mef_fqdn = j.value("mefFqdn", "");
    for (const auto& pem : j.value("mefTrustAnchors", nlohmann::json::array())) {
      bundle.mef_trust_pem += pem.get<std::string>();
    }
    return {id, bundle};
  }

  std::unique_ptr<proto::DeviceRspf> CertDevice(const std::string& name) {
    auto device = proto::CertDevice::Create(
        {pki_->Path(name + ".crt").string(), pki_->Path(name + ".key").string()});
    EXPECT_TRUE(Ok(device));
    return device ? std::move(*device) : nullptr;
  }

  std::unique_ptr<FlowBLink> Link(const proto::TokenBundle& bundle,
                                  std::vector<std::unique_ptr<proto::DeviceRspf>> rspfs,
                                  const std::string& peer = kPeer) {
    auto client = proto::EnrolmentClient::ViaToken(bundle, std::move(rspfs));
    EXPECT_TRUE(Ok(client));
    return world_.MefFlowBLink(client ? std::move(*client) : nullptr, peer);
  }

  std::unique_ptr<FlowBLink> CertLink(const proto::TokenBundle& bundle, const std::string& name) {
    std::vector<std::unique_ptr<proto::DeviceRspf>> rspfs;
    rspfs.push_back(CertDevice(name));
    return Link(bundle, std::move(rspfs));
  }

  store::EnroleeRecord Enrolee(int64_t id) {
    auto found = world_.store->GetEnrolee(id);
    EXPECT_TRUE(Ok(found));
    return found && found->has_value() ? **found : store::EnroleeRecord{};
  }

  std::vector<store::AuditEntry> AuditOf(std::string_view action) {
    std::vector<store::AuditEntry> out;
    auto audit = world_.store->ListAudit();
    EXPECT_TRUE(Ok(audit));
    if (audit) {
      for (const auto& a : *audit) {
        if (a.action == action) out.push_back(a);
      }
    }
    return out;
  }

  // The refusal the MEF sent last, and nothing recorded for the entry.
  void ExpectRefused(const FlowBLink& link, int64_t id, const proto::TokenBundle& bundle,
                     std::string_view dbg_part) {
    ASSERT_FALSE(link.responses().empty()) << "the MEF answered nothing";
    const proto::HttpResponse& last = link.responses().back();
    EXPECT_EQ(last.status, 403) << last.body;
    EXPECT_EQ(Header(last, proto::kHeaderRsc), "4103") << last.body;
    EXPECT_NE(last.body.find(dbg_part), std::string::npos) << last.body;
    store::EnroleeRecord e = Enrolee(id);
    EXPECT_EQ(e.state, store::EnroleeState::kPending);
    EXPECT_EQ(e.generation, 0);
    EXPECT_EQ(e.device_id, "");
    auto token = world_.store->FindToken(crypto::Sha256(AsBytes(bundle.token)));
    ASSERT_TRUE(Ok(token));
    ASSERT_TRUE(token->has_value());
    EXPECT_EQ((*token)->state, store::TokenState::kActive);
    EXPECT_EQ(CountOutbox(*world_.store), 0);
    EXPECT_TRUE(AuditOf("enrolment.commit").empty());
  }

  static TempDir* dir_;
  static CliPki* pki_;
  ServiceWorld world_;
  std::unique_ptr<mef::RevocationChecker> revocation_;
  std::string bearer_;
  Responder responder_ = Responder::kOpenssl;
  std::mutex mu_;
  std::condition_variable held_cv_;
  std::function<void(Result<Bytes>)> held_;
  Bytes held_request_;
  std::vector<std::string> urls_;
  std::vector<Bytes> requests_;
};

TempDir* FlowBCertTest::dir_ = nullptr;
CliPki* FlowBCertTest::pki_ = nullptr;

TEST_F(FlowBCertTest, CertificateDeviceEnrolsThroughTheMutualCertificateInnerHandshake) {
  auto [id, bundle] = EntryAndBundle();
  auto link = CertLink(bundle, "dev");
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(Ok(link->Run())) << (link->server_error() ? Describe(*link->server_error()) : "");
  ASSERT_EQ(link->client().phase(), Phase::kDone);
  proto::EnrolmentResult result = link->client().TakeResult();
  EXPECT_EQ(result.rspf, "CERT");
  EXPECT_EQ(result.outer_tls_version, "TLSv1.3");
  EXPECT_FALSE(result.tls_version.empty());
  EXPECT_EQ(link->requests(),
            (std::vector<std::string>{"POST /enrolment/token", "GET /enrolment/rspf",
                                      "POST /enrolment"}));

  // The entry is bound to the device the certificate matched, with the Ke the device holds.
  store::EnroleeRecord e = Enrolee(id);
  EXPECT_EQ(e.state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(e.device_id, "meter-dev");
  EXPECT_EQ(e.rspf, "CERT");
  EXPECT_EQ(e.ke_id, result.ke_id);
  auto ke = world_.kek.Open(e.ke_sealed, "ke|" + std::to_string(id) + "|1");
  ASSERT_TRUE(Ok(ke));
  EXPECT_EQ(ExposeBytes(*ke), ExposeBytes(result.ke));
  EXPECT_EQ(CountOutbox(*world_.store), 1);

  // One OCSP request, to the certificate's AIA responder, for serial 1001 with a nonce, as the
  // openssl command line reads it.
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(urls_[0], kAiaUrl);
  testlib::WriteBytes(pki_->Path("seen.der"), requests_[0]);
  std::string text = pki_->Output("openssl ocsp -reqin seen.der -req_text");
  EXPECT_NE(text.find("Serial Number: 1001"), std::string::npos) << text;
  EXPECT_NE(text.find("OCSP Nonce"), std::string::npos) << text;
  auto commits = AuditOf("enrolment.commit");
  ASSERT_EQ(commits.size(), 1u);
  EXPECT_NE(commits[0].detail.find("RSPF CERT"), std::string::npos) << commits[0].detail;
  EXPECT_NE(commits[0].detail.find("OCSP good from " + std::string(kAiaUrl)), std::string::npos)
      << commits[0].detail;
}

TEST_F(FlowBCertTest, RevokedCertificateIsRefusedAndNothingIsRecorded) {
  auto [id, bundle] = EntryAndBundle();
  auto link = CertLink(bundle, "revoked");
  ASSERT_NE(link, nullptr);
  EXPECT_FALSE(Ok(link->Run()));
  ExpectRefused(*link, id, bundle, "device certificate revoked (OCSP, at 2025-01-01T00:00:00Z, "
                                   "keyCompromise)");
}

TEST_F(FlowBCertTest, UnknownStatusAndAnUnreachableResponderAreRefused) {
  auto [id, bundle] = EntryAndBundle();
  auto unknown = CertLink(bundle, "unlisted");
  ASSERT_NE(unknown, nullptr);
  EXPECT_FALSE(Ok(unknown->Run()));
  ExpectRefused(*unknown, id, bundle, "device certificate status unknown to the OCSP responder");

  responder_ = Responder::kDown;
  auto down = CertLink(bundle, "dev");
  ASSERT_NE(down, nullptr);
  EXPECT_FALSE(Ok(down->Run()));
  ExpectRefused(*down, id, bundle,
                "device certificate status could not be checked: OCSP responder " +
                    std::string(kAiaUrl) + ": connection refused");

  responder_ = Responder::kGarbage;
  auto garbage = CertLink(bundle, "dev2");
  ASSERT_NE(garbage, nullptr);
  EXPECT_FALSE(Ok(garbage->Run()));
  ExpectRefused(*garbage, id, bundle, "unusable answer from OCSP responder");
}

TEST_F(FlowBCertTest, AFailOpenDeviceCaAcceptsWithoutStatusAndSaysSo) {
  ASSERT_TRUE(Ok(world_.store->RemoveDeviceCa("acme")));
  AddDeviceCa("acme-open", "ca", /*fail_open=*/true);
  responder_ = Responder::kDown;
  auto [id, bundle] = EntryAndBundle();
  auto link = CertLink(bundle, "dev");
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(Ok(link->Run())) << (link->server_error() ? Describe(*link->server_error()) : "");
  EXPECT_EQ(Enrolee(id).state, store::EnroleeState::kEnrolled);
  auto commits = AuditOf("enrolment.commit");
  ASSERT_EQ(commits.size(), 1u);
  EXPECT_NE(commits[0].detail.find("accepted: device CA 'acme-open' is fail-open"),
            std::string::npos)
      << commits[0].detail;
}

TEST_F(FlowBCertTest, APendingStatusCheckHoldsOnlyItsOwnConnection) {
  responder_ = Responder::kHold;
  auto [cert_id, cert_bundle] = EntryAndBundle();
  auto cert_link = CertLink(cert_bundle, "dev");
  ASSERT_NE(cert_link, nullptr);
  Result<void> cert_run;
  std::thread runner([&] { cert_run = cert_link->Run(); });
  ASSERT_TRUE(WaitHeld()) << "the MEF sent no OCSP request";

  // While that connection waits for the responder, a PPSK device enrols on another.
  TestDevice ppsk = world_.ImportDevice("meter-ppsk", "kpm-meter-ppsk@acme.example", "UNUSED");
  auto [ppsk_id, ppsk_bundle] = EntryAndBundle();
  std::vector<std::unique_ptr<proto::DeviceRspf>> rspfs;
  auto device = proto::PpskDevice::Create({ppsk.kpm_id, ppsk.kpm.Clone()});
  ASSERT_TRUE(Ok(device));
  rspfs.push_back(std::move(*device));
  auto ppsk_link = Link(ppsk_bundle, std::move(rspfs), "192.0.2.11");
  ASSERT_NE(ppsk_link, nullptr);
  EXPECT_TRUE(Ok(ppsk_link->Run()));
  EXPECT_EQ(Enrolee(ppsk_id).state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(Enrolee(cert_id).state, store::EnroleeState::kPending);

  ReleaseHeld(/*with_openssl=*/true);
  runner.join();
  EXPECT_TRUE(Ok(cert_run)) << (cert_link->server_error() ? Describe(*cert_link->server_error())
                                                          : "");
  EXPECT_EQ(cert_link->client().phase(), Phase::kDone);
  store::EnroleeRecord e = Enrolee(cert_id);
  EXPECT_EQ(e.state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(e.device_id, "meter-dev");
}

TEST_F(FlowBCertTest, UntrustedAndUnregisteredCertificatesAreRefused) {
  ImportCertDevice("foreign");  // in the manifest, but its CA is not trusted
  auto [id, bundle] = EntryAndBundle();
  auto foreign = CertLink(bundle, "foreign");
  ASSERT_NE(foreign, nullptr);
  EXPECT_FALSE(Ok(foreign->Run()));
  ExpectRefused(*foreign, id, bundle, "not issued by a trusted device CA");

  auto stranger = CertLink(bundle, "stranger");  // trusted CA, no manifest entry
  ASSERT_NE(stranger, nullptr);
  EXPECT_FALSE(Ok(stranger->Run()));
  ExpectRefused(*stranger, id, bundle,
                "device certificate matches no device of the manifest (certSha256 " +
                    CliCertSha256("stranger"));
  EXPECT_TRUE(requests_.empty());  // neither reached the revocation check
}

TEST_F(FlowBCertTest, TheMefsPreferenceChoosesAmongTheRspfsADeviceOffers) {
  const SecretBytes kpm = crypto::RandomSecret(world_.rng, 32);
  ImportCertDevice("both", "kpm-meter-both@acme.example", &kpm);
  auto [id, bundle] = EntryAndBundle();
  std::vector<std::unique_ptr<proto::DeviceRspf>> rspfs;
  auto ppsk = proto::PpskDevice::Create({"kpm-meter-both@acme.example", kpm.Clone()});
  ASSERT_TRUE(Ok(ppsk));
  rspfs.push_back(std::move(*ppsk));  // the device lists PPSK first
  rspfs.push_back(CertDevice("both"));
  auto link = Link(bundle, std::move(rspfs));
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(Ok(link->Run())) << (link->server_error() ? Describe(*link->server_error()) : "");
  EXPECT_EQ(link->client().TakeResult().rspf, "CERT");  // the MEF's default: CERT, then PPSK
  EXPECT_EQ(Enrolee(id).rspf, "CERT");
  EXPECT_EQ(Enrolee(id).device_id, "meter-both");
}

}  // namespace
}  // namespace mte::testing
