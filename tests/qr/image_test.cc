// QR pictures against independent tools: libqrencode's own capacity limit for the fit rule,
// PNGs written here read by zbarimg, SVGs parsed by python's xml.etree and rendered by
// rsvg-convert, and pictures made by the qrencode CLI, netpbm and cjpeg read by DecodeQrImage.
#include <gtest/gtest.h>
#include <qrencode.h>

#include <cerrno>

#include "qr/image.h"
#include "qr/payload.h"
#include "qr_test_support.h"
#include "testlib/result_assertions.h"

namespace mte::qr {
namespace {

using test::MakeCert;
using test::Must;
using test::Zbarimg;
using testlib::IsError;
using testlib::Ok;
using testlib::Q;

constexpr const char* kLabel = "MTS1:GEJMPAAI2C6SALO52QMYG5NGVM";

nlohmann::json Bundle(const std::string& anchor_pem) {
  return {{"token", "a5s7LRn3vwmtilF8jxjYj5jDDVe7GUtqMDPacwDtgfU"},
          {"mefUri", "https://127.0.0.1:38073"},
          {"mefFqdn", "mef.example.com"},
          {"mefTrustAnchors", {anchor_pem}},
          {"expiresAt", "2026-12-05T08:44:59Z"},
          {"enroleeId", 7}};
}

// Version and success of libqrencode for `text` at level M.
int QrencodeVersion(const std::string& text) {
  errno = 0;
  QRcode* code = QRcode_encodeString(text.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
  if (code == nullptr) return errno == ERANGE ? -1 : -2;
  int version = code->version;
  QRcode_free(code);
  return version;
}

TEST(QrCapacity, Version40MHoldsExactlyTheAlphanumericLimit) {
  // Letters only, so that no numeric segment shortens the code.
  std::string text;
  while (text.size() < kMaxQrAlphanumericM) text += "MTB:";
  text.resize(kMaxQrAlphanumericM);
  EXPECT_EQ(QrencodeVersion(text), 40);
  EXPECT_EQ(QrencodeVersion(text + "X"), -1) << "one more character must not fit";
}

class ImageTest : public ::testing::Test {
 protected:
  testlib::TempDir dir_;
};

TEST_F(ImageTest, WritePngIsReadByZbarimg) {
  std::string label = dir_.File("label.png");
  ASSERT_TRUE(Ok(WritePng(kLabel, label)));
  EXPECT_EQ(Zbarimg(label), kLabel);
  EXPECT_EQ(std::filesystem::status(label).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  // `file` sees an 8-bit greyscale PNG.
  EXPECT_NE(Must("file -b " + Q(label)).find("8-bit grayscale"), std::string::npos);

  std::string pem = MakeCert(dir_, "ca", "ec -pkeyopt ec_paramgen_curve:P-256");
  auto payload = EncodeBundlePayload(Bundle(pem));
  ASSERT_TRUE(Ok(payload));
  std::string bundle_png = dir_.File("bundle.png");
  ASSERT_TRUE(Ok(WritePng(*payload, bundle_png)));
  EXPECT_EQ(Zbarimg(bundle_png), *payload);
  auto ours = DecodeQrImage(bundle_png);
  ASSERT_TRUE(Ok(ours));
  EXPECT_EQ(*ours, *payload);
}

TEST_F(ImageTest, WritePngRefusesWhatDoesNotFit) {
  std::string text(kMaxQrAlphanumericM + 1, 'A');
  EXPECT_TRUE(IsError(WritePng(text, dir_.File("big.png")), ErrorKind::kLocalUsage, Errc::kTooLarge));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("big.png")));
}

TEST_F(ImageTest, ReadsQrencodePngAndJpegPictures) {
  std::string pem = MakeCert(dir_, "ca", "ec -pkeyopt ec_paramgen_curve:P-256");
  auto payload = EncodeBundlePayload(Bundle(pem));
  ASSERT_TRUE(Ok(payload));
  for (const std::string& text : {std::string(kLabel), *payload}) {
    std::string png = dir_.File("qrencode.png");
    std::string jpg = dir_.File("qrencode.jpg");
    std::string photo = dir_.File("photo.jpg");
    testlib::WriteText(dir_.File("payload.txt"), text);
    Must("qrencode -l M -s 6 -o " + Q(png) + " -r " + Q(dir_.File("payload.txt")));
    // A colour JPEG of it, and a "photo": turned by 6 degrees, scaled, lossy.
    Must("pngtopnm " + Q(png) + " | ppmtoppm | cjpeg -quality 90 > " + Q(jpg));
    Must("pngtopnm " + Q(png) + " | ppmtoppm | pnmrotate -background=white 6 | pnmscale 0.8 | "
         "cjpeg -quality 60 > " + Q(photo));
    for (const std::string& file : {png, jpg, photo}) {
      auto decoded = DecodeQrImage(file);
      ASSERT_TRUE(Ok(decoded)) << file;
      EXPECT_EQ(*decoded, text) << file;
    }
    if (text != kLabel) {
      auto photographed = DecodeQrImage(photo);
      ASSERT_TRUE(Ok(photographed));
      EXPECT_TRUE(Ok(DecodeBundlePayload(*photographed)));
    }
  }
}

TEST_F(ImageTest, SvgIsWellFormedAndScans) {
  std::string pem = MakeCert(dir_, "ca", "ec -pkeyopt ec_paramgen_curve:P-256");
  auto svg = BundleQrSvg(Bundle(pem));
  ASSERT_TRUE(Ok(svg));
  auto payload = EncodeBundlePayload(Bundle(pem));
  ASSERT_TRUE(Ok(payload));
  std::string file = dir_.File("bundle.svg");
  testlib::WriteText(file, *svg);
  // Parsed by an independent XML parser: the root is an SVG element with a square viewBox that
  // includes the 4-module quiet zone, a white background rect and one path; nothing else.
  std::string summary = Must(
      "python3 -c \"import sys, xml.etree.ElementTree as E\n"
      "r = E.parse(sys.argv[1]).getroot()\n"
      "ns = '{http://www.w3.org/2000/svg}'\n"
      "print(r.tag == ns + 'svg', r.get('viewBox'), r.get('shape-rendering'),\n"
      "      [c.tag[len(ns):] for c in r.iter()][1:])\" " + Q(file));
  auto code_modules = [&]() {
    // The QR version libqrencode picks for the payload, as a module count with the quiet zone.
    QRcode* code = QRcode_encodeString(payload->c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    int width = code != nullptr ? code->width : 0;
    QRcode_free(code);
    return std::to_string(width + 8);
  }();
  EXPECT_EQ(summary, "True 0 0 " + code_modules + " " + code_modules + " crispEdges ['rect', 'path']\n");
  for (const char* banned : {"<script", "href", "xlink", "javascript", "foreignObject", "url("}) {
    EXPECT_EQ(svg->find(banned), std::string::npos) << banned;
  }
  // Rendered by librsvg, read by zbarimg.
  std::string png = dir_.File("rendered.png");
  Must("rsvg-convert -w 800 -b white -o " + Q(png) + " " + Q(file));
  EXPECT_EQ(Zbarimg(png), *payload);
}

TEST_F(ImageTest, RefusesPicturesWithoutExactlyOneCode) {
  std::string text = dir_.File("note.txt");
  testlib::WriteText(text, "not a picture");
  EXPECT_TRUE(IsError(DecodeQrImage(text), ErrorKind::kLocalUsage, Errc::kUnsupported,
                      "not a PNG or JPEG"));
  EXPECT_TRUE(IsError(DecodeQrImage(dir_.File("missing.png")), ErrorKind::kLocalUsage,
                      Errc::kConfig));
  std::string blank = dir_.File("blank.png");
  Must("pbmmake -white 300 300 | pnmtopng > " + Q(blank));
  EXPECT_TRUE(IsError(DecodeQrImage(blank), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "no QR code found"));
  std::string blank_jpg = dir_.File("blank.jpg");
  Must("pbmmake -white 300 300 | ppmtoppm | cjpeg > " + Q(blank_jpg));
  EXPECT_TRUE(IsError(DecodeQrImage(blank_jpg), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "no QR code found"));
  // Two codes side by side.
  std::string a = dir_.File("a.png"), b = dir_.File("b.png"), two = dir_.File("two.png");
  Must("qrencode -l M -s 6 -o " + Q(a) + " 'MTS1:GEJMPAAI2C6SALO52QMYG5NGVM'");
  Must("qrencode -l M -s 6 -o " + Q(b) + " 'MTS1:AAAAAAAAAAAAAAAAAAAAAAAAAA'");
  Must("pngtopnm " + Q(a) + " > " + Q(a + ".pnm") + " && pngtopnm " + Q(b) + " > " + Q(b + ".pnm"));
  Must("pnmcat -white -lr " + Q(a + ".pnm") + " " + Q(b + ".pnm") + " | pnmtopng > " + Q(two));
  EXPECT_TRUE(IsError(DecodeQrImage(two), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "2 QR codes"));
  // Truncated files.
  std::string cut_png = dir_.File("cut.png"), cut_jpg = dir_.File("cut.jpg");
  Must("head -c 200 " + Q(a) + " > " + Q(cut_png));
  Must("pngtopnm " + Q(a) + " | ppmtoppm | cjpeg | head -c 300 > " + Q(cut_jpg));
  EXPECT_TRUE(IsError(DecodeQrImage(cut_png), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "not a readable PNG"));
  auto cut = DecodeQrImage(cut_jpg);
  EXPECT_FALSE(cut.has_value());
}

}  // namespace
}  // namespace mte::qr
