#include "mte/config.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <limits>
#include <sstream>

#include "base/file.h"
#include "crypto/keys.h"
#include "proto/onem2m.h"

namespace mte {
namespace {

Error ConfigError(const std::filesystem::path& file, const std::string& what) {
  return Error{ErrorKind::kLocalUsage, Errc::kConfig, file.string() + ": " + what};
}

// An integer member into `field`, which keeps its default when the member is absent. A number
// with a fraction or an exponent, or one outside the field's type, is refused instead of
// converted: json::value would round 2.5 to 2, wrap 4294967298 to 2 threads, and convert 1e300
// with undefined behaviour.
template <class T>
Result<void> ReadInteger(const nlohmann::json& j, const char* name, T& field,
                         const std::filesystem::path& file) {
  auto it = j.find(name);
  if (it == j.end()) return {};
  auto value =
      proto::JsonInteger(*it, std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
  if (!value) return Fail(ConfigError(file, std::string(name) + " must be an integer"));
  field = static_cast<T>(*value);
  return {};
}

}  // namespace

Result<Config> LoadConfig(const std::filesystem::path& data_dir) {
  Config where;
  where.data_dir = data_dir;
  auto file = where.config_file();
  std::ifstream in(file);
  if (!in) {
    return Fail(ConfigError(file, "cannot read (run 'mte init --data " + data_dir.string() +
                                      " ...' first)"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), data_dir);
}

Result<Config> ParseConfig(std::string_view text, const std::filesystem::path& data_dir) {
  Config config;
  config.data_dir = data_dir;
  auto file = config.config_file();
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Fail(ConfigError(file, "not a JSON object"));
  try {
    config.mef_fqdn = j.at("mefFqdn").get<std::string>();
    config.maf_fqdn = j.at("mafFqdn").get<std::string>();
    config.maf_id = j.value("mafId", config.maf_fqdn);
    config.bind_address = j.value("bindAddress", config.bind_address);
    config.mef_public_host = j.value("mefPublicHost", config.mef_fqdn);
    config.maf_delivery_host = j.value("mafDeliveryHost", config.bind_address);
    for (auto [name, field] : {std::pair{"mefPort", &config.mef_port},
                               std::pair{"mafPort", &config.maf_port},
                               std::pair{"mafDeliveryPort", &config.maf_delivery_port},
                               std::pair{"portalPort", &config.portal_port}}) {
      const auto& value = j.at(name);
      if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
          value.get<int64_t>() > 65535) {
        return Fail(ConfigError(file, std::string(name) + " must be a port number 0..65535"));
      }
      *field = static_cast<uint16_t>(value.get<int64_t>());
    }
    for (auto [name, field] :
         {std::pair{"enrolmentExpirySeconds", &config.enrolment_expiry_seconds},
          std::pair{"portalSessionSeconds", &config.portal_session_seconds},
          std::pair{"tokenLifetimeSeconds", &config.token_lifetime_seconds},
          std::pair{"handshakeTimeoutMs", &config.handshake_timeout_ms},
          std::pair{"idleTimeoutMs", &config.idle_timeout_ms},
          std::pair{"requestTimeoutMs", &config.request_timeout_ms},
          std::pair{"maxConnections", &config.max_connections},
          std::pair{"maxConnectionsPerAddress", &config.max_connections_per_address},
          std::pair{"ocspTimeoutMs", &config.ocsp_timeout_ms},
          std::pair{"outboxLeaseSeconds", &config.outbox_lease_seconds}}) {
      MTE_TRY(ReadInteger(j, name, *field, file));
    }
    MTE_TRY(ReadInteger(j, "ioThreads", config.io_threads, file));
    MTE_TRY(ReadInteger(j, "workerThreads", config.worker_threads, file));
    config.rspfs = j.value("rspfs", config.rspfs);
    config.mef_ocsp_url = j.value("mefOcspUrl", config.mef_ocsp_url);
    config.store = j.value("store", config.store);
  } catch (const nlohmann::json::exception& e) {
    return Fail(ConfigError(file, e.what()));
  }
  for (const auto* id : {&config.mef_fqdn, &config.maf_fqdn, &config.maf_id}) {
    if (auto ok = crypto::CheckIdentifier(*id, "FQDN"); !ok) {
      return Fail(ConfigError(file, ok.error().detail));
    }
    if (id->find('*') != std::string::npos) {
      return Fail(ConfigError(file, "wildcard names are not allowed (TS-0003 §10.1.1): " + *id));
    }
  }
  if (config.enrolment_expiry_seconds <= 0 || config.handshake_timeout_ms <= 0 ||
      config.portal_session_seconds <= 0 || config.token_lifetime_seconds <= 0 ||
      config.idle_timeout_ms <= 0 || config.request_timeout_ms <= 0 || config.io_threads < 1 ||
      config.worker_threads < 1 || config.ocsp_timeout_ms <= 0) {
    return Fail(ConfigError(file, "timeouts, lifetimes and thread counts must be positive"));
  }
  if (config.max_connections < 1 || config.max_connections > 1000000 ||
      config.max_connections_per_address < 1 ||
      config.max_connections_per_address > config.max_connections) {
    return Fail(ConfigError(file, "maxConnections must be 1..1000000 and maxConnectionsPerAddress "
                                  "1..maxConnections"));
  }
  if (config.rspfs.empty()) return Fail(ConfigError(file, "rspfs must name at least one RSPF"));
  for (const auto& rspf : config.rspfs) {
    if (rspf != "CERT" && rspf != "PPSK") {
      return Fail(ConfigError(file, "rspfs: unknown RSPF '" + rspf.substr(0, 32) +
                                        "' (this MEF offers CERT and PPSK)"));
    }
  }
  if (!config.mef_ocsp_url.empty() && config.mef_ocsp_url.rfind("http://", 0) != 0) {
    return Fail(ConfigError(file, "mefOcspUrl must be an http:// URL (RFC 6960 Appendix A)"));
  }
  if (config.outbox_lease_seconds < 1 || config.outbox_lease_seconds > 3600) {
    return Fail(ConfigError(file, "outboxLeaseSeconds must be 1..3600"));
  }
  if (auto ok = CheckStoreLocation(config.store); !ok) {
    return Fail(ConfigError(file, ok.error().detail));
  }
  return config;
}

Result<void> CheckStoreLocation(std::string_view store) {
  auto refuse = [](std::string detail) {
    return Fail(Error{ErrorKind::kLocalUsage, Errc::kMalformed, std::move(detail)});
  };
  if (store.empty()) return {};
  std::string_view rest;
  for (std::string_view scheme : {"postgresql://", "postgres://"}) {
    if (store.substr(0, scheme.size()) == scheme) rest = store.substr(scheme.size());
  }
  if (rest.data() == nullptr) {
    return refuse("store must be \"\" (the embedded SQLite database mte.db) or a PostgreSQL URI "
                  "postgresql://...");
  }
  if (store.size() > 1024) return refuse("store: the URI is longer than 1024 characters");
  for (char c : store) {
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
      return refuse("store: the URI must be printable ASCII without spaces (percent-encode)");
    }
  }
  // No password in the URI: mte.json is not a secret (libpq reads passwords from a password
  // file: passfile=, PGPASSFILE or ~/.pgpass).
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?"));
  const size_t at = authority.rfind('@');
  const bool userinfo_password =
      at != std::string_view::npos && authority.substr(0, at).find(':') != std::string_view::npos;
  const size_t query = rest.find('?');
  bool query_password = false;
  if (query != std::string_view::npos) {
    std::string_view params = rest.substr(query + 1);
    while (!params.empty()) {
      const size_t amp = params.find('&');
      std::string_view param = params.substr(0, amp);
      if (param.substr(0, param.find('=')) == "password") query_password = true;
      params = amp == std::string_view::npos ? std::string_view{} : params.substr(amp + 1);
    }
  }
  if (userinfo_password || query_password) {
    return refuse("store: the URI must not carry a password (mte.json is not a secret); put it "
                  "in a libpq password file (passfile=FILE in the URI, PGPASSFILE or ~/.pgpass)");
  }
  return {};
}

Result<void> SaveConfig(const Config& config) {
  nlohmann::json j = {
      {"mefFqdn", config.mef_fqdn},
      {"mafFqdn", config.maf_fqdn},
      {"mafId", config.maf_id},
      {"bindAddress", config.bind_address},
      {"mefPublicHost", config.mef_public_host},
      {"mafDeliveryHost",
       config.maf_delivery_host.empty() ? config.bind_address : config.maf_delivery_host},
      {"mefPort", config.mef_port},
      {"mafPort", config.maf_port},
      {"mafDeliveryPort", config.maf_delivery_port},
      {"portalPort", config.portal_port},
      {"enrolmentExpirySeconds", config.enrolment_expiry_seconds},
      {"portalSessionSeconds", config.portal_session_seconds},
      {"tokenLifetimeSeconds", config.token_lifetime_seconds},
      {"handshakeTimeoutMs", config.handshake_timeout_ms},
      {"idleTimeoutMs", config.idle_timeout_ms},
      {"requestTimeoutMs", config.request_timeout_ms},
      {"maxConnections", config.max_connections},
      {"maxConnectionsPerAddress", config.max_connections_per_address},
      {"ioThreads", config.io_threads},
      {"workerThreads", config.worker_threads},
      {"rspfs", config.rspfs},
      {"ocspTimeoutMs", config.ocsp_timeout_ms},
      {"mefOcspUrl", config.mef_ocsp_url},
  };
  if (!config.store.empty()) {
    j["store"] = config.store;
    j["outboxLeaseSeconds"] = config.outbox_lease_seconds;
  }
  std::string text = j.dump(2) + "\n";
  return ReplaceFile(config.config_file(), AsBytes(text), 0644);
}

}  // namespace mte
