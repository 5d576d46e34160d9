// Fuzzes the device's reading of a Flow B token bundle (docs/protocol.md §9.1): the JSON the OBF
// delivers or `mte-enrolee enrol-token --bundle` reads, or its MTB1 QR payload (docs/qr.md). The
// input is the bundle text.
//
// A bundle that enrolee::ParseBundle accepts goes on, as in the device library, to
// proto::EnrolmentClient::ViaToken (which checks the token and the MEF FQDN and builds the TLS
// client context from the trust anchors or pins) and to the first flight of the outer handshake.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "enrolee/bundle.h"
#include "fuzz/fuzz_util.h"
#include "proto/enrolment_client.h"
#include "proto/rspf/ppsk_device.h"

namespace {

std::unique_ptr<mte::proto::DeviceRspf> Device() {
  mte::Bytes kpm(32, 0x5a);
  auto device = mte::proto::PpskDevice::Create(
      {"kpm-0001@maker.example.com", mte::SecretBytes(kpm, mte::SecretAccess::ForCrypto())});
  if (!device) mte::fuzz::SetupFailed("PPSK device", device.error().detail);
  return std::move(*device);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = mte::enrolee::ParseBundle(std::string(mte::fuzz::InputText(data, size)));
  if (!parsed) return 0;
  mte::fuzz::Require(!parsed->bundle.mef_trust_pem.empty() || !parsed->bundle.mef_spki_pins.empty(),
                     "an accepted bundle names how to trust the MEF");
  for (const auto& pin : parsed->bundle.mef_spki_pins) {
    mte::fuzz::Require(pin.size() == 32, "a pin is a SHA-256 digest");
  }
  std::vector<std::unique_ptr<mte::proto::DeviceRspf>> rspfs;
  rspfs.push_back(Device());
  auto machine = mte::proto::EnrolmentClient::ViaToken(std::move(parsed->bundle), std::move(rspfs));
  if (!machine) return 0;
  if ((*machine)->Start()) {
    mte::fuzz::Require(!(*machine)->TakeCiphertext().empty(), "a started enrolment sends a hello");
  }
  return 0;
}
