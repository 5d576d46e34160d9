// Known-answer tests for the TS-0003 §10.3 derivations. Expected values come from
// tests/vectors/derivations.txt, which tools/gen-derivation-vectors.sh computes with the openssl
// CLI (ctest "crypto_vectors_match_openssl" proves the file is what openssl outputs), plus a few
// published constants (FIPS 180-2, RFC 4231).
#include "crypto/keys.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"

namespace mte::crypto {
namespace {

using Block = std::map<std::string, std::string>;

std::string Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) {
    return "";
  }
  size_t e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

// Parses blank-line-separated blocks of "key = value" lines; '#' starts a comment line.
std::vector<Block> LoadVectors() {
  const char* src = std::getenv("MTE_SOURCE_DIR");
  std::string path = std::string(src != nullptr ? src : ".") + "/tests/vectors/derivations.txt";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path << " (set MTE_SOURCE_DIR)";
  std::vector<Block> blocks;
  Block current;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '#') {
      continue;
    }
    if (Trim(line).empty()) {
      if (!current.empty()) {
        blocks.push_back(std::move(current));
      }
      current.clear();
      continue;
    }
    size_t eq = line.find('=');
    EXPECT_NE(eq, std::string::npos) << "bad line: " << line;
    if (eq == std::string::npos) {
      continue;
    }
    current[Trim(std::string_view(line).substr(0, eq))] =
        Trim(std::string_view(line).substr(eq + 1));
  }
  if (!current.empty()) {
    blocks.push_back(std::move(current));
  }
  return blocks;
}

std::vector<Block> VectorsOfType(const std::string& type) {
  std::vector<Block> out;
  for (auto& b : LoadVectors()) {
    if (b["type"] == type) {
      out.push_back(b);
    }
  }
  return out;
}

Bytes FromHex(std::string_view hex) {
  auto b = HexDecode(hex);
  EXPECT_TRUE(b.has_value()) << hex;
  return b.has_value() ? *b : Bytes{};
}

SecretBytes SecretFromHex(std::string_view hex) {
  return SecretBytes(FromHex(hex), SecretAccess::ForCrypto());
}

std::string HexOf(const SecretBytes& s) {
  return HexLower(s.Expose(SecretAccess::ForCrypto()));
}

std::string HexOf(const Result<SecretBytes>& r) {
  EXPECT_TRUE(r.has_value()) << (r.has_value() ? "" : Describe(r.error()));
  return r.has_value() ? HexOf(*r) : "";
}

// ---- vectors from the openssl CLI ------------------------------------------------------------

TEST(KeysVectorsTest, FileCoversEveryDerivation) {
  std::map<std::string, int> count;
  bool suid21 = false;
  bool other_suid = false;
  for (auto& b : LoadVectors()) {
    ++count[b["type"]];
    if (b["type"] == "usage_constrained") {
      (b["suid"] == "21" ? suid21 : other_suid) = true;
    }
  }
  EXPECT_GE(count["sha256"], 3);
  EXPECT_GE(count["hmac_sha256"], 3);
  EXPECT_GE(count["bootstrap"], 2);
  EXPECT_GE(count["km"], 2);
  EXPECT_GE(count["kpsa"], 2);
  EXPECT_GE(count["usage_constrained"], 2);
  EXPECT_TRUE(suid21);
  EXPECT_TRUE(other_suid);
}

TEST(KeysVectorsTest, Sha256) {
  for (auto& v : VectorsOfType("sha256")) {
    Bytes data = FromHex(v["data"]);
    EXPECT_EQ(HexLower(Sha256(data)), v["digest"]) << "data=" << v["data"];
  }
}

TEST(KeysVectorsTest, HmacSha256) {
  for (auto& v : VectorsOfType("hmac_sha256")) {
    EXPECT_EQ(HexOf(HmacSha256(SecretFromHex(v["key"]), FromHex(v["data"]))), v["mac"])
        << "key=" << v["key"];
  }
}

TEST(KeysVectorsTest, BootstrapSplitAndKeId) {
  for (auto& v : VectorsOfType("bootstrap")) {
    auto split = SplitBootstrapExport(SecretFromHex(v["export"]));
    ASSERT_TRUE(split.has_value());
    EXPECT_EQ(HexLower(split->relative_ke_id.bytes), v["relative_ke_id"]);
    EXPECT_EQ(HexOf(split->ke), v["ke"]);
    EXPECT_EQ(MakeKeId(split->relative_ke_id, v["mef_fqdn"]), v["ke_id"]);
  }
}

TEST(KeysVectorsTest, Km) {
  for (auto& v : VectorsOfType("km")) {
    EXPECT_EQ(HexOf(DeriveKm(SecretFromHex(v["ke"]), v["maf_id"])), v["km"]) << v["maf_id"];
  }
}

TEST(KeysVectorsTest, Kpsa) {
  for (auto& v : VectorsOfType("kpsa")) {
    EXPECT_EQ(HexOf(DeriveKpsa(SecretFromHex(v["ke"]), v["enrolee_b_id"])), v["kpsa"])
        << v["enrolee_b_id"];
  }
}

TEST(KeysVectorsTest, UsageConstrainedKey) {
  for (auto& v : VectorsOfType("usage_constrained")) {
    unsigned long suid = std::stoul(v["suid"]);
    EXPECT_EQ(HexOf(DeriveUsageConstrainedKey(SecretFromHex(v["ke"]), static_cast<unsigned>(suid),
                                              v["target_id"])),
              v["key"])
        << "suid=" << v["suid"] << " target=" << v["target_id"];
  }
}

// ---- published constants ---------------------------------------------------------------------

TEST(KeysTest, Sha256PublishedVectors) {
  // FIPS 180-2 Appendix B.1.
  EXPECT_EQ(HexLower(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexLower(Sha256({})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(KeysTest, HmacPublishedVectors) {
  // RFC 4231 §4.2 (test case 1) and §4.3 (test case 2).
  SecretBytes key1(Bytes(20, 0x0b), SecretAccess::ForCrypto());
  EXPECT_EQ(HexOf(HmacSha256(key1, AsBytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  SecretBytes key2(AsBytes("Jefe"), SecretAccess::ForCrypto());
  EXPECT_EQ(HexOf(HmacSha256(key2, AsBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Empty key and empty message (Python's hmac module gives the same value).
  EXPECT_EQ(HexOf(HmacSha256(SecretBytes(), {})),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(KeysTest, LabelsAreExact) {
  EXPECT_EQ(kBootstrapExporterLabel.size(), 25u);
  EXPECT_EQ(kBootstrapExportLength, 48u);
  EXPECT_EQ(kKmLabel, "oneM2M Enrolment Key to Master Credential derivation");
  EXPECT_EQ(kKpsaLabel, "oneM2M Enrolment Key to Provisioned Secure Connection Key derivation");
  EXPECT_EQ(kUsageConstrainedLabel,
            "oneM2M Enrolment Key to Usage-Constrained Symmetric Key derivation");
}

// ---- KeID ------------------------------------------------------------------------------------

TEST(KeysTest, KeIdIsUpperCaseHexAtFqdn) {
  RelativeKeId rel;
  for (size_t i = 0; i < rel.bytes.size(); ++i) {
    rel.bytes[i] = static_cast<uint8_t>(0xa0 + i);
  }
  EXPECT_EQ(MakeKeId(rel, "mef.example.com"), "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF@mef.example.com");
  RelativeKeId zero;
  EXPECT_EQ(MakeKeId(zero, "m"), "00000000000000000000000000000000@m");
}

TEST(KeysTest, KeIdEqualsIgnoresCase) {
  EXPECT_TRUE(KeIdEquals("ABCDEF01@mef.example.com", "abcdef01@MEF.example.COM"));
  EXPECT_TRUE(KeIdEquals("", ""));
  EXPECT_FALSE(KeIdEquals("ABCDEF01@mef.example.com", "ABCDEF02@mef.example.com"));
  EXPECT_FALSE(KeIdEquals("ABCDEF01@mef.example.com", "ABCDEF01@mef.example.co"));
  EXPECT_FALSE(KeIdEquals("A@b", "A@b "));
  // Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ by the case bit but are not letters.
  EXPECT_FALSE(KeIdEquals("A@b", "A`b"));
  EXPECT_FALSE(KeIdEquals("[", "{"));
}

// ---- negative tests --------------------------------------------------------------------------

TEST(KeysTest, SplitRefusesWrongLength) {
  for (size_t n : {0u, 1u, 16u, 32u, 47u, 49u, 64u, 96u}) {
    auto r = SplitBootstrapExport(SecretBytes(n));
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().kind, ErrorKind::kInternal);
    EXPECT_EQ(r.error().code, Errc::kInvariant);
  }
}

TEST(KeysTest, CheckIdentifierAcceptsPrintableAscii) {
  EXPECT_TRUE(CheckIdentifier("maf.example.com", "id").has_value());
  EXPECT_TRUE(CheckIdentifier("/in-cse-01", "id").has_value());
  EXPECT_TRUE(CheckIdentifier("!~", "id").has_value());
  EXPECT_TRUE(CheckIdentifier(std::string(255, 'a'), "id").has_value());
}

TEST(KeysTest, CheckIdentifierRefusesBadIdentifiers) {
  const std::vector<std::string> bad = {
      "",
      std::string(256, 'a'),
      "has space",
      "tab\there",
      std::string("nul\0inside", 10),
      "del\x7f",
      "caf\xc3\xa9",   // UTF-8 "café": non-ASCII is refused, not normalised
      "\xef\xbc\xa1",  // U+FF21 FULLWIDTH A (NFKC would change it)
      "newline\n",
  };
  for (const auto& id : bad) {
    auto r = CheckIdentifier(id, "MAF-ID");
    ASSERT_FALSE(r.has_value()) << id;
    EXPECT_EQ(r.error().code, Errc::kMalformed);
    EXPECT_NE(r.error().detail.find("MAF-ID"), std::string::npos) << r.error().detail;
  }
}

TEST(KeysTest, DerivationsCheckIdentifiers) {
  SecretBytes ke(32);
  EXPECT_FALSE(DeriveKm(ke, "").has_value());
  EXPECT_FALSE(DeriveKm(ke, "caf\xc3\xa9").has_value());
  EXPECT_FALSE(DeriveKpsa(ke, "a b").has_value());
  EXPECT_FALSE(DeriveKpsa(ke, std::string(256, 'x')).has_value());
  EXPECT_FALSE(DeriveUsageConstrainedKey(ke, 21, "").has_value());
  EXPECT_FALSE(DeriveUsageConstrainedKey(ke, 21, "maf.example.com\n").has_value());
}

TEST(KeysTest, DerivationsRefuseWrongKeySize) {
  for (size_t n : {0u, 16u, 31u, 33u, 48u}) {
    SecretBytes ke(n);
    auto r = DeriveKm(ke, "maf.example.com");
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().code, Errc::kInvariant);
    EXPECT_FALSE(DeriveKpsa(ke, "CAE1").has_value());
    EXPECT_FALSE(DeriveUsageConstrainedKey(ke, 21, "maf.example.com").has_value());
  }
}

TEST(KeysTest, SuidIsDecimalAscii) {
  // SUID 21 followed by "x" must equal SUID 2 followed by "1x": both put "21x" after the label.
  SecretBytes ke = SecretFromHex(std::string(64, '7'));
  EXPECT_EQ(HexOf(DeriveUsageConstrainedKey(ke, 21, "x")),
            HexOf(DeriveUsageConstrainedKey(ke, 2, "1x")));
  EXPECT_NE(HexOf(DeriveUsageConstrainedKey(ke, 21, "x")),
            HexOf(DeriveUsageConstrainedKey(ke, 22, "x")));
}

TEST(KeysTest, HexDecodeRefusesOddOrNonHex) {
  for (std::string_view bad : {"a", "abc", "0g", "zz", " 0", "0x00"}) {
    auto r = HexDecode(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Errc::kMalformed);
  }
  auto ok = HexDecode("aBcD");
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(*ok, (Bytes{0xab, 0xcd}));
}

TEST(KeysTest, DerivedKeysDifferPerLabel) {
  SecretBytes ke = SecretFromHex(std::string(64, 'a'));
  std::string km = HexOf(DeriveKm(ke, "id"));
  std::string kpsa = HexOf(DeriveKpsa(ke, "id"));
  EXPECT_NE(km, kpsa);
  EXPECT_EQ(km.size(), 64u);
}

}  // namespace
}  // namespace mte::crypto
