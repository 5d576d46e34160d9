// Flow B (seed 8.y.4 steps 6-18, docs/protocol.md) in one process over memory buffers: the portal
// adds an entry and issues the Enrolment-Token bundle; the enrolee's sans-IO EnrolmentClient opens
// server-authenticated TLS to the MEF (certificate + PSK listener context, as `mte serve` builds
// it), presents the token, switches to the RSPF with HTTP Upgrade, runs the PPSK-RSPF's TLS-PSK
// handshake inside the outer session and the Enrolment Exchange there.
//
// Ke is checked three ways: the enrolee's result, the exporter of the MEF's end of the inner
// session, and the Ke the MEF sealed into the store. Km comes from OpenSSL's HMAC directly.
// Every refusal must leave the entry pending, the token active and the outbox empty.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <optional>
#include <string>
#include <vector>

#include "crypto/keys.h"
#include "portal/portal.h"
#include "proto/rspf/ppsk_device.h"
#include "proto/enrolment.h"
#include "proto/enrolment_client.h"
#include "proto/onem2m.h"
#include "service_world.h"

namespace mte::testing {
namespace {

using Phase = proto::EnrolmentClient::Phase;

constexpr const char* kPassword = "alice: a long enough passphrase";
constexpr const char* kDeviceId = "urn:dev:acme:meter-0001";
constexpr const char* kKpmId = "kpm-meter-0001@acme.example";
constexpr const char* kOtherDeviceId = "urn:dev:acme:meter-0002";
constexpr const char* kOtherKpmId = "kpm-meter-0002@acme.example";
constexpr const char* kPeer = "192.0.2.10";
constexpr const char* kOtherPeer = "192.0.2.77";


bool Contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

std::string ErrorText(const std::optional<Error>& error) {
  return error ? error->detail : std::string("<no error>");
}

class FlowBTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_.EnableFlowB();
    device_ = world_.ImportDevice(kDeviceId, kKpmId, "CLAIM-NOT-USED-1");
    other_ = world_.ImportDevice(kOtherDeviceId, kOtherKpmId, "CLAIM-NOT-USED-2");
    world_.AddStakeholder("alice", kPassword);
    nlohmann::json login = {{"name", "alice"}, {"password", kPassword}};
    proto::HttpResponse response =
        PortalCall(JsonRequest("POST", "/api/v1/login", login.dump()), false);
    ASSERT_EQ(response.status, 200) << response.body;
    bearer_ = JsonBody(response).value("token", "");
    ASSERT_FALSE(bearer_.empty());
  }

  proto::HttpResponse PortalCall(proto::HttpRequest request, bool authorized = true) {
    if (authorized) request.headers.Set("Authorization", "Bearer " + bearer_);
    return world_.FlowBPortal().Handle(request, "198.51.100.1");
  }

  // POST /api/v1/enrolees without a claim code: a Flow B entry (seed 8.y.4 step 6).
  int64_t AddEntry(nlohmann::json body = {{"label", "gas meter"},
                                          {"deviceInfo", "basement, serial 0001"}}) {
    proto::HttpResponse response =
        PortalCall(JsonRequest("POST", "/api/v1/enrolees", body.dump()));
    EXPECT_EQ(response.status, 201) << response.body;
    return JsonBody(response).value("id", int64_t{0});
  }

  // POST /api/v1/enrolees/{id}/tokens (seed 8.y.4 steps 7-8): the bundle as JSON.
  nlohmann::json IssueBundle(int64_t id) {
    proto::HttpResponse response = PortalCall(
        JsonRequest("POST", "/api/v1/enrolees/" + std::to_string(id) + "/tokens", ""));
    EXPECT_EQ(response.status, 201) << response.body;
    return JsonBody(response);
  }

  // What the OBF hands to the device (step 11).
  static proto::TokenBundle ToBundle(const nlohmann::json& j) {
    proto::TokenBundle bundle;
    bundle.token = j.value("token", "");
    bundle.mef_fqdn = j.value("mefFqdn", "");
    for (const auto& pem : j.value("mefTrustAnchors", nlohmann::json::array())) {
      bundle.mef_trust_pem += pem.get<std::string>();
    }
    return bundle;
  }

  static proto::PpskCredential Credential(const TestDevice& device) {
    return {device.kpm_id, device.kpm.Clone()};
  }

  // An RSPF this test enrolee only names (it cannot run it): the MEF must not select it.
  class NamedOnly final : public proto::DeviceRspf {
   public:
    explicit NamedOnly(std::string name) : name_(std::move(name)) {}
    std::string_view name() const override { return name_; }
    Result<std::unique_ptr<crypto::TlsEngine>> NewEngine(const std::string&,
                                                         const std::string&) override {
      return Fail(ErrorKind::kLocalUsage, Errc::kUnsupported, "not runnable: " + name_);
    }
    std::string origin() const override { return "nobody"; }
    std::pair<std::string, std::string> credential_record() const override { return {}; }

   private:
    std::string name_;
  };

  // A Flow B enrolee offering `rspfs` in order; "PPSK" runs with `credential`.
  std::unique_ptr<proto::EnrolmentClient> Client(proto::TokenBundle bundle,
                                                 proto::PpskCredential credential,
                                                 std::vector<std::string> rspfs = {"PPSK"},
                                                 proto::RspfTlsOptions tls = {}) {
    std::vector<std::unique_ptr<proto::DeviceRspf>> offered;
    for (const auto& name : rspfs) {
      if (name == "PPSK") {
        auto ppsk = proto::PpskDevice::Create(std::move(credential), tls);
        EXPECT_TRUE(Ok(ppsk));
        if (ppsk) offered.push_back(std::move(*ppsk));
      } else {
        offered.push_back(std::make_unique<NamedOnly>(name));
      }
    }
    auto client = proto::EnrolmentClient::ViaToken(std::move(bundle), std::move(offered));
    EXPECT_TRUE(Ok(client));
    return client ? std::move(*client) : nullptr;
  }

  std::unique_ptr<FlowBLink> Link(const proto::TokenBundle& bundle, const TestDevice& device,
                                  const std::string& peer = kPeer) {
    return world_.MefFlowBLink(Client(bundle, Credential(device)), peer);
  }

  store::EnroleeRecord Enrolee(int64_t id) {
    auto found = world_.store->GetEnrolee(id);
    EXPECT_TRUE(Ok(found));
    return found && found->has_value() ? **found : store::EnroleeRecord{};
  }

  std::optional<store::TokenRecord> TokenOf(const std::string& text) {
    auto found = world_.store->FindToken(crypto::Sha256(AsBytes(text)));
    EXPECT_TRUE(Ok(found));
    return found ? *found : std::nullopt;
  }

  int AuditCount(std::string_view action) {
    auto audit = world_.store->ListAudit();
    EXPECT_TRUE(Ok(audit));
    int n = 0;
    if (audit) {
      for (const auto& a : *audit) n += a.action == action;
    }
    return n;
  }

  // Nothing recorded as enrolled: the entry is pending at generation 0 and names
  // `device_id`, the token is still active, no outbox item, no enrolment in the audit log.
  void ExpectNothingEnrolled(int64_t id, const std::string& token, const std::string& device_id) {
    store::EnroleeRecord e = Enrolee(id);
    EXPECT_EQ(e.state, store::EnroleeState::kPending);
    EXPECT_EQ(e.generation, 0);
    EXPECT_EQ(e.device_id, device_id);
    EXPECT_EQ(e.ke_id, "");
    EXPECT_TRUE(e.credential_ids.empty());
    EXPECT_EQ(e.maf_delivery, store::DeliveryStatus::kNone);
    auto t = TokenOf(token);
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(t->state, store::TokenState::kActive);
    EXPECT_EQ(t->spent_at, 0);
    EXPECT_EQ(CountOutbox(*world_.store), 0);
    EXPECT_EQ(AuditCount("enrolment.commit"), 0);
  }

  // The last response the MEF produced on the link: its status, RSC and m2m:dbg text.
  static void ExpectLastResponse(const FlowBLink& link, int status, std::string_view rsc,
                                 std::string_view dbg_part) {
    ASSERT_FALSE(link.responses().empty()) << "the MEF answered nothing";
    const proto::HttpResponse& last = link.responses().back();
    EXPECT_EQ(last.status, status) << last.body;
    EXPECT_EQ(Header(last, proto::kHeaderRsc), rsc) << last.body;
    EXPECT_TRUE(Contains(last.body, dbg_part)) << last.body << " lacks '" << dbg_part << "'";
  }

  // Runs a complete enrolment and returns the enrolee's result.
  proto::EnrolmentResult EnrolOk(const proto::TokenBundle& bundle, const TestDevice& device,
                                 const std::string& peer = kPeer) {
    auto link = Link(bundle, device, peer);
    EXPECT_NE(link, nullptr);
    if (!link) return {};
    auto run = link->Run();
    EXPECT_TRUE(Ok(run)) << "server: " << ErrorText(link->server_error());
    EXPECT_EQ(link->client().phase(), Phase::kDone);
    if (link->client().phase() != Phase::kDone) return {};
    return link->client().TakeResult();
  }

  // A well-formed token the MTE never issued.
  std::string RandomTokenText() {
    Bytes bytes(proto::kTokenBytes);
    world_.rng.Fill(bytes);
    return Base64UrlEncode(bytes);
  }

  ServiceWorld world_;
  TestDevice device_;
  TestDevice other_;
  std::string bearer_;
};

// --- the complete flow ---------------------------------------------------------------------------

struct InnerProfile {
  const char* name;
  proto::RspfTlsOptions tls;
  const char* version;
  const char* cipher;  // "" = any
};

class FlowBCompleteTest : public FlowBTest, public ::testing::WithParamInterface<InnerProfile> {};

TEST_P(FlowBCompleteTest, EnrolsThroughTheNestedSessionAndRecordsEverything) {
  LogCapture logs;
  int commits = 0;
  world_.mef.set_on_commit([&] { ++commits; });

  const int64_t id = AddEntry();
  ASSERT_GT(id, 0);
  EXPECT_EQ(Enrolee(id).device_id, "") << "a Flow B entry names no device yet";
  nlohmann::json j = IssueBundle(id);
  const std::string token = j.value("token", "");
  ASSERT_EQ(token.size(), proto::kTokenTextLength);
  EXPECT_EQ(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789-_"),
            std::string::npos)
      << "base64url without padding";
  EXPECT_EQ(j.value("mefUri", ""), kMefUri);
  EXPECT_EQ(j.value("mefFqdn", ""), kMefFqdn);
  ASSERT_TRUE(j.contains("mefTrustAnchors") && j["mefTrustAnchors"].is_array());
  ASSERT_EQ(j["mefTrustAnchors"].size(), 1u);
  EXPECT_EQ(j["mefTrustAnchors"][0].get<std::string>(), world_.FlowBCaPem());
  EXPECT_FALSE(j.value("expiresAt", "").empty());

  auto link = world_.MefFlowBLink(
      Client(ToBundle(j), Credential(device_), {"GBA", "PPSK"}, GetParam().tls), kPeer);
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(Ok(link->Run())) << "server: " << ErrorText(link->server_error());
  ASSERT_EQ(link->client().phase(), Phase::kDone);

  // Steps 13-17 on the wire: token, upgrade, the Enrolment Exchange inside the inner session.
  EXPECT_EQ(link->requests(), (std::vector<std::string>{"POST /enrolment/token",
                                                        "GET /enrolment/rspf",
                                                        "POST /enrolment"}));
  ASSERT_EQ(link->responses().size(), 3u);
  EXPECT_EQ(link->responses()[0].status, 200);
  EXPECT_EQ(JsonBody(link->responses()[0]).value("rspf", ""), "PPSK");
  EXPECT_EQ(link->responses()[1].status, 101);
  EXPECT_EQ(Header(link->responses()[1], "Upgrade"), "oneM2M-RSPF");
  EXPECT_EQ(link->responses()[2].status, 201);
  EXPECT_EQ(Header(link->responses()[2], proto::kHeaderRsc), "2001");
  ASSERT_EQ(link->session().depth(), 2u) << "the RSPF must run inside the outer session";
  EXPECT_EQ(link->session().tls(0).psk_identity(), "") << "the outer session is certificate-based";
  EXPECT_EQ(link->session().tls(1).psk_identity(), kKpmId);

  proto::EnrolmentResult result = link->client().TakeResult();
  EXPECT_EQ(result.rspf, "PPSK");
  EXPECT_EQ(result.enrolee_id, id);
  EXPECT_EQ(result.outer_tls_version, "TLSv1.3");
  EXPECT_EQ(result.tls_version, GetParam().version);
  if (*GetParam().cipher != '\0') {
    EXPECT_EQ(result.cipher, GetParam().cipher);
  }

  // Ke/KeID (TS-0003 §10.3.1) from the MEF's end of the inner session, not from the client.
  auto exported = link->session().tls(1).Export(crypto::kBootstrapExporterLabel, 48);
  ASSERT_TRUE(Ok(exported));
  Bytes export_bytes = ExposeBytes(*exported);
  ASSERT_EQ(export_bytes.size(), 48u);
  const Bytes relative(export_bytes.begin(), export_bytes.begin() + 16);
  const Bytes ke(export_bytes.begin() + 16, export_bytes.end());
  const std::string ke_id = HexUpper(relative) + "@" + kMefFqdn;
  EXPECT_EQ(result.ke_id, ke_id);
  EXPECT_EQ(ExposeBytes(result.ke), ke);
  // The inner exporter is not the outer one: Ke comes from the mutually authenticated session.
  auto outer = link->session().tls(0).Export(crypto::kBootstrapExporterLabel, 48);
  ASSERT_TRUE(Ok(outer));
  EXPECT_NE(ExposeBytes(*outer), export_bytes);

  const Bytes km = IndependentKm(ke, kMafId);
  EXPECT_EQ(result.km_id, ke_id);
  EXPECT_EQ(result.maf_id, kMafId);
  EXPECT_EQ(result.maf_fqdn, kMafFqdn);
  EXPECT_EQ(ExposeBytes(result.km), km);

  // Step 18: the device authenticated by the RSPF is recorded on the token's entry.
  store::EnroleeRecord e = Enrolee(id);
  EXPECT_EQ(e.state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(e.generation, 1);
  EXPECT_EQ(e.device_id, kDeviceId);
  EXPECT_EQ(e.rspf, "PPSK");
  EXPECT_EQ(e.ke_id, ke_id);
  EXPECT_EQ(e.credential_ids, (std::vector<std::string>{"11-" + ke_id}));
  EXPECT_EQ(e.maf_delivery, store::DeliveryStatus::kPending);
  EXPECT_EQ(e.enrolled_at, world_.clock.seconds());
  EXPECT_EQ(e.ke_expires_at, world_.clock.seconds() + kEnrolmentExpiry);
  auto stored_ke = world_.kek.Open(e.ke_sealed, "ke|" + std::to_string(id) + "|1");
  ASSERT_TRUE(Ok(stored_ke));
  EXPECT_EQ(ExposeBytes(*stored_ke), ke) << "the MEF's Ke differs from the session's exporter";

  // The token is spent by the commit.
  auto t = TokenOf(token);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->state, store::TokenState::kSpent);
  EXPECT_EQ(t->spent_at, world_.clock.seconds());
  EXPECT_EQ(t->enrolee_id, id);

  // The outbox holds Km for the MAF.
  auto items = AllOutbox(*world_.store);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].enrolee_id, id);
  EXPECT_EQ(items[0].generation, 1);
  EXPECT_EQ(items[0].target, "maf");
  auto payload = world_.kek.Open(items[0].payload_sealed, "outbox|" + std::to_string(id) + "|1");
  ASSERT_TRUE(Ok(payload));
  auto p = nlohmann::json::parse(ExposeText(*payload), nullptr, false);
  ASSERT_TRUE(p.is_object());
  EXPECT_EQ(p.value("kmId", ""), ke_id);
  EXPECT_EQ(p.value("km", ""), HexLower(km));
  EXPECT_EQ(p.value("enroleeId", int64_t{0}), id);
  EXPECT_EQ(p.value("generation", int64_t{0}), 1);

  EXPECT_EQ(commits, 1);
  EXPECT_EQ(AuditCount("enrolment.commit"), 1);
  EXPECT_EQ(AuditCount("token.issue"), 1);

  // No secret reaches the log: Kpm, Ke, Km, the token, the portal bearer.
  ExpectNoSecretsIn(logs.text(), {ExposeBytes(device_.kpm), ke, km}, {token, bearer_});
}

INSTANTIATE_TEST_SUITE_P(
    InnerProfiles, FlowBCompleteTest,
    ::testing::Values(
        InnerProfile{"Default", {}, "TLSv1.3", ""},
        InnerProfile{"Tls12PskAes128CbcSha256", {true, false, "PSK-AES128-CBC-SHA256"}, "TLSv1.2",
                     "PSK-AES128-CBC-SHA256"}),
    [](const ::testing::TestParamInfo<InnerProfile>& p) { return p.param.name; });

// --- binding of the inner session to the outer one (docs/conventions.md §2) ------------------------------

TEST_F(FlowBTest, ChannelBindingMismatchIsRefusedAndNothingIsRecorded) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto client = Client(ToBundle(j), Credential(device_));
  ASSERT_NE(client, nullptr);
  client->OverrideChannelBindingForTest(Bytes(proto::kChannelBindingLength, 0x5a));
  auto link = world_.MefFlowBLink(std::move(client), kPeer);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kEnrolmentExchange);
  EXPECT_TRUE(Contains(run.error().detail, "channel binding")) << run.error().detail;
  ExpectLastResponse(*link, 403, "4103", "channel binding");
  ExpectNothingEnrolled(id, j["token"], "");
}

// The inner session of one outer session relayed into another: the binding of connection A
// presented on connection B.
TEST_F(FlowBTest, BindingOfAnotherOuterSessionIsRefused) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto first = Link(ToBundle(j), device_);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(Ok(first->Run(Phase::kRspfHandshake)));
  ASSERT_TRUE(first->dropped());
  auto binding_a = first->session().tls(0).Export(proto::kChannelBindingLabel,
                                                  proto::kChannelBindingLength, ByteSpan());
  ASSERT_TRUE(Ok(binding_a));

  auto client = Client(ToBundle(j), Credential(device_));
  ASSERT_NE(client, nullptr);
  client->OverrideChannelBindingForTest(ExposeBytes(*binding_a));
  auto link = world_.MefFlowBLink(std::move(client), kPeer);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_TRUE(Contains(run.error().detail, "channel binding")) << run.error().detail;
  ExpectLastResponse(*link, 403, "4103", "channel binding");
  ExpectNothingEnrolled(id, j["token"], "");
}

// --- step 12: the MEF's certificate ----------------------------------------------------------

TEST_F(FlowBTest, WrongTrustAnchorFailsInTheOuterHandshake) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  proto::TokenBundle bundle = ToBundle(j);
  bundle.mef_trust_pem = world_.UnrelatedCaPem();
  ASSERT_NE(bundle.mef_trust_pem, world_.FlowBCaPem());
  auto link = Link(bundle, device_);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kOuterHandshake);
  EXPECT_TRUE(Contains(run.error().detail, "step 12")) << run.error().detail;
  EXPECT_TRUE(Contains(run.error().detail, "certificate")) << run.error().detail;
  EXPECT_TRUE(link->requests().empty()) << "the token must not be sent to an unverified server";
  ExpectNothingEnrolled(id, j["token"], "");
}

TEST_F(FlowBTest, BundleNamingAnotherFqdnFailsAtStep12) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  proto::TokenBundle bundle = ToBundle(j);
  bundle.mef_fqdn = kIntruderFqdn;  // the MEF's certificate names kMefFqdn only
  auto link = Link(bundle, device_);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kOuterHandshake);
  EXPECT_TRUE(Contains(run.error().detail, "step 12")) << run.error().detail;
  EXPECT_TRUE(link->requests().empty());
  ExpectNothingEnrolled(id, j["token"], "");
}

// The server answers with a valid certificate from the right CA, but for another FQDN.
TEST_F(FlowBTest, MefCertificateForAnotherFqdnFailsAtStep12) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto link = world_.MefFlowBLink(Client(ToBundle(j), Credential(device_)), kPeer,
                                  "other-server");
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kOuterHandshake);
  EXPECT_TRUE(Contains(run.error().detail, "step 12")) << run.error().detail;
  EXPECT_TRUE(Contains(run.error().detail, "certificate")) << run.error().detail;
  EXPECT_TRUE(link->requests().empty());
  ExpectNothingEnrolled(id, j["token"], "");
}

// --- the inner (RSPF) handshake ------------------------------------------------------------------

TEST_F(FlowBTest, InnerPskMismatchFailsInTheRspfHandshake) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  SecretBytes wrong_kpm = crypto::RandomSecret(world_.rng, 32);
  auto link = world_.MefFlowBLink(Client(ToBundle(j), {kKpmId, wrong_kpm.Clone()}), kPeer);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kRspfHandshake);
  EXPECT_TRUE(Contains(run.error().detail, "PPSK-RSPF")) << run.error().detail;
  EXPECT_EQ(link->requests(), (std::vector<std::string>{"POST /enrolment/token",
                                                        "GET /enrolment/rspf"}));
  ExpectNothingEnrolled(id, j["token"], "");
  // The token survived: the device with the right Kpm enrols with it.
  proto::EnrolmentResult result = EnrolOk(ToBundle(j), device_);
  EXPECT_EQ(Enrolee(id).ke_id, result.ke_id);
}

// docs/conventions.md §3: failed RSPF handshakes are counted and rate limited per token.
TEST_F(FlowBTest, FailedRspfRunsLockTheToken) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  SecretBytes wrong_kpm = crypto::RandomSecret(world_.rng, 32);
  const int max_failures = world_.mef_settings.max_rspf_failures;
  ASSERT_GT(max_failures, 1);
  // Each run from its own address, so that only the count per token can lock.
  for (int i = 0; i + 1 < max_failures; ++i) {
    auto link = world_.MefFlowBLink(Client(ToBundle(j), {kKpmId, wrong_kpm.Clone()}),
                                    "192.0.2." + std::to_string(10 + i));
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    EXPECT_EQ(link->last_phase_before_failure(), Phase::kRspfHandshake);
  }  // each link closes here: one failed RSPF run each
  {
    // One failure short of the limit the token is still accepted; this run is cut during the
    // RSPF handshake, which is the last failure allowed.
    auto link = Link(ToBundle(j), device_, "192.0.2.100");
    ASSERT_NE(link, nullptr);
    ASSERT_TRUE(Ok(link->Run(Phase::kRspfHandshake)));
    ASSERT_FALSE(link->responses().empty());
    EXPECT_EQ(link->responses()[0].status, 200) << link->responses()[0].body;
  }
  {
    auto link = Link(ToBundle(j), device_, kOtherPeer);
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    EXPECT_EQ(link->last_phase_before_failure(), Phase::kTokenExchange);
    ExpectLastResponse(*link, 403, "4103", "too many failed RSPF runs");
  }
  ExpectNothingEnrolled(id, j["token"], "");
  // The lockout ends; the token was never spent.
  world_.clock.Advance(world_.mef_settings.token_lockout_seconds);
  proto::EnrolmentResult result = EnrolOk(ToBundle(j), device_, kOtherPeer);
  EXPECT_EQ(Enrolee(id).ke_id, result.ke_id);
}

// Devices behind one NAT address whose connections drop mid-RSPF: their failed runs count toward
// their own tokens, never toward the shared address, so all of them enrol afterwards.
TEST_F(FlowBTest, DroppedRspfRunsWithRealTokensDoNotLockTheirSharedAddress) {
  constexpr int kDevices = 100;
  ASSERT_GT(2 * kDevices, world_.mef_settings.max_token_failures);
  struct Behind {
    TestDevice device;
    int64_t id;
    nlohmann::json bundle;
  };
  std::vector<Behind> nat;
  for (int i = 0; i < kDevices; ++i) {
    const std::string n = std::to_string(i);
    Behind b{world_.ImportDevice("urn:dev:nat:" + n, "kpm-nat-" + n + "@acme.example",
                                 "CLAIM-NAT-" + n),
             AddEntry({{"label", "meter " + n}}), {}};
    b.bundle = IssueBundle(b.id);
    for (int drop = 0; drop < 2; ++drop) {
      auto link = Link(ToBundle(b.bundle), b.device, kPeer);
      ASSERT_NE(link, nullptr);
      ASSERT_TRUE(Ok(link->Run(Phase::kRspfHandshake)));  // cut during the inner handshake
    }
    nat.push_back(std::move(b));
  }
  for (const Behind& b : nat) {
    proto::EnrolmentResult result = EnrolOk(ToBundle(b.bundle), b.device, kPeer);
    EXPECT_EQ(Enrolee(b.id).ke_id, result.ke_id);
    EXPECT_EQ(Enrolee(b.id).state, store::EnroleeState::kEnrolled);
  }
}

TEST_F(FlowBTest, ChannelBindingMismatchesCountAsFailedRspfRuns) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  for (int i = 0; i < world_.mef_settings.max_rspf_failures; ++i) {
    auto client = Client(ToBundle(j), Credential(device_));
    ASSERT_NE(client, nullptr);
    client->OverrideChannelBindingForTest(Bytes(proto::kChannelBindingLength, 0x5a));
    auto link = world_.MefFlowBLink(std::move(client), "192.0.2." + std::to_string(20 + i));
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    EXPECT_TRUE(Contains(run.error().detail, "channel binding")) << run.error().detail;
  }
  auto link = Link(ToBundle(j), device_, kOtherPeer);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  ExpectLastResponse(*link, 403, "4103", "too many failed RSPF runs");
  ExpectNothingEnrolled(id, j["token"], "");
}

TEST_F(FlowBTest, UnknownKpmIdFailsInTheRspfHandshake) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto link = world_.MefFlowBLink(
      Client(ToBundle(j), {"kpm-nobody@acme.example", device_.kpm.Clone()}), kPeer);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kRspfHandshake);
  EXPECT_TRUE(Contains(run.error().detail, "PPSK-RSPF")) << run.error().detail;
  ExpectNothingEnrolled(id, j["token"], "");
}

// --- token rules ---------------------------------------------------------------------------------

// A spent token: another device is refused after its RSPF run, with nothing recorded.
TEST_F(FlowBTest, ASpentTokenIsRefusedToAnotherDevice) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  proto::EnrolmentResult first = EnrolOk(ToBundle(j), device_);
  ASSERT_FALSE(first.ke_id.empty());
  const store::EnroleeRecord after = Enrolee(id);

  auto link = Link(ToBundle(j), other_, kOtherPeer);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kEnrolmentExchange);
  ExpectLastResponse(*link, 403, "4103", "already been used by another device");
  store::EnroleeRecord now = Enrolee(id);
  EXPECT_EQ(now.generation, 1);
  EXPECT_EQ(now.ke_id, first.ke_id);
  EXPECT_EQ(now.ke_sealed, after.ke_sealed);
  EXPECT_EQ(now.device_id, kDeviceId);
  EXPECT_EQ(CountOutbox(*world_.store), 1);
  EXPECT_EQ(AuditCount("enrolment.commit"), 1);
  EXPECT_EQ(AuditCount("enrolment.reenrol"), 0);
}

// The answer to an enrolment may be lost after its commit: the device it bound presents the spent
// token again and enrols once more, a new generation whose outbox item supersedes the first.
TEST_F(FlowBTest, ASpentTokenReEnrolsTheDeviceItBound) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  proto::EnrolmentResult first = EnrolOk(ToBundle(j), device_);
  proto::EnrolmentResult again = EnrolOk(ToBundle(j), device_);
  EXPECT_NE(again.ke_id, first.ke_id);
  store::EnroleeRecord now = Enrolee(id);
  EXPECT_EQ(now.state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(now.generation, 2);
  EXPECT_EQ(now.ke_id, again.ke_id);
  EXPECT_EQ(now.device_id, kDeviceId);
  EXPECT_EQ(TokenOf(j["token"])->state, store::TokenState::kSpent);
  EXPECT_EQ(CountOutbox(*world_.store), 2);
  EXPECT_EQ(AuditCount("enrolment.commit"), 1);
  EXPECT_EQ(AuditCount("enrolment.reenrol"), 1);
}

// Once a newer token exists for the entry, or the entry was revoked, a spent token is refused at
// once, before any RSPF run.
TEST_F(FlowBTest, ASpentTokenIsRefusedOnceSupersededOrRevoked) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  EnrolOk(ToBundle(j), device_);
  const nlohmann::json newer = IssueBundle(id);
  auto superseded = Link(ToBundle(j), device_);
  ASSERT_NE(superseded, nullptr);
  ASSERT_FALSE(superseded->Run().has_value());
  EXPECT_EQ(superseded->last_phase_before_failure(), Phase::kTokenExchange);
  ExpectLastResponse(*superseded, 403, "4103", "a newer one has been issued");

  const int64_t revoked_id = AddEntry({{"label", "revoked"}});
  const nlohmann::json k = IssueBundle(revoked_id);
  EnrolOk(ToBundle(k), other_);
  proto::HttpResponse revoked = PortalCall(JsonRequest(
      "POST", "/api/v1/enrolees/" + std::to_string(revoked_id) + "/revoke", ""));
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  auto after_revoke = Link(ToBundle(k), other_);
  ASSERT_NE(after_revoke, nullptr);
  ASSERT_FALSE(after_revoke->Run().has_value());
  EXPECT_EQ(after_revoke->last_phase_before_failure(), Phase::kTokenExchange);
  ExpectLastResponse(*after_revoke, 403, "4103", "its enrolee has been revoked");
  EXPECT_EQ(Enrolee(id).generation, 1);
}

TEST_F(FlowBTest, UnknownTokenIsRefused) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  proto::TokenBundle bundle = ToBundle(j);
  bundle.token = RandomTokenText();
  ASSERT_EQ(bundle.token.size(), proto::kTokenTextLength);
  auto link = Link(bundle, device_);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kTokenExchange);
  EXPECT_TRUE(Contains(run.error().detail, "unknown Enrolment-Token")) << run.error().detail;
  ExpectLastResponse(*link, 403, "4103", "unknown Enrolment-Token");
  ExpectNothingEnrolled(id, j["token"], "");
}

TEST_F(FlowBTest, MalformedTokensAreRefused) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  const std::string good = j["token"];
  const std::vector<std::string> malformed = {
      "not-a-token",                             // too short
      good + "A",                                // 44 characters
      good.substr(0, 42) + "+",                  // base64, not base64url
      good.substr(0, 42) + "=",                  // padding
      std::string(proto::kTokenTextLength, ' '),  // blanks
  };
  for (const std::string& token : malformed) {
    proto::TokenBundle bundle = ToBundle(j);
    bundle.token = token;
    auto link = Link(bundle, device_, "192.0.2." + std::to_string(100 + (&token - &malformed[0])));
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value()) << token;
    EXPECT_EQ(link->last_phase_before_failure(), Phase::kTokenExchange) << token;
    EXPECT_TRUE(Contains(run.error().detail, "malformed Enrolment-Token")) << run.error().detail;
    ExpectLastResponse(*link, 400, "4000", "malformed Enrolment-Token");
  }
  ExpectNothingEnrolled(id, good, "");
}

TEST_F(FlowBTest, ExpiredTokenIsRefused) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  world_.clock.Advance(kTokenLifetime);  // expires_at <= now
  auto link = Link(ToBundle(j), device_);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kTokenExchange);
  EXPECT_TRUE(Contains(run.error().detail, "expired")) << run.error().detail;
  ExpectLastResponse(*link, 403, "4103", "has expired");
  ExpectNothingEnrolled(id, j["token"], "");
}

TEST_F(FlowBTest, TokenValidOneSecondBeforeExpiry) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  world_.clock.Advance(kTokenLifetime - 1);
  EnrolOk(ToBundle(j), device_);
  EXPECT_EQ(Enrolee(id).state, store::EnroleeState::kEnrolled);
}

// The token expires after it was accepted but before the enrolment commits: the commit refuses.
TEST_F(FlowBTest, TokenExpiringDuringTheRspfIsRefusedAtCommit) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto link = Link(ToBundle(j), device_);
  ASSERT_NE(link, nullptr);
  world_.clock.Advance(kTokenLifetime - 1);
  link->set_on_phase([&](Phase phase) {
    if (phase == Phase::kRspfHandshake) world_.clock.Advance(5);
  });
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kEnrolmentExchange);
  ExpectLastResponse(*link, 403, "4103", "expired");
  ExpectNothingEnrolled(id, j["token"], "");
}

TEST_F(FlowBTest, RevokedTokenIsRefusedAndTheNewOneWorks) {
  const int64_t id = AddEntry();
  const nlohmann::json first = IssueBundle(id);
  const nlohmann::json second = IssueBundle(id);
  ASSERT_NE(first["token"], second["token"]);
  auto link = Link(ToBundle(first), device_);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kTokenExchange);
  EXPECT_TRUE(Contains(run.error().detail, "revoked")) << run.error().detail;
  ExpectLastResponse(*link, 403, "4103", "has been revoked");
  ExpectNothingEnrolled(id, second["token"], "");
  EXPECT_EQ(TokenOf(first["token"])->state, store::TokenState::kRevoked);

  EnrolOk(ToBundle(second), device_);
  EXPECT_EQ(Enrolee(id).state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(TokenOf(first["token"])->state, store::TokenState::kRevoked);
  EXPECT_EQ(TokenOf(second["token"])->state, store::TokenState::kSpent);
}

// Seed editor's note: no RSPF in common is a clear refusal naming both lists, never silent.
TEST_F(FlowBTest, NoCommonRspfIsRefusedNamingBothLists) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto link = world_.MefFlowBLink(Client(ToBundle(j), Credential(device_), {"GBA"}), kPeer);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kTokenExchange);
  ExpectLastResponse(*link, 501, "5001", "no Remote Security Provisioning Framework in common");
  EXPECT_TRUE(Contains(run.error().detail, "[GBA]")) << run.error().detail;
  EXPECT_TRUE(Contains(run.error().detail, "[PPSK]")) << run.error().detail;
  ExpectNothingEnrolled(id, j["token"], "");
}

// Seed step 14/18: an entry that names a device accepts only that device.
TEST_F(FlowBTest, EntryNamingADeviceAcceptsOnlyThatDevice) {
  const int64_t id = AddEntry({{"label", "meter 1"}, {"deviceId", kDeviceId}});
  ASSERT_GT(id, 0);
  EXPECT_EQ(Enrolee(id).device_id, kDeviceId);
  const nlohmann::json j = IssueBundle(id);
  auto link = Link(ToBundle(j), other_);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kEnrolmentExchange);
  EXPECT_TRUE(Contains(run.error().detail, "another device")) << run.error().detail;
  ExpectLastResponse(*link, 403, "4103", "another device");
  ExpectNothingEnrolled(id, j["token"], kDeviceId);
  auto other_entry = world_.store->FindEnroleeByDevice(kOtherDeviceId);
  ASSERT_TRUE(Ok(other_entry));
  EXPECT_FALSE(other_entry->has_value());

  proto::EnrolmentResult result = EnrolOk(ToBundle(j), device_);
  EXPECT_EQ(Enrolee(id).ke_id, result.ke_id);
  EXPECT_EQ(Enrolee(id).device_id, kDeviceId);
}

// A device that already has an entry (e.g. claimed in Flow A) cannot take over another entry.
TEST_F(FlowBTest, DeviceWithAnotherEntryIsRefused) {
  const int64_t claimed = AddEntry({{"label", "meter 2"}, {"deviceId", kOtherDeviceId}});
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto link = Link(ToBundle(j), other_);
  ASSERT_NE(link, nullptr);
  auto run = link->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(link->last_phase_before_failure(), Phase::kEnrolmentExchange);
  EXPECT_TRUE(Contains(run.error().detail, "another enrolee entry")) << run.error().detail;
  ExpectLastResponse(*link, 409, "4105", "another enrolee entry");
  ExpectNothingEnrolled(id, j["token"], "");
  EXPECT_EQ(Enrolee(claimed).state, store::EnroleeState::kPending);
}

// docs/architecture.md §5: a connection that drops after the token was accepted and before the enrolment
// commits leaves the token usable; once the enrolment commits it is spent for every other device.
TEST_F(FlowBTest, DropBeforeCommitLeavesTheTokenUsable) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  for (Phase drop_at : {Phase::kUpgrade, Phase::kRspfHandshake, Phase::kEnrolmentExchange}) {
    auto dropped = Link(ToBundle(j), device_);
    ASSERT_NE(dropped, nullptr);
    ASSERT_TRUE(Ok(dropped->Run(drop_at)));
    ASSERT_TRUE(dropped->dropped()) << proto::EnrolmentClient::PhaseName(drop_at);
    ASSERT_FALSE(dropped->responses().empty());
    EXPECT_EQ(dropped->responses()[0].status, 200) << "the token was accepted";
    ExpectNothingEnrolled(id, j["token"], "");
  }
  proto::EnrolmentResult result = EnrolOk(ToBundle(j), device_);
  store::EnroleeRecord e = Enrolee(id);
  EXPECT_EQ(e.state, store::EnroleeState::kEnrolled);
  EXPECT_EQ(e.generation, 1);
  EXPECT_EQ(e.ke_id, result.ke_id);
  EXPECT_EQ(TokenOf(j["token"])->state, store::TokenState::kSpent);

  auto replay = Link(ToBundle(j), other_, kOtherPeer);
  ASSERT_NE(replay, nullptr);
  auto run = replay->Run();
  ASSERT_FALSE(run.has_value());
  EXPECT_TRUE(Contains(run.error().detail, "already been used")) << run.error().detail;
}

// Two devices' connections hold the same accepted token; the first to commit wins, the other is
// refused.
TEST_F(FlowBTest, TwoConnectionsWithOneTokenEnrolOnce) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto a = Link(ToBundle(j), device_);
  auto b = Link(ToBundle(j), other_, kOtherPeer);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  // Both present the token and reach the Enrolment Exchange before either commits.
  ASSERT_TRUE(Ok(a->Run(Phase::kRspfHandshake)));
  ASSERT_TRUE(Ok(b->Run(Phase::kRspfHandshake)));
  ASSERT_EQ(a->responses().size(), 2u);
  ASSERT_EQ(b->responses().size(), 2u);
  EXPECT_EQ(b->responses()[0].status, 200);
  ASSERT_TRUE(Ok(a->Run()));
  EXPECT_EQ(a->client().phase(), Phase::kDone);
  auto run = b->Run();
  ASSERT_FALSE(run.has_value());
  ASSERT_FALSE(b->responses().empty());
  EXPECT_GE(b->responses().back().status, 400) << b->responses().back().body;
  EXPECT_EQ(Enrolee(id).generation, 1);
  EXPECT_EQ(CountOutbox(*world_.store), 1);
  EXPECT_EQ(AuditCount("enrolment.commit"), 1);
  EXPECT_EQ(AuditCount("enrolment.reenrol"), 0);
}

// docs/conventions.md §3: failed token attempts are limited per source address.
TEST_F(FlowBTest, TenFailedTokenAttemptsLockTheAddress) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto fail_once = [&](const std::string& peer) {
    proto::TokenBundle bundle = ToBundle(j);
    bundle.token = RandomTokenText();
    auto link = Link(bundle, device_, peer);
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    EXPECT_TRUE(Contains(run.error().detail, "unknown Enrolment-Token")) << run.error().detail;
  };
  for (int i = 0; i < 9; ++i) fail_once(kPeer);
  // Nine failures: the valid token is still accepted from this address.
  {
    auto link = Link(ToBundle(j), device_, kPeer);
    ASSERT_NE(link, nullptr);
    ASSERT_TRUE(Ok(link->Run(Phase::kUpgrade)));  // cut before the RSPF: no failure
    ASSERT_FALSE(link->responses().empty());
    EXPECT_EQ(link->responses()[0].status, 200) << link->responses()[0].body;
  }
  fail_once(kPeer);  // the tenth failure
  {
    auto link = Link(ToBundle(j), device_, kPeer);
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    EXPECT_EQ(link->last_phase_before_failure(), Phase::kTokenExchange);
    EXPECT_TRUE(Contains(run.error().detail, "too many failed")) << run.error().detail;
    ExpectLastResponse(*link, 403, "4103", "too many failed");
  }
  ExpectNothingEnrolled(id, j["token"], "");
  // Per address: another address is not affected.
  {
    auto link = Link(ToBundle(j), device_, kOtherPeer);
    ASSERT_NE(link, nullptr);
    ASSERT_TRUE(Ok(link->Run(Phase::kUpgrade)));  // cut before the RSPF: no failure
    ASSERT_FALSE(link->responses().empty());
    EXPECT_EQ(link->responses()[0].status, 200);
  }
  // The lockout ends (600 s by default).
  world_.clock.Advance(world_.mef_settings.token_lockout_seconds - 1);
  {
    auto link = Link(ToBundle(j), device_, kPeer);
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    EXPECT_TRUE(Contains(run.error().detail, "too many failed")) << run.error().detail;
  }
  world_.clock.Advance(1);
  EnrolOk(ToBundle(j), device_, kPeer);
  EXPECT_EQ(Enrolee(id).state, store::EnroleeState::kEnrolled);
}

// Several MEF processes on one database count together: token guesses spread over two MEFs lock
// the address at both, failed RSPF runs spread over them lock the token at both, and a MEF
// started afterwards (a restart) knows both locks.
TEST_F(FlowBTest, LockoutsAreSharedByEveryMefOnTheStore) {
  Mef second(*world_.store, world_.kek, world_.rng, world_.clock, world_.mef_settings);
  world_.AddRspfs(second);
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto via = [&](int i) { return i % 2 == 0 ? &world_.mef : &second; };
  for (int i = 0; i < 10; ++i) {
    proto::TokenBundle bundle = ToBundle(j);
    bundle.token = RandomTokenText();
    auto link = world_.MefFlowBLink(Client(bundle, Credential(device_)), kPeer, "mef-server",
                                    via(i));
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    EXPECT_TRUE(Contains(run.error().detail, "unknown Enrolment-Token")) << run.error().detail;
  }
  Mef restarted(*world_.store, world_.kek, world_.rng, world_.clock, world_.mef_settings);
  world_.AddRspfs(restarted);
  for (Mef* mef : {&world_.mef, &second, &restarted}) {
    auto link =
        world_.MefFlowBLink(Client(ToBundle(j), Credential(device_)), kPeer, "mef-server", mef);
    ASSERT_NE(link, nullptr);
    auto run = link->Run();
    ASSERT_FALSE(run.has_value());
    ExpectLastResponse(*link, 403, "4103", "too many failed Enrolment-Token attempts");
  }
  // Failed RSPF runs with the real token, from other addresses, alternating between the MEFs.
  SecretBytes wrong_kpm = crypto::RandomSecret(world_.rng, 32);
  for (int i = 0; i < world_.mef_settings.max_rspf_failures; ++i) {
    auto link = world_.MefFlowBLink(Client(ToBundle(j), {kKpmId, wrong_kpm.Clone()}),
                                    "192.0.2." + std::to_string(40 + i), "mef-server", via(i));
    ASSERT_NE(link, nullptr);
    ASSERT_FALSE(link->Run().has_value());
    EXPECT_EQ(link->last_phase_before_failure(), Phase::kRspfHandshake);
  }
  for (Mef* mef : {&world_.mef, &second, &restarted}) {
    auto link = world_.MefFlowBLink(Client(ToBundle(j), Credential(device_)), kOtherPeer,
                                    "mef-server", mef);
    ASSERT_NE(link, nullptr);
    ASSERT_FALSE(link->Run().has_value());
    ExpectLastResponse(*link, 403, "4103", "too many failed RSPF runs");
  }
  ExpectNothingEnrolled(id, j["token"], "");
  // The operator sees both keys.
  auto failures = world_.store->ListFailures();
  ASSERT_TRUE(Ok(failures));
  std::vector<std::string> keys;
  for (const auto& f : *failures) keys.push_back(f.key);
  EXPECT_THAT(keys, ::testing::Contains(std::string("mef-address:") + kPeer));
  EXPECT_THAT(keys, ::testing::Contains(::testing::StartsWith("mef-token:")));
}

// The outer session alone never enrols: POST /enrolment there is refused.
TEST_F(FlowBTest, EnrolmentOnTheOuterSessionIsRefused) {
  const int64_t id = AddEntry();
  const nlohmann::json j = IssueBundle(id);
  auto link = Link(ToBundle(j), device_);
  ASSERT_NE(link, nullptr);
  ASSERT_TRUE(Ok(link->Run(Phase::kTokenExchange)));
  proto::HttpRequest request = JsonRequest("POST", "/enrolment", R"({"mafEnrolment":true})");
  auto handler = world_.mef.NewConnection(kPeer);
  proto::HttpReply reply = handler->OnRequest(request, link->session());
  EXPECT_EQ(reply.response.status, 403) << reply.response.body;
  EXPECT_EQ(Header(reply.response, proto::kHeaderRsc), "4107");  // security association required
  EXPECT_EQ(reply.upgrade, nullptr);
  ExpectNothingEnrolled(id, j["token"], "");
}

}  // namespace
}  // namespace mte::testing
