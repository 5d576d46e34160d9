#include "testlib/test_pki.h"

#include <stdlib.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <system_error>

#include "crypto/pki.h"

namespace mte::testlib {

namespace fs = std::filesystem;

Result<std::unique_ptr<TestPki>> TestPki::Create(std::string server_fqdn) {
  std::string tmpl = (fs::temp_directory_path() / "mte-testpki-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return Fail(ErrorKind::kIo, Errc::kIoFailed, "mkdtemp failed for " + tmpl);
  }
  auto pki = std::unique_ptr<TestPki>(new TestPki());
  pki->dir_ = tmpl;
  pki->server_fqdn_ = std::move(server_fqdn);

  crypto::LeafSpec server;
  server.file_stem = "server";
  server.common_name = pki->server_fqdn_;
  server.dns_names = {pki->server_fqdn_};
  crypto::LeafSpec misnamed;
  misnamed.file_stem = "misnamed";
  misnamed.common_name = kOtherFqdn;
  misnamed.dns_names = {kOtherFqdn};
  crypto::LeafSpec client;
  client.file_stem = "client";
  client.common_name = "device-1";
  client.dns_names = {kClientDnsName};
  client.server_auth = false;
  client.client_auth = true;

  auto now = std::chrono::system_clock::now();
  MTE_TRY(
      crypto::CreateDevPki(pki->dir_ / "ca", "OpenMTE Test CA", {server, misnamed, client}, now));
  MTE_TRY(crypto::CreateDevPki(pki->dir_ / "other", "Unrelated Test CA", {client}, now));
  return pki;
}

TestPki::~TestPki() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string TestPki::ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace mte::testlib
