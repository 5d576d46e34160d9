// Fuzzes mte::ParseManifest, the reader of a device maker's manifest that `mte admin device
// import` takes (docs/protocol.md §16.1). The input is the manifest file.
//
// A manifest without problems must give only devices the store may take: an identifier, a claim
// code of 1..128 octets, and at least one credential, each well formed.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "mte/manifest.h"

namespace {

bool IsLowerHexSha256(const std::string& text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto manifest = mte::ParseManifest(mte::fuzz::InputText(data, size));
  if (!manifest || !manifest->problems.empty()) return 0;
  for (const auto& device : manifest->devices) {
    mte::fuzz::Require(!device.device_id.empty(), "an imported device has an identifier");
    mte::fuzz::Require(!device.claim_code.empty() && device.claim_code.size() <= 128,
                       "an imported device has a claim code of 1..128 octets");
    mte::fuzz::Require(
        !device.kpm_id.empty() || !device.cert_sha256.empty() || !device.spki_sha256.empty(),
        "an imported device has a credential");
    mte::fuzz::Require(
        device.kpm_id.empty() || (device.kpm.size() >= 16 && device.kpm.size() <= 64),
        "an imported Kpm has 16..64 octets");
    for (const auto* digest : {&device.cert_sha256, &device.spki_sha256}) {
      mte::fuzz::Require(digest->empty() || IsLowerHexSha256(*digest),
                         "an imported digest is 64 lowercase hex digits");
    }
  }
  return 0;
}
