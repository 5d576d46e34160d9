// Development PKI: a P-256 CA and FQDN leaf certificates (TS-0003 §10.1.1: id-ecPublicKey on
// secp256r1, ECDSA with SHA-256, subjectAltName = the FQDN, no wildcards; keyUsage
// digitalSignature). Used by `mte init`; operators replace the files with their own.
// Thread-safety: free functions.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"

namespace mte::crypto {

struct LeafSpec {
  std::string file_stem;              // writes <stem>.crt and <stem>.key
  std::string common_name;
  std::vector<std::string> dns_names;  // subjectAltName dNSName entries (no wildcards allowed)
  std::vector<std::string> ip_addresses;  // subjectAltName iPAddress entries ("127.0.0.1", "::1")
  bool server_auth = true;            // extendedKeyUsage serverAuth
  bool client_auth = false;           // extendedKeyUsage clientAuth
};

// Creates <dir>/ca.crt, <dir>/ca.key and one key pair + certificate per leaf, signed by the CA.
// Keys are written PEM (PKCS#8, unencrypted) with mode 0600; certificates PEM with mode 0644,
// each <stem>.crt holding the leaf followed by the CA certificate (the chain its server sends).
// Validity: CA 10 years, leaves 2 years, from `now` minus 1 hour (clock skew).
Result<void> CreateDevPki(const std::filesystem::path& dir, const std::string& ca_name,
                          const std::vector<LeafSpec>& leaves, SystemTime now);

}  // namespace mte::crypto
