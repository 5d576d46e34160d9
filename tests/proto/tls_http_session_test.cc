// proto::TlsHttpSession driven in memory by a PSK client engine: requests in, responses out,
// HTTP framing errors answered with a oneM2M 400 and a close, Connection: close, peer close.
#include "proto/tls_http_session.h"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "proto/onem2m.h"
#include "testlib/tls_pair.h"

namespace mte::proto {
namespace {

using crypto::TlsClientOptions;
using crypto::TlsContext;
using crypto::TlsEngine;
using crypto::TlsServerOptions;
using testlib::Secret;

constexpr const char* kFqdn = "mef.example.test";
constexpr const char* kIdentity = "device-1@bootstrap.example.test";
constexpr const char* kKey = "0123456789abcdef0123456789abcdef";

std::string Show(const Error& error) {
  return std::string(ToString(error.kind)) + "/" + Describe(error);
}

template <class T>
T Unwrap(Result<T> result, const std::string& what) {
  if (!result.has_value()) throw std::runtime_error(what + ": " + Show(result.error()));
  return std::move(result).value();
}

std::unique_ptr<TlsEngine> NewServerEngine() {
  TlsServerOptions o;
  o.server_name = kFqdn;
  o.psk = true;
  auto context = Unwrap(TlsContext::Server(o), "server context");
  return Unwrap(TlsEngine::Server(context,
                                  [](std::string_view id) -> std::optional<SecretBytes> {
                                    if (id == kIdentity) return Secret(kKey);
                                    return std::nullopt;
                                  }),
                "server engine");
}

std::unique_ptr<TlsEngine> NewClientEngine(const std::string& key = kKey) {
  TlsClientOptions o;
  o.server_name = kFqdn;
  o.psk_identity = kIdentity;
  auto context = Unwrap(TlsContext::Client(o), "client context");
  return Unwrap(TlsEngine::Client(context, Secret(key)), "client engine");
}

HttpRequest PostRequest(std::string body) {
  HttpRequest r;
  r.method = "POST";
  r.target = "/enrolment";
  r.headers.Add("Host", kFqdn);
  r.headers.Add("Content-Type", "application/json");
  r.headers.Add("X-M2M-RI", "req-1");
  r.body = std::move(body);
  return r;
}

class TlsHttpSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    client_ = NewClientEngine();
    session_ = std::make_unique<TlsHttpSession>(NewServerEngine(), HttpLimits{});
  }

  void Handshake() {
    ASSERT_TRUE(client_->Advance().has_value());
    for (int round = 0; round < 8; ++round) {
      auto fed = session_->FeedCiphertext(client_->TakeCiphertext());
      ASSERT_TRUE(fed.has_value()) << Show(fed.error());
      client_->FeedCiphertext(session_->TakeCiphertext());
      auto advanced = client_->Advance();
      ASSERT_TRUE(advanced.has_value()) << Show(advanced.error());
      if (client_->HandshakeComplete() && session_->HandshakeComplete() &&
          !client_->HasCiphertext()) {
        break;
      }
    }
    ASSERT_TRUE(client_->HandshakeComplete());
    ASSERT_TRUE(session_->HandshakeComplete());
    EXPECT_FALSE(session_->Finished());
  }

  // Client -> session. Returns FeedCiphertext's result.
  Result<void> SendFromClient(std::string_view plaintext) {
    if (auto w = client_->WritePlaintext(AsBytes(plaintext)); !w) return w;
    return session_->FeedCiphertext(client_->TakeCiphertext());
  }

  // Session -> client; the client's decrypted bytes.
  std::string ReceiveAtClient() {
    client_->FeedCiphertext(session_->TakeCiphertext());
    auto r = client_->Advance();
    EXPECT_TRUE(r.has_value()) << Show(r.error());
    Bytes plain = client_->TakePlaintext();
    return std::string(AsText(plain));
  }

  static HttpResponse ParseResponse(const std::string& text) {
    ResponseDecoder decoder;
    auto r = decoder.Feed(AsBytes(text));
    if (!r.has_value() || !r->has_value()) {
      ADD_FAILURE() << "no complete response in: " << text;
      return {};
    }
    return std::move(**r);
  }

  std::unique_ptr<TlsEngine> client_;
  std::unique_ptr<TlsHttpSession> session_;
};

TEST_F(TlsHttpSessionTest, RequestInResponseOut) {
  Handshake();
  EXPECT_EQ(session_->tls().psk_identity(), kIdentity);
  EXPECT_FALSE(session_->NextRequest().has_value());

  auto fed = SendFromClient(PostRequest(R"({"a":1})").Serialize());
  ASSERT_TRUE(fed.has_value()) << Show(fed.error());
  auto request = session_->NextRequest();
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->method, "POST");
  EXPECT_EQ(request->target, "/enrolment");
  EXPECT_EQ(request->headers.Get("X-M2M-RI"), "req-1");
  EXPECT_EQ(request->body, R"({"a":1})");
  EXPECT_TRUE(request->keep_alive);
  EXPECT_FALSE(session_->NextRequest().has_value());

  ASSERT_TRUE(
      session_->SendResponse(MakeResponse(Rsc::kCreated, R"({"ok":true})", "req-1")).has_value());
  EXPECT_FALSE(session_->Finished());
  HttpResponse response = ParseResponse(ReceiveAtClient());
  EXPECT_EQ(response.status, 201);
  EXPECT_EQ(response.headers.Get("X-M2M-RSC"), "2001");
  EXPECT_EQ(response.headers.Get("X-M2M-RI"), "req-1");
  EXPECT_EQ(response.body, R"({"ok":true})");
  EXPECT_TRUE(response.keep_alive);
  EXPECT_FALSE(client_->PeerClosed());

  // Keep-alive: a second exchange on the same session.
  ASSERT_TRUE(SendFromClient(PostRequest("{}").Serialize()).has_value());
  ASSERT_TRUE(session_->NextRequest().has_value());
  ASSERT_TRUE(session_->SendResponse(MakeResponse(Rsc::kOk, "{}", "")).has_value());
  EXPECT_EQ(ParseResponse(ReceiveAtClient()).status, 200);
  EXPECT_FALSE(session_->Finished());
}

TEST_F(TlsHttpSessionTest, RequestCiphertextByteByByte) {
  Handshake();
  ASSERT_TRUE(client_->WritePlaintext(AsBytes(PostRequest("{}").Serialize())).has_value());
  Bytes ciphertext = client_->TakeCiphertext();
  int requests = 0;
  for (size_t i = 0; i < ciphertext.size(); ++i) {
    auto fed = session_->FeedCiphertext(ByteSpan(ciphertext).subspan(i, 1));
    ASSERT_TRUE(fed.has_value()) << "byte " << i << ": " << Show(fed.error());
    while (session_->NextRequest().has_value()) {
      EXPECT_EQ(i + 1, ciphertext.size()) << "request before the last byte";
      ++requests;
    }
  }
  EXPECT_EQ(requests, 1);
}

TEST_F(TlsHttpSessionTest, PipelinedRequests) {
  Handshake();
  HttpRequest a = PostRequest("{\"n\":1}");
  HttpRequest b = PostRequest("{\"n\":2}");
  ASSERT_TRUE(SendFromClient(a.Serialize() + b.Serialize()).has_value());
  auto first = session_->NextRequest();
  auto second = session_->NextRequest();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(first->body, "{\"n\":1}");
  EXPECT_EQ(second->body, "{\"n\":2}");
  EXPECT_FALSE(session_->NextRequest().has_value());
}

TEST_F(TlsHttpSessionTest, OversizedRequestGetsA400AndCloses) {
  Handshake();
  auto fed = SendFromClient(
      "POST /enrolment HTTP/1.1\r\nHost: mef.example.test\r\nContent-Length: 70000\r\n\r\n");
  ASSERT_FALSE(fed.has_value());
  EXPECT_EQ(fed.error().code, Errc::kTooLarge) << Show(fed.error());
  EXPECT_TRUE(session_->Finished());
  EXPECT_FALSE(session_->NextRequest().has_value());

  HttpResponse response = ParseResponse(ReceiveAtClient());
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.headers.Get("X-M2M-RSC"), "4000");
  EXPECT_EQ(response.headers.Get("X-M2M-RVI"), "3");
  EXPECT_FALSE(response.keep_alive);
  EXPECT_TRUE(client_->PeerClosed());  // close_notify follows the response

  // Nothing more is accepted.
  EXPECT_FALSE(SendFromClient(PostRequest("{}").Serialize()).has_value());
}

TEST_F(TlsHttpSessionTest, MalformedRequestGetsA400AndCloses) {
  Handshake();
  auto fed = SendFromClient("NOT HTTP AT ALL\r\n\r\n");
  ASSERT_FALSE(fed.has_value());
  EXPECT_EQ(fed.error().code, Errc::kMalformed) << Show(fed.error());
  EXPECT_TRUE(session_->Finished());
  HttpResponse response = ParseResponse(ReceiveAtClient());
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.headers.Get("X-M2M-RSC"), "4000");
  EXPECT_TRUE(client_->PeerClosed());
}

TEST_F(TlsHttpSessionTest, ConnectionCloseFinishesAfterTheResponse) {
  Handshake();
  HttpRequest r = PostRequest("{}");
  r.keep_alive = false;  // Connection: close
  ASSERT_TRUE(SendFromClient(r.Serialize()).has_value());
  auto request = session_->NextRequest();
  ASSERT_TRUE(request.has_value());
  EXPECT_FALSE(request->keep_alive);
  EXPECT_FALSE(session_->Finished());  // not before the response

  HttpResponse response = MakeResponse(Rsc::kCreated, "{}", RequestIdOf(*request));
  response.keep_alive = request->keep_alive;
  ASSERT_TRUE(session_->SendResponse(response).has_value());
  EXPECT_TRUE(session_->Finished());

  HttpResponse received = ParseResponse(ReceiveAtClient());
  EXPECT_EQ(received.status, 201);
  EXPECT_EQ(received.headers.Get("X-M2M-RI"), "req-1");
  EXPECT_FALSE(received.keep_alive);
  EXPECT_TRUE(client_->PeerClosed());
}

TEST_F(TlsHttpSessionTest, ClientCloseFinishesTheSession) {
  Handshake();
  client_->Shutdown();
  auto fed = session_->FeedCiphertext(client_->TakeCiphertext());
  ASSERT_TRUE(fed.has_value()) << Show(fed.error());
  EXPECT_TRUE(session_->Finished());
  EXPECT_TRUE(session_->tls().PeerClosed());
  EXPECT_FALSE(session_->FeedCiphertext({}).has_value());
}

TEST_F(TlsHttpSessionTest, HandshakeFailureFinishes) {
  client_ = NewClientEngine("fedcba9876543210fedcba9876543210");
  ASSERT_TRUE(client_->Advance().has_value());
  std::optional<Error> error;
  for (int round = 0; round < 8 && !error; ++round) {
    if (auto fed = session_->FeedCiphertext(client_->TakeCiphertext()); !fed) {
      error = fed.error();
      break;
    }
    client_->FeedCiphertext(session_->TakeCiphertext());
    if (!client_->Advance()) break;
  }
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind, ErrorKind::kPeerAuth) << Show(*error);
  EXPECT_TRUE(session_->Finished());
  EXPECT_FALSE(session_->HandshakeComplete());
  EXPECT_FALSE(session_->NextRequest().has_value());
}

TEST_F(TlsHttpSessionTest, ResponseBeforeHandshakeFails) {
  EXPECT_FALSE(session_->SendResponse(MakeResponse(Rsc::kOk, "{}", "")).has_value());
}

}  // namespace
}  // namespace mte::proto

namespace mte::proto {
namespace {

HttpRequest UpgradeRequest() {
  HttpRequest r;
  r.method = "GET";
  r.target = "/enrolment/rspf";
  r.headers.Add("Host", kFqdn);
  r.headers.Add("Connection", "Upgrade");
  r.headers.Add("Upgrade", "oneM2M-RSPF");
  return r;
}

// A client may send its inner ClientHello right behind the Upgrade request, without waiting for
// the 101: those bytes must reach the inner engine, not the HTTP parser.
TEST_F(TlsHttpSessionTest, InnerClientHelloRightBehindTheUpgradeRequest) {
  Handshake();
  auto inner_client = NewClientEngine();
  ASSERT_TRUE(inner_client->Advance().has_value());
  Bytes hello = inner_client->TakeCiphertext();
  ASSERT_FALSE(hello.empty());
  std::string burst = UpgradeRequest().Serialize() + std::string(AsText(hello));
  auto fed = SendFromClient(burst);
  ASSERT_TRUE(fed.has_value()) << Show(fed.error());
  ASSERT_TRUE(session_->NextRequest().has_value());
  EXPECT_FALSE(session_->NextRequest().has_value());

  HttpResponse switching;
  switching.status = 101;
  switching.headers.Set("Connection", "Upgrade");
  switching.headers.Set("Upgrade", "oneM2M-RSPF");
  ASSERT_TRUE(session_->SendResponse(switching).has_value());
  auto upgraded = session_->Upgrade(NewServerEngine());
  ASSERT_TRUE(upgraded.has_value()) << Show(upgraded.error());
  EXPECT_EQ(session_->depth(), 2u);

  // The outer plaintext after the 101 is the inner server's first flight.
  std::string outer_plain = ReceiveAtClient();
  auto header_end = outer_plain.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos);
  EXPECT_EQ(outer_plain.rfind("HTTP/1.1 101", 0), 0u);
  inner_client->FeedCiphertext(AsBytes(std::string_view(outer_plain).substr(header_end + 4)));
  for (int round = 0; round < 6 && !inner_client->HandshakeComplete(); ++round) {
    auto advanced = inner_client->Advance();
    ASSERT_TRUE(advanced.has_value()) << Show(advanced.error());
    Bytes out = inner_client->TakeCiphertext();
    if (!out.empty()) {
      ASSERT_TRUE(SendFromClient(AsText(out)).has_value());
    }
    inner_client->FeedCiphertext(AsBytes(ReceiveAtClient()));
  }
  EXPECT_TRUE(inner_client->HandshakeComplete());
  EXPECT_TRUE(session_->tls().HandshakeComplete());
}

// A declined Upgrade: what followed the request is HTTP again.
TEST_F(TlsHttpSessionTest, DeclinedUpgradeParsesTheNextRequest) {
  Handshake();
  auto fed = SendFromClient(UpgradeRequest().Serialize() + PostRequest("{}").Serialize());
  ASSERT_TRUE(fed.has_value()) << Show(fed.error());
  ASSERT_TRUE(session_->NextRequest().has_value());
  EXPECT_FALSE(session_->NextRequest().has_value());
  ASSERT_TRUE(session_->SendResponse(MakeResponse(Rsc::kBadRequest, "{}", "")).has_value());
  auto next = session_->NextRequest();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->method, "POST");
}

}  // namespace
}  // namespace mte::proto
