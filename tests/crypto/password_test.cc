#include "crypto/password.h"

#include <gtest/gtest.h>

#include <string>

#include "crypto/random.h"

namespace mte::crypto {
namespace {

// Deterministic bytes, so the salt's origin (the injected Rng) is observable.
class FixedRng final : public Rng {
 public:
  void Fill(std::span<uint8_t> out) override {
    for (auto& b : out) {
      b = 0x5a;
    }
  }
};

SecretString Pw(std::string s) {
  return SecretString(std::move(s));
}

constexpr std::string_view kPrefix = "$argon2id$v=19$m=19456,t=2,p=1$";

class PasswordTest : public ::testing::Test {
 protected:
  std::string Hash(std::string pw) {
    auto h = HashPassword(Pw(std::move(pw)), rng_);
    EXPECT_TRUE(h.has_value());
    return h.has_value() ? *h : "";
  }

  SystemRng rng_;
};

TEST_F(PasswordTest, HashIsArgon2idPhcWithOwaspParameters) {
  std::string h = Hash("correct horse battery staple");
  EXPECT_EQ(h.substr(0, kPrefix.size()), kPrefix) << h;
  // 16-octet salt and 32-octet hash in unpadded base64: 22 and 43 characters.
  std::string tail = h.substr(kPrefix.size());
  size_t dollar = tail.find('$');
  ASSERT_NE(dollar, std::string::npos);
  EXPECT_EQ(dollar, 22u);
  EXPECT_EQ(tail.size() - dollar - 1, 43u);
}

TEST_F(PasswordTest, VerifiesRightAndRejectsWrong) {
  std::string h = Hash("correct horse battery staple");
  EXPECT_TRUE(VerifyPassword(Pw("correct horse battery staple"), h));
  EXPECT_FALSE(VerifyPassword(Pw("correct horse battery stapl"), h));
  EXPECT_FALSE(VerifyPassword(Pw("correct horse battery staple "), h));
  EXPECT_FALSE(VerifyPassword(Pw("Correct horse battery staple"), h));
  EXPECT_FALSE(VerifyPassword(Pw(""), h));
}

TEST_F(PasswordTest, EmptyPasswordRoundTrips) {
  std::string h = Hash("");
  EXPECT_TRUE(VerifyPassword(Pw(""), h));
  EXPECT_FALSE(VerifyPassword(Pw("x"), h));
}

TEST_F(PasswordTest, SaltMakesHashesDiffer) {
  std::string a = Hash("same password");
  std::string b = Hash("same password");
  EXPECT_NE(a, b);
  EXPECT_TRUE(VerifyPassword(Pw("same password"), a));
  EXPECT_TRUE(VerifyPassword(Pw("same password"), b));
}

TEST_F(PasswordTest, SaltComesFromTheInjectedRng) {
  FixedRng fixed;
  auto a = HashPassword(Pw("pw"), fixed);
  auto b = HashPassword(Pw("pw"), fixed);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(*a, *b);
  // base64 of sixteen 0x5a octets.
  EXPECT_NE(a->find("$WlpaWlpaWlpaWlpaWlpaWg$"), std::string::npos) << *a;
}

TEST_F(PasswordTest, MalformedHashesAreFalse) {
  std::string good = Hash("pw");
  ASSERT_TRUE(VerifyPassword(Pw("pw"), good));
  std::vector<std::string> bad = {
      "",
      "garbage",
      "$argon2id$",
      "$argon2i" + good.substr(9),  // wrong variant
      "$argon2d" + good.substr(9),
      good + "$",
      good + "A",
      good.substr(0, good.size() - 1),
      std::string(good).replace(good.size() - 5, 1, "!"),  // not base64
      std::string(good).insert(10, std::string(1, '\0')),
      std::string(good).replace(good.find("v=19"), 4, "v=16"),
      std::string(good).replace(good.find("p=1"), 3, "p=0"),
      // A tampered cost that would allocate 4 GiB is refused before libargon2 sees it.
      std::string(good).replace(good.find("m=19456"), 7, "m=4194304"),
      std::string(good).replace(good.find("t=2"), 3, "t=100000"),
      std::string(good).replace(good.find("m=19456"), 7, "m=99999999999999999999999"),
      std::string(600, 'a'),
  };
  for (size_t n = 0; n < good.size(); ++n) {
    bad.push_back(good.substr(0, n));
  }
  for (const auto& h : bad) {
    EXPECT_FALSE(VerifyPassword(Pw("pw"), h)) << h;
  }
}

TEST_F(PasswordTest, ChangedHashByteFails) {
  std::string good = Hash("pw");
  std::string tampered = good;
  char& c = tampered[tampered.size() - 3];
  c = (c == 'A') ? 'B' : 'A';
  EXPECT_FALSE(VerifyPassword(Pw("pw"), tampered));
}

TEST_F(PasswordTest, OverlongPasswordIsRefused) {
  auto r = HashPassword(Pw(std::string(4097, 'p')), rng_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kTooLarge);
  std::string h = Hash("pw");
  EXPECT_FALSE(VerifyPassword(Pw(std::string(4097, 'p')), h));
}

}  // namespace
}  // namespace mte::crypto
