// MTB1 / MTS1 payloads: round trips, the pin fallback with RSA-4096 anchors, pins against the
// openssl CLI, a hand-assembled CBOR map (RFC 8949) as a known answer for the decoder, and every
// refusal.
#include <gtest/gtest.h>

#include "crypto/device_cert.h"
#include "qr/base45.h"
#include "qr/payload.h"
#include "qr_test_support.h"
#include "testlib/result_assertions.h"

namespace mte::qr {
namespace {

using nlohmann::json;
using test::MakeCert;
using test::OpensslPin;
using testlib::IsError;
using testlib::Ok;

constexpr const char* kToken = "a5s7LRn3vwmtilF8jxjYj5jDDVe7GUtqMDPacwDtgfU";
constexpr std::string_view kAlphanumeric = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
// SHA-256 of the empty string in base64url (FIPS 180-2 example value, RFC 4648 §5 alphabet).
constexpr const char* kEmptySha256Pin = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU";

json Bundle(const std::string& anchor_pem) {
  return {{"token", kToken},
          {"mefUri", "https://127.0.0.1:38073"},
          {"mefFqdn", "mef.example.com"},
          {"mefTrustAnchors", {anchor_pem}},
          {"expiresAt", "2026-12-05T08:44:59Z"},
          {"enroleeId", 7}};
}

std::string Mtb1(ByteSpan cbor) { return "MTB1:" + Base45Encode(cbor); }

class PayloadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testlib::TempDir();
    p256_ = MakeCert(*dir_, "mef-ca", "ec -pkeyopt ec_paramgen_curve:P-256");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static testlib::TempDir* dir_;
  static std::string p256_;
};
testlib::TempDir* PayloadTest::dir_ = nullptr;
std::string PayloadTest::p256_;

TEST_F(PayloadTest, BundleRoundTripsInTheAlphanumericSet) {
  json bundle = Bundle(p256_);
  bundle["notCarried"] = "dropped";
  auto payload = EncodeBundlePayload(bundle);
  ASSERT_TRUE(Ok(payload));
  EXPECT_EQ(payload->substr(0, 5), "MTB1:");
  EXPECT_LE(payload->size(), kMaxQrAlphanumericM);
  EXPECT_EQ(payload->find_first_not_of(kAlphanumeric), std::string::npos);
  EXPECT_TRUE(IsBundlePayload(*payload));
  auto back = DecodeBundlePayload(*payload);
  ASSERT_TRUE(Ok(back));
  bundle.erase("notCarried");
  EXPECT_EQ(*back, bundle);
  // With a line end, as a file or a scanner may hand it over.
  auto with_newline = DecodeBundlePayload(*payload + "\r\n");
  ASSERT_TRUE(Ok(with_newline));
  EXPECT_EQ(*with_newline, bundle);
}

TEST_F(PayloadTest, TheBodyIsBase45OfTheCborMap) {
  auto payload = EncodeBundlePayload(Bundle(p256_));
  ASSERT_TRUE(Ok(payload));
  auto cbor = Base45Decode(payload->substr(5));
  ASSERT_TRUE(Ok(cbor));
  ASSERT_FALSE(cbor->empty());
  EXPECT_EQ((*cbor)[0], 0xA6) << "a CBOR map of six members (major type 5)";
}

TEST_F(PayloadTest, DecodesAHandAssembledCborMap) {
  // RFC 8949 §3.1 by hand: {"mefTrustAnchorPins": [pin], "mefUri": "https://h:1", "token": "t"}.
  Bytes cbor = {0xA3, 0x72};
  for (char c : std::string_view("mefTrustAnchorPins")) cbor.push_back(static_cast<uint8_t>(c));
  cbor.push_back(0x81);
  cbor.push_back(0x78);
  cbor.push_back(43);
  for (char c : std::string_view(kEmptySha256Pin)) cbor.push_back(static_cast<uint8_t>(c));
  cbor.push_back(0x66);
  for (char c : std::string_view("mefUri")) cbor.push_back(static_cast<uint8_t>(c));
  cbor.push_back(0x6B);
  for (char c : std::string_view("https://h:1")) cbor.push_back(static_cast<uint8_t>(c));
  cbor.push_back(0x65);
  for (char c : std::string_view("token")) cbor.push_back(static_cast<uint8_t>(c));
  cbor.push_back(0x61);
  cbor.push_back('t');
  auto bundle = DecodeBundlePayload(Mtb1(cbor));
  ASSERT_TRUE(Ok(bundle));
  EXPECT_EQ((*bundle)["token"], "t");
  EXPECT_EQ((*bundle)["mefUri"], "https://h:1");
  EXPECT_EQ((*bundle)["mefTrustAnchorPins"], json::array({kEmptySha256Pin}));
  auto pin = DecodePin(kEmptySha256Pin);
  ASSERT_TRUE(Ok(pin));
  EXPECT_EQ(HexLower(*pin), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_F(PayloadTest, KnownAnswerFromAnIndependentEncoder) {
  // docs/qr.md §6: the CBOR (RFC 8949, members in this order) and its Base45 were computed by a
  // separate 20-line Python encoder; the pin by the openssl CLI.
  json bundle = {{"enroleeId", 1},
                 {"expiresAt", "2026-12-05T08:44:59Z"},
                 {"mefFqdn", "mef.example.com"},
                 {"mefTrustAnchorPins", {"YhI8tfUbcKUx2tBoL-RtCQmmZ0tR6AMsT2GhXB2pTsQ"}},
                 {"mefUri", "https://127.0.0.1:38073"},
                 {"token", kToken}};
  const std::string expected =
      "MTB1:V1L1$C0LETVD9 C-SCQED7AF*ED6$CGC81VE8469%6*963W5HX6E465G75R6ZW6DJBF$D$-C3FEB/DF$DD-CB"
      "$CBECP9ERZCUPCS$DF$D6.C6LE QEAC8NPC04EK7AF/DOGGRL5C8D7677.CWJCPN9Z8FHVE73E$W5IVEADA4$DT56V"
      "HAMB84QE1G6R8DQG819E1QEV.C% C4 A:EDA9DIWENPEJ/5*96-/64464462A6HL6D46HM6HWE/PDK/DZL53Y6Q:6."
      "IAYM6I4FBWE/UD.571AFUDB*X6GS8M-AL:66 APEESS81ECM3F9WE7.C";
  auto payload = EncodeBundlePayload(bundle);
  ASSERT_TRUE(Ok(payload));
  EXPECT_EQ(*payload, expected);
  auto back = DecodeBundlePayload(expected);
  ASSERT_TRUE(Ok(back));
  EXPECT_EQ(*back, bundle);
}

TEST_F(PayloadTest, PinsAreWhatOpensslComputes) {
  auto certs = crypto::CertificatesFromPem(p256_);
  ASSERT_TRUE(Ok(certs));
  auto pin = SpkiPin(certs->front());
  ASSERT_TRUE(Ok(pin));
  EXPECT_EQ(*pin, OpensslPin(dir_->File("mef-ca.crt")));
  EXPECT_EQ(pin->size(), 43u);
}

TEST_F(PayloadTest, ForcedPinsReplaceTheAnchors) {
  auto payload = EncodeBundlePayload(Bundle(p256_), BundleTrust::kPins);
  ASSERT_TRUE(Ok(payload));
  auto back = DecodeBundlePayload(*payload);
  ASSERT_TRUE(Ok(back));
  EXPECT_FALSE(back->contains("mefTrustAnchors"));
  EXPECT_EQ((*back)["mefTrustAnchorPins"],
            json::array({OpensslPin(dir_->File("mef-ca.crt"))}));
  EXPECT_EQ((*back)["token"], kToken);
}

TEST_F(PayloadTest, LargeRsaAnchorsSwitchToPins) {
  // Three RSA-4096 anchors: about 1.9 KB of PEM each, far beyond one QR code in Base45.
  json anchors = json::array();
  std::vector<std::string> expected;
  for (int i = 0; i < 3; ++i) {
    std::string name = "rsa-ca-" + std::to_string(i);
    anchors.push_back(MakeCert(*dir_, name, "rsa:4096"));
    expected.push_back(OpensslPin(dir_->File(name + ".crt")));
  }
  json bundle = Bundle(p256_);
  bundle["mefTrustAnchors"] = anchors;
  size_t pem_bytes = 0;
  for (const auto& a : anchors) pem_bytes += a.get_ref<const std::string&>().size();
  ASSERT_GT(pem_bytes * 3 / 2, kMaxQrAlphanumericM) << "the anchors must not fit";
  auto payload = EncodeBundlePayload(bundle);
  ASSERT_TRUE(Ok(payload));
  EXPECT_LE(payload->size(), kMaxQrAlphanumericM);
  auto back = DecodeBundlePayload(*payload);
  ASSERT_TRUE(Ok(back));
  EXPECT_FALSE(back->contains("mefTrustAnchors"));
  EXPECT_EQ((*back)["mefTrustAnchorPins"], json(expected));
  EXPECT_EQ((*back)["mefFqdn"], "mef.example.com");
  // One string holding two certificates gives two pins.
  bundle["mefTrustAnchors"] = {anchors[0].get<std::string>() + anchors[1].get<std::string>()};
  auto two = TrustAnchorPins(bundle["mefTrustAnchors"]);
  ASSERT_TRUE(Ok(two));
  EXPECT_EQ(*two, (std::vector<std::string>{expected[0], expected[1]}));
}

TEST_F(PayloadTest, TooManyPinsIsAClearError) {
  json bundle = Bundle(p256_);
  bundle.erase("mefTrustAnchors");
  bundle["mefTrustAnchorPins"] = json::array();
  for (int i = 0; i < 60; ++i) bundle["mefTrustAnchorPins"].push_back(kEmptySha256Pin);
  auto payload = EncodeBundlePayload(bundle);
  EXPECT_TRUE(IsError(payload, ErrorKind::kLocalUsage, Errc::kTooLarge, "even with trust anchor pins"));
  EXPECT_EQ(payload.error().detail.find(kToken), std::string::npos);
}

TEST_F(PayloadTest, EncoderRefusesWhatIsNotABundle) {
  json bundle = Bundle(p256_);
  json no_token = bundle;
  no_token.erase("token");
  EXPECT_TRUE(IsError(EncodeBundlePayload(no_token), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "missing token"));
  json no_trust = bundle;
  no_trust.erase("mefTrustAnchors");
  EXPECT_TRUE(IsError(EncodeBundlePayload(no_trust), ErrorKind::kLocalUsage, Errc::kMalformed,
                      "exactly one of"));
  json not_pem = bundle;
  not_pem["mefTrustAnchors"] = {"not a certificate"};
  EXPECT_TRUE(IsError(EncodeBundlePayload(not_pem, BundleTrust::kPins), ErrorKind::kLocalUsage,
                      Errc::kMalformed, "mefTrustAnchors"));
  EXPECT_TRUE(IsError(EncodeBundlePayload(json::array()), ErrorKind::kLocalUsage,
                      Errc::kMalformed, "not a map"));
}

TEST_F(PayloadTest, DecoderRefusesEverythingElse) {
  auto good = EncodeBundlePayload(Bundle(p256_));
  ASSERT_TRUE(Ok(good));
  std::string body = good->substr(5);
  auto refused = [](const Result<json>& r, Errc code, std::string_view part) {
    EXPECT_TRUE(IsError(r, ErrorKind::kPeerProtocol, code, part));
    if (!r) {
      EXPECT_EQ(r.error().detail.find(kToken), std::string::npos) << "the token leaked";
    }
  };
  refused(DecodeBundlePayload("MTB2:" + body), Errc::kUnsupported, "version 2 is not supported");
  refused(DecodeBundlePayload("MTB10:" + body), Errc::kUnsupported, "version 10");
  refused(DecodeBundlePayload("MT:Y.K9042C00KA0648G00"), Errc::kMalformed, "expected MTB1:");
  refused(DecodeBundlePayload("mtb1:" + body), Errc::kMalformed, "expected MTB1:");
  refused(DecodeBundlePayload("MTS1:GEJMPAAI2C6SALO52QMYG5NGVM"), Errc::kMalformed, "MTB1:");
  refused(DecodeBundlePayload("{\"token\":\"x\"}"), Errc::kMalformed, "expected MTB1:");
  refused(DecodeBundlePayload(""), Errc::kMalformed, "expected MTB1:");
  refused(DecodeBundlePayload("MTB1:" + body.substr(0, body.size() - 1) + "a"), Errc::kMalformed,
          "bad Base45");
  refused(DecodeBundlePayload("MTB1:" + std::string(kMaxPayloadChars, '0')), Errc::kTooLarge,
          "longer than");
  // Base45 that is not CBOR, CBOR with trailing bytes, CBOR that is not a map.
  refused(DecodeBundlePayload(Mtb1(Bytes{0xFF, 0xFF})), Errc::kMalformed, "bad CBOR");
  refused(DecodeBundlePayload(Mtb1(Bytes{0xA0, 0x00})), Errc::kMalformed, "bad CBOR");
  refused(DecodeBundlePayload(Mtb1(Bytes{0x01})), Errc::kMalformed, "not a map");
  refused(DecodeBundlePayload(Mtb1(Bytes{0xA0})), Errc::kMalformed, "missing token");
  // A map or an array that declares 2^63 - 1 members (RFC 8949 §3: additional information 27)
  // is refused, not thrown out of the decoder (found by fuzz/token_bundle_fuzz.cc).
  Bytes huge_map = {0xBB, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  refused(DecodeBundlePayload(Mtb1(huge_map)), Errc::kMalformed, "bad CBOR");
  Bytes huge_array = {0xA1, 0x61, 'a', 0x9B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  refused(DecodeBundlePayload(Mtb1(huge_array)), Errc::kMalformed, "bad CBOR");
  // A tagged item (RFC 8949 §3.4) is refused.
  refused(DecodeBundlePayload(Mtb1(Bytes{0xC1, 0x00})), Errc::kMalformed, "bad CBOR");

  auto with = [](json b) { return Mtb1(json::to_cbor(b)); };
  json bundle = Bundle(p256_);
  json both = bundle;
  both["mefTrustAnchorPins"] = {kEmptySha256Pin};
  refused(DecodeBundlePayload(with(both)), Errc::kMalformed, "exactly one of");
  json neither = bundle;
  neither.erase("mefTrustAnchors");
  refused(DecodeBundlePayload(with(neither)), Errc::kMalformed, "exactly one of");
  json empty_anchors = bundle;
  empty_anchors["mefTrustAnchors"] = json::array();
  refused(DecodeBundlePayload(with(empty_anchors)), Errc::kMalformed, "non-empty");
  json number_uri = bundle;
  number_uri["mefUri"] = 443;
  refused(DecodeBundlePayload(with(number_uri)), Errc::kMalformed, "mefUri");
  json string_id = bundle;
  string_id["enroleeId"] = "7";
  refused(DecodeBundlePayload(with(string_id)), Errc::kMalformed, "enroleeId");
  for (json id : {json(0), json(-5), json(1.5), json(uint64_t{1} << 63)}) {
    json bad_id = bundle;
    bad_id["enroleeId"] = id;
    refused(DecodeBundlePayload(with(bad_id)), Errc::kMalformed, "enroleeId");
  }
  neither["mefTrustAnchorPins"] = {std::string(kEmptySha256Pin).substr(0, 42)};  // 31.5 octets
  refused(DecodeBundlePayload(with(neither)), Errc::kMalformed, "43 base64url characters");
  neither["mefTrustAnchorPins"] = {std::string(kEmptySha256Pin).substr(0, 42) + "V"};  // trailing bits
  refused(DecodeBundlePayload(with(neither)), Errc::kMalformed, "43 base64url characters");
  neither["mefTrustAnchorPins"] = {std::string(kEmptySha256Pin).substr(0, 42) + "="};
  refused(DecodeBundlePayload(with(neither)), Errc::kMalformed, "43 base64url characters");
  neither["mefTrustAnchorPins"] = {"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"};  // base64, not url
  refused(DecodeBundlePayload(with(neither)), Errc::kMalformed, "43 base64url characters");
  neither["mefTrustAnchorPins"] = {kEmptySha256Pin};
  EXPECT_TRUE(Ok(DecodeBundlePayload(with(neither))));
}

TEST(SetupCodePayload, RoundTripsInCanonicalForm) {
  auto payload = EncodeSetupCodePayload("gejm-paai-2c6s-alo5-2qmy-g5ng-vm");
  ASSERT_TRUE(Ok(payload));
  EXPECT_EQ(*payload, "MTS1:GEJMPAAI2C6SALO52QMYG5NGVM");
  EXPECT_EQ(payload->find_first_not_of(kAlphanumeric), std::string::npos);
  auto code = DecodeSetupCodePayload(*payload);
  ASSERT_TRUE(Ok(code));
  EXPECT_EQ(*code, "GEJMPAAI2C6SALO52QMYG5NGVM");
  auto with_newline = DecodeSetupCodePayload(*payload + "\n");
  ASSERT_TRUE(Ok(with_newline));
  EXPECT_EQ(*with_newline, "GEJMPAAI2C6SALO52QMYG5NGVM");
}

TEST(SetupCodePayload, RefusesEverythingElse) {
  const std::string code = "GEJMPAAI2C6SALO52QMYG5NGVM";
  auto refused = [&code](const Result<std::string>& r, ErrorKind kind, Errc errc,
                         std::string_view part) {
    EXPECT_TRUE(IsError(r, kind, errc, part));
    if (!r) {
      EXPECT_EQ(r.error().detail.find(code.substr(0, 8)), std::string::npos) << "code leaked";
    }
  };
  refused(EncodeSetupCodePayload(code.substr(0, 25)), ErrorKind::kLocalUsage, Errc::kMalformed,
          "26 base32");
  refused(EncodeSetupCodePayload(code + "A"), ErrorKind::kLocalUsage, Errc::kMalformed, "26 base32");
  const auto kPeer = ErrorKind::kPeerProtocol;
  refused(DecodeSetupCodePayload("MTS2:" + code), kPeer, Errc::kUnsupported, "version 2");
  refused(DecodeSetupCodePayload(code), kPeer, Errc::kMalformed, "expected MTS1:");
  refused(DecodeSetupCodePayload("MTB1:" + code), kPeer, Errc::kMalformed, "expected MTS1:");
  refused(DecodeSetupCodePayload("MTS1:" + code.substr(0, 25)), kPeer, Errc::kMalformed, "26 base32");
  refused(DecodeSetupCodePayload("MTS1:" + code + "A"), kPeer, Errc::kMalformed, "26 base32");
  std::string lower = code;
  lower[0] = 'g';
  refused(DecodeSetupCodePayload("MTS1:" + lower), kPeer, Errc::kMalformed, "26 base32");
  refused(DecodeSetupCodePayload("MTS1:GEJM-PAAI2C6SALO52QMYG5NGV"), kPeer, Errc::kMalformed,
          "26 base32");
  // The last character carries 2 bits that must be zero: N (13) is not one of A E I M Q U Y 4.
  refused(DecodeSetupCodePayload("MTS1:" + code.substr(0, 25) + "N"), kPeer, Errc::kMalformed,
          "26 base32");
}

}  // namespace
}  // namespace mte::qr
