// The manufacturer manifest (docs/protocol.md §16.1) that `mte admin device import` reads: a JSON
// array of entries, each a device with its claim code and one or more bootstrap credentials: a
// Kpm (TS-0003 §8.3.2.1, kpmId + kpmHex), a device certificate digest (certSha256) and a device
// key digest (spkiSha256, RFC 6920 style), both for the certificate RSPF (TS-0003 §8.3.2.2).
//
// Parsing only: the file is the device maker's, so every member is checked here; sealing the Kpm,
// hashing the claim code and the checks against the store's rows are the importer's.
// Thread-safety: a pure function.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/secret.h"

namespace mte {

// One checked manifest entry.
struct ManifestDevice {
  std::string device_id;
  std::string claim_code;
  std::string kpm_id;                    // "" = no PPSK credential
  SecretBytes kpm;                       // with kpm_id
  std::string cert_sha256, spki_sha256;  // 64 lowercase hex digits; "" = none
};

struct Manifest {
  std::vector<ManifestDevice> devices;
  // Every problem of the entries, "entry N: ..." (N counts from 0). The import is all or nothing:
  // with any problem, nothing may be imported.
  std::vector<std::string> problems;
};

// kLocalUsage/kMalformed when `text` is not a JSON array ("not valid JSON", "expected a JSON
// array"); otherwise the entries that passed and the problems of the others.
Result<Manifest> ParseManifest(std::string_view text);

}  // namespace mte
