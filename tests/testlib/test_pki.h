// A throw-away PKI generated at run time with crypto::CreateDevPki (docs/conventions.md §1): a CA, a server
// certificate for a given FQDN, a client certificate, a server certificate that names another
// FQDN, and a second, unrelated CA with its own client certificate. Files live in a fresh
// temporary directory that is removed when the TestPki is destroyed.
// Thread-safety: immutable after Create().
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "base/result.h"

namespace mte::testlib {

class TestPki {
 public:
  // `server_fqdn` becomes the server certificate's only subjectAltName dNSName.
  static Result<std::unique_ptr<TestPki>> Create(std::string server_fqdn = "mef.example.test");
  ~TestPki();
  TestPki(const TestPki&) = delete;
  TestPki& operator=(const TestPki&) = delete;

  const std::string& server_fqdn() const { return server_fqdn_; }
  // The FQDN named by misnamed_server_cert(), and the client certificate's dNSName.
  static constexpr const char* kOtherFqdn = "other.example.test";
  static constexpr const char* kClientDnsName = "device-1.example.test";

  std::string ca_cert() const { return Path("ca/ca.crt"); }
  std::string server_cert() const { return Path("ca/server.crt"); }
  std::string server_key() const { return Path("ca/server.key"); }
  std::string client_cert() const { return Path("ca/client.crt"); }
  std::string client_key() const { return Path("ca/client.key"); }
  // Issued by ca_cert() for kOtherFqdn.
  std::string misnamed_server_cert() const { return Path("ca/misnamed.crt"); }
  std::string misnamed_server_key() const { return Path("ca/misnamed.key"); }
  // The unrelated CA and a client certificate (SAN kClientDnsName) it issued.
  std::string other_ca_cert() const { return Path("other/ca.crt"); }
  std::string other_client_cert() const { return Path("other/client.crt"); }
  std::string other_client_key() const { return Path("other/client.key"); }

  // The whole file as text (e.g. a CA certificate for TlsClientOptions::trust_pem).
  static std::string ReadFile(const std::string& path);

 private:
  TestPki() = default;
  std::string Path(const char* relative) const { return (dir_ / relative).string(); }
  std::filesystem::path dir_;
  std::string server_fqdn_;
};

}  // namespace mte::testlib
