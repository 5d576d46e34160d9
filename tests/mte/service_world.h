// One MTE in a test: a SQLite ":memory:" store, a random KEK, a fake clock, the MEF and the MAF
// services, a development PKI for the MEF -> MAF delivery listener, and helpers for the
// manufacturer manifest, stakeholders and claims.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/aead.h"
#include "crypto/password.h"
#include "crypto/pki.h"
#include "crypto/random.h"
#include "mte/enrolees.h"
#include "maf/maf.h"
#include "mef/mef.h"
#include "mef/rspf/ppsk/ppsk_rspf.h"
#include "portal/portal.h"
#include "proto/enrolment_client.h"
#include "service_harness.h"
#include "store/store.h"

namespace mte::testing {

inline constexpr const char* kMefFqdn = "mef.example.com";
inline constexpr const char* kMafFqdn = "maf.example.com";
inline constexpr const char* kMafId = "CMAF-01";  // deliberately not the MAF FQDN
inline constexpr const char* kIntruderFqdn = "intruder.example.com";
inline constexpr int64_t kEnrolmentExpiry = 30LL * 24 * 3600;
// Flow B: the MEF URI a bundle names, and the Enrolment-Token lifetime of the test portal.
inline constexpr const char* kMefUri = "https://127.0.0.1:8443";
inline constexpr int64_t kTokenLifetime = 24 * 3600;

struct TestDevice {
  std::string device_id;
  std::string kpm_id;
  SecretBytes kpm;
  std::string claim_code;
};

inline std::string ReadTextFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline std::unique_ptr<store::Store> MustOpenMemoryStore() {
  auto opened = store::OpenSqliteStore(":memory:");
  EXPECT_TRUE(Ok(opened));
  return opened ? std::move(*opened) : nullptr;
}

class ServiceWorld {
 public:
  ServiceWorld()
      : store(MustOpenMemoryStore()),
        kek(crypto::KeyEncryptionKey::FromSecret(crypto::RandomSecret(rng, crypto::kKekSize))),
        mef_settings{kMefFqdn, kMafId, kMafFqdn, kEnrolmentExpiry},
        mef(*store, kek, rng, clock, mef_settings),
        maf(*store, kek, rng, clock, MafSettings{kMafFqdn, kMefFqdn}) {
    AddRspfs(mef);
  }

  // Gives a MEF the RSPFs of this world (PPSK).
  void AddRspfs(Mef& some_mef) {
    auto ppsk = mef::PpskRspf::Create(*store, kek, kMefFqdn);
    EXPECT_TRUE(Ok(ppsk));
    if (ppsk) some_mef.AddRspf(std::move(*ppsk));
  }

  // Imports one manifest entry: Kpm sealed with aad "kpm|<deviceId>", claim code as Argon2id.
  TestDevice ImportDevice(const std::string& device_id, const std::string& kpm_id,
                          const std::string& claim_code) {
    TestDevice device{device_id, kpm_id, crypto::RandomSecret(rng, 32), claim_code};
    store::DeviceRecord record;
    record.device_id = device_id;
    store::DeviceCredential credential{store::CredentialKind::kKpm, kpm_id, {}};
    auto sealed = kek.Seal(device.kpm, "kpm|" + device_id, rng);
    EXPECT_TRUE(Ok(sealed));
    if (sealed) credential.secret_sealed = *sealed;
    record.credentials.push_back(std::move(credential));
    auto hash = crypto::HashPassword(SecretString(claim_code), rng);
    EXPECT_TRUE(Ok(hash));
    if (hash) record.claim_hash = *hash;
    record.created_at = clock.seconds();
    EXPECT_TRUE(Ok(store->ImportDevices({record})));
    return device;
  }

  store::StakeholderRecord AddStakeholder(const std::string& name, const std::string& password) {
    auto hash = crypto::HashPassword(SecretString(password), rng);
    EXPECT_TRUE(Ok(hash));
    EXPECT_TRUE(Ok(store->AddStakeholder(name, hash ? *hash : "", clock.seconds())));
    auto found = store->FindStakeholder(name);
    EXPECT_TRUE(Ok(found));
    return found && found->has_value() ? **found : store::StakeholderRecord{};
  }

  store::EnroleeRecord Claim(const store::StakeholderRecord& who, const TestDevice& device,
                             const std::string& label = "kitchen sensor") {
    auto enrolee = ClaimDevice(*store, who, device.device_id, SecretString(device.claim_code),
                               label, clock.seconds());
    EXPECT_TRUE(Ok(enrolee));
    return enrolee ? *enrolee : store::EnroleeRecord{};
  }

  // A PSK link to the MEF, the bootstrap credential (KpmID, Kpm) on the client side.
  std::unique_ptr<TlsLink> MefLink(const std::string& kpm_id, const SecretBytes& kpm,
                                   PskProfile profile = PskProfile::kTls12PskCbc) {
    return MakePskLink(
        kMefFqdn, kpm_id, kpm, profile, [this](std::string_view id) { return mef.LookupPsk(id); },
        [this](const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
          return mef.Handle(request, tls);
        });
  }

  // One request on a fresh MEF connection.
  Result<proto::HttpResponse> CallMef(const TestDevice& device, const proto::HttpRequest& request,
                                      PskProfile profile = PskProfile::kTls12PskCbc) {
    auto link = MefLink(device.kpm_id, device.kpm, profile);
    if (!link || !link->Handshake()) {
      return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "MEF handshake failed");
    }
    return link->Exchange(request);
  }

  // A PSK link to the MAF device listener with (KmID, Km).
  std::unique_ptr<TlsLink> MafDeviceLink(const std::string& km_id, const SecretBytes& km,
                                         PskProfile profile = PskProfile::kTls13) {
    return MakePskLink(
        kMafFqdn, km_id, km, profile, [this](std::string_view id) { return maf.LookupKm(id); },
        [this](const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
          return maf.HandleDevice(request, tls);
        });
  }

  // --- the MEF -> MAF delivery listener (mutual TLS) ---

  // Creates ca.crt, maf.crt (server), mef.crt (client, dNSName = MEF FQDN) and intruder.crt
  // (client, another FQDN) once.
  const std::filesystem::path& Pki() {
    if (!pki_ready_) {
      std::vector<crypto::LeafSpec> leaves;
      leaves.push_back({"maf", kMafFqdn, {kMafFqdn}, {}, true, false});
      leaves.push_back({"mef", kMefFqdn, {kMefFqdn}, {}, false, true});
      leaves.push_back({"intruder", kIntruderFqdn, {kIntruderFqdn}, {}, false, true});
      // Real time: OpenSSL verifies certificate validity against the system clock.
      EXPECT_TRUE(Ok(crypto::CreateDevPki(pki_dir_.path(), "OpenMTE Test CA", leaves,
                                          std::chrono::system_clock::now())));
      pki_ready_ = true;
    }
    return pki_dir_.path();
  }

  // A mutual-TLS link to Maf::HandleDelivery whose client presents `<client_stem>.crt`
  // (empty: no client certificate).
  std::unique_ptr<TlsLink> DeliveryLink(const std::string& client_stem) {
    const auto& dir = Pki();
    crypto::TlsServerOptions server_options;
    server_options.server_name = kMafFqdn;
    server_options.cert_chain_pem_file = (dir / "maf.crt").string();
    server_options.key_pem_file = (dir / "maf.key").string();
    server_options.client_ca_pem_file = (dir / "ca.crt").string();
    crypto::TlsClientOptions client_options;
    client_options.server_name = kMafFqdn;
    client_options.trust_pem_file = (dir / "ca.crt").string();
    if (!client_stem.empty()) {
      client_options.cert_chain_pem_file = (dir / (client_stem + ".crt")).string();
      client_options.key_pem_file = (dir / (client_stem + ".key")).string();
    }
    auto server = crypto::TlsEngine::Server(MustContext(crypto::TlsContext::Server(server_options)));
    auto client = crypto::TlsEngine::Client(MustContext(crypto::TlsContext::Client(client_options)));
    EXPECT_TRUE(Ok(server));
    EXPECT_TRUE(Ok(client));
    if (!server || !client) return nullptr;
    return std::make_unique<TlsLink>(
        std::move(*client), std::move(*server),
        [this](const proto::HttpRequest& request, const crypto::TlsEngine& tls) {
          return maf.HandleDelivery(request, tls);
        });
  }

  // POST /maf/v1/credentials with `body` over a fresh mutual-TLS connection.
  Result<proto::HttpResponse> Deliver(const std::string& body,
                                      const std::string& client_stem = "mef",
                                      const std::string& target = "/maf/v1/credentials") {
    auto link = DeliveryLink(client_stem);
    if (!link || !link->Handshake()) {
      return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "delivery handshake failed");
    }
    return link->Exchange(JsonRequest("POST", target, body));
  }

  // --- Flow B (seed 8.y.4): the MEF's certificate, the RSPF context, the portal's bundles ---

  // Creates, once, in its own directory: ca.crt and server certificates (serverAuth, P-256) for
  // the MEF FQDN ("mef-server") and for another FQDN ("other-server"), both from that CA.
  const std::filesystem::path& FlowBPki() {
    if (!flow_b_pki_ready_) {
      std::vector<crypto::LeafSpec> leaves;
      leaves.push_back({"mef-server", kMefFqdn, {kMefFqdn}, {}, true, false});
      leaves.push_back({"other-server", kIntruderFqdn, {kIntruderFqdn}, {}, true, false});
      EXPECT_TRUE(Ok(crypto::CreateDevPki(flow_b_pki_dir_.path(), "OpenMTE Flow B Test CA",
                                          leaves, std::chrono::system_clock::now())));
      flow_b_pki_ready_ = true;
    }
    return flow_b_pki_dir_.path();
  }

  std::string FlowBCaPem() { return ReadTextFile(FlowBPki() / "ca.crt"); }

  // The PEM of a CA that has nothing to do with the MEF.
  std::string UnrelatedCaPem() {
    if (!unrelated_ca_ready_) {
      EXPECT_TRUE(Ok(crypto::CreateDevPki(unrelated_dir_.path(), "Unrelated CA", {},
                                          std::chrono::system_clock::now())));
      unrelated_ca_ready_ = true;
    }
    return ReadTextFile(unrelated_dir_.path() / "ca.crt");
  }

  // The MEF listener's context as `mte serve` builds it: TLS-PSK for Flow A and the certificate
  // `<stem>.crt` for the server-authenticated outer session of Flow B.
  std::shared_ptr<const crypto::TlsContext> MefOuterContext(
      const std::string& stem = "mef-server") {
    const auto& dir = FlowBPki();
    crypto::TlsServerOptions outer;
    outer.server_name = kMefFqdn;
    outer.psk = true;
    outer.cert_chain_pem_file = (dir / (stem + ".crt")).string();
    outer.key_pem_file = (dir / (stem + ".key")).string();
    return MustContext(crypto::TlsContext::Server(outer));
  }

  // Flow B needs nothing more: every RSPF added to the MEF runs inside an outer session too.
  void EnableFlowB() {}

  // The portal that issues token bundles naming this world's MEF (created on first use).
  Portal& FlowBPortal(int64_t token_seconds = kTokenLifetime) {
    if (!portal_) {
      PortalSettings settings;
      settings.token_seconds = token_seconds;
      settings.mef_uri = kMefUri;
      settings.mef_fqdn = kMefFqdn;
      settings.mef_trust_anchors = {FlowBCaPem()};
      portal_ = std::make_unique<Portal>(*store, kek, rng, clock, settings);
    }
    return *portal_;
  }

  // One Flow B connection from `peer` to the MEF (or to `via`, another MEF on this world's
  // store), whose outer certificate is `<stem>.crt`.
  std::unique_ptr<FlowBLink> MefFlowBLink(std::unique_ptr<proto::EnrolmentClient> client,
                                          const std::string& peer = "192.0.2.10",
                                          const std::string& stem = "mef-server",
                                          Mef* via = nullptr) {
    Mef& target = via != nullptr ? *via : mef;
    auto server = crypto::TlsEngine::Server(
        MefOuterContext(stem), [&target](std::string_view id) { return target.LookupPsk(id); });
    EXPECT_TRUE(Ok(server));
    if (!server || !client) return nullptr;
    return std::make_unique<FlowBLink>(std::move(client), std::move(*server),
                                       target.NewConnection(peer));
  }

  crypto::SystemRng rng;
  FakeClock clock;
  std::unique_ptr<store::Store> store;
  crypto::KeyEncryptionKey kek;
  MefSettings mef_settings;
  Mef mef;
  Maf maf;

 private:
  TempDir pki_dir_;
  bool pki_ready_ = false;
  TempDir flow_b_pki_dir_;
  bool flow_b_pki_ready_ = false;
  TempDir unrelated_dir_;
  bool unrelated_ca_ready_ = false;
  std::unique_ptr<Portal> portal_;
};

}  // namespace mte::testing
