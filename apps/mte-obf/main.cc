// mte-obf: the On-Boarding Function (seed 8.y.4 steps 9-11). It takes the token bundle the
// portal issued (the JSON file, or a picture of the portal's QR code), opens the
// setup-code-authenticated link to the device, hands the bundle over, and shows the device's
// progress and outcome.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/file.h"
#include "client/https_client.h"
#include "proto/obf_link.h"
#include "qr/image.h"
#include "qr/payload.h"

namespace {

int Die(const std::string& message) {
  std::fprintf(stderr, "mte-obf: %s\n", message.c_str());
  return 1;
}

void Say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mte-obf: OpenMTE On-Boarding Function (oneM2M enrolment via an OBF)"};
  app.require_subcommand(1);
  std::string bundle_file, bundle_qr, device, setup_code;
  int timeout_s = 120;
  auto* deliver = app.add_subcommand(
      "deliver",
      "Seed 8.y.4 steps 9-11: connect to the device over TLS 1.3 authenticated by its setup code\n"
      "(the stakeholder's proof of control), deliver the Enrolment-Token, MEF URI and MEF trust\n"
      "anchors, and wait for the device to report its enrolment. The bundle is the portal's JSON\n"
      "(--bundle) or a PNG/JPEG picture of the portal's QR code (--qr); the setup code is typed\n"
      "(--setup-code), read from a file (--setup-code-file) or from a picture of the label's QR\n"
      "code (--setup-code-qr).");
  auto* bundle_opt =
      deliver->add_option("--bundle", bundle_file, "token bundle from the portal (JSON)")
          ->check(CLI::ExistingFile);
  auto* qr_opt = deliver
                     ->add_option("--qr", bundle_qr,
                                  "PNG or JPEG picture of the portal's token bundle QR code (MTB1:)")
                     ->check(CLI::ExistingFile);
  bundle_opt->excludes(qr_opt);
  qr_opt->excludes(bundle_opt);
  deliver->add_option("--device", device, "device address HOST:PORT")->required();
  std::string setup_code_file;
  auto* code_opt = deliver->add_option("--setup-code", setup_code,
                                       "setup code from the device label; visible in ps");
  auto* code_file_opt =
      deliver
          ->add_option("--setup-code-file", setup_code_file,
                       "file holding the setup code on its first line (not visible in ps)")
          ->check(CLI::ExistingFile);
  std::string setup_code_qr;
  auto* code_qr_opt =
      deliver
          ->add_option("--setup-code-qr", setup_code_qr,
                       "PNG or JPEG picture of the device label's setup code QR code (MTS1:)")
          ->check(CLI::ExistingFile);
  code_opt->excludes(code_file_opt);
  code_file_opt->excludes(code_opt);
  code_qr_opt->excludes(code_opt)->excludes(code_file_opt);
  code_opt->excludes(code_qr_opt);
  code_file_opt->excludes(code_qr_opt);
  deliver->add_option("--timeout-s", timeout_s, "how long to wait for the device")
      ->default_val(120);
  CLI11_PARSE(app, argc, argv);
  if (!setup_code_file.empty()) {
    auto code = mte::ReadSecretLineFile(setup_code_file, "setup code");
    if (!code) return Die(code.error().detail);
    setup_code = std::move(*code);
  }
  if (!setup_code_qr.empty()) {
    auto text = mte::qr::DecodeQrImage(setup_code_qr);
    if (!text) return Die(mte::Describe(text.error()));
    auto code = mte::qr::DecodeSetupCodePayload(*text);
    std::fill(text->begin(), text->end(), '\0');
    if (!code) return Die(setup_code_qr + ": not a setup code QR code: " + code.error().detail);
    setup_code = std::move(*code);
  }
  if (setup_code.empty()) return Die("give --setup-code, --setup-code-file or --setup-code-qr");
  if (bundle_file.empty() == bundle_qr.empty()) return Die("give --bundle or --qr");

  std::string bundle;
  nlohmann::json parsed;
  if (!bundle_qr.empty()) {
    // Seed 8.y.4 step 9 from the portal's page: the QR code's MTB1 payload, sent to the device
    // as the JSON bundle it stands for.
    auto text = mte::qr::DecodeQrImage(bundle_qr);
    if (!text) return Die(mte::Describe(text.error()));
    auto decoded = mte::qr::DecodeBundlePayload(*text);
    std::fill(text->begin(), text->end(), '\0');
    if (!decoded) return Die(bundle_qr + ": not a token bundle QR code: " + decoded.error().detail);
    parsed = std::move(*decoded);
    bundle = parsed.dump();
  } else {
    std::ifstream in(bundle_file);
    std::stringstream text;
    text << in.rdbuf();
    bundle = text.str();
    parsed = nlohmann::json::parse(bundle, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("token") ||
        !parsed["mefUri"].is_string() ||
        (!parsed.contains("mefTrustAnchors") && !parsed.contains("mefTrustAnchorPins"))) {
      return Die(bundle_file + ": not a token bundle (token, mefUri, mefTrustAnchors)");
    }
  }
  auto endpoint = mte::client::ParseEndpoint(device);
  if (!endpoint) return Die(mte::Describe(endpoint.error()));
  auto code = mte::proto::ParseSetupCode(setup_code);
  std::fill(setup_code.begin(), setup_code.end(), '\0');
  if (!code) return Die(code.error().detail);
  auto psk = mte::proto::ObfLinkPsk(*code);
  if (!psk) return Die(mte::Describe(psk.error()));
  auto context = mte::proto::ObfLinkClientContext();
  if (!context) return Die(mte::Describe(context.error()));
  auto engine = mte::crypto::TlsEngine::Client(*context, std::move(*psk));
  if (!engine) return Die(mte::Describe(engine.error()));

  // The bundle file is the user's: an expiresAt of another type is shown as unknown.
  const auto expires = parsed.find("expiresAt");
  const std::string expires_at =
      expires != parsed.end() && expires->is_string() ? expires->get<std::string>() : "?";
  Say("step 9: token bundle for MEF " + parsed["mefUri"].get<std::string>() + " (expires " +
      expires_at + ")" +
      (bundle_qr.empty() ? "" : ", from the QR code in " + bundle_qr) +
      (parsed.contains("mefTrustAnchorPins") ? "; the MEF is trusted by pinned keys" : ""));
  Say("step 10: opening the setup-code-authenticated link to the device at " + device);
  mte::proto::HttpRequest request;
  request.method = "POST";
  request.target = std::string(mte::proto::kObfBundlePath);
  request.headers.Set("Host", mte::proto::kObfLinkServerName);
  request.headers.Set("Content-Type", "application/json");
  request.body = bundle;
  request.keep_alive = false;
  mte::client::ExchangeOptions options;
  options.deadline = std::chrono::seconds(timeout_s);
  options.after_handshake = [](const mte::crypto::TlsEngine& tls) -> mte::Result<void> {
    Say("step 11: link up (" + tls.version() + ", setup-code PSK); bundle sent, device is "
        "enrolling (steps 12-17)...");
    return {};
  };
  auto result = mte::client::Exchange(*endpoint, std::move(*engine), request, options);
  std::fill(request.body.begin(), request.body.end(), '\0');
  std::fill(bundle.begin(), bundle.end(), '\0');
  if (!result) {
    if (result.error().kind == mte::ErrorKind::kPeerAuth) {
      return Die("the device refused the link: wrong setup code? (" + result.error().detail + ")");
    }
    return Die(mte::Describe(result.error()));
  }
  auto outcome = mte::proto::ParseObfOutcome(result->response);
  if (!outcome) return Die(outcome.error().detail);
  if (outcome->enrolled) {
    Say("outcome: device " + outcome->device_id + " enrolled with KeID " + outcome->ke_id +
        " (RSPF " + outcome->rspf + ", enrolee " + std::to_string(outcome->enrolee_id) + ")");
    return 0;
  }
  return Die("outcome: device " + outcome->device_id + " could not enrol: " + outcome->error);
}
