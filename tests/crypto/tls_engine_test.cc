// crypto::TlsEngine, driven in memory (no sockets): PSK and certificate handshakes on TLS 1.2 and
// 1.3, the RFC 5705 / RFC 8446 §7.5 exporter, every authentication failure the engine must
// report, record corruption and truncation, application data, close_notify, misuse before the
// handshake, and TLS nested in TLS (docs/conventions.md §1). Peers that the engine cannot impersonate (no
// SNI, TLS 1.1) are plain OpenSSL clients built here.
#include "crypto/tls_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "crypto/openssl_cli.h"
#include "crypto/ossl.h"
#include "testlib/temp_dir.h"
#include "testlib/test_pki.h"
#include "testlib/tls_pair.h"

namespace mte::crypto {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testlib::HandshakeOutcome;
using testlib::PumpHandshake;
using testlib::Secret;
using testlib::TestPki;
using testlib::Transfer;

constexpr const char* kFqdn = "mef.example.test";
constexpr const char* kIdentity = "device-1@bootstrap.example.test";
constexpr const char* kKey = "0123456789abcdef0123456789abcdef";  // 32 octets
constexpr const char* kOtherKey = "fedcba9876543210fedcba9876543210";
constexpr const char* kBootstrapLabel = "EXPORTER-oneM2M-Bootstrap";

enum class Version { kTls12, kTls13 };

std::string VersionName(Version v) { return v == Version::kTls12 ? "TLSv1.2" : "TLSv1.3"; }

std::string ParamName(const ::testing::TestParamInfo<Version>& info) {
  return info.param == Version::kTls12 ? "Tls12" : "Tls13";
}

std::string Show(const Error& error) {
  return std::string(ToString(error.kind)) + "/" + Describe(error);
}

std::string Show(const std::optional<Error>& error) {
  return error ? Show(*error) : std::string("(none)");
}

std::string Show(const HandshakeOutcome& o) {
  return "client " + std::string(o.client_complete ? "complete" : "incomplete") + " error " +
         Show(o.client_error) + "; server " + (o.server_complete ? "complete" : "incomplete") +
         " error " + Show(o.server_error);
}

// Setup steps that must succeed; a failure ends the test (gtest reports the exception).
template <class T>
T Unwrap(Result<T> result, const std::string& what) {
  if (!result.has_value()) throw std::runtime_error(what + ": " + Show(result.error()));
  return std::move(result).value();
}

bool SameSecret(const SecretBytes& a, const SecretBytes& b) { return a.Equals(b); }

PskLookup LookupFor(std::string identity, std::string key) {
  return [identity = std::move(identity),
          key = std::move(key)](std::string_view id) -> std::optional<SecretBytes> {
    if (id == identity) return Secret(key);
    return std::nullopt;
  };
}

TlsServerOptions PskServerOptions() {
  TlsServerOptions o;
  o.server_name = kFqdn;
  o.psk = true;
  return o;
}

TlsClientOptions PskClientOptions(Version v, std::string identity = kIdentity) {
  TlsClientOptions o;
  o.server_name = kFqdn;
  o.psk_identity = std::move(identity);
  o.tls13 = v == Version::kTls13;
  return o;
}

std::unique_ptr<TlsEngine> ServerEngine(const TlsServerOptions& options, PskLookup lookup = {}) {
  auto context = Unwrap(TlsContext::Server(options), "server context");
  return Unwrap(TlsEngine::Server(context, std::move(lookup)), "server engine");
}

std::unique_ptr<TlsEngine> ClientEngine(const TlsClientOptions& options,
                                        std::optional<SecretBytes> psk = std::nullopt) {
  auto context = Unwrap(TlsContext::Client(options), "client context");
  return Unwrap(TlsEngine::Client(context, std::move(psk)), "client engine");
}

struct Pair {
  std::unique_ptr<TlsEngine> client;
  std::unique_ptr<TlsEngine> server;
  HandshakeOutcome outcome;
};

Pair Handshake(std::unique_ptr<TlsEngine> client, std::unique_ptr<TlsEngine> server) {
  Pair p{std::move(client), std::move(server), {}};
  p.outcome = PumpHandshake(*p.client, *p.server);
  return p;
}

// A PSK handshake: the client holds `client_key` for `identity`, the server knows only kIdentity
// with kKey.
Pair PskHandshake(Version v, const std::string& identity = kIdentity,
                  const std::string& client_key = kKey, const std::string& tls12_ciphers = "") {
  TlsClientOptions options = PskClientOptions(v, identity);
  options.tls12_ciphers = tls12_ciphers;
  return Handshake(ClientEngine(options, Secret(client_key)),
                   ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey)));
}

Bytes Pattern(size_t size) {
  Bytes out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>((i * 131u + 7u) & 0xff);
  return out;
}

// A plain OpenSSL client over memory BIOs, for peers the engine refuses to be.
class RawClient {
 public:
  // `max_version` e.g. TLS1_1_VERSION; `sni` empty = send no server_name.
  RawClient(int min_version, int max_version, const std::string& ciphers, const std::string& sni) {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (!ctx_) throw std::runtime_error("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx_.get(), min_version);
    SSL_CTX_set_max_proto_version(ctx_.get(), max_version);
    if (SSL_CTX_set_cipher_list(ctx_.get(), ciphers.c_str()) != 1) {
      throw std::runtime_error("cipher list " + ciphers);
    }
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_NONE, nullptr);
    ssl_.reset(SSL_new(ctx_.get()));
    BioPtr rbio(BIO_new(BIO_s_mem()));
    BioPtr wbio(BIO_new(BIO_s_mem()));
    if (!ssl_ || !rbio || !wbio) throw std::runtime_error("SSL_new / BIO_new");
    rbio_ = rbio.release();  // owned by ssl_ after SSL_set_bio
    wbio_ = wbio.release();
    BIO_set_mem_eof_return(rbio_, -1);
    SSL_set_bio(ssl_.get(), rbio_, wbio_);
    if (!sni.empty()) SSL_set_tlsext_host_name(ssl_.get(), sni.c_str());
    SSL_set_connect_state(ssl_.get());
  }

  // SSL_get_error() of one handshake step (SSL_ERROR_NONE once complete).
  int Step() {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_.get());
    int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), rc);
    ERR_clear_error();
    return err;
  }

  Bytes Take() {
    Bytes out(static_cast<size_t>(BIO_ctrl_pending(wbio_)));
    if (!out.empty()) {
      int n = BIO_read(wbio_, out.data(), static_cast<int>(out.size()));
      out.resize(n > 0 ? static_cast<size_t>(n) : 0);
    }
    return out;
  }

  void Feed(ByteSpan data) {
    if (!data.empty()) BIO_write(rbio_, data.data(), static_cast<int>(data.size()));
  }

  bool Complete() const { return SSL_is_init_finished(ssl_.get()) == 1; }

 private:
  SslCtxPtr ctx_;
  SslPtr ssl_;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
};

struct RawOutcome {
  bool client_complete = false;
  bool client_failed = false;
  std::optional<Error> server_error;
};

RawOutcome PumpRaw(RawClient& client, TlsEngine& server) {
  RawOutcome out;
  for (int round = 0; round < 16; ++round) {
    int err = client.Step();
    if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      out.client_failed = true;
    }
    server.FeedCiphertext(client.Take());
    if (auto r = server.Advance(); !r) {
      out.server_error = r.error();
      client.Feed(server.TakeCiphertext());
      if (client.Step() != SSL_ERROR_NONE) out.client_failed = true;
      break;
    }
    client.Feed(server.TakeCiphertext());
    if (out.client_failed || (client.Complete() && server.HandshakeComplete())) break;
  }
  out.client_complete = client.Complete() && !out.client_failed;
  return out;
}

// ---------------------------------------------------------------------------------------------
// PSK handshakes

TEST(TlsPskTest, Tls12PlainPskSuite) {
  Pair p = PskHandshake(Version::kTls12, kIdentity, kKey, "PSK-AES128-CBC-SHA256");
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  for (TlsEngine* e : {p.client.get(), p.server.get()}) {
    EXPECT_EQ(e->version(), "TLSv1.2");
    EXPECT_EQ(e->cipher(), "PSK-AES128-CBC-SHA256");  // TLS_PSK_WITH_AES_128_CBC_SHA256
  }
}

TEST(TlsPskTest, Tls12PrefersEcdhePsk) {
  Pair p = PskHandshake(Version::kTls12);
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  for (TlsEngine* e : {p.client.get(), p.server.get()}) {
    EXPECT_EQ(e->version(), "TLSv1.2");
    EXPECT_EQ(e->cipher(), "ECDHE-PSK-AES128-CBC-SHA256");
  }
}

TEST(TlsPskTest, Tls13ExternalPsk) {
  Pair p = PskHandshake(Version::kTls13);
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  for (TlsEngine* e : {p.client.get(), p.server.get()}) {
    EXPECT_EQ(e->version(), "TLSv1.3");
    EXPECT_EQ(e->cipher(), "TLS_AES_128_GCM_SHA256");  // the hash an external PSK is bound to
  }
}

class TlsPskVersionTest : public ::testing::TestWithParam<Version> {};

TEST_P(TlsPskVersionTest, BothSidesKnowIdentityAndServerName) {
  Pair p = PskHandshake(GetParam());
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  EXPECT_EQ(p.server->psk_identity(), kIdentity);
  EXPECT_EQ(p.client->psk_identity(), kIdentity);
  EXPECT_EQ(p.server->server_name(), kFqdn);
  EXPECT_EQ(p.server->version(), VersionName(GetParam()));
  EXPECT_TRUE(p.server->failure().empty()) << p.server->failure();
  EXPECT_TRUE(p.client->failure().empty()) << p.client->failure();
}

TEST_P(TlsPskVersionTest, WrongKeyFailsOnBothSides) {
  Pair p = PskHandshake(GetParam(), kIdentity, kOtherKey);
  EXPECT_FALSE(p.outcome.server_complete) << Show(p.outcome);
  ASSERT_TRUE(p.outcome.server_error.has_value()) << Show(p.outcome);
  EXPECT_EQ(p.outcome.server_error->kind, ErrorKind::kPeerAuth) << Show(p.outcome);
  EXPECT_EQ(p.outcome.server_error->code, Errc::kAuthFailed) << Show(p.outcome);
  EXPECT_FALSE(p.server->failure().empty());
  EXPECT_NE(p.server->failure(), "unknown PSK identity");  // the identity was known
  EXPECT_TRUE(p.outcome.client_error.has_value()) << Show(p.outcome);
  EXPECT_FALSE(p.client->failure().empty());
}

TEST_P(TlsPskVersionTest, UnknownIdentityFailsExactlyLikeAWrongKey) {
  // Wrong key: capture what the server tells the client.
  auto wrong_key_client = ClientEngine(PskClientOptions(GetParam()), Secret(kOtherKey));
  auto wrong_key_server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  auto unknown_client =
      ClientEngine(PskClientOptions(GetParam(), "device-9@bootstrap.example.test"), Secret(kKey));
  auto unknown_server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));

  HandshakeOutcome wrong = PumpHandshake(*wrong_key_client, *wrong_key_server);
  HandshakeOutcome unknown = PumpHandshake(*unknown_client, *unknown_server);

  EXPECT_FALSE(unknown.server_complete) << Show(unknown);
  EXPECT_FALSE(unknown.client_complete && !unknown.client_error) << Show(unknown);
  ASSERT_TRUE(unknown.server_error.has_value()) << Show(unknown);
  ASSERT_TRUE(unknown.client_error.has_value()) << Show(unknown);
  EXPECT_EQ(unknown_server->failure(), "unknown PSK identity");
  EXPECT_EQ(unknown_server->psk_identity(), "device-9@bootstrap.example.test");
  EXPECT_EQ(unknown.server_error->kind, ErrorKind::kPeerAuth);
  EXPECT_EQ(unknown.server_error->code, Errc::kAuthFailed);

  // Indistinguishable for the client: same round, same error class.
  ASSERT_TRUE(wrong.client_error.has_value()) << Show(wrong);
  EXPECT_EQ(unknown.rounds, wrong.rounds);
  EXPECT_EQ(unknown.client_error->kind, wrong.client_error->kind)
      << Show(unknown) << " vs " << Show(wrong);
  EXPECT_EQ(unknown.client_error->code, wrong.client_error->code)
      << Show(unknown) << " vs " << Show(wrong);
  EXPECT_EQ(unknown.client_complete, wrong.client_complete);
}

TEST_P(TlsPskVersionTest, UnknownIdentityAlertBytesEqualWrongKeyAlertBytes) {
  // Drive both handshakes by hand up to the server's failure and compare what it sends.
  auto run = [&](const std::string& identity, const std::string& key) {
    auto client = ClientEngine(PskClientOptions(GetParam(), identity), Secret(key));
    auto server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
    EXPECT_TRUE(client->Advance().has_value());
    for (int round = 0; round < 8; ++round) {
      server->FeedCiphertext(client->TakeCiphertext());
      if (!server->Advance()) return server->TakeCiphertext();
      client->FeedCiphertext(server->TakeCiphertext());
      if (!client->Advance()) break;
    }
    ADD_FAILURE() << "server did not fail for identity " << identity;
    return Bytes();
  };
  Bytes wrong_key_alert = run(kIdentity, kOtherKey);
  Bytes unknown_identity_alert = run("nobody@example.test", kKey);
  ASSERT_FALSE(wrong_key_alert.empty());
  EXPECT_EQ(unknown_identity_alert, wrong_key_alert);
  EXPECT_EQ(wrong_key_alert[0], 0x15);  // ContentType alert (RFC 8446 §5.1, RFC 5246 §6.2.1)
}

TEST_P(TlsPskVersionTest, EmptyLookupResultCountsAsUnknown) {
  auto client = ClientEngine(PskClientOptions(GetParam()), Secret(kKey));
  auto server = ServerEngine(PskServerOptions(), [](std::string_view) {
    return std::optional<SecretBytes>(SecretBytes());
  });
  HandshakeOutcome o = PumpHandshake(*client, *server);
  EXPECT_FALSE(o.server_complete) << Show(o);
  EXPECT_TRUE(o.server_error.has_value()) << Show(o);
  EXPECT_EQ(server->failure(), "unknown PSK identity");
}

TEST_P(TlsPskVersionTest, WrongServerNameFails) {
  TlsClientOptions options = PskClientOptions(GetParam());
  options.server_name = "other.example.test";
  auto client = ClientEngine(options, Secret(kKey));
  auto server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  HandshakeOutcome o = PumpHandshake(*client, *server);
  EXPECT_FALSE(o.server_complete);
  EXPECT_FALSE(o.client_complete);
  ASSERT_TRUE(o.server_error.has_value()) << Show(o);
  EXPECT_TRUE(o.client_error.has_value()) << Show(o);
  EXPECT_EQ(o.server_error->kind, ErrorKind::kPeerProtocol) << Show(o);
  EXPECT_THAT(server->failure(), HasSubstr("server_name"));
}

TEST_P(TlsPskVersionTest, ServerNameIsCaseInsensitive) {
  TlsClientOptions options = PskClientOptions(GetParam());
  options.server_name = "MEF.Example.TEST";
  auto client = ClientEngine(options, Secret(kKey));
  auto server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  HandshakeOutcome o = PumpHandshake(*client, *server);
  EXPECT_TRUE(o.BothComplete()) << Show(o);
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsPskVersionTest,
                         ::testing::Values(Version::kTls12, Version::kTls13), ParamName);

TEST(TlsPskTest, ClientWithoutKeyIsRefused) {
  auto context = Unwrap(TlsContext::Client(PskClientOptions(Version::kTls13)), "client context");
  EXPECT_FALSE(TlsEngine::Client(context, std::nullopt).has_value());
  EXPECT_FALSE(TlsEngine::Client(context, SecretBytes()).has_value());
  EXPECT_FALSE(TlsEngine::Client(context, testlib::PatternSecret(65, 1)).has_value());
  EXPECT_TRUE(TlsEngine::Client(context, testlib::PatternSecret(64, 1)).has_value());
}

TEST(TlsPskTest, MissingServerNameFails) {
  auto server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  RawClient client(TLS1_2_VERSION, TLS1_3_VERSION, "DEFAULT", /*sni=*/"");
  RawOutcome o = PumpRaw(client, *server);
  EXPECT_FALSE(o.client_complete);
  EXPECT_FALSE(server->HandshakeComplete());
  ASSERT_TRUE(o.server_error.has_value());
  EXPECT_EQ(o.server_error->kind, ErrorKind::kPeerProtocol) << Show(*o.server_error);
  EXPECT_THAT(server->failure(), HasSubstr("server_name"));
}

TEST(TlsPskTest, Tls11ClientIsRefused) {
  auto server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  RawClient client(TLS1_VERSION, TLS1_1_VERSION, "ALL:@SECLEVEL=0", kFqdn);
  RawOutcome o = PumpRaw(client, *server);
  EXPECT_FALSE(o.client_complete);
  EXPECT_TRUE(o.client_failed);
  EXPECT_FALSE(server->HandshakeComplete());
  ASSERT_TRUE(o.server_error.has_value());
  EXPECT_EQ(o.server_error->kind, ErrorKind::kPeerProtocol) << Show(*o.server_error);
  EXPECT_EQ(o.server_error->code, Errc::kUnsupported) << Show(*o.server_error);
}

// ---------------------------------------------------------------------------------------------
// Exporter (RFC 5705; RFC 8446 §7.5)

class TlsExporterTest : public ::testing::TestWithParam<Version> {};

TEST_P(TlsExporterTest, EqualOnBothEnds) {
  Pair p = PskHandshake(GetParam());
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  SecretBytes c = Unwrap(p.client->Export(kBootstrapLabel, 48), "client export");
  SecretBytes s = Unwrap(p.server->Export(kBootstrapLabel, 48), "server export");
  EXPECT_EQ(c.size(), 48u);
  EXPECT_EQ(s.size(), 48u);
  EXPECT_TRUE(SameSecret(c, s));
  SecretBytes zero(48);
  EXPECT_FALSE(SameSecret(c, zero));
}

TEST_P(TlsExporterTest, LabelContextAndSessionSeparate) {
  Pair p = PskHandshake(GetParam());
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  SecretBytes base = Unwrap(p.client->Export(kBootstrapLabel, 48), "export");
  SecretBytes other_label = Unwrap(p.client->Export("EXPORTER-oneM2M-Other", 48), "export");
  EXPECT_FALSE(SameSecret(base, other_label));

  const Bytes context = {0x01, 0x02, 0x03, 0x04};
  SecretBytes with_context_c = Unwrap(p.client->Export(kBootstrapLabel, 48, context), "export");
  SecretBytes with_context_s = Unwrap(p.server->Export(kBootstrapLabel, 48, context), "export");
  EXPECT_TRUE(SameSecret(with_context_c, with_context_s));
  EXPECT_FALSE(SameSecret(base, with_context_c));
  const Bytes other_context = {0x01, 0x02, 0x03, 0x05};
  SecretBytes with_other_context =
      Unwrap(p.client->Export(kBootstrapLabel, 48, other_context), "export");
  EXPECT_FALSE(SameSecret(with_context_c, with_other_context));

  Pair second = PskHandshake(GetParam());
  ASSERT_TRUE(second.outcome.BothComplete()) << Show(second.outcome);
  SecretBytes second_base = Unwrap(second.server->Export(kBootstrapLabel, 48), "export");
  EXPECT_FALSE(SameSecret(base, second_base));
}

TEST_P(TlsExporterTest, EmptyContextVersusNoContext) {
  Pair p = PskHandshake(GetParam());
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  SecretBytes none = Unwrap(p.client->Export(kBootstrapLabel, 32), "export");
  SecretBytes empty = Unwrap(p.client->Export(kBootstrapLabel, 32, ByteSpan()), "export");
  if (GetParam() == Version::kTls13) {
    // RFC 8446 §7.5: no context computes the same value as an empty context.
    EXPECT_TRUE(SameSecret(none, empty));
  } else {
    // RFC 5705 §4: an empty context still contributes its zero length.
    EXPECT_FALSE(SameSecret(none, empty));
  }
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsExporterTest,
                         ::testing::Values(Version::kTls12, Version::kTls13), ParamName);

// ---------------------------------------------------------------------------------------------
// Certificates

class TlsCertTest : public ::testing::TestWithParam<Version> {
 protected:
  static void SetUpTestSuite() { pki_ = Unwrap(TestPki::Create(kFqdn), "test PKI").release(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  static TlsServerOptions ServerOptions(bool require_client_cert = false) {
    TlsServerOptions o;
    o.server_name = kFqdn;
    o.cert_chain_pem_file = pki_->server_cert();
    o.key_pem_file = pki_->server_key();
    if (require_client_cert) o.client_ca_pem_file = pki_->ca_cert();
    return o;
  }

  TlsClientOptions ClientOptions(const std::string& trust) const {
    TlsClientOptions o;
    o.server_name = kFqdn;
    o.trust_pem_file = trust;
    o.tls13 = GetParam() == Version::kTls13;
    return o;
  }

  static TestPki* pki_;
};

TestPki* TlsCertTest::pki_ = nullptr;

TEST_P(TlsCertTest, ServerVerifiedWithTheRightCaAndName) {
  Pair p = Handshake(ClientEngine(ClientOptions(pki_->ca_cert())), ServerEngine(ServerOptions()));
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  EXPECT_EQ(p.client->version(), VersionName(GetParam()));
  EXPECT_EQ(p.server->version(), VersionName(GetParam()));
  EXPECT_EQ(p.client->cipher(), GetParam() == Version::kTls13 ? "TLS_AES_128_GCM_SHA256"
                                                              : "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(p.client->psk_identity(), "");
  EXPECT_EQ(p.server->psk_identity(), "");
  EXPECT_EQ(p.client->peer_dns_names(), std::vector<std::string>{kFqdn});
  EXPECT_TRUE(p.server->peer_dns_names().empty());  // no client certificate
}

TEST_P(TlsCertTest, TrustAnchorsAsPemText) {
  TlsClientOptions o = ClientOptions("");
  o.trust_pem = TestPki::ReadFile(pki_->ca_cert());
  Pair p = Handshake(ClientEngine(o), ServerEngine(ServerOptions()));
  EXPECT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
}

// Trust by pinned key (TlsClientOptions::trust_spki_sha256). The digests come from the openssl
// CLI: x509 -pubkey | pkey -pubin -outform DER | dgst -sha256.
class TlsPinTest : public TlsCertTest {
 protected:
  static Bytes Pin(const std::string& cert_file) {
    auto r = testlib::RunCommand("openssl x509 -in " + testlib::Q(cert_file) +
                                 " -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst "
                                 "-sha256 -r | cut -c1-64");
    EXPECT_EQ(r.status, 0) << r.output;
    return Unwrap(HexDecode(r.output.substr(0, 64)), "pin hex");
  }
  // A chain file: the first certificate of `chain` (the leaf) then the CA certificate, as a MEF
  // that sends its chain presents it.
  std::string ChainWithCa(const std::string& chain) {
    std::string file = dir_.File("chain.pem");
    testlib::WriteText(file, TestPki::ReadFile(LeafOnly(chain)) + TestPki::ReadFile(pki_->ca_cert()));
    return file;
  }
  // The first certificate of `chain` alone (the test PKI's files hold the leaf and the CA).
  std::string LeafOnly(const std::string& chain) {
    std::string file = dir_.File("leaf-only.pem");
    auto r = testlib::RunCommand("openssl x509 -in " + testlib::Q(chain) + " -out " +
                                 testlib::Q(file));
    EXPECT_EQ(r.status, 0) << r.output;
    return file;
  }
  TlsClientOptions PinnedOptions(std::vector<Bytes> pins) const {
    TlsClientOptions o = ClientOptions("");
    o.trust_spki_sha256 = std::move(pins);
    return o;
  }
  testlib::TempDir dir_;
};

TEST_P(TlsPinTest, APinnedCaInThePresentedChainVerifiesIt) {
  TlsServerOptions so = ServerOptions();
  so.cert_chain_pem_file = ChainWithCa(pki_->server_cert());
  Pair p = Handshake(ClientEngine(PinnedOptions({Pin(pki_->other_ca_cert()), Pin(pki_->ca_cert())})),
                     ServerEngine(so));
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  EXPECT_EQ(p.client->peer_dns_names(), std::vector<std::string>{kFqdn});
}

TEST_P(TlsPinTest, APinnedLeafKeyIsEnough) {
  Pair p = Handshake(ClientEngine(PinnedOptions({Pin(pki_->server_cert())})),
                     ServerEngine(ServerOptions()));
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
}

TEST_P(TlsPinTest, APinOfAKeyNotPresentedFails) {
  // The CA is pinned, but the server sends its leaf only.
  TlsServerOptions leaf_only = ServerOptions();
  leaf_only.cert_chain_pem_file = LeafOnly(pki_->server_cert());
  Pair only_leaf = Handshake(ClientEngine(PinnedOptions({Pin(pki_->ca_cert())})),
                             ServerEngine(leaf_only));
  EXPECT_FALSE(only_leaf.outcome.client_complete) << Show(only_leaf.outcome);
  EXPECT_THAT(only_leaf.client->failure(), HasSubstr("pinned key"));
  TlsServerOptions so = ServerOptions();
  so.cert_chain_pem_file = ChainWithCa(pki_->server_cert());
  Pair other = Handshake(ClientEngine(PinnedOptions({Pin(pki_->other_ca_cert())})), ServerEngine(so));
  EXPECT_FALSE(other.outcome.client_complete) << Show(other.outcome);
  ASSERT_TRUE(other.outcome.client_error.has_value());
  EXPECT_EQ(other.outcome.client_error->kind, ErrorKind::kPeerAuth) << Show(other.outcome);
  EXPECT_THAT(other.client->failure(), HasSubstr("pinned key"));
}

TEST_P(TlsPinTest, APinnedCaDoesNotVouchForALeafItDidNotSign) {
  // A self-signed leaf for the right name, with the genuine CA certificate appended.
  std::string key = dir_.File("forged.key"), crt = dir_.File("forged.crt");
  auto r = testlib::RunCommand(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=" +
      std::string(kFqdn) + " -addext subjectAltName=DNS:" + kFqdn + " -keyout " + testlib::Q(key) +
      " -out " + testlib::Q(crt));
  ASSERT_EQ(r.status, 0) << r.output;
  TlsServerOptions so = ServerOptions();
  so.cert_chain_pem_file = ChainWithCa(crt);
  so.key_pem_file = key;
  Pair p = Handshake(ClientEngine(PinnedOptions({Pin(pki_->ca_cert())})), ServerEngine(so));
  EXPECT_FALSE(p.outcome.client_complete) << Show(p.outcome);
  EXPECT_THAT(p.client->failure(), HasSubstr("certificate verification failed"));
}

TEST_P(TlsPinTest, TheNameIsStillChecked) {
  TlsServerOptions so = ServerOptions();
  so.cert_chain_pem_file = ChainWithCa(pki_->misnamed_server_cert());
  so.key_pem_file = pki_->misnamed_server_key();
  Pair p = Handshake(ClientEngine(PinnedOptions({Pin(pki_->ca_cert())})), ServerEngine(so));
  EXPECT_FALSE(p.outcome.client_complete) << Show(p.outcome);
  EXPECT_THAT(p.client->failure(), HasSubstr("hostname mismatch"));
}

TEST_P(TlsPinTest, PinsAreExclusiveWithAnchorsAndHaveTheSizeOfSha256) {
  TlsClientOptions both = PinnedOptions({Pin(pki_->ca_cert())});
  both.trust_pem_file = pki_->ca_cert();
  EXPECT_FALSE(TlsContext::Client(both).has_value());
  TlsClientOptions short_pin = PinnedOptions({Bytes(31, 0)});
  EXPECT_FALSE(TlsContext::Client(short_pin).has_value());
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsPinTest, ::testing::Values(Version::kTls12, Version::kTls13),
                         ParamName);

TEST_P(TlsCertTest, WrongCaFails) {
  Pair p =
      Handshake(ClientEngine(ClientOptions(pki_->other_ca_cert())), ServerEngine(ServerOptions()));
  EXPECT_FALSE(p.outcome.client_complete) << Show(p.outcome);
  EXPECT_FALSE(p.outcome.server_complete) << Show(p.outcome);
  ASSERT_TRUE(p.outcome.client_error.has_value()) << Show(p.outcome);
  EXPECT_EQ(p.outcome.client_error->kind, ErrorKind::kPeerAuth) << Show(p.outcome);
  EXPECT_EQ(p.outcome.client_error->code, Errc::kAuthFailed) << Show(p.outcome);
  EXPECT_THAT(p.client->failure(), HasSubstr("certificate verification failed"));
  EXPECT_TRUE(p.outcome.server_error.has_value()) << Show(p.outcome);
}

TEST_P(TlsCertTest, CertificateForAnotherNameFails) {
  TlsServerOptions so = ServerOptions();
  so.cert_chain_pem_file = pki_->misnamed_server_cert();
  so.key_pem_file = pki_->misnamed_server_key();
  Pair p = Handshake(ClientEngine(ClientOptions(pki_->ca_cert())), ServerEngine(so));
  EXPECT_FALSE(p.outcome.client_complete) << Show(p.outcome);
  EXPECT_FALSE(p.outcome.server_complete) << Show(p.outcome);
  ASSERT_TRUE(p.outcome.client_error.has_value()) << Show(p.outcome);
  EXPECT_EQ(p.outcome.client_error->kind, ErrorKind::kPeerAuth) << Show(p.outcome);
  EXPECT_THAT(p.client->failure(), HasSubstr("hostname mismatch"));
}

TEST_P(TlsCertTest, MutualTlsWithoutClientCertificateFails) {
  Pair p = Handshake(ClientEngine(ClientOptions(pki_->ca_cert())),
                     ServerEngine(ServerOptions(/*require_client_cert=*/true)));
  EXPECT_FALSE(p.outcome.server_complete) << Show(p.outcome);
  ASSERT_TRUE(p.outcome.server_error.has_value()) << Show(p.outcome);
  EXPECT_EQ(p.outcome.server_error->kind, ErrorKind::kPeerAuth) << Show(p.outcome);
  EXPECT_EQ(p.outcome.server_error->code, Errc::kAuthFailed) << Show(p.outcome);
  // TLS 1.3 clients finish before the server checks them; the alert must still reach them.
  EXPECT_TRUE(p.outcome.client_error.has_value()) << Show(p.outcome);
}

TEST_P(TlsCertTest, MutualTlsWithClientCertificate) {
  TlsClientOptions o = ClientOptions(pki_->ca_cert());
  o.cert_chain_pem_file = pki_->client_cert();
  o.key_pem_file = pki_->client_key();
  Pair p = Handshake(ClientEngine(o), ServerEngine(ServerOptions(/*require_client_cert=*/true)));
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  EXPECT_EQ(p.server->peer_dns_names(), std::vector<std::string>{TestPki::kClientDnsName});
  EXPECT_EQ(p.client->peer_dns_names(), std::vector<std::string>{kFqdn});
}

TEST_P(TlsCertTest, MutualTlsWithClientCertificateFromAnotherCaFails) {
  TlsClientOptions o = ClientOptions(pki_->ca_cert());
  o.cert_chain_pem_file = pki_->other_client_cert();
  o.key_pem_file = pki_->other_client_key();
  Pair p = Handshake(ClientEngine(o), ServerEngine(ServerOptions(/*require_client_cert=*/true)));
  EXPECT_FALSE(p.outcome.server_complete) << Show(p.outcome);
  ASSERT_TRUE(p.outcome.server_error.has_value()) << Show(p.outcome);
  EXPECT_EQ(p.outcome.server_error->kind, ErrorKind::kPeerAuth) << Show(p.outcome);
  EXPECT_THAT(p.server->failure(), HasSubstr("certificate verification failed"));
  EXPECT_TRUE(p.server->peer_dns_names().empty());
}

TEST_P(TlsCertTest, PskClientRefusesAServerThatIgnoresThePsk) {
  // A server that does not take the offered PSK and authenticates with some certificate instead
  // (here one for another name, which a PSK client has no anchors to check) has not proved
  // knowledge of the PSK. The PSK client must not report an established session.
  TlsServerOptions so = ServerOptions();
  so.cert_chain_pem_file = pki_->misnamed_server_cert();
  so.key_pem_file = pki_->misnamed_server_key();
  Pair p = Handshake(ClientEngine(PskClientOptions(GetParam()), Secret(kKey)), ServerEngine(so));
  EXPECT_FALSE(p.outcome.client_complete && !p.outcome.client_error)
      << Show(p.outcome) << "; client version " << p.client->version() << " cipher "
      << p.client->cipher() << " psk_identity '" << p.client->psk_identity() << "'";
  EXPECT_TRUE(p.outcome.client_error.has_value()) << Show(p.outcome);
  EXPECT_FALSE(p.client->Export(kBootstrapLabel, 48).has_value() &&
               p.server->Export(kBootstrapLabel, 48).has_value())
      << "both ends derived keys without the PSK";
}

TEST_P(TlsCertTest, MissingServerNameFails) {
  auto server = ServerEngine(ServerOptions());
  RawClient client(TLS1_2_VERSION, GetParam() == Version::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION,
                   "DEFAULT", /*sni=*/"");
  RawOutcome o = PumpRaw(client, *server);
  EXPECT_FALSE(o.client_complete);
  EXPECT_FALSE(server->HandshakeComplete());
  ASSERT_TRUE(o.server_error.has_value());
  EXPECT_THAT(server->failure(), HasSubstr("server_name"));
}

TEST_P(TlsCertTest, MissingServerNameAcceptedWhenNotRequired) {
  TlsServerOptions so = ServerOptions();
  so.require_sni = false;
  auto server = ServerEngine(so);
  RawClient client(TLS1_2_VERSION, GetParam() == Version::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION,
                   "DEFAULT", /*sni=*/"");
  RawOutcome o = PumpRaw(client, *server);
  EXPECT_FALSE(o.server_error.has_value()) << Show(o.server_error);
  EXPECT_TRUE(o.client_complete);
  EXPECT_TRUE(server->HandshakeComplete());
  EXPECT_EQ(server->server_name(), "");
}

TEST_P(TlsCertTest, Tls11ClientIsRefused) {
  auto server = ServerEngine(ServerOptions());
  RawClient client(TLS1_VERSION, TLS1_1_VERSION, "ALL:@SECLEVEL=0", kFqdn);
  RawOutcome o = PumpRaw(client, *server);
  EXPECT_FALSE(o.client_complete);
  EXPECT_FALSE(server->HandshakeComplete());
  ASSERT_TRUE(o.server_error.has_value());
  EXPECT_EQ(o.server_error->kind, ErrorKind::kPeerProtocol) << Show(*o.server_error);
  EXPECT_EQ(o.server_error->code, Errc::kUnsupported) << Show(*o.server_error);
}

// The MEF port's one context (TS-0003 §8.3.2.1 and §8.3.2.2 on one listener): PSK, the server
// certificate, and a CertificateRequest whose chain the application judges after the handshake.
TlsServerOptions MefPortOptions(TestPki& pki, UnverifiedClientCert mode) {
  TlsServerOptions o;
  o.server_name = kFqdn;
  o.psk = true;
  o.cert_chain_pem_file = pki.server_cert();
  o.key_pem_file = pki.server_key();
  o.unverified_client_cert = mode;
  return o;
}

// The certificate as the file holds it, DER, decoded here with OpenSSL directly.
Bytes FileCertDer(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) throw std::runtime_error("cannot read " + path);
  unsigned char* der = nullptr;
  int n = i2d_X509(cert.get(), &der);
  OpensslBytesPtr owned(der);
  if (n <= 0) throw std::runtime_error("cannot encode " + path);
  return Bytes(der, der + n);
}

TEST_P(TlsCertTest, OneContextServesPskCertificateAndServerAuthOnlyClients) {
  const TlsServerOptions port = MefPortOptions(*pki_, UnverifiedClientCert::kOptional);
  // A PSK client: no CertificateRequest in a PSK handshake, and no peer certificate.
  Pair psk = Handshake(ClientEngine(PskClientOptions(GetParam()), Secret(kKey)),
                       ServerEngine(port, LookupFor(kIdentity, kKey)));
  ASSERT_TRUE(psk.outcome.BothComplete()) << Show(psk.outcome);
  EXPECT_EQ(psk.server->psk_identity(), kIdentity);
  EXPECT_TRUE(psk.server->peer_chain_der().empty());
  // A server-authentication-only client answers the CertificateRequest with no certificate.
  Pair plain = Handshake(ClientEngine(ClientOptions(pki_->ca_cert())), ServerEngine(port));
  ASSERT_TRUE(plain.outcome.BothComplete()) << Show(plain.outcome);
  EXPECT_TRUE(plain.server->peer_chain_der().empty());
  // A certificate client: its chain is taken as sent, even from a CA the server does not know
  // (the application judges it), leaf first and byte for byte the file's certificate.
  for (const auto& [cert, key] :
       {std::pair{pki_->client_cert(), pki_->client_key()},
        std::pair{pki_->other_client_cert(), pki_->other_client_key()}}) {
    TlsClientOptions o = ClientOptions(pki_->ca_cert());
    o.cert_chain_pem_file = cert;
    o.key_pem_file = key;
    Pair p = Handshake(ClientEngine(o), ServerEngine(port));
    ASSERT_TRUE(p.outcome.BothComplete()) << cert << ": " << Show(p.outcome);
    std::vector<Bytes> chain = p.server->peer_chain_der();
    ASSERT_FALSE(chain.empty()) << cert;
    EXPECT_EQ(chain.front(), FileCertDer(cert)) << cert;
    EXPECT_EQ(p.server->psk_identity(), "");
  }
}

TEST_P(TlsCertTest, RequiredUnverifiedClientCertificateFailsWithoutOne) {
  TlsServerOptions o = MefPortOptions(*pki_, UnverifiedClientCert::kRequired);
  o.psk = false;
  Pair p = Handshake(ClientEngine(ClientOptions(pki_->ca_cert())), ServerEngine(o));
  EXPECT_FALSE(p.outcome.server_complete) << Show(p.outcome);
  EXPECT_TRUE(p.outcome.server_error.has_value()) << Show(p.outcome);
}

TEST_P(TlsCertTest, StaplesTheSourcesResponseOnlyWhenAsked) {
  auto response = std::make_shared<const Bytes>(Pattern(300));
  TlsServerOptions so = ServerOptions();
  so.ocsp_staple = [response] { return response; };
  TlsClientOptions asking = ClientOptions(pki_->ca_cert());
  asking.request_ocsp_staple = true;
  Pair p = Handshake(ClientEngine(asking), ServerEngine(so));
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  EXPECT_EQ(p.client->stapled_ocsp_response(), *response);  // RFC 6066 §8
  Pair quiet = Handshake(ClientEngine(ClientOptions(pki_->ca_cert())), ServerEngine(so));
  ASSERT_TRUE(quiet.outcome.BothComplete()) << Show(quiet.outcome);
  EXPECT_TRUE(quiet.client->stapled_ocsp_response().empty());
  // A source with nothing to staple: the handshake goes on without one.
  so.ocsp_staple = [] { return std::shared_ptr<const Bytes>(); };
  Pair none = Handshake(ClientEngine(asking), ServerEngine(so));
  ASSERT_TRUE(none.outcome.BothComplete()) << Show(none.outcome);
  EXPECT_TRUE(none.client->stapled_ocsp_response().empty());
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsCertTest, ::testing::Values(Version::kTls12, Version::kTls13),
                         ParamName);

// ---------------------------------------------------------------------------------------------
// Records: truncation, corruption, garbage

class TlsRecordTest : public ::testing::TestWithParam<Version> {
 protected:
  std::unique_ptr<TlsEngine> NewClient() const {
    return ClientEngine(PskClientOptions(GetParam()), Secret(kKey));
  }
  static std::unique_ptr<TlsEngine> NewServer() {
    return ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  }
};

TEST_P(TlsRecordTest, EveryPrefixOfTheFirstFlightWaitsForMore) {
  auto client = NewClient();
  ASSERT_TRUE(client->Advance().has_value());
  const Bytes hello = client->TakeCiphertext();
  ASSERT_GT(hello.size(), 5u);
  EXPECT_EQ(hello[0], 0x16);  // handshake record
  for (size_t n = 0; n < hello.size(); ++n) {
    auto server = NewServer();
    server->FeedCiphertext(ByteSpan(hello).first(n));
    auto r = server->Advance();
    ASSERT_TRUE(r.has_value()) << "prefix " << n << ": " << Show(r.error());
    EXPECT_FALSE(server->HandshakeComplete()) << "prefix " << n;
    EXPECT_FALSE(server->HasCiphertext()) << "prefix " << n;
    EXPECT_TRUE(server->failure().empty()) << "prefix " << n;
  }
}

TEST_P(TlsRecordTest, FirstFlightByteByByteThenCompletes) {
  auto client = NewClient();
  auto server = NewServer();
  ASSERT_TRUE(client->Advance().has_value());
  const Bytes hello = client->TakeCiphertext();
  for (size_t i = 0; i < hello.size(); ++i) {
    server->FeedCiphertext(ByteSpan(hello).subspan(i, 1));
    auto r = server->Advance();
    ASSERT_TRUE(r.has_value()) << "byte " << i << ": " << Show(r.error());
    EXPECT_EQ(server->HasCiphertext(), i + 1 == hello.size()) << "byte " << i;
  }
  HandshakeOutcome o = PumpHandshake(*client, *server);
  EXPECT_TRUE(o.BothComplete()) << Show(o);
}

TEST_P(TlsRecordTest, FlippedBitInClientHelloFails) {
  auto client = NewClient();
  auto server = NewServer();
  ASSERT_TRUE(client->Advance().has_value());
  Bytes hello = client->TakeCiphertext();
  // Record header (5) + handshake header (4) + legacy_version (2): the 32-byte random follows.
  ASSERT_GT(hello.size(), 43u);
  hello[20] ^= 0x01;
  server->FeedCiphertext(hello);
  auto r = server->Advance();
  if (r.has_value()) {
    // TLS 1.2 cannot notice a changed random before the Finished messages.
    EXPECT_EQ(GetParam(), Version::kTls12);
    HandshakeOutcome o = PumpHandshake(*client, *server);
    EXPECT_FALSE(o.server_complete) << Show(o);
    EXPECT_TRUE(o.AnyFailed()) << Show(o);
  } else {
    EXPECT_FALSE(server->HandshakeComplete());
    EXPECT_FALSE(server->failure().empty());
  }
}

TEST_P(TlsRecordTest, FlippedBitInClientFinishedFails) {
  auto client = NewClient();
  auto server = NewServer();
  ASSERT_TRUE(client->Advance().has_value());
  ASSERT_TRUE(Transfer(*client, *server).has_value());
  ASSERT_TRUE(Transfer(*server, *client).has_value());
  ASSERT_TRUE(client->HandshakeComplete() || GetParam() == Version::kTls12);
  Bytes finished = client->TakeCiphertext();
  ASSERT_FALSE(finished.empty());
  finished.back() ^= 0x80;  // the last record's MAC / AEAD tag
  server->FeedCiphertext(finished);
  auto r = server->Advance();
  ASSERT_FALSE(r.has_value());
  EXPECT_FALSE(server->HandshakeComplete());
  EXPECT_FALSE(server->failure().empty());
  // Errors are final.
  auto again = server->Advance();
  ASSERT_FALSE(again.has_value());
  EXPECT_FALSE(server->WritePlaintext(AsBytes("x")).has_value());
}

TEST_P(TlsRecordTest, FlippedBitInApplicationDataFails) {
  auto client = NewClient();
  auto server = NewServer();
  ASSERT_TRUE(PumpHandshake(*client, *server).BothComplete());
  ASSERT_TRUE(client->WritePlaintext(AsBytes("enrolment request")).has_value());
  Bytes record = client->TakeCiphertext();
  ASSERT_FALSE(record.empty());
  record[record.size() / 2] ^= 0x04;
  server->FeedCiphertext(record);
  auto r = server->Advance();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kPeerProtocol) << Show(r.error());
  EXPECT_EQ(server->PlaintextSize(), 0u);
}

TEST_P(TlsRecordTest, TruncatedApplicationRecordWaits) {
  auto client = NewClient();
  auto server = NewServer();
  ASSERT_TRUE(PumpHandshake(*client, *server).BothComplete());
  ASSERT_TRUE(client->WritePlaintext(AsBytes("enrolment request")).has_value());
  Bytes record = client->TakeCiphertext();
  for (size_t i = 0; i + 1 < record.size(); ++i) {
    server->FeedCiphertext(ByteSpan(record).subspan(i, 1));
    ASSERT_TRUE(server->Advance().has_value()) << "byte " << i;
    ASSERT_EQ(server->PlaintextSize(), 0u) << "byte " << i;
  }
  server->FeedCiphertext(ByteSpan(record).last(1));
  ASSERT_TRUE(server->Advance().has_value());
  Bytes plain = server->TakePlaintext();
  EXPECT_EQ(AsText(plain), "enrolment request");
}

TEST_P(TlsRecordTest, GarbageToServerIsAProtocolError) {
  auto server = NewServer();
  server->FeedCiphertext(AsBytes("GET / HTTP/1.1\r\n\r\n"));
  auto r = server->Advance();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kPeerProtocol) << Show(r.error());
  EXPECT_EQ(r.error().code, Errc::kMalformed) << Show(r.error());
  EXPECT_FALSE(server->HandshakeComplete());
  EXPECT_FALSE(server->failure().empty());
}

TEST_P(TlsRecordTest, GarbageToClientIsAProtocolError) {
  auto client = NewClient();
  ASSERT_TRUE(client->Advance().has_value());
  (void)client->TakeCiphertext();
  client->FeedCiphertext(AsBytes("HTTP/1.1 400 Bad Request\r\n\r\n"));
  auto r = client->Advance();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kPeerProtocol) << Show(r.error());
  EXPECT_FALSE(client->HandshakeComplete());
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsRecordTest,
                         ::testing::Values(Version::kTls12, Version::kTls13), ParamName);

// ---------------------------------------------------------------------------------------------
// Application data, close_notify, misuse

class TlsDataTest : public ::testing::TestWithParam<Version> {};

TEST_P(TlsDataTest, RoundTripBothDirections) {
  Pair p = PskHandshake(GetParam());
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);

  ASSERT_TRUE(p.client->WritePlaintext(AsBytes("ping")).has_value());
  ASSERT_TRUE(Transfer(*p.client, *p.server).has_value());
  EXPECT_EQ(AsText(p.server->TakePlaintext()), "ping");
  EXPECT_EQ(p.server->PlaintextSize(), 0u);

  ASSERT_TRUE(p.server->WritePlaintext(AsBytes("pong")).has_value());
  ASSERT_TRUE(Transfer(*p.server, *p.client).has_value());
  EXPECT_EQ(AsText(p.client->TakePlaintext()), "pong");

  const Bytes big = Pattern(100 * 1024);
  ASSERT_TRUE(p.client->WritePlaintext(big).has_value());
  ASSERT_TRUE(Transfer(*p.client, *p.server).has_value());
  EXPECT_EQ(p.server->PlaintextSize(), big.size());
  EXPECT_EQ(p.server->TakePlaintext(), big);

  ASSERT_TRUE(p.server->WritePlaintext(big).has_value());
  ASSERT_TRUE(Transfer(*p.server, *p.client).has_value());
  EXPECT_EQ(p.client->TakePlaintext(), big);
}

TEST_P(TlsDataTest, ShutdownIsSeenByThePeer) {
  Pair p = PskHandshake(GetParam());
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  ASSERT_TRUE(p.client->WritePlaintext(AsBytes("last words")).has_value());
  p.client->Shutdown();
  EXPECT_FALSE(p.server->PeerClosed());
  ASSERT_TRUE(Transfer(*p.client, *p.server).has_value());
  EXPECT_TRUE(p.server->PeerClosed());
  EXPECT_EQ(AsText(p.server->TakePlaintext()), "last words");

  p.server->Shutdown();
  ASSERT_TRUE(Transfer(*p.server, *p.client).has_value());
  EXPECT_TRUE(p.client->PeerClosed());
}

TEST_P(TlsDataTest, ServerShutdownIsSeenByTheClient) {
  Pair p = PskHandshake(GetParam());
  ASSERT_TRUE(p.outcome.BothComplete()) << Show(p.outcome);
  p.server->Shutdown();
  ASSERT_TRUE(Transfer(*p.server, *p.client).has_value());
  EXPECT_TRUE(p.client->PeerClosed());
  EXPECT_FALSE(p.server->PeerClosed());
}

TEST_P(TlsDataTest, WriteAndExportBeforeHandshakeFail) {
  auto client = ClientEngine(PskClientOptions(GetParam()), Secret(kKey));
  auto server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  for (TlsEngine* e : {client.get(), server.get()}) {
    auto w = e->WritePlaintext(AsBytes("too early"));
    ASSERT_FALSE(w.has_value());
    EXPECT_EQ(w.error().kind, ErrorKind::kLocalUsage) << Show(w.error());
    auto x = e->Export(kBootstrapLabel, 48);
    ASSERT_FALSE(x.has_value());
    EXPECT_EQ(x.error().kind, ErrorKind::kLocalUsage) << Show(x.error());
    EXPECT_FALSE(e->HasCiphertext());
  }
  // Half-way through the handshake is still too early.
  ASSERT_TRUE(client->Advance().has_value());
  ASSERT_TRUE(Transfer(*client, *server).has_value());
  EXPECT_FALSE(server->HandshakeComplete());
  EXPECT_FALSE(server->WritePlaintext(AsBytes("too early")).has_value());
  EXPECT_FALSE(server->Export(kBootstrapLabel, 48).has_value());
}

INSTANTIATE_TEST_SUITE_P(Versions, TlsDataTest, ::testing::Values(Version::kTls12, Version::kTls13),
                         ParamName);

// ---------------------------------------------------------------------------------------------
// Nested TLS: the inner engines' ciphertext is the outer engines' plaintext.

class TlsNestedTest : public ::testing::TestWithParam<Version> {
 protected:
  static void SetUpTestSuite() { pki_ = Unwrap(TestPki::Create(kFqdn), "test PKI").release(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }

  void SetUp() override {
    TlsServerOptions so;
    so.server_name = kFqdn;
    so.cert_chain_pem_file = pki_->server_cert();
    so.key_pem_file = pki_->server_key();
    TlsClientOptions co;
    co.server_name = kFqdn;
    co.trust_pem_file = pki_->ca_cert();
    co.tls12 = false;  // outer: TLS 1.3, server authenticated by certificate
    outer_client_ = ClientEngine(co);
    outer_server_ = ServerEngine(so);
    HandshakeOutcome o = PumpHandshake(*outer_client_, *outer_server_);
    ASSERT_TRUE(o.BothComplete()) << Show(o);
    ASSERT_EQ(outer_client_->version(), "TLSv1.3");
  }

  static TestPki* pki_;
  std::unique_ptr<TlsEngine> outer_client_;
  std::unique_ptr<TlsEngine> outer_server_;
};

TestPki* TlsNestedTest::pki_ = nullptr;

TEST_P(TlsNestedTest, InnerPskOverOuterCertificate) {
  TlsClientOptions inner_options = PskClientOptions(GetParam());
  if (GetParam() == Version::kTls12) inner_options.tls12_ciphers = "PSK-AES128-CBC-SHA256";
  auto inner_client = ClientEngine(inner_options, Secret(kKey));
  auto inner_server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));

  HandshakeOutcome o =
      testlib::PumpNestedHandshake(*inner_client, *inner_server, *outer_client_, *outer_server_);
  ASSERT_TRUE(o.BothComplete()) << Show(o);
  EXPECT_EQ(inner_client->version(), VersionName(GetParam()));
  EXPECT_EQ(inner_server->version(), VersionName(GetParam()));
  if (GetParam() == Version::kTls12) {
    EXPECT_EQ(inner_server->cipher(), "PSK-AES128-CBC-SHA256");
  }
  EXPECT_EQ(inner_server->psk_identity(), kIdentity);

  SecretBytes inner_c = Unwrap(inner_client->Export(kBootstrapLabel, 48), "inner export");
  SecretBytes inner_s = Unwrap(inner_server->Export(kBootstrapLabel, 48), "inner export");
  EXPECT_TRUE(SameSecret(inner_c, inner_s));
  SecretBytes outer_c = Unwrap(outer_client_->Export(kBootstrapLabel, 48), "outer export");
  SecretBytes outer_s = Unwrap(outer_server_->Export(kBootstrapLabel, 48), "outer export");
  EXPECT_TRUE(SameSecret(outer_c, outer_s));
  EXPECT_FALSE(SameSecret(inner_c, outer_c));

  // Binding the inner key to the outer session (docs/protocol.md §9.6): the outer exporter value is
  // the inner exporter's context, and both ends agree.
  auto outer_bytes = outer_c.Expose(SecretAccess::ForCrypto());
  auto outer_bytes_s = outer_s.Expose(SecretAccess::ForCrypto());
  SecretBytes bound_c = Unwrap(inner_client->Export(kBootstrapLabel, 32, outer_bytes), "bound");
  SecretBytes bound_s = Unwrap(inner_server->Export(kBootstrapLabel, 32, outer_bytes_s), "bound");
  EXPECT_TRUE(SameSecret(bound_c, bound_s));

  // Inner application data through both layers.
  ASSERT_TRUE(inner_client->WritePlaintext(AsBytes("inner ping")).has_value());
  ASSERT_TRUE(testlib::TransferNested(*inner_client, *outer_client_, *outer_server_, *inner_server)
                  .has_value());
  EXPECT_EQ(AsText(inner_server->TakePlaintext()), "inner ping");
  EXPECT_EQ(outer_server_->PlaintextSize(), 0u);
  ASSERT_TRUE(inner_server->WritePlaintext(AsBytes("inner pong")).has_value());
  ASSERT_TRUE(testlib::TransferNested(*inner_server, *outer_server_, *outer_client_, *inner_client)
                  .has_value());
  EXPECT_EQ(AsText(inner_client->TakePlaintext()), "inner pong");
}

TEST_P(TlsNestedTest, WrongInnerKeyFailsInnerOnly) {
  auto inner_client = ClientEngine(PskClientOptions(GetParam()), Secret(kOtherKey));
  auto inner_server = ServerEngine(PskServerOptions(), LookupFor(kIdentity, kKey));
  HandshakeOutcome o =
      testlib::PumpNestedHandshake(*inner_client, *inner_server, *outer_client_, *outer_server_);
  EXPECT_FALSE(o.server_complete) << Show(o);
  ASSERT_TRUE(o.server_error.has_value()) << Show(o);
  EXPECT_EQ(o.server_error->kind, ErrorKind::kPeerAuth) << Show(o);
  // The outer session is unharmed.
  ASSERT_TRUE(outer_client_->WritePlaintext(AsBytes("still here")).has_value());
  ASSERT_TRUE(Transfer(*outer_client_, *outer_server_).has_value());
  EXPECT_THAT(AsText(outer_server_->TakePlaintext()), HasSubstr("still here"));
}

INSTANTIATE_TEST_SUITE_P(InnerVersions, TlsNestedTest,
                         ::testing::Values(Version::kTls12, Version::kTls13), ParamName);

}  // namespace
}  // namespace mte::crypto
