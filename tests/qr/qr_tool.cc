// mte-qr-tool: QR pictures of token bundles for the integration tests.
//   mte-qr-tool encode-bundle BUNDLE.json OUT.png [--pins | --pins-from CERTS.pem]
//   mte-qr-tool svg BUNDLE.json OUT.svg
//   mte-qr-tool decode IMAGE
// --pins always carries the anchors' pins; --pins-from replaces the anchors by the pins of other
// certificates (a bundle that names the wrong key).
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

#include "base/file.h"
#include "qr/image.h"
#include "qr/payload.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: mte-qr-tool encode-bundle BUNDLE.json OUT.png [--pins | --pins-from PEM]\n"
               "       mte-qr-tool svg BUNDLE.json OUT.svg\n"
               "       mte-qr-tool decode IMAGE\n");
  return 2;
}

int Die(const mte::Error& error) {
  std::fprintf(stderr, "mte-qr-tool: %s\n", mte::Describe(error).c_str());
  return 1;
}

mte::Result<nlohmann::json> ReadBundle(const std::string& path) {
  MTE_TRY_ASSIGN(std::string text, mte::ReadBoundedFile(path, 64 * 1024));
  auto bundle = nlohmann::json::parse(text, nullptr, false);
  if (bundle.is_discarded()) {
    return mte::Fail(mte::ErrorKind::kLocalUsage, mte::Errc::kMalformed, path + ": not JSON");
  }
  return bundle;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  std::string command = argv[1];
  if (command == "decode" && argc == 3) {
    auto text = mte::qr::DecodeQrImage(argv[2]);
    if (!text) return Die(text.error());
    std::printf("%s\n", text->c_str());
    return 0;
  }
  if (argc < 4) return Usage();
  auto bundle = ReadBundle(argv[2]);
  if (!bundle) return Die(bundle.error());
  if (command == "svg" && argc == 4) {
    auto svg = mte::qr::BundleQrSvg(*bundle);
    if (!svg) return Die(svg.error());
    auto written = mte::ReplaceFile(argv[3], mte::AsBytes(*svg), 0600);
    if (!written) return Die(written.error());
    return 0;
  }
  if (command != "encode-bundle") return Usage();
  auto trust = mte::qr::BundleTrust::kAnchorsIfTheyFit;
  if (argc == 5 && std::string(argv[4]) == "--pins") {
    trust = mte::qr::BundleTrust::kPins;
  } else if (argc == 6 && std::string(argv[4]) == "--pins-from") {
    auto pem = mte::ReadBoundedFile(argv[5], 64 * 1024);
    if (!pem) return Die(pem.error());
    auto pins = mte::qr::TrustAnchorPins(nlohmann::json::array({*pem}));
    if (!pins) return Die(pins.error());
    bundle->erase("mefTrustAnchors");
    (*bundle)["mefTrustAnchorPins"] = *pins;
  } else if (argc != 4) {
    return Usage();
  }
  auto payload = mte::qr::EncodeBundlePayload(*bundle, trust);
  if (!payload) return Die(payload.error());
  auto written = mte::qr::WritePng(*payload, argv[3]);
  if (!written) return Die(written.error());
  std::printf("%s payload, %zu characters\n",
              payload->size() > 0 && mte::qr::DecodeBundlePayload(*payload)->contains("mefTrustAnchorPins")
                  ? "pinned"
                  : "anchored",
              payload->size());
  return 0;
}
