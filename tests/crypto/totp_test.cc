// HOTP and TOTP against the published test vectors of RFC 4226 Appendix D and RFC 6238
// Appendix B, plus the matching window, replay-relevant step numbers and malformed codes.
#include "crypto/totp.h"

#include <gtest/gtest.h>

#include <string>

#include "base/bytes.h"
#include "base/secret.h"

namespace mte::crypto {
namespace {

SecretBytes Ascii(std::string_view text) {
  return SecretBytes(AsBytes(text), SecretAccess::ForCrypto());
}

TEST(Hotp, Rfc4226AppendixD) {
  const SecretBytes key = Ascii("12345678901234567890");
  const char* expected[] = {"755224", "287082", "359152", "969429", "338314",
                            "254676", "287922", "162583", "399871", "520489"};
  for (uint64_t counter = 0; counter < 10; ++counter) {
    auto code = Hotp(key, counter);
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, expected[counter]) << "counter " << counter;
  }
}

struct Rfc6238Vector {
  int64_t time;
  const char* sha1;
  const char* sha256;
  const char* sha512;
};

TEST(Totp, Rfc6238AppendixB) {
  const SecretBytes sha1_key = Ascii("12345678901234567890");
  const SecretBytes sha256_key = Ascii("12345678901234567890123456789012");
  const SecretBytes sha512_key =
      Ascii("1234567890123456789012345678901234567890123456789012345678901234");
  const Rfc6238Vector vectors[] = {
      {59, "94287082", "46119246", "90693936"},
      {1111111109, "07081804", "68084774", "25091201"},
      {1111111111, "14050471", "67062674", "99943326"},
      {1234567890, "89005924", "91819424", "93441116"},
      {2000000000, "69279037", "90698825", "38618901"},
      {20000000000, "65353130", "77737706", "47863826"},
  };
  for (const auto& v : vectors) {
    const auto step = static_cast<uint64_t>(TotpStep(v.time));
    EXPECT_EQ(*Hotp(sha1_key, step, 8, "SHA1"), v.sha1) << v.time;
    EXPECT_EQ(*Hotp(sha256_key, step, 8, "SHA256"), v.sha256) << v.time;
    EXPECT_EQ(*Hotp(sha512_key, step, 8, "SHA512"), v.sha512) << v.time;
  }
}

TEST(Totp, StepsAreThirtySeconds) {
  EXPECT_EQ(TotpStep(0), 0);
  EXPECT_EQ(TotpStep(29), 0);
  EXPECT_EQ(TotpStep(30), 1);
  EXPECT_EQ(TotpStep(59), 1);
  EXPECT_EQ(TotpStep(1111111109), 37037036);  // RFC 6238 Appendix B: T = 0x23523EC
  EXPECT_EQ(TotpStep(-5), 0);
}

TEST(Totp, MatchesTheStepWithinTheWindowOnly) {
  const SecretBytes key = Ascii("12345678901234567890");
  const int64_t now = 1234567890;  // step 41152263
  const int64_t step = TotpStep(now);
  for (int64_t delta : {-1, 0, 1}) {
    std::string code = *Hotp(key, static_cast<uint64_t>(step + delta));
    auto matched = MatchTotp(key, code, now);
    ASSERT_TRUE(matched.has_value());
    ASSERT_TRUE(matched->has_value()) << delta;
    EXPECT_EQ(**matched, step + delta);
  }
  for (int64_t delta : {-3, -2, 2, 3}) {
    std::string code = *Hotp(key, static_cast<uint64_t>(step + delta));
    // A far step's code may collide with a near one's by chance; these do not.
    EXPECT_FALSE(MatchTotp(key, code, now)->has_value()) << delta;
  }
  EXPECT_FALSE(MatchTotp(key, *Hotp(key, static_cast<uint64_t>(step + 2)), now, 0)->has_value());
}

TEST(Totp, MalformedCodesMatchNothing) {
  const SecretBytes key = Ascii("12345678901234567890");
  for (std::string_view code : {"", "12345", "1234567", "12345a", " 123456", "１２３４５６"}) {
    auto matched = MatchTotp(key, code, 59);
    ASSERT_TRUE(matched.has_value());
    EXPECT_FALSE(matched->has_value()) << code;
  }
}

TEST(Totp, RejectsUnsupportedParameters) {
  const SecretBytes key = Ascii("12345678901234567890");
  EXPECT_FALSE(Hotp(key, 0, 5).has_value());
  EXPECT_FALSE(Hotp(key, 0, 9).has_value());
  EXPECT_FALSE(Hotp(key, 0, 6, "MD5").has_value());
}

TEST(Totp, OtpauthUriEncodesLabelAndParameters) {
  EXPECT_EQ(OtpauthUri("OpenMTE", "alice smith", "JBSWY3DPEHPK3PXP"),
            "otpauth://totp/OpenMTE:alice%20smith?secret=JBSWY3DPEHPK3PXP&issuer=OpenMTE"
            "&algorithm=SHA1&digits=6&period=30");
}

}  // namespace
}  // namespace mte::crypto
