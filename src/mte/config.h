// The MTE data directory and its configuration file (DIR/mte.json), written by `mte init` and
// read by `mte serve` / `mte admin`.
//
// Layout: mte.json (config, 0644), kek (key-encryption key, 0600), mte.db (SQLite, 0600),
// pki/ (development CA and FQDN certificates; *.key 0600).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace mte {

struct Config {
  std::filesystem::path data_dir;
  std::string mef_fqdn;
  std::string maf_fqdn;
  std::string maf_id;  // MAF-ID used in the Km derivation; defaults to maf_fqdn
  std::string bind_address = "127.0.0.1";
  // Host of the MTE-selected MEF URI handed out in Flow B bundles ("https://HOST:PORT"); the
  // device connects there and verifies the MEF certificate against mef_fqdn.
  std::string mef_public_host;
  uint16_t mef_port = 8443;
  uint16_t maf_port = 8444;            // MAF handshake (TLS-PSK with KmID/Km)
  uint16_t maf_delivery_port = 8445;   // MEF -> MAF credential delivery (mutual TLS)
  std::string maf_delivery_host;       // where the MEF reaches the MAF (default: bind_address)
  uint16_t portal_port = 8446;         // Enrolment Portal (HTTPS REST)
  int64_t enrolment_expiry_seconds = 365LL * 24 * 3600;  // Ke lifetime (TS-0003 §10.7)
  int64_t portal_session_seconds = 8 * 3600;
  int64_t token_lifetime_seconds = 7LL * 24 * 3600;  // Enrolment-Token lifetime (Flow B)
  int64_t handshake_timeout_ms = 10000;
  int64_t idle_timeout_ms = 30000;
  int64_t request_timeout_ms = 10000;
  int64_t max_connections = 4096;              // per listener
  int64_t max_connections_per_address = 512;   // per listener and client address
  int io_threads = 2;
  int worker_threads = 2;
  // The MEF's RSPF preference for Flow B (seed 8.y.4 step 15); the MEF offers exactly these.
  std::vector<std::string> rspfs{"CERT", "PPSK"};
  // Certificate status requests (RFC 6960): the whole exchange with a responder.
  int64_t ocsp_timeout_ms = 3000;
  // OCSP responder for stapling the MEF certificate's status (RFC 6066 §8): "" = the certificate's
  // AIA OCSP URL; no stapling when neither exists.
  std::string mef_ocsp_url;

  // Where the store is: "" = the embedded SQLite database mte.db in the data directory; or a
  // PostgreSQL libpq URI "postgresql://..." (several MTE processes, each with its own data
  // directory, may share one database). The URI never carries a password (mte.json is not a
  // secret): libpq takes it from a password file (passfile=, PGPASSFILE, ~/.pgpass) or the
  // server authenticates by other means (peer, client certificates).
  std::string store;
  // With a PostgreSQL store: how long an outbox pass claims its items (mef/outbox.h).
  int64_t outbox_lease_seconds = 60;

  std::filesystem::path config_file() const { return data_dir / "mte.json"; }
  std::filesystem::path kek_file() const { return data_dir / "kek"; }
  std::filesystem::path db_file() const { return data_dir / "mte.db"; }
  // What store::OpenStore opens: `store`, or db_file() when it is empty.
  std::string store_location() const { return store.empty() ? db_file().string() : store; }
  std::filesystem::path pki_dir() const { return data_dir / "pki"; }
  std::filesystem::path ca_cert() const { return pki_dir() / "ca.crt"; }
  std::filesystem::path cert(std::string_view stem) const {
    return pki_dir() / (std::string(stem) + ".crt");
  }
  std::filesystem::path key(std::string_view stem) const {
    return pki_dir() / (std::string(stem) + ".key");
  }
};

// Reads DIR/mte.json. kLocalUsage/kConfig with the path and the problem on failure.
Result<Config> LoadConfig(const std::filesystem::path& data_dir);
// The configuration of DIR whose mte.json holds `text`; errors as LoadConfig.
Result<Config> ParseConfig(std::string_view text, const std::filesystem::path& data_dir);
// Writes DIR/mte.json atomically.
Result<void> SaveConfig(const Config& config);
// Whether `store` is a valid Config::store: "" or a postgresql:// (postgres://) URI of printable
// ASCII, at most 1024 characters, without a password. kLocalUsage/kMalformed naming the fault.
Result<void> CheckStoreLocation(std::string_view store);

}  // namespace mte
