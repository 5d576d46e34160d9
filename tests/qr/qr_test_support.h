// Certificates and pins made with the openssl command-line tool, and runs of the independent
// QR tools, for the QR tests.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "crypto/openssl_cli.h"
#include "testlib/temp_dir.h"

namespace mte::qr::test {

using testlib::Q;
using testlib::RunCommand;

// A self-signed certificate (PEM text) from `openssl req`; key_args e.g. "rsa:4096" or
// "ec -pkeyopt ec_paramgen_curve:P-256".
inline std::string MakeCert(const testlib::TempDir& dir, const std::string& name,
                            const std::string& key_args) {
  std::string crt = dir.File(name + ".crt");
  auto r = RunCommand("openssl req -x509 -newkey " + key_args + " -nodes -subj '/CN=" + name +
                      "' -days 2 -keyout " + Q(dir.File(name + ".key")) + " -out " + Q(crt));
  EXPECT_EQ(r.status, 0) << r.output;
  return testlib::ReadText(crt);
}

// The pin of a PEM certificate file as the openssl CLI computes it (docs/qr.md §4).
inline std::string OpensslPin(const std::string& crt_file) {
  auto r = RunCommand("openssl x509 -in " + Q(crt_file) +
                      " -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 "
                      "-binary | basenc --base64url | tr -d '=\\n'");
  EXPECT_EQ(r.status, 0) << r.output;
  return r.output;
}

// Runs a shell command that must succeed; its output.
inline std::string Must(const std::string& command) {
  auto r = RunCommand(command);
  EXPECT_EQ(r.status, 0) << command << "\n" << r.output;
  return r.output;
}

// zbarimg's reading of a picture (the data of each code, one per line, without the last newline).
inline std::string Zbarimg(const std::string& file) {
  // zbarimg may complain on stderr about a missing D-Bus; only its stdout counts.
  std::string out = Must("{ zbarimg --nodbus --quiet --raw -Sdisable -Sqrcode.enable " + Q(file) + "; } 2>/dev/null");
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace mte::qr::test
