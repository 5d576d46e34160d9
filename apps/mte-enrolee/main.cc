// mte-enrolee: the device-side command line, a thin layer over libmte-enrolee.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "mte/enrolee.h"

int main(int argc, char** argv) {
  CLI::App app{"mte-enrolee: the device side of OpenMTE enrolment (oneM2M TS-0003 RSPF)"};
  app.require_subcommand(1);

  mte::enrolee::PpskEnrolOptions enrol;
  auto* enrol_cmd = app.add_subcommand(
      "enrol",
      "Enrol without an OBF (seed 8.y.3, PPSK-RSPF): TLS-PSK to the MEF with the pre-provisioned\n"
      "Kpm/KpmID, run the Enrolment Exchange, and store KeID, Ke, expiry and Km/KmID in --state\n"
      "(secret files mode 0600).");
  enrol_cmd->add_option("--mef", enrol.mef_address, "MEF address HOST:PORT")->required();
  enrol_cmd->add_option("--mef-fqdn", enrol.mef_fqdn, "MEF FQDN (SNI and KeID domain)")
      ->required();
  enrol_cmd->add_option("--ca", enrol.ca_file,
                        "MEF trust anchors (PEM); recorded for server-authenticated use")
      ->check(CLI::ExistingFile);
  enrol_cmd->add_option("--kpm-id", enrol.kpm_id, "KpmID (TLS psk_identity)")->required();
  enrol_cmd->add_option("--kpm-hex", enrol.kpm_hex, "Kpm in hex (16..64 octets)")->required();
  enrol_cmd->add_option("--state", enrol.state_dir, "state directory")->required();
  enrol_cmd->add_option("--timeout-ms", enrol.timeout_ms, "overall deadline")
      ->default_val(15000);

  mte::enrolee::MafCheckOptions check;
  auto* check_cmd = app.add_subcommand(
      "maf-check",
      "MAF handshake (TS-0003 §8.8.2.2): TLS-PSK with KmID/Km from --state, proving that the\n"
      "credential reached the MAF.");
  check_cmd->add_option("--maf", check.maf_address, "MAF address HOST:PORT")->required();
  check_cmd->add_option("--maf-fqdn", check.maf_fqdn, "MAF FQDN (SNI)")->required();
  check_cmd->add_option("--state", check.state_dir, "state directory written by 'enrol'")
      ->required();
  check_cmd->add_option("--timeout-ms", check.timeout_ms, "overall deadline")->default_val(15000);

  CLI11_PARSE(app, argc, argv);

  if (enrol_cmd->parsed()) {
    auto outcome = mte::enrolee::EnrolWithPpsk(enrol);
    std::fill(enrol.kpm_hex.begin(), enrol.kpm_hex.end(), '\0');
    if (!outcome.ok) {
      std::fprintf(stderr, "mte-enrolee: enrolment failed: %s\n", outcome.error.c_str());
      return 1;
    }
    const auto& e = outcome.enrolment;
    std::printf("enrolled: KeID %s\n", e.ke_id.c_str());
    std::printf("  session: %s %s\n", e.tls_version.c_str(), e.cipher.c_str());
    std::printf("  expires: %s\n", e.expires_at.c_str());
    if (!e.km_id.empty()) {
      std::printf("  MAF credential: KmID %s for MAF %s\n", e.km_id.c_str(), e.maf_fqdn.c_str());
    }
    std::printf("  state: %s\n", enrol.state_dir.c_str());
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
