#include "mte/enrolee.h"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/bytes.h"
#include "base/secret.h"
#include "client/https_client.h"
#include "crypto/keys.h"
#include "crypto/tls_engine.h"
#include "proto/onem2m.h"

namespace mte::enrolee {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMinPsk = 16;
constexpr size_t kMaxPsk = 64;

// Writes `data` to dir/name atomically with mode 0600 (temp file, fsync, rename).
Result<void> WriteFile0600(const fs::path& dir, const std::string& name, ByteSpan data) {
  fs::path tmp = dir / (name + ".tmp");
  fs::path final_path = dir / name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Fail(ErrorKind::kIo, Errc::kIoFailed, "cannot write " + tmp.string());
  ::fchmod(fd, 0600);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      ::close(fd);
      return Fail(ErrorKind::kIo, Errc::kIoFailed, "cannot write " + tmp.string());
    }
    off += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed, "cannot rename to " + final_path.string());
  }
  return {};
}

Result<SecretBytes> ReadSecretFile(const fs::path& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, path.string() + " is missing (enrol first)");
  }
  if ((st.st_mode & 077) != 0) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                path.string() + " is readable by group or others (expected mode 0600)");
  }
  std::ifstream in(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SecretBytes secret(AsBytes(data), SecretAccess::ForCrypto());
  SecureWipe(data.data(), data.size());
  if (secret.size() != 32) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, path.string() + " does not hold 32 octets");
  }
  return secret;
}

Result<Enrolment> Enrol(const PpskEnrolOptions& options, int* rsc_out) {
  MTE_TRY(crypto::CheckIdentifier(options.kpm_id, "KpmID"));
  MTE_TRY(crypto::CheckIdentifier(options.mef_fqdn, "MEF FQDN"));
  if (options.state_dir.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "a state directory is required");
  }
  MTE_TRY_ASSIGN(auto endpoint, client::ParseEndpoint(options.mef_address));
  auto kpm_bytes = HexDecode(options.kpm_hex);
  if (!kpm_bytes || kpm_bytes->size() < kMinPsk || kpm_bytes->size() > kMaxPsk) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "Kpm must be 16..64 octets in hex");
  }
  SecretBytes kpm(*kpm_bytes, SecretAccess::ForCrypto());
  SecureWipe(kpm_bytes->data(), kpm_bytes->size());

  std::error_code ec;
  fs::create_directories(options.state_dir, ec);
  if (ec) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot create state directory " + options.state_dir + ": " + ec.message());
  }
  fs::permissions(options.state_dir, fs::perms::owner_all, fs::perm_options::replace, ec);

  crypto::TlsClientOptions tls_options;
  tls_options.server_name = options.mef_fqdn;
  tls_options.psk_identity = options.kpm_id;
  MTE_TRY_ASSIGN(auto context, crypto::TlsContext::Client(tls_options));
  MTE_TRY_ASSIGN(auto engine, crypto::TlsEngine::Client(context, std::move(kpm)));

  // TS-0003 §10.3.1: the Enrolment Key comes from this session's exporter; take it right after
  // the handshake, before the MEF closes the session.
  std::optional<crypto::EnrolmentKey> key;
  client::ExchangeOptions exchange;
  exchange.deadline = std::chrono::milliseconds(options.timeout_ms);
  exchange.after_handshake = [&key](const crypto::TlsEngine& tls) -> Result<void> {
    MTE_TRY_ASSIGN(SecretBytes exported,
                   tls.Export(crypto::kBootstrapExporterLabel, crypto::kBootstrapExportLength));
    MTE_TRY_ASSIGN(auto split, crypto::SplitBootstrapExport(exported));
    key = std::move(split);
    return {};
  };
  proto::HttpRequest request;
  request.method = "POST";
  request.target = "/enrolment";
  request.headers.Set("Host", options.mef_fqdn);
  request.headers.Set("Content-Type", "application/json");
  request.headers.Set("Accept", "application/json");
  request.headers.Set(proto::kHeaderOrigin, options.kpm_id);
  request.headers.Set(proto::kHeaderRequestId, "enrol-1");
  request.headers.Set(proto::kHeaderRvi, proto::kReleaseVersion);
  request.body = R"({"mafEnrolment":true})";
  request.keep_alive = false;
  MTE_TRY_ASSIGN(auto result, client::Exchange(endpoint, std::move(engine), request, exchange));

  const auto& response = result.response;
  auto rsc_header = response.headers.Get(proto::kHeaderRsc);
  if (rsc_header) *rsc_out = std::atoi(std::string(*rsc_header).c_str());
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (response.status != 201) {
    std::string message = "MEF refused the enrolment (HTTP " + std::to_string(response.status);
    if (rsc_header) message += ", RSC " + std::string(*rsc_header);
    message += ")";
    if (body.is_object() && body.contains("m2m:dbg") && body["m2m:dbg"].is_string()) {
      message += ": " + body["m2m:dbg"].get<std::string>().substr(0, 512);
    }
    return Fail(ErrorKind::kPeerAuth, Errc::kForbidden, message);
  }
  if (!key.has_value()) {
    return Fail(ErrorKind::kInternal, Errc::kInvariant, "no enrolment key was exported");
  }
  Enrolment enrolment;
  enrolment.tls_version = result.tls_version;
  enrolment.cipher = result.cipher;
  try {
    enrolment.ke_id = body.at("keId").get<std::string>();
    enrolment.expires_at = body.at("expiresAt").get<std::string>();
    for (const auto& instruction : body.at("instructions")) {
      if (instruction.at("type") == "mafEnrolment") {
        enrolment.km_id = instruction.at("kmId").get<std::string>();
        enrolment.maf_fqdn = instruction.at("mafFqdn").get<std::string>();
        enrolment.maf_id = instruction.at("mafId").get<std::string>();
      }
    }
  } catch (const nlohmann::json::exception&) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "MEF response lacks keId/instructions");
  }
  // Both ends derive KeID from the same exporter output: a mismatch means a broken MEF.
  std::string own_ke_id = crypto::MakeKeId(key->relative_ke_id, options.mef_fqdn);
  if (!crypto::KeIdEquals(own_ke_id, enrolment.ke_id)) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                "MEF reported KeID " + enrolment.ke_id + " but the session gives " + own_ke_id);
  }
  fs::path dir(options.state_dir);
  MTE_TRY(WriteFile0600(dir, "ke", key->ke.Expose(SecretAccess::ForCrypto())));
  if (!enrolment.km_id.empty()) {
    MTE_TRY(crypto::CheckIdentifier(enrolment.maf_id, "MAF-ID"));
    MTE_TRY_ASSIGN(SecretBytes km, crypto::DeriveKm(key->ke, enrolment.maf_id));
    MTE_TRY(WriteFile0600(dir, "km", km.Expose(SecretAccess::ForCrypto())));
  }
  nlohmann::json state = {{"keId", enrolment.ke_id},   {"expiresAt", enrolment.expires_at},
                          {"kmId", enrolment.km_id},   {"mafFqdn", enrolment.maf_fqdn},
                          {"mafId", enrolment.maf_id}, {"mefFqdn", options.mef_fqdn},
                          {"rspf", "PPSK"},            {"kpmId", options.kpm_id},
                          {"caFile", options.ca_file}};
  std::string text = state.dump(2) + "\n";
  MTE_TRY(WriteFile0600(dir, "enrolment.json", AsBytes(text)));
  return enrolment;
}

Result<MafCheckOutcome> Check(const MafCheckOptions& options) {
  MTE_TRY_ASSIGN(auto endpoint, client::ParseEndpoint(options.maf_address));
  fs::path dir(options.state_dir);
  std::ifstream in(dir / "enrolment.json");
  if (!in) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                (dir / "enrolment.json").string() + " is missing (enrol first)");
  }
  std::stringstream text;
  text << in.rdbuf();
  auto state = nlohmann::json::parse(text.str(), nullptr, false);
  if (!state.is_object() || !state.contains("kmId") || !state["kmId"].is_string() ||
      state["kmId"].get<std::string>().empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "state holds no KmID (no MAF enrolment)");
  }
  std::string km_id = state["kmId"].get<std::string>();
  MTE_TRY_ASSIGN(SecretBytes km, ReadSecretFile(dir / "km"));
  crypto::TlsClientOptions tls_options;
  tls_options.server_name = options.maf_fqdn;
  tls_options.psk_identity = km_id;
  MTE_TRY_ASSIGN(auto context, crypto::TlsContext::Client(tls_options));
  MTE_TRY_ASSIGN(auto engine, crypto::TlsEngine::Client(context, std::move(km)));
  proto::HttpRequest request;
  request.method = "GET";
  request.target = "/maf/v1/session";
  request.headers.Set("Host", options.maf_fqdn);
  request.headers.Set(proto::kHeaderOrigin, km_id);
  request.headers.Set(proto::kHeaderRequestId, "maf-check-1");
  request.headers.Set(proto::kHeaderRvi, proto::kReleaseVersion);
  request.keep_alive = false;
  client::ExchangeOptions exchange;
  exchange.deadline = std::chrono::milliseconds(options.timeout_ms);
  MTE_TRY_ASSIGN(auto result, client::Exchange(endpoint, std::move(engine), request, exchange));
  if (result.response.status != 200) {
    return Fail(ErrorKind::kPeerAuth, Errc::kForbidden,
                "MAF answered HTTP " + std::to_string(result.response.status));
  }
  MafCheckOutcome outcome;
  outcome.ok = true;
  outcome.km_id = km_id;
  outcome.tls_version = result.tls_version;
  outcome.cipher = result.cipher;
  return outcome;
}

}  // namespace

EnrolOutcome EnrolWithPpsk(const PpskEnrolOptions& options) {
  EnrolOutcome outcome;
  auto result = Enrol(options, &outcome.rsc);
  if (!result) {
    outcome.error = result.error().detail;
    return outcome;
  }
  outcome.ok = true;
  outcome.enrolment = std::move(*result);
  return outcome;
}

MafCheckOutcome CheckMaf(const MafCheckOptions& options) {
  auto result = Check(options);
  if (!result) {
    MafCheckOutcome outcome;
    outcome.error = result.error().detail;
    return outcome;
  }
  return std::move(*result);
}

}  // namespace mte::enrolee
