// A test PKI made with the openssl command-line tool, so that known answers come from an
// independent implementation rather than from the code under test.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <string>

#include "base/bytes.h"

namespace mte::testlib {

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

inline CommandResult RunCommand(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    return result;
  }
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    result.output.append(buf.data(), n);
  }
  result.status = ::pclose(pipe);
  return result;
}

inline std::string Q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

inline Bytes ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteBytes(const std::filesystem::path& path, ByteSpan data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

inline void WriteText(const std::filesystem::path& path, const std::string& text) {
  WriteBytes(path, AsBytes(text));
}

inline int64_t RealNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Extension sections for `openssl req/x509/ca -extfile ext.cnf -extensions <section>`.
inline constexpr const char* kExtensionsCnf = R"([req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityInfoAccess = OCSP;URI:http://ocsp.example.test:8080/ocsp
[leaf_bare]
basicConstraints = critical,CA:false
[leaf_no_ds]
basicConstraints = critical,CA:false
keyUsage = critical,keyAgreement
extendedKeyUsage = clientAuth
[leaf_server]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
[leaf_ca]
basicConstraints = critical,CA:true
keyUsage = critical,digitalSignature,keyCertSign
extendedKeyUsage = clientAuth
[ocsp_signer]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
[ocsp_not_signer]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
)";

// Certificates named <name>.crt/.key in one directory, made by the openssl CLI.
class CliPki {
 public:
  explicit CliPki(std::filesystem::path dir) : dir_(std::move(dir)) {
    WriteText(dir_ / "ext.cnf", kExtensionsCnf);
    std::filesystem::create_directories(dir_ / "newcerts");
    WriteText(dir_ / "ca-db.txt", "");
    WriteText(dir_ / "ca-serial", "5000\n");
    WriteText(dir_ / "ca.cnf", "[ca]\ndefault_ca = dev_ca\n[dev_ca]\ndir = " + dir_.string() +
                                   "\ndatabase = $dir/ca-db.txt\nnew_certs_dir = $dir/newcerts\n"
                                   "certificate = $dir/ca.crt\nprivate_key = $dir/ca.key\n"
                                   "serial = $dir/ca-serial\ndefault_md = sha256\n"
                                   "default_crl_days = 7\npolicy = policy_any\n"
                                   "unique_subject = no\n[policy_any]\ncommonName = supplied\n");
  }

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path Path(const std::string& file) const { return dir_ / file; }

  // Runs a command in the PKI directory; a failure is a test failure with the tool's output.
  bool Run(const std::string& command) const {
    CommandResult r = RunCommand("cd " + Q(dir_) + " && " + command);
    if (r.status != 0) {
      ADD_FAILURE() << command << "\n" << r.output;
      return false;
    }
    return true;
  }

  std::string Output(const std::string& command) const {
    return RunCommand("cd " + Q(dir_) + " && " + command).output;
  }

  static std::string KeyOpts(const std::string& key) {
    if (key == "rsa") {
      return "-newkey rsa:2048";
    }
    return "-newkey ec -pkeyopt ec_paramgen_curve:" + key;  // "P-256", "P-384"
  }

  // A self-signed certificate: a CA (section v3_ca) or a pinned leaf.
  bool SelfSigned(const std::string& name, const std::string& cn,
                  const std::string& section = "v3_ca", int days = 3650) const {
    return Run("openssl req -x509 -new " + KeyOpts("P-256") + " -nodes -keyout " + name +
               ".key -out " + name + ".crt -subj '/CN=" + cn + "' -days " + std::to_string(days) +
               " -sha256 -config ext.cnf -extensions " + section);
  }

  bool Csr(const std::string& name, const std::string& cn, const std::string& key) const {
    return Run("openssl req -new " + KeyOpts(key) + " -nodes -keyout " + name + ".key -out " +
               name + ".csr -subj '/CN=" + cn + "' -config ext.cnf");
  }

  // <name> signed by <issuer> with `openssl x509 -req`.
  bool Issue(const std::string& name, const std::string& cn, const std::string& issuer,
             const std::string& section, const std::string& serial_hex,
             const std::string& key = "P-256", const std::string& md = "sha256",
             int days = 365) const {
    return Csr(name, cn, key) &&
           Run("openssl x509 -req -in " + name + ".csr -CA " + issuer + ".crt -CAkey " + issuer +
               ".key -set_serial 0x" + serial_hex + " -days " + std::to_string(days) + " -" + md +
               " -extfile ext.cnf -extensions " + section + " -out " + name + ".crt");
  }

  // <name> signed by "ca" with `openssl ca` and explicit dates (YYMMDDHHMMSSZ).
  bool IssueDated(const std::string& name, const std::string& cn, const std::string& start,
                  const std::string& end) const {
    return Csr(name, cn, "P-256") && Run("openssl ca -batch -config ca.cnf -notext -in " + name +
                                         ".csr -out " + name + ".crt -startdate " + start +
                                         " -enddate " + end + " -extfile ext.cnf -extensions leaf");
  }

  // <name>.crt converted to DER by openssl (and written to <name>.der); cached.
  Bytes Der(const std::string& name) const {
    auto it = der_cache_.find(name);
    if (it != der_cache_.end()) {
      return it->second;
    }
    Run("openssl x509 -in " + name + ".crt -outform DER -out " + name + ".der");
    Bytes der = ReadBytes(Path(name + ".der"));
    if (!der.empty()) {
      der_cache_.emplace(name, der);
    }
    return der;
  }

  std::string Pem(const std::string& name) const { return ReadText(Path(name + ".crt")); }

  // One line of an `openssl ca`/`openssl ocsp -index` database (RFC 6960 responder state):
  // valid, or revoked at `revoked` ("YYMMDDHHMMSSZ[,reason]"), for serial `serial_hex`.
  static std::string IndexLine(const std::string& serial_hex, const std::string& cn,
                               const std::string& revoked = "") {
    return std::string(revoked.empty() ? "V" : "R") + "\t351231235959Z\t" + revoked + "\t" +
           serial_hex + "\tunknown\t/CN=" + cn + "\n";
  }

  // The DER answer of `openssl ocsp` acting as the responder of <ca> over `index` to the DER
  // `request`, signed by <signer> with `options` (e.g. "-nmin 10"). Empty (and a test failure)
  // when openssl fails. One run at a time per directory.
  Bytes OcspRespond(const Bytes& request, const std::string& signer = "ca",
                    const std::string& options = "-nmin 10", const std::string& ca = "ca",
                    const std::string& index = "index.txt") const {
    std::lock_guard lock(ocsp_mu_);
    WriteBytes(Path("ocsp-in.der"), request);
    std::filesystem::remove(Path("ocsp-out.der"));
    if (!Run("openssl ocsp -index " + index + " -CA " + ca + ".crt -rsigner " + signer +
             ".crt -rkey " + signer + ".key -reqin ocsp-in.der -respout ocsp-out.der " +
             options)) {
      return {};
    }
    return ReadBytes(Path("ocsp-out.der"));
  }

 private:
  std::filesystem::path dir_;
  mutable std::map<std::string, Bytes> der_cache_;
  mutable std::mutex ocsp_mu_;
};

}  // namespace mte::testlib
