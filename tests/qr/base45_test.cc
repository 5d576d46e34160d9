// RFC 9285 Base45: the RFC's own examples (§4.3, §4.4) and the refusals of §4.2.
#include <gtest/gtest.h>

#include "qr/base45.h"
#include "testlib/result_assertions.h"

namespace mte::qr {
namespace {

using testlib::IsError;
using testlib::Ok;

std::string Text(const Bytes& b) { return std::string(b.begin(), b.end()); }

TEST(Base45, EncodesTheRfcExamples) {
  EXPECT_EQ(Base45Encode(AsBytes("AB")), "BB8");                   // RFC 9285 §4.3
  EXPECT_EQ(Base45Encode(AsBytes("Hello!!")), "%69 VD92EX0");      // §4.3
  EXPECT_EQ(Base45Encode(AsBytes("base-45")), "UJCLQE7W581");      // §4.3
  EXPECT_EQ(Base45Encode(AsBytes("ietf!")), "QED8WEX0");           // §4.4, the other way
  EXPECT_EQ(Base45Encode({}), "");
}

TEST(Base45, DecodesTheRfcExamples) {
  auto ietf = Base45Decode("QED8WEX0");  // RFC 9285 §4.4
  ASSERT_TRUE(Ok(ietf));
  EXPECT_EQ(Text(*ietf), "ietf!");
  for (const char* plain : {"AB", "Hello!!", "base-45"}) {
    auto back = Base45Decode(Base45Encode(AsBytes(plain)));
    ASSERT_TRUE(Ok(back));
    EXPECT_EQ(Text(*back), plain);
  }
  auto hello = Base45Decode("%69 VD92EX0");
  ASSERT_TRUE(Ok(hello));
  EXPECT_EQ(Text(*hello), "Hello!!");
}

TEST(Base45, EdgeValuesRoundTrip) {
  // 0xFFFF = 15 + 16 * 45 + 32 * 2025 -> "FGW"; 0xFF = 30 + 5 * 45 -> "U5".
  EXPECT_EQ(Base45Encode(Bytes{0xFF, 0xFF}), "FGW");
  EXPECT_EQ(Base45Encode(Bytes{0xFF}), "U5");
  EXPECT_EQ(Base45Encode(Bytes{0x00, 0x00}), "000");
  Bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<uint8_t>(i));
  auto back = Base45Decode(Base45Encode(all));
  ASSERT_TRUE(Ok(back));
  EXPECT_EQ(*back, all);
}

TEST(Base45, RefusesBadInput) {
  // RFC 9285 §4.2: "GGW" is 65536, above 0xFFFF.
  EXPECT_TRUE(IsError(Base45Decode("GGW"), ErrorKind::kPeerProtocol, Errc::kMalformed, "65535"));
  // A final pair above 255: "U6" = 30 + 6 * 45 = 300.
  EXPECT_TRUE(IsError(Base45Decode("U6"), ErrorKind::kPeerProtocol, Errc::kMalformed, "255"));
  // Lengths 3k + 1.
  EXPECT_TRUE(IsError(Base45Decode("A"), ErrorKind::kPeerProtocol, Errc::kMalformed, "3k+1"));
  EXPECT_TRUE(IsError(Base45Decode("BB8A"), ErrorKind::kPeerProtocol, Errc::kMalformed));
  // Characters outside the alphabet, lower case included.
  EXPECT_TRUE(IsError(Base45Decode("bb8"), ErrorKind::kPeerProtocol, Errc::kMalformed, "character 0"));
  EXPECT_TRUE(IsError(Base45Decode("BB="), ErrorKind::kPeerProtocol, Errc::kMalformed, "character 2"));
  EXPECT_TRUE(IsError(Base45Decode(std::string("BB\0", 3)), ErrorKind::kPeerProtocol,
                      Errc::kMalformed));
  EXPECT_TRUE(IsError(Base45Decode("BB\n"), ErrorKind::kPeerProtocol, Errc::kMalformed));
}

}  // namespace
}  // namespace mte::qr
