// The portal's optional second factor: TOTP (RFC 6238) with single-use recovery codes
// (docs/protocol.md §12). The TOTP secret is sealed under the KEK; recovery codes are kept as
// SHA-256 hashes of their 80 random bits; a TOTP time step is accepted at most once.
#include <spdlog/spdlog.h>

#include "base/bytes.h"
#include "crypto/keys.h"
#include "crypto/totp.h"
#include "portal/portal.h"

namespace mte {
namespace {

constexpr int kRecoveryCodeCount = 10;
constexpr size_t kRecoveryCodeBytes = 10;  // 80 bits: 16 base32 characters
constexpr std::string_view kIssuer = "OpenMTE";

std::string SecretAad(int64_t stakeholder_id) {
  return "totp|" + std::to_string(stakeholder_id);
}

// "abcd-efgh-ijkl-mnop": the 16 base32 characters of the code in groups of four.
std::string FormatRecoveryCode(ByteSpan code) {
  std::string text = Base32Encode(code);
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i > 0 && i % 4 == 0) out += '-';
    out += static_cast<char>(text[i] >= 'A' && text[i] <= 'Z' ? text[i] - 'A' + 'a' : text[i]);
  }
  SecureWipe(text.data(), text.size());
  return out;
}

bool IsTotpCode(std::string_view code) {
  if (code.size() != static_cast<size_t>(crypto::kTotpDigits)) return false;
  for (char c : code) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

Result<Portal::TotpSetup> Portal::BeginTotp(const store::StakeholderRecord& who,
                                            const std::string& peer_address) {
  SecretBytes secret(crypto::kTotpSecretSize);
  rng_.Fill(secret.ExposeMutable(SecretAccess::ForCrypto()));
  MTE_TRY_ASSIGN(Bytes sealed, kek_.Seal(secret, SecretAad(who.id), rng_));
  const int64_t now = UnixSeconds(clock_.Now());
  MTE_TRY(store_.BeginTotp(who.id, sealed, now,
                           {0, now, "stakeholder:" + who.name, "totp.setup",
                            "stakeholder " + who.name, "from " + peer_address}));
  TotpSetup setup;
  setup.secret_base32 = Base32Encode(secret.Expose(SecretAccess::ForCrypto()));
  setup.otpauth_uri = crypto::OtpauthUri(kIssuer, who.name, setup.secret_base32);
  return setup;
}

Result<Portal::TotpSetup> Portal::PendingTotp(const store::StakeholderRecord& who) {
  MTE_TRY_ASSIGN(auto totp, store_.FindTotp(who.id));
  if (!totp.has_value() || totp->confirmed) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kNotFound, "no TOTP setup is waiting");
  }
  MTE_TRY_ASSIGN(SecretBytes secret, kek_.Open(totp->secret_sealed, SecretAad(who.id)));
  TotpSetup setup;
  setup.secret_base32 = Base32Encode(secret.Expose(SecretAccess::ForCrypto()));
  setup.otpauth_uri = crypto::OtpauthUri(kIssuer, who.name, setup.secret_base32);
  return setup;
}

namespace {

// New recovery codes: their texts (for the stakeholder) and hashes (for the store).
std::pair<std::vector<std::string>, std::vector<Bytes>> MakeRecoveryCodes(Rng& rng) {
  std::vector<std::string> texts;
  std::vector<Bytes> hashes;
  for (int i = 0; i < kRecoveryCodeCount; ++i) {
    Bytes code(kRecoveryCodeBytes);
    rng.Fill(code);
    texts.push_back(FormatRecoveryCode(code));
    auto hash = crypto::Sha256(code);
    hashes.emplace_back(hash.begin(), hash.end());
    SecureWipe(code.data(), code.size());
  }
  return {std::move(texts), std::move(hashes)};
}

}  // namespace

Result<std::vector<std::string>> Portal::ConfirmTotp(const store::StakeholderRecord& who,
                                                     const SecretString& code,
                                                     const std::string& peer_address,
                                                     int64_t* retry_after) {
  MTE_TRY_ASSIGN(auto totp, store_.FindTotp(who.id));
  if (!totp.has_value() || totp->confirmed) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kNotFound,
                totp.has_value() ? "TOTP is already on" : "start the TOTP setup first");
  }
  const int64_t now = UnixSeconds(clock_.Now());
  const std::string account_key = "account:" + who.name;
  const std::string address_key = "address:" + peer_address;
  MTE_TRY(RefuseWhileLocked(account_key, address_key, now, "wrong codes", retry_after));
  MTE_TRY_ASSIGN(SecretBytes secret, kek_.Open(totp->secret_sealed, SecretAad(who.id)));
  MTE_TRY_ASSIGN(auto step,
                 crypto::MatchTotp(secret, code.Expose(SecretAccess::ForCrypto()), now));
  if (!step.has_value()) {
    MTE_TRY(RecordLoginFailure(account_key, address_key, now));
    return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                "the code is wrong: check the app's clock and give the code it shows now");
  }
  auto [texts, hashes] = MakeRecoveryCodes(rng_);
  MTE_TRY(store_.ConfirmTotp(who.id, *step, hashes,
                             {0, now, "stakeholder:" + who.name, "totp.enable",
                              "stakeholder " + who.name,
                              "from " + peer_address + "; " + std::to_string(texts.size()) +
                                  " recovery codes"}));
  spdlog::info("portal: '{}' turned TOTP on", who.name);
  return std::move(texts);
}

Result<void> Portal::CheckSecondFactor(const store::StakeholderRecord& who,
                                       const SecretString& code, const std::string& peer_address,
                                       int64_t* retry_after) {
  const int64_t now = UnixSeconds(clock_.Now());
  const std::string account_key = "account:" + who.name;
  const std::string address_key = "address:" + peer_address;
  MTE_TRY(RefuseWhileLocked(account_key, address_key, now, "wrong codes", retry_after));
  MTE_TRY_ASSIGN(auto totp, store_.FindTotp(who.id));
  if (!totp.has_value() || !totp->confirmed) {
    return Fail(ErrorKind::kPeerProtocol, Errc::kNotFound, "TOTP is not on for this account");
  }
  std::string_view text = code.Expose(SecretAccess::ForCrypto());
  if (IsTotpCode(text)) {
    MTE_TRY_ASSIGN(SecretBytes secret, kek_.Open(totp->secret_sealed, SecretAad(who.id)));
    MTE_TRY_ASSIGN(auto step, crypto::MatchTotp(secret, text, now));
    if (step.has_value()) {
      MTE_TRY_ASSIGN(const bool fresh, store_.UseTotpStep(who.id, *step));
      if (fresh) return {};
      MTE_TRY(RecordLoginFailure(account_key, address_key, now));
      spdlog::warn("portal: a used TOTP code for '{}' was given again from {}", who.name,
                   peer_address);
      return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed,
                  "this code has been used; wait for the app's next one");
    }
  } else if (auto decoded = Base32Decode(text);
             decoded.has_value() && decoded->size() == kRecoveryCodeBytes) {
    auto hash = crypto::Sha256(*decoded);
    SecureWipe(decoded->data(), decoded->size());
    const int left = totp->recovery_codes_left - 1;
    MTE_TRY_ASSIGN(const bool used,
                   store_.UseRecoveryCode(who.id, hash,
                                          {0, now, "stakeholder:" + who.name,
                                           "totp.recovery-code", "stakeholder " + who.name,
                                           "from " + peer_address + "; " + std::to_string(left) +
                                               " left"}));
    if (used) {
      spdlog::info("portal: '{}' used a recovery code from {}", who.name, peer_address);
      return {};
    }
  }
  MTE_TRY(RecordLoginFailure(account_key, address_key, now));
  spdlog::info("portal: wrong second-factor code for '{}' from {}", who.name, peer_address);
  return Fail(ErrorKind::kPeerAuth, Errc::kAuthFailed, "the TOTP or recovery code is wrong");
}

Result<void> Portal::DisableTotp(const store::StakeholderRecord& who, const SecretString& code,
                                 const std::string& peer_address, int64_t* retry_after) {
  MTE_TRY(CheckSecondFactor(who, code, peer_address, retry_after));
  const int64_t now = UnixSeconds(clock_.Now());
  MTE_TRY(store_.RemoveTotp(who.id, {0, now, "stakeholder:" + who.name, "totp.disable",
                                     "stakeholder " + who.name, "from " + peer_address}));
  spdlog::info("portal: '{}' turned TOTP off", who.name);
  return {};
}

Result<std::vector<std::string>> Portal::NewRecoveryCodes(const store::StakeholderRecord& who,
                                                          const SecretString& code,
                                                          const std::string& peer_address,
                                                          int64_t* retry_after) {
  MTE_TRY(CheckSecondFactor(who, code, peer_address, retry_after));
  auto [texts, hashes] = MakeRecoveryCodes(rng_);
  const int64_t now = UnixSeconds(clock_.Now());
  MTE_TRY(store_.ReplaceRecoveryCodes(
      who.id, hashes,
      {0, now, "stakeholder:" + who.name, "totp.recovery-codes", "stakeholder " + who.name,
       "from " + peer_address + "; " + std::to_string(texts.size()) + " new codes"}));
  return std::move(texts);
}

}  // namespace mte
