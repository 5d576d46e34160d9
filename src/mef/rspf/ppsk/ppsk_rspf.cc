#include "mef/rspf/ppsk/ppsk_rspf.h"

#include <spdlog/spdlog.h>

#include "proto/enrolment.h"

namespace mte::mef {

Result<std::unique_ptr<PpskRspf>> PpskRspf::Create(store::Store& store,
                                                   const crypto::KeyEncryptionKey& kek,
                                                   std::string mef_fqdn) {
  crypto::TlsServerOptions inner;
  inner.server_name = std::move(mef_fqdn);
  inner.psk = true;
  auto rspf = std::unique_ptr<PpskRspf>(new PpskRspf(store, kek));
  MTE_TRY_ASSIGN(rspf->inner_, crypto::TlsContext::Server(inner));
  return rspf;
}

std::string_view PpskRspf::name() const { return proto::kRspfPpsk; }

void PpskRspf::ConfigureDirect(crypto::TlsServerOptions& options) const { options.psk = true; }

std::optional<SecretBytes> PpskRspf::LookupPsk(std::string_view kpm_id) {
  if (!crypto::CheckIdentifier(kpm_id, "KpmID")) {
    spdlog::info("mef: handshake with a malformed PSK identity");
    return std::nullopt;
  }
  auto device = store_.FindDeviceByKpmId(kpm_id);
  if (!device) {
    spdlog::error("mef: device lookup failed: {}", Describe(device.error()));
    return std::nullopt;
  }
  if (!device->has_value()) {
    spdlog::info("mef: handshake with unknown KpmID '{}'", kpm_id);
    return std::nullopt;
  }
  const store::DeviceCredential* credential = (*device)->Find(store::CredentialKind::kKpm);
  if (credential == nullptr) return std::nullopt;
  auto kpm = kek_.Open(credential->secret_sealed, "kpm|" + (*device)->device_id);
  if (!kpm) {
    spdlog::error("mef: cannot open Kpm of device '{}': {}", (*device)->device_id,
                  Describe(kpm.error()));
    return std::nullopt;
  }
  return std::move(*kpm);
}

bool PpskRspf::Claims(const crypto::TlsEngine& tls) const { return !tls.psk_identity().empty(); }

bool PpskRspf::Serves(const store::DeviceRecord& device) const {
  return device.Find(store::CredentialKind::kKpm) != nullptr;
}

Result<std::unique_ptr<crypto::TlsEngine>> PpskRspf::NewInnerEngine() {
  return crypto::TlsEngine::Server(inner_,
                                   [this](std::string_view id) { return LookupPsk(id); });
}

void PpskRspf::Authenticate(const crypto::TlsEngine& tls, int64_t /*now*/,
                            AuthenticateDone done) {
  // The handshake already proved Kpm: only the mapping KpmID -> device remains.
  const std::string& kpm_id = tls.psk_identity();
  auto device = store_.FindDeviceByKpmId(kpm_id);
  if (!device) return done(Fail(device.error()));
  if (!device->has_value()) {
    return done(Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "unknown bootstrap credential"));
  }
  done(AuthenticatedDevice{(*device)->device_id, std::string(proto::kRspfPpsk),
                           "KpmID '" + kpm_id + "'", "KpmID " + kpm_id});
}

}  // namespace mte::mef
