// Shared fixtures for the application-service tests: a fixed fake clock, a temporary directory,
// an in-memory TLS link between a client TlsEngine and a server TlsHttpSession (no sockets), a
// log capture on the default spdlog logger, and small helpers for records and JSON.
#pragma once

#include <openssl/evp.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "testlib/result_assertions.h"
#include "testlib/temp_dir.h"
#include "base/bytes.h"
#include "base/clock.h"
#include "base/result.h"
#include "base/secret.h"
#include "crypto/aead.h"
#include "crypto/password.h"
#include "crypto/random.h"
#include "crypto/tls_engine.h"
#include "proto/enrolment_client.h"
#include "proto/rspf/ppsk_device.h"
#include "proto/http.h"
#include "proto/server_connection.h"
#include "proto/tls_http_session.h"
#include "store/store.h"

namespace mte::testing {

// 2026-11-18T05:46:40Z: a fixed instant; tests move it explicitly.
inline constexpr int64_t kStartTime = 1'795'000'000;

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t unix_seconds = kStartTime) : now_(unix_seconds) {}
  SystemTime Now() const override { return SystemTime(std::chrono::seconds(now_.load())); }
  int64_t seconds() const { return now_.load(); }
  void Advance(int64_t seconds) { now_ += seconds; }

 private:
  std::atomic<int64_t> now_;
};

using testlib::Ok;
using testlib::TempDir;

// Km = HMAC-SHA-256(Ke, label || MAF-ID) computed with OpenSSL's one-shot MAC directly, not
// with the product's crypto::DeriveKm (TS-0003 §10.3.2).
inline Bytes IndependentKm(const Bytes& ke, std::string_view maf_id) {
  std::string data = std::string("oneM2M Enrolment Key to Master Credential derivation") +
                     std::string(maf_id);
  Bytes out(32);
  size_t out_len = 0;
  unsigned char* mac = EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, ke.data(),
                                 ke.size(), reinterpret_cast<const unsigned char*>(data.data()),
                                 data.size(), out.data(), out.size(), &out_len);
  EXPECT_NE(mac, nullptr);
  EXPECT_EQ(out_len, 32u);
  return out;
}

inline SecretBytes SecretFromText(std::string_view text) {
  return SecretBytes(AsBytes(text), SecretAccess::ForCrypto());
}

inline std::string ExposeText(const SecretBytes& secret) {
  return std::string(AsText(secret.Expose(SecretAccess::ForCrypto())));
}

inline Bytes ExposeBytes(const SecretBytes& secret) {
  auto span = secret.Expose(SecretAccess::ForCrypto());
  return Bytes(span.begin(), span.end());
}

inline nlohmann::json JsonBody(const proto::HttpResponse& response) {
  auto j = nlohmann::json::parse(response.body, nullptr, false);
  if (j.is_discarded()) ADD_FAILURE() << "response body is not JSON: " << response.body;
  return j;
}

inline std::string Header(const proto::HttpResponse& response, std::string_view name) {
  auto value = response.headers.Get(name);
  return value ? std::string(*value) : std::string("<absent>");
}

inline proto::HttpRequest JsonRequest(std::string method, std::string target, std::string body,
                                      std::string content_type = "application/json") {
  proto::HttpRequest request;
  request.method = std::move(method);
  request.target = std::move(target);
  if (!content_type.empty()) request.headers.Set("Content-Type", content_type);
  request.body = std::move(body);
  return request;
}

// ---------------------------------------------------------------------------------------------
// An in-memory connection: a client TlsEngine and a server TlsHttpSession whose requests go to
// `handler`. Ciphertext is moved between the two until neither side has anything to send.

// A reply the handler is still working on (a certificate status request on another thread):
// waits up to 10 s for it, as net/ would without blocking, then lets the handler answer.
inline Result<void> AwaitPending(proto::ServerConnection& connection) {
  while (auto pending = connection.pending()) {
    for (int i = 0; i < 10000 && !pending->done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!pending->done()) {
      return Fail(ErrorKind::kTimeout, Errc::kDeadline, "pending reply not ready within 10 s");
    }
    MTE_TRY(connection.Resume());
  }
  return {};
}

using ServiceHandler =
    std::function<proto::HttpResponse(const proto::HttpRequest&, const crypto::TlsEngine&)>;

class TlsLink {
 public:
  TlsLink(std::unique_ptr<crypto::TlsEngine> client, std::unique_ptr<crypto::TlsEngine> server,
          ServiceHandler handler)
      : client_(std::move(client)),
        connection_(std::move(server), proto::HttpLimits{},
                    proto::StatelessHandler(std::move(handler))) {}

  // Runs the handshake as far as it goes. True if both ends completed it without an error.
  bool Handshake() {
    Step(client_->Advance(), client_error_);
    Pump();
    return !client_error_ && !server_error_ && client_->HandshakeComplete() &&
           connection_.session().HandshakeComplete();
  }

  // Sends one request and returns the response the client decoded (or the error).
  Result<proto::HttpResponse> Exchange(const proto::HttpRequest& request) {
    if (!client_->HandshakeComplete()) {
      return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "handshake not complete");
    }
    MTE_TRY(client_->WritePlaintext(AsBytes(request.Serialize())));
    Pump();
    Bytes plain = client_->TakePlaintext();
    auto decoded = decoder_.Feed(plain);
    if (!decoded) return Fail(decoded.error());
    if (!decoded->has_value()) {
      if (client_->PeerClosed()) {
        auto at_eof = decoder_.FeedEof();
        if (at_eof && at_eof->has_value()) return std::move(**at_eof);
      }
      return Fail(ErrorKind::kPeerProtocol, Errc::kClosed,
                  "no complete response; server error: " +
                      (server_error_ ? Describe(*server_error_) : std::string("none")));
    }
    return std::move(**decoded);
  }

  crypto::TlsEngine& client() { return *client_; }
  const proto::TlsHttpSession& session() { return connection_.session(); }
  const std::optional<Error>& client_error() const { return client_error_; }
  const std::optional<Error>& server_error() const { return server_error_; }

 private:
  static void Step(Result<void> result, std::optional<Error>& error) {
    if (!result && !error) error = result.error();
  }

  void Pump() {
    for (int round = 0; round < 64; ++round) {
      bool moved = false;
      Bytes to_server = client_->TakeCiphertext();
      if (!to_server.empty() && !connection_.Finished()) {
        moved = true;
        Step(connection_.FeedCiphertext(to_server), server_error_);
        Step(AwaitPending(connection_), server_error_);
      }
      Bytes to_client = connection_.TakeCiphertext();
      if (!to_client.empty() && !client_error_) {
        moved = true;
        client_->FeedCiphertext(to_client);
        Step(client_->Advance(), client_error_);
      }
      if (!moved) return;
    }
    ADD_FAILURE() << "TLS link did not settle";
  }

  std::unique_ptr<crypto::TlsEngine> client_;
  proto::ServerConnection connection_;
  proto::ResponseDecoder decoder_;
  std::optional<Error> client_error_;
  std::optional<Error> server_error_;
};

// ---------------------------------------------------------------------------------------------
// A Flow B connection in memory: the enrolee's sans-IO EnrolmentClient and a server
// TlsHttpSession whose requests go to a per-connection handler (Mef::NewConnection). After a 101
// reply the session sends the response, then tunnels the reply's inner engine with Upgrade(), as
// net/server.cc does. Every response the handler produced is kept for assertions.

class FlowBLink {
 public:
  using Phase = proto::EnrolmentClient::Phase;

  FlowBLink(std::unique_ptr<proto::EnrolmentClient> client,
            std::unique_ptr<crypto::TlsEngine> server,
            std::unique_ptr<proto::ConnectionHandler> handler)
      : client_(std::move(client)),
        connection_(std::move(server), proto::HttpLimits{}, std::move(handler)) {
    connection_.set_observer(
        [this](const proto::HttpRequest& request, const proto::HttpResponse& response) {
          requests_.push_back(request.method + " " + request.target);
          responses_.push_back(response);
        });
  }
  ~FlowBLink() { Close(); }
  FlowBLink(const FlowBLink&) = delete;
  FlowBLink& operator=(const FlowBLink&) = delete;

  // Ends the connection as net/server.cc does: the handler's OnClose, once.
  void Close() { connection_.Close(); }

  // Called whenever the client enters a new phase (e.g. to move a fake clock mid-enrolment).
  void set_on_phase(std::function<void(Phase)> on_phase) { on_phase_ = std::move(on_phase); }

  // Moves bytes until the client is done or failed and nothing moves any more. With `drop_at`,
  // the connection is cut as soon as the client enters that phase: the bytes it produced on
  // entering it never reach the server, and nothing further is exchanged.
  // Returns the client's final error, if any.
  Result<void> Run(std::optional<Phase> drop_at = std::nullopt) {
    if (!started_) {
      started_ = true;
      Step(client_->Start(), client_error_);
      NotePhase();
    }
    for (int round = 0; round < 256; ++round) {
      if (drop_at && client_->phase() == *drop_at) {
        dropped_ = true;
        break;
      }
      bool moved = false;
      Bytes to_server = client_->TakeCiphertext();
      if (!to_server.empty() && !connection_.Finished()) {
        moved = true;
        Step(connection_.FeedCiphertext(to_server), server_error_);
        Step(AwaitPending(connection_), server_error_);
      }
      Bytes to_client = connection_.TakeCiphertext();
      if (!to_client.empty() && !ClientFinished()) {
        moved = true;
        Step(client_->FeedCiphertext(to_client), client_error_);
        NotePhase();
      }
      if (!moved) {
        // The server is gone (closed or failed) while the client still waits: EOF.
        if (!ClientFinished() && (connection_.Finished() || server_error_)) {
          Step(client_->FeedEof(), client_error_);
          NotePhase();
        }
        break;
      }
    }
    if (client_error_) return Fail(*client_error_);
    return {};
  }

  bool ClientFinished() const {
    return client_->phase() == Phase::kDone || client_->phase() == Phase::kFailed;
  }
  proto::EnrolmentClient& client() { return *client_; }
  const proto::TlsHttpSession& session() { return connection_.session(); }
  const std::optional<Error>& client_error() const { return client_error_; }
  const std::optional<Error>& server_error() const { return server_error_; }
  // The phase in which the client failed (kFailed only once it has failed), or its current one.
  Phase last_phase_before_failure() const { return last_live_phase_; }
  const std::vector<proto::HttpResponse>& responses() const { return responses_; }
  const std::vector<std::string>& requests() const { return requests_; }
  bool dropped() const { return dropped_; }

 private:
  static void Step(Result<void> result, std::optional<Error>& error) {
    if (!result && !error) error = result.error();
  }
  void NotePhase() {
    Phase now = client_->phase();
    if (now != Phase::kFailed) last_live_phase_ = now;
    if (now != seen_phase_) {
      seen_phase_ = now;
      if (on_phase_) on_phase_(now);
    }
  }

  std::unique_ptr<proto::EnrolmentClient> client_;
  proto::ServerConnection connection_;
  std::function<void(Phase)> on_phase_;
  std::optional<Error> client_error_;
  std::optional<Error> server_error_;
  std::vector<proto::HttpResponse> responses_;
  std::vector<std::string> requests_;
  bool started_ = false;
  bool dropped_ = false;
  Phase seen_phase_ = Phase::kFailed;
  Phase last_live_phase_ = Phase::kOuterHandshake;
};

inline std::shared_ptr<const crypto::TlsContext> MustContext(
    Result<std::shared_ptr<const crypto::TlsContext>> context) {
  EXPECT_TRUE(Ok(context));
  return context ? *context : nullptr;
}

// A PSK server context for `fqdn` (TLS 1.2 and 1.3, as the product configures its listeners).
inline std::shared_ptr<const crypto::TlsContext> PskServerContext(const std::string& fqdn) {
  crypto::TlsServerOptions options;
  options.server_name = fqdn;
  options.psk = true;
  return MustContext(crypto::TlsContext::Server(options));
}

enum class PskProfile { kTls12PskCbc, kTls13 };

inline std::shared_ptr<const crypto::TlsContext> PskClientContext(const std::string& fqdn,
                                                                  const std::string& identity,
                                                                  PskProfile profile) {
  crypto::TlsClientOptions options;
  options.server_name = fqdn;
  options.psk_identity = identity;
  if (profile == PskProfile::kTls12PskCbc) {
    options.tls13 = false;
    options.tls12_ciphers = "PSK-AES128-CBC-SHA256";  // TS-0003 §10.2.2 mandatory suite
  } else {
    options.tls12 = false;
  }
  return MustContext(crypto::TlsContext::Client(options));
}

// A PSK link whose server looks keys up with `lookup` and answers with `handler`.
inline std::unique_ptr<TlsLink> MakePskLink(const std::string& fqdn, const std::string& identity,
                                            const SecretBytes& psk, PskProfile profile,
                                            crypto::PskLookup lookup, ServiceHandler handler) {
  auto client = crypto::TlsEngine::Client(PskClientContext(fqdn, identity, profile), psk.Clone());
  auto server = crypto::TlsEngine::Server(PskServerContext(fqdn), std::move(lookup));
  EXPECT_TRUE(Ok(client));
  EXPECT_TRUE(Ok(server));
  if (!client || !server) return nullptr;
  return std::make_unique<TlsLink>(std::move(*client), std::move(*server), std::move(handler));
}

// ---------------------------------------------------------------------------------------------
// Captures everything the default logger writes, at trace level, while alive.

class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)),
        logger_(spdlog::default_logger()),
        old_level_(logger_->level()) {
    sink_->set_level(spdlog::level::trace);
    logger_->sinks().push_back(sink_);
    logger_->set_level(spdlog::level::trace);
  }
  ~LogCapture() {
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    logger_->set_level(old_level_);
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() {
    sink_->flush();
    return out_.str();
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> logger_;
  spdlog::level::level_enum old_level_;
};

// Adds a failure for every secret (as text, and as upper- and lower-case hex) found in `log`.
inline void ExpectNoSecretsIn(const std::string& log, const std::vector<Bytes>& keys,
                              const std::vector<std::string>& texts) {
  for (const auto& key : keys) {
    ASSERT_FALSE(key.empty());
    EXPECT_EQ(log.find(HexLower(key)), std::string::npos) << "key material (lower hex) in logs";
    EXPECT_EQ(log.find(HexUpper(key)), std::string::npos) << "key material (upper hex) in logs";
  }
  for (const auto& text : texts) {
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(log.find(text), std::string::npos) << "secret text in logs";
  }
}

// ---------------------------------------------------------------------------------------------
// Store helpers.

// Number of outbox items ever written (ids are assigned from 1 upwards).
inline int CountOutbox(store::Store& store) {
  int count = 0;
  for (int64_t id = 1; id <= 64; ++id) {
    auto item = store.GetOutboxItem(id);
    EXPECT_TRUE(Ok(item));
    if (item && item->has_value()) ++count;
  }
  return count;
}

inline std::vector<store::OutboxItem> AllOutbox(store::Store& store) {
  std::vector<store::OutboxItem> items;
  for (int64_t id = 1; id <= 64; ++id) {
    auto item = store.GetOutboxItem(id);
    if (item && item->has_value()) items.push_back(**item);
  }
  return items;
}

inline size_t CountAudit(store::Store& store) {
  auto audit = store.ListAudit();
  EXPECT_TRUE(Ok(audit));
  return audit ? audit->size() : 0;
}

// The parts of an enrolee row an enrolment changes, for "nothing changed" comparisons.
struct EnroleeSnapshot {
  bool exists = false;
  store::EnroleeState state = store::EnroleeState::kPending;
  int64_t generation = 0;
  std::string ke_id;
  Bytes ke_sealed;
  int64_t ke_expires_at = 0;
  std::vector<std::string> credential_ids;
  store::DeliveryStatus maf_delivery = store::DeliveryStatus::kNone;
  int64_t updated_at = 0;
  int64_t enrolled_at = 0;
  bool operator==(const EnroleeSnapshot&) const = default;
};

inline EnroleeSnapshot SnapshotEnrolee(store::Store& store, std::string_view device_id) {
  EnroleeSnapshot s;
  auto found = store.FindEnroleeByDevice(device_id);
  EXPECT_TRUE(Ok(found));
  if (!found || !found->has_value()) return s;
  const auto& e = **found;
  s.exists = true;
  s.state = e.state;
  s.generation = e.generation;
  s.ke_id = e.ke_id;
  s.ke_sealed = e.ke_sealed;
  s.ke_expires_at = e.ke_expires_at;
  s.credential_ids = e.credential_ids;
  s.maf_delivery = e.maf_delivery;
  s.updated_at = e.updated_at;
  s.enrolled_at = e.enrolled_at;
  return s;
}

// Everything a refused request must leave alone.
struct StateSnapshot {
  EnroleeSnapshot enrolee;
  int outbox = 0;
  size_t audit = 0;
  size_t maf_credentials = 0;
  bool operator==(const StateSnapshot&) const = default;
};

inline StateSnapshot Snapshot(store::Store& store, std::string_view device_id) {
  StateSnapshot s;
  s.enrolee = SnapshotEnrolee(store, device_id);
  s.outbox = CountOutbox(store);
  s.audit = CountAudit(store);
  auto creds = store.ListMafCredentials();
  EXPECT_TRUE(Ok(creds));
  s.maf_credentials = creds ? creds->size() : 0;
  return s;
}

inline void PrintTo(const StateSnapshot& s, std::ostream* os) {
  *os << "{enrolee exists=" << s.enrolee.exists << " generation=" << s.enrolee.generation
      << " keId=" << s.enrolee.ke_id << " credentialIds=" << s.enrolee.credential_ids.size()
      << " outbox=" << s.outbox << " audit=" << s.audit
      << " mafCredentials=" << s.maf_credentials << "}";
}

}  // namespace mte::testing
