// mte-enrolee: the device-side command line, a thin layer over libmte-enrolee.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <thread>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mte/enrolee.h"
#include "qr/image.h"
#include "qr/payload.h"

namespace {

void PrintEnrolment(const mte::enrolee::Enrolment& e, const std::string& state_dir) {
  std::printf("enrolled: KeID %s\n", e.ke_id.c_str());
  if (!e.outer_tls_version.empty()) {
    std::printf("  outer session: %s (server-authenticated)\n", e.outer_tls_version.c_str());
  }
  std::printf("  RSPF session: %s %s (RSPF %s)\n", e.tls_version.c_str(), e.cipher.c_str(),
              e.rspf.c_str());
  std::printf("  expires: %s\n", e.expires_at.c_str());
  if (!e.km_id.empty()) {
    std::printf("  MAF credential: KmID %s for MAF %s\n", e.km_id.c_str(), e.maf_fqdn.c_str());
  }
  std::printf("  state: %s\n", state_dir.c_str());
  std::fflush(stdout);
}

void Progress(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void Wipe(std::string& s) { std::fill(s.begin(), s.end(), '\0'); }

// The first line of a file that holds one secret (--kpm-file, --setup-code-file), without its
// line end and trailing blanks; false (with a message) when it cannot be read or is empty. This
// program uses the public library only, so it reads the file itself.
bool ReadSecretLine(const std::string& file, const char* what, std::string& out) {
  std::ifstream in(file);
  std::string line;
  if (!in || !std::getline(in, line) || line.size() > 4096) line.clear();
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.pop_back();
  }
  if (line.empty()) {
    std::fprintf(stderr, "mte-enrolee: %s holds no %s\n", file.c_str(), what);
    return false;
  }
  out = std::move(line);
  return true;
}

// The bootstrap credential options of a command: a Kpm (PPSK-RSPF) and/or a device certificate
// (certificate RSPF). --kpm-hex on the command line is visible to other local users (ps);
// --kpm-file is not.
void AddCredentialOptions(CLI::App* cmd, mte::enrolee::Credentials& credentials,
                          std::string& kpm_file) {
  auto* id = cmd->add_option("--kpm-id", credentials.ppsk.kpm_id,
                             "KpmID (TLS psk_identity) of the pre-provisioned key (PPSK-RSPF)");
  auto* hex = cmd->add_option("--kpm-hex", credentials.ppsk.kpm_hex,
                              "Kpm in hex (16..64 octets); visible in process listings");
  auto* from_file = cmd->add_option("--kpm-file", kpm_file, "file holding Kpm in hex (mode 0600)")
                        ->check(CLI::ExistingFile);
  hex->excludes(from_file);
  from_file->excludes(hex);
  hex->needs(id);
  from_file->needs(id);
  auto* cert = cmd->add_option("--cert", credentials.cert.cert_file,
                               "device certificate, PEM (certificate RSPF; ECDSA P-256)")
                   ->check(CLI::ExistingFile);
  auto* key = cmd->add_option("--key", credentials.cert.key_file,
                              "the device certificate's private key, PEM (mode 0600)")
                  ->check(CLI::ExistingFile);
  cert->needs(key);
  key->needs(cert);
  cmd->add_flag("--require-staple", credentials.require_staple,
                "refuse a MEF that staples no OCSP response for its certificate");
}

// Fills the Kpm from --kpm-file if given, and checks that some credential was given. False (with
// a message) on failure.
bool LoadCredentials(mte::enrolee::Credentials& credentials, const std::string& file) {
  mte::enrolee::PpskCredential& credential = credentials.ppsk;
  if (file.empty()) {
    if (!credential.kpm_id.empty() && credential.kpm_hex.empty()) {
      std::fprintf(stderr, "mte-enrolee: give --kpm-hex or --kpm-file with --kpm-id\n");
      return false;
    }
    if (credential.kpm_id.empty() && credentials.cert.cert_file.empty()) {
      std::fprintf(stderr,
                   "mte-enrolee: give a bootstrap credential: --kpm-id with --kpm-hex or "
                   "--kpm-file, or --cert with --key\n");
      return false;
    }
    return true;
  }
  return ReadSecretLine(file, "Kpm", credential.kpm_hex);
}

// "90", "90s", "5m", "2h" -> seconds; -1 when malformed.
double ParseDuration(const std::string& text) {
  if (text.empty()) return -1;
  double unit = 1;
  std::string number = text;
  switch (text.back()) {
    case 's': number.pop_back(); break;
    case 'm': unit = 60; number.pop_back(); break;
    case 'h': unit = 3600; number.pop_back(); break;
    default: break;
  }
  if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos ||
      number.size() > 9) {
    return -1;
  }
  return std::stod(number) * unit;
}

// Runs `attempt` until it succeeds, fails in a way that trying again cannot mend, or the next
// wait would end after `retry_for_s` from the start. Waits grow from 1 s, doubling up to 30 s;
// each is drawn uniformly from [w/2, w], so devices that failed together do not retry together.
mte::enrolee::EnrolOutcome WithRetries(double retry_for_s,
                                       const std::function<mte::enrolee::EnrolOutcome()>& attempt) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::mt19937_64 rng{std::random_device{}()};
  double cap = 1.0;
  for (int n = 1;; ++n) {
    auto outcome = attempt();
    if (outcome.ok || !outcome.transient) return outcome;
    double wait = std::uniform_real_distribution<double>(cap / 2, cap)(rng);
    // The MEF's Retry-After is a floor: trying earlier would only be refused again.
    wait = std::max(wait, static_cast<double>(outcome.retry_after_s));
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (elapsed + wait > retry_for_s) return outcome;
    std::fprintf(stderr, "mte-enrolee: attempt %d failed: %s; trying again in %.1f s%s\n", n,
                 outcome.error.c_str(), wait,
                 outcome.retry_after_s > 0 ? " (the MEF's Retry-After)" : "");
    std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    cap = std::min(30.0, cap * 2);
  }
}

void ReportFailure(const mte::enrolee::EnrolOutcome& outcome) {
  std::fprintf(stderr, "mte-enrolee: enrolment failed: %s\n", outcome.error.c_str());
  if (!outcome.transient) {
    std::fprintf(stderr, "mte-enrolee: the MEF refused; trying again unchanged will not help\n");
  }
}

constexpr const char* kRetryHelp =
    "keep trying transient failures (no connection, a dropped connection, a timeout, HTTP 5xx\n"
    "or 429) for up to this long: 90, 90s, 5m, 2h; backoff 1 s doubling to 30 s, with jitter,\n"
    "and never sooner than the MEF's Retry-After (seconds). Refusals end at once.\n"
    "0 = one attempt";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mte-enrolee: the device side of OpenMTE enrolment (oneM2M TS-0003 RSPF)"};
  app.require_subcommand(1);

  mte::enrolee::DirectEnrolOptions enrol;
  auto* enrol_cmd = app.add_subcommand(
      "enrol",
      "Enrol without an OBF (seed 8.y.3): TLS-PSK to the MEF with the pre-provisioned Kpm/KpmID\n"
      "(PPSK-RSPF), or mutual TLS with the device certificate (--cert/--key, certificate RSPF;\n"
      "needs --ca), run the Enrolment Exchange, and store KeID, Ke, expiry and Km/KmID in\n"
      "--state (secret files mode 0600).");
  enrol_cmd->add_option("--mef", enrol.mef_address, "MEF address HOST:PORT")->required();
  enrol_cmd->add_option("--mef-fqdn", enrol.mef_fqdn, "MEF FQDN (SNI and KeID domain)")
      ->required();
  enrol_cmd->add_option("--ca", enrol.ca_file,
                        "MEF trust anchors (PEM): verify the MEF's certificate (required with --cert);\n"
                        "with a Kpm only recorded for later server-authenticated use")
      ->check(CLI::ExistingFile);
  std::string enrol_kpm_file;
  AddCredentialOptions(enrol_cmd, enrol.credentials, enrol_kpm_file);
  enrol_cmd->add_option("--state", enrol.state_dir, "state directory")->required();
  enrol_cmd->add_option("--timeout-ms", enrol.timeout_ms, "overall deadline")->default_val(15000);
  std::string retry_for = "0";
  enrol_cmd->add_option("--retry-for", retry_for, kRetryHelp)->default_val("0");

  mte::enrolee::TokenEnrolOptions token;
  std::string bundle_file;
  auto* bundle_cmd = app.add_subcommand(
      "enrol-bundle",
      "Flow B without an OBF link (seed 8.y.4 steps 12-17): enrol with a token bundle file as\n"
      "returned by POST /api/v1/enrolees/{id}/tokens, offering the RSPF of every credential\n"
      "given (certificate first, then PPSK).");
  bundle_cmd->add_option("--bundle", bundle_file, "token bundle (JSON)")
      ->required()
      ->check(CLI::ExistingFile);
  std::string bundle_kpm_file;
  AddCredentialOptions(bundle_cmd, token.credentials, bundle_kpm_file);
  bundle_cmd->add_option("--state", token.state_dir, "state directory")->required();
  bundle_cmd->add_option("--timeout-ms", token.timeout_ms, "overall deadline")->default_val(15000);
  bundle_cmd->add_option("--retry-for", retry_for, kRetryHelp)->default_val("0");

  mte::enrolee::AwaitObfOptions await;
  std::string port_file;
  auto* await_cmd = app.add_subcommand(
      "await-obf",
      "Flow B (seed 8.y.4 steps 10-17): wait for the OBF on a local TLS link authenticated by\n"
      "the setup code from the device label, take the token bundle, enrol through the MEF\n"
      "(the selected RSPF inside a server-authenticated session), and report the outcome back.");
  await_cmd->add_option("--listen", await.listen, "address to listen on HOST:PORT (port 0: any)")
      ->required();
  await_cmd->add_option("--device-id", await.device_id, "this device's ID")->required();
  std::string setup_code_file;
  auto* code_opt = await_cmd->add_option("--setup-code", await.setup_code,
                                         "setup code from the device label; visible in ps");
  auto* code_file_opt =
      await_cmd
          ->add_option("--setup-code-file", setup_code_file,
                       "file holding the setup code on its first line (not visible in ps)")
          ->check(CLI::ExistingFile);
  code_opt->excludes(code_file_opt);
  code_file_opt->excludes(code_opt);
  std::string await_kpm_file;
  AddCredentialOptions(await_cmd, await.credentials, await_kpm_file);
  await_cmd->add_option("--state", await.state_dir, "state directory")->required();
  await_cmd->add_option("--timeout-s", await.timeout_s, "give up after this long (0 = never)")
      ->default_val(0);
  await_cmd->add_option("--port-file", port_file, "write the bound port to this file");

  mte::enrolee::MafCheckOptions check;
  auto* check_cmd = app.add_subcommand(
      "maf-check",
      "MAF handshake (TS-0003 §8.8.2.2): TLS-PSK with KmID/Km from --state, proving that the\n"
      "credential reached the MAF.");
  check_cmd->add_option("--maf", check.maf_address, "MAF address HOST:PORT")->required();
  check_cmd->add_option("--maf-fqdn", check.maf_fqdn, "MAF FQDN (SNI)")->required();
  check_cmd->add_option("--state", check.state_dir, "state directory written by an enrolment")
      ->required();
  check_cmd->add_option("--timeout-ms", check.timeout_ms, "overall deadline")->default_val(15000);

  auto* code_cmd = app.add_subcommand(
      "new-setup-code",
      "Print a new random setup code for a device label (128 bits, base32); with --qr-png, also\n"
      "write the label's QR code (MTS1: payload) as a PNG (mode 0600).");
  std::string qr_png;
  code_cmd->add_option("--qr-png", qr_png, "write the setup code's label QR code to this PNG");

  CLI11_PARSE(app, argc, argv);
  const double retry_for_s = ParseDuration(retry_for);
  if (retry_for_s < 0) {
    std::fprintf(stderr, "mte-enrolee: --retry-for: '%s' is not a duration (90, 90s, 5m, 2h)\n",
                 retry_for.c_str());
    return 2;
  }

  if (code_cmd->parsed()) {
    std::string code = mte::enrolee::NewSetupCode();
    if (!qr_png.empty()) {
      auto payload = mte::qr::EncodeSetupCodePayload(code);
      auto written = payload ? mte::qr::WritePng(*payload, qr_png) : mte::Result<void>(
                                                                          mte::Fail(payload.error()));
      if (payload) Wipe(*payload);
      if (!written) {
        Wipe(code);
        std::fprintf(stderr, "mte-enrolee: %s\n", mte::Describe(written.error()).c_str());
        return 1;
      }
    }
    std::printf("%s\n", code.c_str());
    Wipe(code);
    return 0;
  }
  if (enrol_cmd->parsed()) {
    if (!LoadCredentials(enrol.credentials, enrol_kpm_file)) return 2;
    auto outcome = WithRetries(retry_for_s, [&] { return mte::enrolee::EnrolDirect(enrol); });
    Wipe(enrol.credentials.ppsk.kpm_hex);
    if (!outcome.ok) {
      ReportFailure(outcome);
      return 1;
    }
    PrintEnrolment(outcome.enrolment, enrol.state_dir);
    return 0;
  }
  if (bundle_cmd->parsed()) {
    if (!LoadCredentials(token.credentials, bundle_kpm_file)) return 2;
    std::ifstream in(bundle_file);
    std::stringstream text;
    text << in.rdbuf();
    token.bundle_json = text.str();
    token.progress = Progress;
    auto outcome = WithRetries(retry_for_s, [&] { return mte::enrolee::EnrolWithToken(token); });
    Wipe(token.credentials.ppsk.kpm_hex);
    Wipe(token.bundle_json);
    if (!outcome.ok) {
      ReportFailure(outcome);
      return 1;
    }
    PrintEnrolment(outcome.enrolment, token.state_dir);
    return 0;
  }
  if (await_cmd->parsed()) {
    if (!LoadCredentials(await.credentials, await_kpm_file)) return 2;
    if (!setup_code_file.empty() &&
        !ReadSecretLine(setup_code_file, "setup code", await.setup_code)) {
      return 2;
    }
    if (await.setup_code.empty()) {
      std::fprintf(stderr, "mte-enrolee: give --setup-code or --setup-code-file\n");
      return 2;
    }
    await.progress = Progress;
    await.on_listening = [&port_file](int port) {
      if (port_file.empty()) return;
      std::string tmp = port_file + ".tmp";
      {
        std::ofstream out(tmp);
        out << port << "\n";
      }
      std::rename(tmp.c_str(), port_file.c_str());
    };
    auto outcome = mte::enrolee::AwaitObf(await);
    Wipe(await.credentials.ppsk.kpm_hex);
    Wipe(await.setup_code);
    if (!outcome.ok) {
      std::fprintf(stderr, "mte-enrolee: enrolment failed: %s\n", outcome.error.c_str());
      return 1;
    }
    PrintEnrolment(outcome.enrolment, await.state_dir);
    return 0;
  }
  auto outcome = mte::enrolee::CheckMaf(check);
  if (!outcome.ok) {
    std::fprintf(stderr, "mte-enrolee: MAF handshake failed: %s\n", outcome.error.c_str());
    return 1;
  }
  std::printf("MAF accepted KmID %s (%s %s)\n", outcome.km_id.c_str(), outcome.tls_version.c_str(),
              outcome.cipher.c_str());
  return 0;
}
