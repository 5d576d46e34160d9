#include "mte/enrolee.h"

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/file.h"
#include "base/secret.h"
#include "client/https_client.h"
#include "crypto/device_cert.h"
#include "crypto/keys.h"
#include "crypto/random.h"
#include "crypto/tls_engine.h"
#include "enrolee/bundle.h"
#include "proto/enrolment.h"
#include "proto/enrolment_client.h"
#include "proto/obf_link.h"
#include "proto/onem2m.h"
#include "proto/rspf/cert_device.h"
#include "proto/rspf/ppsk_device.h"

namespace mte::enrolee {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMinPsk = 16;
constexpr size_t kMaxPsk = 64;

void Say(const Progress& progress, const std::string& line) {
  if (progress) progress(line);
}

// Writes dir/name atomically with mode 0600.
Result<void> WriteFile0600(const fs::path& dir, const std::string& name, ByteSpan data) {
  return ReplaceFile(dir / name, data, 0600);
}

Result<SecretBytes> ReadSecretFile(const fs::path& path) {
  struct stat st {};
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

Result<std::unique_ptr<proto::DeviceRspf>> PpskRspf(const PpskCredential& credential) {
  MTE_TRY(crypto::CheckIdentifier(credential.kpm_id, "KpmID"));
  auto kpm = HexDecode(credential.kpm_hex);
  if (!kpm || kpm->size() < kMinPsk || kpm->size() > kMaxPsk) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "Kpm must be 16..64 octets in hex");
  }
  proto::PpskCredential out{credential.kpm_id, SecretBytes(*kpm, SecretAccess::ForCrypto())};
  SecureWipe(kpm->data(), kpm->size());
  MTE_TRY_ASSIGN(auto rspf, proto::PpskDevice::Create(std::move(out)));
  return std::unique_ptr<proto::DeviceRspf>(std::move(rspf));
}

Result<std::unique_ptr<proto::DeviceRspf>> CertRspf(const CertCredential& credential) {
  if (credential.key_file.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "a device certificate needs its key file");
  }
  struct stat st {};
  if (::stat(credential.key_file.c_str(), &st) != 0) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, credential.key_file + " is missing");
  }
  if ((st.st_mode & 077) != 0) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                credential.key_file + " is readable by group or others (expected mode 0600)");
  }
  MTE_TRY_ASSIGN(auto rspf,
                 proto::CertDevice::Create({credential.cert_file, credential.key_file}));
  return std::unique_ptr<proto::DeviceRspf>(std::move(rspf));
}

// The device's RSPFs in the order Flow B offers them: certificate, then PPSK.
Result<std::vector<std::unique_ptr<proto::DeviceRspf>>> Rspfs(const Credentials& credentials) {
  std::vector<std::unique_ptr<proto::DeviceRspf>> rspfs;
  if (!credentials.cert.cert_file.empty()) {
    MTE_TRY_ASSIGN(auto cert, CertRspf(credentials.cert));
    rspfs.push_back(std::move(cert));
  }
  if (!credentials.ppsk.kpm_id.empty() || !credentials.ppsk.kpm_hex.empty()) {
    MTE_TRY_ASSIGN(auto ppsk, PpskRspf(credentials.ppsk));
    rspfs.push_back(std::move(ppsk));
  }
  if (rspfs.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                "no bootstrap credential: give a Kpm or a device certificate");
  }
  return rspfs;
}

proto::MefCertificateChecks Checks(const Credentials& credentials) {
  proto::MefCertificateChecks checks;
  checks.now = UnixSeconds(SystemClock().Now());
  checks.require_staple = credentials.require_staple;
  return checks;
}

// The MEF trust anchors of --ca, "" when none can be read (they are then only recorded).
std::string CaFileText(const std::string& ca_file) {
  if (ca_file.empty()) return {};
  auto text = ReadBoundedFile(ca_file, crypto::kMaxPemFileSize);
  return text ? std::move(*text) : std::string();
}

Result<fs::path> PrepareStateDir(const std::string& state_dir) {
  if (state_dir.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "a state directory is required");
  }
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  if (ec) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot create state directory " + state_dir + ": " + ec.message());
  }
  fs::permissions(state_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  return fs::path(state_dir);
}

Enrolment Public(const proto::EnrolmentResult& r) {
  Enrolment e;
  e.ke_id = r.ke_id;
  e.expires_at = r.expires_at;
  e.rspf = r.rspf;
  e.enrolee_id = r.enrolee_id;
  e.km_id = r.km_id;
  e.maf_fqdn = r.maf_fqdn;
  e.maf_id = r.maf_id;
  e.tls_version = r.tls_version;
  e.cipher = r.cipher;
  e.outer_tls_version = r.outer_tls_version;
  return e;
}

Result<void> Store(const fs::path& dir, const proto::EnrolmentResult& r, const std::string& mef_fqdn,
                   const std::pair<std::string, std::string>& credential,
                   const std::string& flow, const std::string& ca_file) {
  MTE_TRY(WriteFile0600(dir, "ke", r.ke.Expose(SecretAccess::ForCrypto())));
  if (!r.km_id.empty()) MTE_TRY(WriteFile0600(dir, "km", r.km.Expose(SecretAccess::ForCrypto())));
  nlohmann::json state = {{"keId", r.ke_id},     {"expiresAt", r.expires_at}, {"kmId", r.km_id},
                          {"mafFqdn", r.maf_fqdn}, {"mafId", r.maf_id},       {"mefFqdn", mef_fqdn},
                          {"rspf", r.rspf},       {"flow", flow},
                          {"enroleeId", r.enrolee_id}};
  state[credential.first] = credential.second;
  if (!ca_file.empty()) state["caFile"] = ca_file;
  std::string text = state.dump(2) + "\n";
  return WriteFile0600(dir, "enrolment.json", AsBytes(text));
}

Result<proto::EnrolmentResult> RunToken(const TokenEnrolOptions& options) {
  MTE_TRY_ASSIGN(ParsedBundle parsed, ParseBundle(options.bundle_json));
  MTE_TRY_ASSIGN(auto rspfs, Rspfs(options.credentials));
  MTE_TRY_ASSIGN(fs::path dir, PrepareStateDir(options.state_dir));
  std::string mef_fqdn = parsed.bundle.mef_fqdn;
  std::map<std::string, std::pair<std::string, std::string>> records;
  for (const auto& rspf : rspfs) records[std::string(rspf->name())] = rspf->credential_record();
  MTE_TRY_ASSIGN(auto machine,
                 proto::EnrolmentClient::ViaToken(std::move(parsed.bundle), std::move(rspfs),
                                                  Checks(options.credentials)));
  Say(options.progress, "step 12: server-authenticated TLS to the MEF " + mef_fqdn + " at " +
                            parsed.mef.host + ":" + std::to_string(parsed.mef.port));
  MTE_TRY_ASSIGN(auto result, client::RunEnrolment(
                                  parsed.mef, *machine,
                                  client::After(std::chrono::milliseconds(options.timeout_ms))));
  Say(options.progress, "steps 13-17: token accepted, RSPF " + result.rspf +
                            " ran inside the MEF session; enrolled with KeID " + result.ke_id);
  MTE_TRY(Store(dir, result, mef_fqdn, records[result.rspf], "B", ""));
  return result;
}

bool Has(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// Whether a failed enrolment may succeed when tried again unchanged, and what it means.
void Explain(const Error& error, EnrolOutcome& outcome) {
  const std::string& d = error.detail;
  const bool from_peer =
      error.kind == ErrorKind::kPeerProtocol || error.kind == ErrorKind::kPeerAuth;
  outcome.transient = error.kind == ErrorKind::kIo || error.kind == ErrorKind::kTimeout ||
                      (from_peer && (error.code == Errc::kClosed ||
                                     error.code == Errc::kRateLimited ||
                                     error.code == Errc::kUnavailable));
  outcome.retry_after_s = outcome.transient ? error.retry_after_s : 0;
  std::string meaning;
  if (Has(d, "PPSK") && (Has(d, "alert illegal parameter") || Has(d, "alert bad record mac") ||
                         Has(d, "decryption failed or bad record mac"))) {
    meaning = "the MEF refused the pre-shared key: wrong Kpm or unknown KpmID";
  } else if (Has(d, "unrecognized name")) {
    meaning = "the MEF does not answer to that name (TLS unrecognized_name): check the MEF FQDN";
  } else if (Has(d, "Connection refused")) {
    meaning = "nothing accepts connections at the MEF address (yet)";
  } else if (Has(d, "certificate verify failed") || Has(d, "certificate verification failed")) {
    meaning = "the MEF's certificate does not verify against the trust anchors given";
  } else if (error.kind == ErrorKind::kTimeout) {
    meaning = "the MEF did not answer in time";
  } else if (from_peer && error.code == Errc::kRateLimited) {
    meaning = "the MEF is busy and asks to be tried later";
  } else if (from_peer && error.code == Errc::kUnavailable) {
    meaning = "the MEF could not serve the enrolment now";
  } else if (outcome.transient) {
    meaning = "the MEF could not be reached or could not answer now";
  }
  outcome.error = meaning.empty() ? d : meaning + " (" + d + ")";
}

EnrolOutcome ToOutcome(const Result<proto::EnrolmentResult>& result) {
  EnrolOutcome outcome;
  if (!result) {
    Explain(result.error(), outcome);
    return outcome;
  }
  outcome.ok = true;
  outcome.enrolment = Public(*result);
  return outcome;
}

}  // namespace

EnrolOutcome EnrolDirect(const DirectEnrolOptions& options) {
  auto run = [&]() -> Result<proto::EnrolmentResult> {
    MTE_TRY_ASSIGN(auto endpoint, client::ParseEndpoint(options.mef_address));
    MTE_TRY_ASSIGN(auto rspfs, Rspfs(options.credentials));
    if (rspfs.size() != 1) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                  "Flow A runs one RSPF: give either a Kpm or a device certificate");
    }
    std::string trust = CaFileText(options.ca_file);
    if (rspfs.front()->name() == proto::kRspfCert && trust.empty()) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                  "a device certificate enrolment needs the MEF's trust anchors (--ca)");
    }
    MTE_TRY_ASSIGN(fs::path dir, PrepareStateDir(options.state_dir));
    auto record = rspfs.front()->credential_record();
    MTE_TRY_ASSIGN(auto machine,
                   proto::EnrolmentClient::Direct(options.mef_fqdn, trust, std::move(rspfs.front()),
                                                  Checks(options.credentials)));
    MTE_TRY_ASSIGN(auto result,
                   client::RunEnrolment(endpoint, *machine,
                                        client::After(std::chrono::milliseconds(options.timeout_ms))));
    MTE_TRY(Store(dir, result, options.mef_fqdn, record, "A", options.ca_file));
    return result;
  };
  return ToOutcome(run());
}

EnrolOutcome EnrolWithToken(const TokenEnrolOptions& options) {
  return ToOutcome(RunToken(options));
}

EnrolOutcome AwaitObf(const AwaitObfOptions& options) {
  auto run = [&]() -> Result<proto::EnrolmentResult> {
    MTE_TRY(crypto::CheckIdentifier(options.device_id, "device ID"));
    MTE_TRY_ASSIGN(auto code, proto::ParseSetupCode(options.setup_code));
    MTE_TRY_ASSIGN(auto link_psk, proto::ObfLinkPsk(code));
    MTE_TRY_ASSIGN(auto endpoint, client::ParseEndpoint(options.listen));
    MTE_TRY_ASSIGN(auto context, proto::ObfLinkServerContext());
    MTE_TRY_ASSIGN(auto listener, client::ListeningSocket::Bind(endpoint));
    if (options.on_listening) options.on_listening(listener.port());
    Say(options.progress, "waiting for the OBF on " + endpoint.host + ":" +
                              std::to_string(listener.port()) + " (device " + options.device_id +
                              ")");
    auto overall = options.timeout_s > 0 ? client::After(std::chrono::seconds(options.timeout_s))
                                         : client::After(std::chrono::hours(24 * 365));
    int failures = 0;
    while (true) {
      MTE_TRY_ASSIGN(auto socket, listener.Accept(overall));
      std::string peer = socket.peer_address();
      auto lookup = [&link_psk](std::string_view identity) -> std::optional<SecretBytes> {
        if (identity != proto::kObfLinkIdentity) return std::nullopt;
        return link_psk.Clone();
      };
      MTE_TRY_ASSIGN(auto engine, crypto::TlsEngine::Server(context, lookup));
      auto session = client::AcceptRequest(socket, std::move(engine),
                                           client::After(std::chrono::seconds(30)));
      if (!session) {
        // Seed 8.y.4 steps 1/10: only an OBF that read this device's setup code gets in.
        Say(options.progress, "step 10: OBF link from " + peer +
                                  " refused (wrong setup code or not an OBF): " +
                                  session.error().detail);
        if (++failures >= options.max_link_failures) {
          return Fail(ErrorKind::kPeerAuth, Errc::kRateLimited,
                      "too many failed OBF link attempts; giving up");
        }
        continue;
      }
      Say(options.progress, "step 10: secure link with the OBF at " + peer + " (" +
                                session->tls->version() + ", setup-code PSK)");
      const auto& request = session->request;
      auto deadline = client::After(std::chrono::seconds(30));
      if (request.method != "POST" || request.target != proto::kObfBundlePath) {
        proto::HttpResponse response;
        response.status = 404;
        response.headers.Set("Content-Type", "application/json");
        response.body = R"({"outcome":"failed","error":"use POST /obf/v1/bundle"})";
        (void)client::SendResponse(socket, *session, response, deadline);
        continue;
      }
      Say(options.progress, "step 11: received the Enrolment-Token, MEF URI and trust anchors");
      TokenEnrolOptions token;
      token.bundle_json = request.body;
      token.credentials = options.credentials;
      token.state_dir = options.state_dir;
      token.progress = options.progress;
      auto result = RunToken(token);
      SecureWipe(token.bundle_json.data(), token.bundle_json.size());
      proto::HttpResponse response;
      response.headers.Set("Content-Type", "application/json");
      nlohmann::json body;
      if (result) {
        response.status = 200;
        body = {{"outcome", "enrolled"},   {"deviceId", options.device_id},
                {"keId", result->ke_id},   {"expiresAt", result->expires_at},
                {"kmId", result->km_id},   {"rspf", result->rspf},
                {"enroleeId", result->enrolee_id}};
      } else {
        response.status = 502;
        body = {{"outcome", "failed"},
                {"deviceId", options.device_id},
                {"error", result.error().detail}};
      }
      response.body = body.dump();
      (void)client::SendResponse(socket, *session, response, deadline);
      if (!result) return Fail(result.error());
      return result;
    }
  };
  return ToOutcome(run());
}

MafCheckOutcome CheckMaf(const MafCheckOptions& options) {
  auto run = [&]() -> Result<MafCheckOutcome> {
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
      return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                  "state holds no KmID (no MAF enrolment)");
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
  };
  auto result = run();
  if (!result) {
    MafCheckOutcome outcome;
    outcome.error = result.error().detail;
    return outcome;
  }
  return std::move(*result);
}

std::string NewSetupCode() {
  crypto::SystemRng rng;
  return proto::NewSetupCode(rng);
}

}  // namespace mte::enrolee
