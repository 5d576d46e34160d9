// The nested handshake of a Flow B enrolment, in the raw OpenSSL API, shared by mte_bench_bare (in
// one thread over memory BIOs) and mte_bench_floor (over loopback TCP): the four SSL contexts, the
// PKI they use, and one TLS layer over memory BIOs.
//
// One "nested handshake" = outer TLS 1.3 with the MEF's ECDSA P-256 certificate (X25519), then,
// inside the outer session, an inner TLS 1.2 handshake of the RSPF:
//   kPpsk: TLS_PSK_WITH_AES_128_CBC_SHA256, TS-0003's mandatory PPSK suite;
//   kCert: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 (TS-0003 §10.2.3), mutually authenticated: the
//          MEF's certificate again, and a device certificate (P-256) that the server verifies
//          against the device CA during the handshake.
// The certificates come from crypto::CreateDevPki (the same generator as `mte init`) with the MEF
// leaf exactly as `mte init` specifies it; the suite and group lists and the common SSL_CTX
// settings are the product's own (crypto/tls_profile.h), and the per-context choices mirror
// src/crypto/tls_engine.cc (which list goes to which context, PSK callbacks, SNI, verification).
// Any failure ends the program with a message (these are benchmarks).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <filesystem>
#include <vector>

namespace mte::bench {

inline constexpr const char* kBenchFqdn = "mef.bench.test";

enum class Inner { kPpsk, kCert };

// The inner suite the device offers (and so the one negotiated).
const char* InnerCipher(Inner inner);

// Prints "<program>: what" and OpenSSL's error queue, and exits 1.
[[noreturn]] void DieSsl(const char* what);

// Writes the PKI into `dir`: ca.crt, mef.crt, mef.key as `mte init` makes them; for kCert also a
// maker's device CA (device-ca/) and one factory certificate (device/device.crt, device.key) as
// `mte admin pki` makes them.
void CreateNestedPki(const std::filesystem::path& dir, Inner inner);

// The PPSK Kpm both sides use (32 octets); random until set.
void SetBenchKpm(const unsigned char (&kpm)[32]);
void RandomBenchKpm();

// The MEF's listener context (apps/mte/main.cc: psk = true plus the MEF certificate).
SSL_CTX* OuterServerCtx(const std::filesystem::path& pki);
// The MEF's RSPF (inner) context: PSK only, or (kCert) the certificate RSPF's.
SSL_CTX* InnerServerCtx(Inner inner, const std::filesystem::path& pki);
// The device's outer context: trust the development CA, TLS 1.2 and 1.3 offered.
SSL_CTX* OuterClientCtx(const std::filesystem::path& pki);
// The device's inner context: TLS 1.2 only, InnerCipher(inner) only.
SSL_CTX* InnerClientCtx(Inner inner, const std::filesystem::path& pki);

// One TLS session over two memory BIOs (rbio: ciphertext in, wbio: ciphertext out).
struct Layer {
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // owned by ssl
  BIO* wbio = nullptr;  // owned by ssl
  bool done = false;    // handshake complete
};

// A new session of `ctx` in `layer`; a client names and verifies kBenchFqdn.
void NewLayer(Layer& layer, SSL_CTX* ctx, bool server);
// Advances a handshake; dies on a real error.
void Handshake(Layer& layer, const char* what);
// Appends everything pending in `from` to `to`.
void Drain(BIO* from, std::vector<unsigned char>& to);

}  // namespace mte::bench
