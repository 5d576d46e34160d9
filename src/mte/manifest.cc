#include "mte/manifest.h"

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>

#include "base/bytes.h"
#include "crypto/keys.h"
#include "mte/enrolees.h"

namespace mte {
namespace {

constexpr size_t kMinKpm = 16;
constexpr size_t kMaxKpm = 64;

// A manifest digest member (certSha256, spkiSha256): 64 hex characters of either case, kept
// lowercase, the form the store holds.
std::optional<std::string> ParseSha256Hex(const std::string& text) {
  if (text.size() != 64) return std::nullopt;
  std::string out = text;
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  return out;
}

// The problems of `item` that make it unreadable: not an object, an unknown or non-string
// member, a missing required member or credential. True when there are none.
bool CheckShape(const nlohmann::json& item, const std::string& where,
                std::vector<std::string>& problems) {
  static const std::set<std::string> kKnown = {"deviceId", "claimCode",  "kpmId",
                                               "kpmHex",   "certSha256", "spkiSha256"};
  if (!item.is_object()) {
    problems.push_back(where + ": not an object");
    return false;
  }
  bool ok = true;
  for (auto it = item.begin(); it != item.end(); ++it) {
    if (!kKnown.count(it.key())) {
      problems.push_back(where + ": unknown member '" + it.key().substr(0, 64) + "'");
      ok = false;
    } else if (!it.value().is_string()) {
      problems.push_back(where + ": member '" + it.key() + "' is not a string");
      ok = false;
    }
  }
  for (const char* name : {"deviceId", "claimCode"}) {
    if (!item.contains(name)) {
      problems.push_back(where + ": member '" + name + "' missing");
      ok = false;
    }
  }
  // A PPSK credential is the pair (kpmId, kpmHex).
  const bool has_kpm_id = item.contains("kpmId"), has_kpm_hex = item.contains("kpmHex");
  if (has_kpm_id != has_kpm_hex) {
    problems.push_back(where + ": member '" + std::string(has_kpm_id ? "kpmHex" : "kpmId") +
                       "' missing (a Kpm credential needs both kpmId and kpmHex)");
    ok = false;
  }
  if (!has_kpm_id && !has_kpm_hex && !item.contains("certSha256") && !item.contains("spkiSha256")) {
    problems.push_back(where +
                       ": no credential (give kpmId and kpmHex, certSha256 or "
                       "spkiSha256)");
    ok = false;
  }
  return ok;
}

}  // namespace

Result<Manifest> ParseManifest(std::string_view text) {
  auto manifest = nlohmann::json::parse(text, nullptr, false);
  if (manifest.is_discarded()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "not valid JSON");
  }
  if (!manifest.is_array()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "expected a JSON array");
  }
  Manifest out;
  auto& problems = out.problems;
  std::set<std::string> device_ids;
  std::map<std::string, std::set<std::string>> seen;  // member -> values within the file
  for (size_t i = 0; i < manifest.size(); ++i) {
    const auto& item = manifest[i];
    std::string where = "entry " + std::to_string(i);
    if (!CheckShape(item, where, problems)) continue;
    ManifestDevice device;
    device.device_id = item["deviceId"].get<std::string>();
    device.claim_code = item["claimCode"].get<std::string>();
    if (auto v = crypto::CheckIdentifier(device.device_id, "deviceId"); !v) {
      problems.push_back(where + ": member 'deviceId': " + v.error().detail);
    }
    if (device.claim_code.empty() || device.claim_code.size() > kMaxClaimCodeLength) {
      problems.push_back(where + ": member 'claimCode' must be 1..128 characters");
    }
    if (!device_ids.insert(device.device_id).second) {
      problems.push_back(where + ": duplicate deviceId '" + device.device_id + "'");
    }
    // Duplicates within the file, per member; the store also refuses them against its rows.
    auto unique = [&](const char* member, const std::string& value) {
      if (!seen[member].insert(value).second) {
        problems.push_back(where + ": duplicate " + member + " '" + value + "'");
      }
    };
    if (item.contains("kpmId")) {
      device.kpm_id = item["kpmId"].get<std::string>();
      if (auto v = crypto::CheckIdentifier(device.kpm_id, "kpmId"); !v) {
        problems.push_back(where + ": member 'kpmId': " + v.error().detail);
      }
      auto kpm = HexDecode(item["kpmHex"].get<std::string>());
      if (!kpm || kpm->size() < kMinKpm || kpm->size() > kMaxKpm) {
        problems.push_back(where + ": member 'kpmHex' must be 16..64 octets in hex");
      } else {
        device.kpm = SecretBytes(*kpm, SecretAccess::ForCrypto());
        SecureWipe(kpm->data(), kpm->size());
      }
      unique("kpmId", device.kpm_id);
    }
    for (const auto& [member, digest_out] : {std::pair{"certSha256", &device.cert_sha256},
                                             std::pair{"spkiSha256", &device.spki_sha256}}) {
      if (!item.contains(member)) continue;
      auto digest = ParseSha256Hex(item[member].get<std::string>());
      if (!digest) {
        problems.push_back(where + ": member '" + member +
                           "' must be 64 hex characters (a SHA-256 digest)");
        continue;
      }
      *digest_out = *digest;
      unique(member, *digest_out);
    }
    out.devices.push_back(std::move(device));
  }
  return out;
}

}  // namespace mte
