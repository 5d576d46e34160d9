#include "crypto/pki.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <set>
#include <string_view>
#include <system_error>

#include "base/bytes.h"
#include "base/secret.h"
#include "base/file.h"
#include "crypto/internal/cert_build.h"
#include "crypto/ossl.h"

namespace mte::crypto {
namespace {

using internal::AddExtension;
using internal::AddYears;
using internal::CertificatePem;
using internal::CheckCommonName;
using internal::GenerateP256Key;
using internal::PrivateKeyPem;
using internal::Sign;

// A certificate valid [not_before, not_after] (internal::NewCertificate in Unix seconds).
Result<X509Ptr> NewCertificate(const std::string& cn, EVP_PKEY* key, const X509_NAME* issuer_name,
                               SystemTime not_before, SystemTime not_after) {
  return internal::NewCertificate(cn, key, issuer_name, UnixSeconds(not_before),
                                  UnixSeconds(not_after));
}

constexpr int kCaValidityYears = 10;
constexpr int kLeafValidityYears = 2;
constexpr auto kBackdate = std::chrono::hours(1);  // tolerate peers whose clocks run behind
constexpr size_t kMaxDnsName = 253;
constexpr size_t kMaxDnsLabel = 63;
constexpr size_t kMaxStem = 64;
constexpr mode_t kKeyMode = 0600;
constexpr mode_t kCertMode = 0644;

Error ConfigError(std::string detail) {
  return Error{ErrorKind::kLocalUsage, Errc::kConfig, std::move(detail)};
}

// ---- input validation -------------------------------------------------------------------------

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// A host name (RFC 1123 §2.1 labels). TS-0003 §10.1.1 forbids wildcards.
Result<void> CheckDnsName(std::string_view name) {
  const std::string quoted = "'" + std::string(name) + "'";
  if (name.find('*') != std::string_view::npos) {
    return Fail(ConfigError("DNS name " + quoted +
                            " is a wildcard; TS-0003 §10.1.1 forbids wildcard certificates"));
  }
  if (name.empty() || name.size() > kMaxDnsName) {
    return Fail(ConfigError("DNS name " + quoted + " must be 1 to 253 characters"));
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) {
      dot = name.size();
    }
    std::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > kMaxDnsLabel || label.front() == '-' ||
        label.back() == '-') {
      return Fail(ConfigError("DNS name " + quoted + " has an invalid label"));
    }
    for (char c : label) {
      if (!IsAsciiAlnum(c) && c != '-') {
        return Fail(
            ConfigError("DNS name " + quoted + " may contain only letters, digits, '-' and '.'"));
      }
    }
    start = dot + 1;
  }
  return {};
}

// Dotted-quad IPv4 with decimal parts 0..255 and no leading zeros.
bool IsStrictIpv4(std::string_view s) {
  int parts = 0;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view part = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (part.empty() || part.size() > 3 || (part.size() > 1 && part[0] == '0')) {
      return false;
    }
    int value = 0;
    for (char c : part) {
      if (c < '0' || c > '9') {
        return false;
      }
      value = value * 10 + (c - '0');
    }
    if (value > 255) {
      return false;
    }
    ++parts;
    if (dot == std::string_view::npos) {
      break;
    }
    start = dot + 1;
  }
  return parts == 4;
}

// Parses an IP address into the octets of an iPAddress GeneralName (RFC 5280 §4.2.1.6).
Result<Asn1StringPtr> ParseIpAddress(const std::string& ip) {
  const bool v6 = ip.find(':') != std::string::npos;
  bool plausible =
      v6 ? ip.find_first_not_of("0123456789abcdefABCDEF:.") == std::string::npos : IsStrictIpv4(ip);
  ERR_clear_error();
  Asn1StringPtr octets(plausible ? a2i_IPADDRESS(ip.c_str()) : nullptr);
  if (!octets) {
    ERR_clear_error();
    return Fail(ConfigError("'" + ip + "' is not an IPv4 or IPv6 address"));
  }
  return octets;
}

Result<void> CheckStem(std::string_view stem) {
  const std::string quoted = "'" + std::string(stem) + "'";
  if (stem.empty() || stem.size() > kMaxStem || stem.front() == '.') {
    return Fail(ConfigError("file stem " + quoted +
                            " must be 1 to 64 characters, not starting "
                            "with '.'"));
  }
  for (char c : stem) {
    if (!IsAsciiAlnum(c) && c != '-' && c != '_' && c != '.') {
      return Fail(ConfigError("file stem " + quoted +
                              " may contain only letters, digits, '-', '_' and '.'"));
    }
  }
  if (stem == "ca") {
    return Fail(ConfigError("file stem 'ca' is reserved for the CA"));
  }
  return {};
}

Result<void> CheckLeaf(const LeafSpec& leaf) {
  MTE_TRY(CheckStem(leaf.file_stem));
  MTE_TRY(CheckCommonName(leaf.common_name, "leaf common name"));
  if (leaf.dns_names.empty() && leaf.ip_addresses.empty()) {
    return Fail(
        ConfigError("leaf '" + leaf.file_stem + "' needs at least one DNS name or IP address"));
  }
  for (const auto& name : leaf.dns_names) {
    MTE_TRY(CheckDnsName(name));
  }
  for (const auto& ip : leaf.ip_addresses) {
    MTE_TRY(ParseIpAddress(ip));
  }
  if (!leaf.server_auth && !leaf.client_auth) {
    return Fail(
        ConfigError("leaf '" + leaf.file_stem + "' must allow serverAuth, clientAuth or both"));
  }
  return {};
}

// ---- certificate building ---------------------------------------------------------------------

Result<void> AddSubjectAltName(X509* cert, const LeafSpec& leaf) {
  GeneralNamesPtr names(GENERAL_NAMES_new());
  if (!names) {
    return Fail(OsslError("GENERAL_NAMES_new"));
  }
  auto push = [&](int type, Asn1StringPtr value) -> Result<void> {
    GeneralNamePtr name(GENERAL_NAME_new());
    if (!name) {
      return Fail(OsslError("GENERAL_NAME_new"));
    }
    GENERAL_NAME_set0_value(name.get(), type, value.release());  // now owned by `name`
    if (sk_GENERAL_NAME_push(names.get(), name.get()) <= 0) {
      return Fail(OsslError("subjectAltName push"));
    }
    static_cast<void>(name.release());  // now owned by `names`
    return {};
  };
  for (const auto& dns : leaf.dns_names) {
    Asn1StringPtr ia5(ASN1_IA5STRING_new());
    if (!ia5 || ASN1_STRING_set(ia5.get(), dns.data(), static_cast<int>(dns.size())) != 1) {
      return Fail(OsslError("subjectAltName dNSName"));
    }
    MTE_TRY(push(GEN_DNS, std::move(ia5)));
  }
  for (const auto& ip : leaf.ip_addresses) {
    MTE_TRY_ASSIGN(Asn1StringPtr octets, ParseIpAddress(ip));
    MTE_TRY(push(GEN_IPADD, std::move(octets)));
  }
  // Not critical: the subject name is not empty (RFC 5280 §4.2.1.6).
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return Fail(OsslError("add subjectAltName"));
  }
  return {};
}

Result<X509Ptr> MakeCa(const std::string& name, EVP_PKEY* key, SystemTime not_before) {
  ERR_clear_error();
  MTE_TRY_ASSIGN(X509Ptr ca, NewCertificate(name, key, nullptr, not_before,
                                            AddYears(not_before, kCaValidityYears)));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca.get(), ca.get(), nullptr, nullptr, 0);
  MTE_TRY(AddExtension(ca.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  MTE_TRY(AddExtension(ca.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"));
  MTE_TRY(AddExtension(ca.get(), &ctx, NID_subject_key_identifier, "hash"));
  MTE_TRY(Sign(ca.get(), key));
  return ca;
}

Result<X509Ptr> MakeLeaf(const LeafSpec& leaf, EVP_PKEY* key, X509* ca, EVP_PKEY* ca_key,
                         SystemTime not_before) {
  ERR_clear_error();
  MTE_TRY_ASSIGN(X509Ptr cert,
                 NewCertificate(leaf.common_name, key, X509_get_subject_name(ca), not_before,
                                AddYears(not_before, kLeafValidityYears)));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca, cert.get(), nullptr, nullptr, 0);
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"));
  // TS-0003 §10.1.1: keyUsage at least digitalSignature (ECDHE_ECDSA needs nothing more).
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature"));
  const char* eku = leaf.server_auth && leaf.client_auth ? "serverAuth,clientAuth"
                    : leaf.server_auth                   ? "serverAuth"
                                                         : "clientAuth";
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_ext_key_usage, eku));
  MTE_TRY(AddSubjectAltName(cert.get(), leaf));
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  MTE_TRY(AddExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  MTE_TRY(Sign(cert.get(), ca_key));
  return cert;
}

// ---- PEM and files ----------------------------------------------------------------------------

struct PendingFile {
  std::filesystem::path path;
  Bytes public_data;        // certificates
  SecretBytes secret_data;  // private keys
  bool secret = false;
};

// Writes all files or none: files already written are removed if a later one fails.
Result<void> WriteAll(const std::vector<PendingFile>& files) {
  std::vector<std::filesystem::path> written;
  for (const auto& f : files) {
    auto r = f.secret
                 ? WriteNewFile(f.path, f.secret_data.Expose(SecretAccess::ForCrypto()), kKeyMode)
                 : WriteNewFile(f.path, f.public_data, kCertMode);
    if (!r.has_value()) {
      for (const auto& p : written) {
        ::unlink(p.c_str());
      }
      return r;
    }
    written.push_back(f.path);
  }
  return {};
}

}  // namespace

Result<void> CreateDevPki(const std::filesystem::path& dir, const std::string& ca_name,
                          const std::vector<LeafSpec>& leaves, SystemTime now) {
  // Validate everything before touching the file system.
  MTE_TRY(CheckCommonName(ca_name, "CA name"));
  std::set<std::string> stems;
  for (const auto& leaf : leaves) {
    MTE_TRY(CheckLeaf(leaf));
    if (!stems.insert(leaf.file_stem).second) {
      return Fail(ConfigError("file stem '" + leaf.file_stem + "' is used twice"));
    }
  }
  std::vector<std::filesystem::path> targets = {dir / "ca.crt", dir / "ca.key"};
  for (const auto& leaf : leaves) {
    targets.push_back(dir / (leaf.file_stem + ".crt"));
    targets.push_back(dir / (leaf.file_stem + ".key"));
  }
  for (const auto& target : targets) {
    std::error_code ec;
    if (std::filesystem::symlink_status(target, ec).type() !=
        std::filesystem::file_type::not_found) {
      return Fail(ErrorKind::kLocalUsage, Errc::kConflict,
                  QuotedPath(target) + " already exists; refusing to overwrite it");
    }
  }

  const SystemTime not_before = now - kBackdate;
  std::vector<PendingFile> files;
  MTE_TRY_ASSIGN(EvpPkeyPtr ca_key, GenerateP256Key());
  MTE_TRY_ASSIGN(X509Ptr ca, MakeCa(ca_name, ca_key.get(), not_before));
  MTE_TRY_ASSIGN(Bytes ca_pem, CertificatePem(ca.get()));
  {
    files.push_back({dir / "ca.crt", ca_pem, SecretBytes(), false});
    MTE_TRY_ASSIGN(SecretBytes key_pem, PrivateKeyPem(ca_key.get()));
    files.push_back({dir / "ca.key", Bytes(), std::move(key_pem), true});
  }
  for (const auto& leaf : leaves) {
    MTE_TRY_ASSIGN(EvpPkeyPtr key, GenerateP256Key());
    MTE_TRY_ASSIGN(X509Ptr cert, MakeLeaf(leaf, key.get(), ca.get(), ca_key.get(), not_before));
    // The chain a server sends: the leaf, then the CA (RFC 8446 §4.4.2 allows the root), so that
    // a device that trusts the CA by a pin of its key finds it in the handshake.
    MTE_TRY_ASSIGN(Bytes pem, CertificatePem(cert.get()));
    pem.insert(pem.end(), ca_pem.begin(), ca_pem.end());
    files.push_back({dir / (leaf.file_stem + ".crt"), std::move(pem), SecretBytes(), false});
    MTE_TRY_ASSIGN(SecretBytes key_pem, PrivateKeyPem(key.get()));
    files.push_back({dir / (leaf.file_stem + ".key"), Bytes(), std::move(key_pem), true});
  }

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir, ec)) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed,
                "cannot create directory " + QuotedPath(dir) + (ec ? ": " + ec.message() : ""));
  }
  return WriteAll(files);
}

}  // namespace mte::crypto
