#include "testlib/temp_dir.h"
#include "crypto/aead.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/random.h"

namespace mte::crypto {
namespace {

namespace fs = std::filesystem;

using testlib::TempDir;

void WriteBytes(const fs::path& path, const std::string& data, fs::perms perms) {
  std::ofstream(path, std::ios::binary) << data;
  fs::permissions(path, perms);
}

unsigned ModeOf(const fs::path& path) {
  struct stat st {};

  EXPECT_EQ(::stat(path.c_str(), &st), 0);
  return st.st_mode & 07777;
}

SecretBytes Secret(std::string_view text) {
  return SecretBytes(AsBytes(text), SecretAccess::ForCrypto());
}

std::string Text(const SecretBytes& s) {
  return std::string(AsText(s.Expose(SecretAccess::ForCrypto())));
}

KeyEncryptionKey NewKek(Rng& rng) {
  return KeyEncryptionKey::FromSecret(RandomSecret(rng, kKekSize));
}

constexpr std::string_view kOpenFailure = "sealed value does not verify (wrong key or tampered)";

void ExpectVerifyFailure(const Result<SecretBytes>& r) {
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kCrypto);
  EXPECT_EQ(r.error().code, Errc::kCryptoFailed);
  EXPECT_EQ(r.error().detail, kOpenFailure);
}

class AeadTest : public ::testing::Test {
 protected:
  SystemRng rng_;
  KeyEncryptionKey kek_ = NewKek(rng_);
};

TEST_F(AeadTest, RoundTrip) {
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 32u, 1000u}) {
    SecretBytes pt = RandomSecret(rng_, n);
    auto sealed = kek_.Seal(pt, "kpm|device-1", rng_);
    ASSERT_TRUE(sealed.has_value());
    ASSERT_EQ(sealed->size(), 1 + 12 + n + 16);
    EXPECT_EQ((*sealed)[0], 0x01);
    auto opened = kek_.Open(*sealed, "kpm|device-1");
    ASSERT_TRUE(opened.has_value()) << Describe(opened.error());
    EXPECT_TRUE(opened->Equals(pt));
  }
}

TEST_F(AeadTest, EmptyAadRoundTrips) {
  auto sealed = kek_.Seal(Secret("value"), "", rng_);
  ASSERT_TRUE(sealed.has_value());
  auto opened = kek_.Open(*sealed, "");
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(Text(*opened), "value");
  ExpectVerifyFailure(kek_.Open(*sealed, "x"));
}

TEST_F(AeadTest, NonceIsFreshAndCiphertextHidesPlaintext) {
  SecretBytes pt = Secret("the same secret value");
  auto a = kek_.Seal(pt, "aad", rng_);
  auto b = kek_.Seal(pt, "aad", rng_);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_NE(Bytes(a->begin() + 1, a->begin() + 13), Bytes(b->begin() + 1, b->begin() + 13));
  EXPECT_NE(*a, *b);
  std::string sealed_text(AsText(*a));
  EXPECT_EQ(sealed_text.find("secret"), std::string::npos);
}

TEST_F(AeadTest, WrongAadFails) {
  auto sealed = kek_.Seal(Secret("k"), "kpm|device-1", rng_);
  ASSERT_TRUE(sealed.has_value());
  ExpectVerifyFailure(kek_.Open(*sealed, "kpm|device-2"));
  ExpectVerifyFailure(kek_.Open(*sealed, "kpm|device-1 "));
  ExpectVerifyFailure(kek_.Open(*sealed, ""));
}

TEST_F(AeadTest, WrongKeyFails) {
  auto sealed = kek_.Seal(Secret("k"), "aad", rng_);
  ASSERT_TRUE(sealed.has_value());
  KeyEncryptionKey other = NewKek(rng_);
  ExpectVerifyFailure(other.Open(*sealed, "aad"));
}

TEST_F(AeadTest, EveryFlippedBitOfTheBodyFails) {
  auto sealed = kek_.Seal(Secret("0123456789abcdef0123"), "aad", rng_);
  ASSERT_TRUE(sealed.has_value());
  for (size_t i = 0; i < sealed->size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      Bytes tampered = *sealed;
      tampered[i] = static_cast<uint8_t>(tampered[i] ^ mask);
      auto r = kek_.Open(tampered, "aad");
      ASSERT_FALSE(r.has_value()) << "byte " << i << " mask " << int{mask};
      if (i == 0) {
        EXPECT_EQ(r.error().code, Errc::kUnsupported);
      } else {
        ExpectVerifyFailure(r);
      }
    }
  }
}

TEST_F(AeadTest, TruncationAtEveryLengthFails) {
  auto sealed = kek_.Seal(Secret("0123456789abcdef0123"), "aad", rng_);
  ASSERT_TRUE(sealed.has_value());
  for (size_t n = 0; n < sealed->size(); ++n) {
    auto r = kek_.Open(ByteSpan(sealed->data(), n), "aad");
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().kind, ErrorKind::kCrypto) << n;
  }
  Bytes extended = *sealed;
  extended.push_back(0);
  ExpectVerifyFailure(kek_.Open(extended, "aad"));
}

TEST_F(AeadTest, WrongVersionFails) {
  auto sealed = kek_.Seal(Secret("k"), "aad", rng_);
  ASSERT_TRUE(sealed.has_value());
  for (uint8_t v : {uint8_t{0x00}, uint8_t{0x02}, uint8_t{0xff}}) {
    Bytes other = *sealed;
    other[0] = v;
    auto r = kek_.Open(other, "aad");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::kUnsupported);
  }
}

TEST_F(AeadTest, WrongKekSizeIsAnInternalError) {
  KeyEncryptionKey bad = KeyEncryptionKey::FromSecret(SecretBytes(16));
  auto sealed = bad.Seal(Secret("k"), "aad", rng_);
  ASSERT_FALSE(sealed.has_value());
  EXPECT_EQ(sealed.error().code, Errc::kInvariant);
  auto good = kek_.Seal(Secret("k"), "aad", rng_);
  ASSERT_TRUE(good.has_value());
  EXPECT_FALSE(bad.Open(*good, "aad").has_value());
}

// ---- KEK file ----------------------------------------------------------------------------------

TEST_F(AeadTest, KekFileIsCreatedWithMode0600AndLoads) {
  TempDir dir;
  fs::path path = dir.path() / "kek";
  ASSERT_TRUE(KeyEncryptionKey::CreateFile(path, rng_).has_value());
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(fs::file_size(path), kKekSize);

  auto a = KeyEncryptionKey::LoadFile(path);
  ASSERT_TRUE(a.has_value()) << Describe(a.error());
  auto b = KeyEncryptionKey::LoadFile(path);
  ASSERT_TRUE(b.has_value());
  auto sealed = a->Seal(Secret("kpm"), "aad", rng_);
  ASSERT_TRUE(sealed.has_value());
  auto opened = b->Open(*sealed, "aad");
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(Text(*opened), "kpm");

  // The file holds exactly the key bytes.
  std::ifstream in(path, std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  KeyEncryptionKey from_raw = KeyEncryptionKey::FromSecret(Secret(raw));
  EXPECT_TRUE(from_raw.Open(*sealed, "aad").has_value());
}

TEST_F(AeadTest, KekFileModeIgnoresUmask) {
  TempDir dir;
  mode_t old = ::umask(0);
  auto r = KeyEncryptionKey::CreateFile(dir.path() / "kek", rng_);
  ::umask(old);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(ModeOf(dir.path() / "kek"), 0600u);
}

TEST_F(AeadTest, CreateFileRefusesToOverwrite) {
  TempDir dir;
  fs::path path = dir.path() / "kek";
  WriteBytes(path, std::string(32, 'k'), fs::perms::owner_read | fs::perms::owner_write);
  auto r = KeyEncryptionKey::CreateFile(path, rng_);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kLocalUsage);
  EXPECT_EQ(r.error().code, Errc::kConflict);
  std::ifstream in(path, std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(raw, std::string(32, 'k'));
}

TEST_F(AeadTest, LoadFileRefusesGroupOrOtherAccess) {
  TempDir dir;
  fs::path path = dir.path() / "kek";
  ASSERT_TRUE(KeyEncryptionKey::CreateFile(path, rng_).has_value());
  for (unsigned mode : {0644u, 0640u, 0604u, 0620u, 0602u, 0610u, 0601u}) {
    fs::permissions(path, static_cast<fs::perms>(mode));
    auto r = KeyEncryptionKey::LoadFile(path);
    ASSERT_FALSE(r.has_value()) << std::oct << mode;
    EXPECT_EQ(r.error().kind, ErrorKind::kLocalUsage);
    EXPECT_EQ(r.error().code, Errc::kConfig);
    EXPECT_NE(r.error().detail.find(path.string()), std::string::npos) << r.error().detail;
    EXPECT_NE(r.error().detail.find("group or others"), std::string::npos) << r.error().detail;
  }
  fs::permissions(path, static_cast<fs::perms>(0400));
  EXPECT_TRUE(KeyEncryptionKey::LoadFile(path).has_value());
}

TEST_F(AeadTest, LoadFileRefusesWrongSize) {
  TempDir dir;
  for (size_t n : {0u, 1u, 31u, 33u, 64u}) {
    fs::path path = dir.path() / ("kek" + std::to_string(n));
    WriteBytes(path, std::string(n, 'k'), fs::perms::owner_read | fs::perms::owner_write);
    auto r = KeyEncryptionKey::LoadFile(path);
    ASSERT_FALSE(r.has_value()) << n;
    EXPECT_EQ(r.error().code, Errc::kConfig);
    EXPECT_NE(r.error().detail.find(path.string()), std::string::npos) << r.error().detail;
  }
}

TEST_F(AeadTest, LoadFileRefusesMissingFileAndDirectory) {
  TempDir dir;
  auto missing = KeyEncryptionKey::LoadFile(dir.path() / "absent");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::kConfig);
  EXPECT_NE(missing.error().detail.find("absent"), std::string::npos);

  fs::path sub = dir.path() / "sub";
  fs::create_directory(sub);
  fs::permissions(sub, fs::perms::owner_all);
  auto directory = KeyEncryptionKey::LoadFile(sub);
  ASSERT_FALSE(directory.has_value());
  EXPECT_EQ(directory.error().code, Errc::kConfig);
}

}  // namespace
}  // namespace mte::crypto
