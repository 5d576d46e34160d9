#include "fuzz/mef_world.h"

#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <chrono>
#include <climits>
#include <filesystem>
#include <string>
#include <vector>

#include "crypto/aead.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "crypto/random.h"
#include "fuzz/fuzz_util.h"
#include "mef/rspf/ppsk/ppsk_rspf.h"
#include "store/store.h"

namespace mte::fuzz {
namespace {

namespace fs = std::filesystem;

// 2026-11-18T05:46:40Z for the MEF's own decisions (token expiry, Ke lifetime); OpenSSL checks
// certificates against the system clock, so the PKI is issued at the real time.
constexpr int64_t kNow = 1'795'000'000;
constexpr int64_t kTenYears = 10LL * 365 * 24 * 3600;

class FixedClock final : public Clock {
 public:
  SystemTime Now() const override { return SystemTime(std::chrono::seconds(kNow)); }
};

template <class T>
T Must(Result<T> result, const char* what) {
  if (!result) SetupFailed(what, Describe(result.error()));
  return std::move(*result);
}

void Must(Result<void> result, const char* what) {
  if (!result) SetupFailed(what, Describe(result.error()));
}

SecretBytes Kpm(uint8_t fill) {
  Bytes kpm(32, fill);
  return SecretBytes(kpm, SecretAccess::ForCrypto());
}

}  // namespace

struct MefWorld::Parts {
  crypto::SystemRng rng;
  FixedClock clock;
  std::unique_ptr<store::Store> store;
  crypto::KeyEncryptionKey kek;
  std::unique_ptr<Mef> mef;
  std::shared_ptr<const crypto::TlsContext> mef_port;
  std::shared_ptr<const crypto::TlsContext> flow_a_device;
  std::shared_ptr<const crypto::TlsContext> flow_b_device;

  Parts()
      : store(Must(store::OpenSqliteStore(":memory:"), "store")),
        kek(crypto::KeyEncryptionKey::FromSecret(crypto::RandomSecret(rng, crypto::kKekSize))) {}

  void ImportDevice(std::string_view device_id, std::string_view kpm_id, uint8_t fill) {
    store::DeviceRecord record;
    record.device_id = std::string(device_id);
    record.claim_hash = "not used: the fuzz targets never claim";
    record.created_at = kNow;
    auto sealed = Must(kek.Seal(Kpm(fill), "kpm|" + record.device_id, rng), "seal Kpm");
    record.credentials.push_back(
        {store::CredentialKind::kKpm, std::string(kpm_id), std::move(sealed)});
    Must(store->ImportDevices({record}), "import device");
  }

  void AddEnrolees() {
    int64_t stakeholder = Must(store->AddStakeholder("fuzz", "not used", kNow), "stakeholder");
    Must(store->AddEnrolee(stakeholder, kFlowADevice, "Flow A", kNow), "Flow A enrolee");
    auto entry =
        Must(store->AddEnroleeEntry(stakeholder, kFlowBDevice, "Flow B", "", kNow), "Flow B entry");
    auto hash = crypto::Sha256(AsBytes(kFlowBToken));
    Must(store->IssueToken(entry.id, hash, kNow, kNow + kTenYears), "Enrolment-Token");
  }

  void AddMef() {
    MefSettings settings;
    settings.mef_fqdn = std::string(kMefFqdn);
    settings.maf_id = "CMAF-01";
    settings.maf_fqdn = "maf.example.com";
    settings.enrolment_expiry_seconds = kTenYears;
    settings.rspf_preference = {"PPSK"};
    settings.max_token_failures = INT_MAX;
    settings.max_rspf_failures = INT_MAX;
    mef = std::make_unique<Mef>(*store, kek, rng, clock, settings);
    mef->AddRspf(Must(mef::PpskRspf::Create(*store, kek, std::string(kMefFqdn)), "PPSK RSPF"));
  }

  // The MEF port's context as `mte serve` builds it, and the two devices' contexts. The PKI's
  // files are read here and removed at once.
  void AddContexts() {
    char dir_template[] = "/tmp/mte-fuzz-pki-XXXXXX";
    if (mkdtemp(dir_template) == nullptr) SetupFailed("PKI directory", dir_template);
    fs::path dir(dir_template);
    std::vector<crypto::LeafSpec> leaves;
    leaves.push_back({"mef", std::string(kMefFqdn), {std::string(kMefFqdn)}, {}, true, false});
    Must(crypto::CreateDevPki(dir, "OpenMTE Fuzz CA", leaves, std::chrono::system_clock::now()),
         "PKI");
    crypto::TlsServerOptions port;
    port.server_name = std::string(kMefFqdn);
    port.cert_chain_pem_file = (dir / "mef.crt").string();
    port.key_pem_file = (dir / "mef.key").string();
    mef->ConfigureDirect(port);
    mef_port = Must(crypto::TlsContext::Server(port), "MEF port context");

    crypto::TlsClientOptions flow_a;
    flow_a.server_name = std::string(kMefFqdn);
    flow_a.psk_identity = std::string(kFlowAKpmId);
    flow_a_device = Must(crypto::TlsContext::Client(flow_a), "Flow A device context");
    crypto::TlsClientOptions flow_b;
    flow_b.server_name = std::string(kMefFqdn);
    flow_b.trust_pem_file = (dir / "ca.crt").string();
    flow_b_device = Must(crypto::TlsContext::Client(flow_b), "Flow B device context");
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
};

MefWorld& MefWorld::Get() {
  static MefWorld* world = [] {
    // One log line per refused request would cost more than the request; MTE_FUZZ_LOG=1 keeps
    // the log, to see why an input crashed.
    if (getenv("MTE_FUZZ_LOG") == nullptr) spdlog::set_level(spdlog::level::off);
    auto parts = std::make_unique<Parts>();
    parts->ImportDevice(kFlowADevice, kFlowAKpmId, 0x11);
    parts->ImportDevice(kFlowBDevice, kFlowBKpmId, 0x22);
    parts->AddEnrolees();
    parts->AddMef();
    parts->AddContexts();
    return new MefWorld(std::move(parts));
  }();
  return *world;
}

MefWorld::MefWorld(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {
  mef_ = parts_->mef.get();
}

MefConnection MefWorld::Connect(Flow flow) {
  Mef* mef = mef_;
  auto server = Must(
      crypto::TlsEngine::Server(
          parts_->mef_port, [mef](std::string_view identity) { return mef->LookupPsk(identity); }),
      "MEF engine");
  MefConnection connection;
  connection.device =
      flow == Flow::kA
          ? Must(crypto::TlsEngine::Client(parts_->flow_a_device, Kpm(0x11)), "device engine")
          : Must(crypto::TlsEngine::Client(parts_->flow_b_device), "device engine");
  connection.mef = std::make_unique<proto::ServerConnection>(
      std::move(server), proto::HttpLimits{}, mef_->NewConnection(std::string(kPeerAddress)));
  Must(connection.device->Advance(), "ClientHello");
  Must(Pump(connection), "handshake");
  if (!connection.device->HandshakeComplete() || !connection.mef->session().HandshakeComplete()) {
    SetupFailed("handshake", "did not complete");
  }
  return connection;
}

Result<void> Pump(MefConnection& connection) {
  // A handshake takes two round trips, a request one; every round moves something or ends.
  for (int round = 0; round < 64; ++round) {
    Bytes to_mef = connection.device->TakeCiphertext();
    if (!to_mef.empty() && !connection.mef->Finished()) {
      MTE_TRY(connection.mef->FeedCiphertext(to_mef));
    }
    Bytes to_device = connection.mef->TakeCiphertext();
    if (to_mef.empty() && to_device.empty()) return {};
    if (to_device.empty()) continue;
    connection.device->FeedCiphertext(to_device);
    // The device's own failures (e.g. an alert the MEF sent) end the exchange, not the run.
    if (!connection.device->Advance()) return {};
    (void)connection.device->TakePlaintext();
  }
  return {};
}

}  // namespace mte::fuzz
