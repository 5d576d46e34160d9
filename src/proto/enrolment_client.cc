#include "proto/enrolment_client.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "crypto/device_cert.h"
#include "crypto/keys.h"
#include "proto/enrolment.h"
#include "proto/mef_status.h"
#include "proto/onem2m.h"

namespace mte::proto {
namespace {

// "MEF answered HTTP 403, RSC 4103: <m2m:dbg>".
std::string DescribeRefusal(const HttpResponse& response) {
  std::string text = "MEF answered HTTP " + std::to_string(response.status);
  if (auto rsc = response.headers.Get(kHeaderRsc)) text += ", RSC " + std::string(*rsc);
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object() && body.contains("m2m:dbg") && body["m2m:dbg"].is_string()) {
    text += ": " + body["m2m:dbg"].get<std::string>().substr(0, 512);
  }
  return text;
}

// A Retry-After of delta-seconds (RFC 9110 §10.2.3), capped at one day; 0 when absent or in the
// HTTP-date form, which a device without a trusted clock cannot use.
int64_t RetryAfterSeconds(const HttpResponse& response) {
  auto value = response.headers.Get("Retry-After");
  if (!value || value->empty() || value->size() > 9) return 0;
  int64_t seconds = 0;
  for (char c : *value) {
    if (c < '0' || c > '9') return 0;
    seconds = seconds * 10 + (c - '0');
  }
  return std::min<int64_t>(seconds, 86'400);
}

// The error for an answer the client did not expect. What the status says about trying again is
// carried as data: 429 -> kRateLimited, 5xx -> kUnavailable, 409 -> kConflict (another enrolment of
// the same device committed first), each with the answer's Retry-After; anything else -> `code`.
Error RefusalError(const HttpResponse& response, ErrorKind kind, Errc code) {
  if (response.status == 429) {
    code = Errc::kRateLimited;
  } else if (response.status >= 500 && response.status <= 599) {
    code = Errc::kUnavailable;
  } else if (response.status == 409) {
    code = Errc::kConflict;
  }
  Error error{kind, code, DescribeRefusal(response)};
  error.retry_after_s = RetryAfterSeconds(response);
  return error;
}

}  // namespace

const char* EnrolmentClient::PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kOuterHandshake: return "step 12 (server-authenticated TLS to the MEF)";
    case Phase::kTokenExchange: return "steps 13-16 (Enrolment-Token and RSPF selection)";
    case Phase::kUpgrade: return "step 17 (switching to the RSPF handshake)";
    case Phase::kRspfHandshake: return "the RSPF handshake";
    case Phase::kEnrolmentExchange: return "the Enrolment Exchange";
    case Phase::kDone: return "done";
    case Phase::kFailed: return "failed";
  }
  return "?";
}

Result<std::unique_ptr<EnrolmentClient>> EnrolmentClient::Direct(
    std::string mef_fqdn, std::string mef_trust_pem, std::unique_ptr<DeviceRspf> rspf,
    MefCertificateChecks checks) {
  MTE_TRY(crypto::CheckIdentifier(mef_fqdn, "MEF FQDN"));
  if (!rspf) return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "no RSPF given");
  auto client = std::unique_ptr<EnrolmentClient>(new EnrolmentClient());
  MTE_TRY_ASSIGN(auto engine, rspf->NewEngine(mef_fqdn, mef_trust_pem));
  client->stack_ = TlsStack(std::move(engine));
  client->mef_fqdn_ = std::move(mef_fqdn);
  client->mef_trust_pem_ = std::move(mef_trust_pem);
  client->rspf_ = std::move(rspf);
  client->checks_ = checks;
  client->phase_ = Phase::kRspfHandshake;
  return client;
}

Result<std::unique_ptr<EnrolmentClient>> EnrolmentClient::ViaToken(
    TokenBundle bundle, std::vector<std::unique_ptr<DeviceRspf>> rspfs,
    MefCertificateChecks checks) {
  MTE_TRY(crypto::CheckIdentifier(bundle.mef_fqdn, "MEF FQDN"));
  if (rspfs.empty()) return Fail(ErrorKind::kLocalUsage, Errc::kConfig, "no RSPF given");
  if (bundle.token.empty() || bundle.token.size() > 128) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed, "the bundle's token is malformed");
  }
  if (bundle.mef_trust_pem.empty() == bundle.mef_spki_pins.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kMalformed,
                "the bundle needs MEF trust anchors or pinned keys (exactly one of them)");
  }
  crypto::TlsClientOptions options;
  options.server_name = bundle.mef_fqdn;
  options.trust_pem = bundle.mef_trust_pem;
  options.trust_spki_sha256 = bundle.mef_spki_pins;
  options.request_ocsp_staple = true;
  MTE_TRY_ASSIGN(auto context, crypto::TlsContext::Client(options));
  MTE_TRY_ASSIGN(auto engine, crypto::TlsEngine::Client(context));
  auto client = std::unique_ptr<EnrolmentClient>(new EnrolmentClient());
  client->stack_ = TlsStack(std::move(engine));
  client->via_token_ = true;
  client->mef_fqdn_ = bundle.mef_fqdn;
  client->mef_trust_pem_ = bundle.mef_trust_pem;
  client->bundle_ = std::move(bundle);
  client->rspfs_ = std::move(rspfs);
  client->checks_ = checks;
  client->phase_ = Phase::kOuterHandshake;
  return client;
}

Result<void> EnrolmentClient::AdoptPinnedAnchor(const crypto::TlsEngine& tls) {
  if (bundle_.mef_spki_pins.empty()) return {};
  for (const Bytes& der : tls.peer_chain_der()) {
    MTE_TRY_ASSIGN(auto facts, crypto::DescribeCertificate(der));
    for (const Bytes& pin : bundle_.mef_spki_pins) {
      if (HexLower(pin) != facts.spki_sha256) continue;
      MTE_TRY_ASSIGN(mef_trust_pem_, crypto::CertificateToPem(der));
      return {};
    }
  }
  // The handshake verified the chain against a pinned certificate, so one is always there.
  return Fail(ErrorKind::kInternal, Errc::kInvariant, "the pinned MEF certificate went missing");
}

Result<void> EnrolmentClient::CheckStaple(const crypto::TlsEngine& tls) {
  if (!tls.psk_identity().empty()) return {};  // a PSK session: no certificate to judge
  bool required = checks_.require_staple && !staple_checked_;
  staple_checked_ = true;
  return CheckMefStaple(tls, mef_trust_pem_, checks_.now, required);
}

Result<void> EnrolmentClient::Failed(Error error) {
  Phase at = phase_;
  phase_ = Phase::kFailed;
  std::string phase = PhaseName(at);
  if (at == Phase::kRspfHandshake && rspf_) phase = "the " + std::string(rspf_->name()) + "-RSPF handshake";
  error.detail = phase + " failed: " + error.detail;
  return Fail(std::move(error));
}

Result<void> EnrolmentClient::Start() {
  if (auto r = stack_.Advance(); !r) return Failed(r.error());
  return {};
}

Result<void> EnrolmentClient::FeedCiphertext(ByteSpan data) {
  if (phase_ == Phase::kFailed) {
    return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "enrolment already failed");
  }
  if (phase_ == Phase::kDone) return {};
  if (auto r = stack_.FeedCiphertext(data); !r) return Failed(r.error());
  return Step();
}

Result<void> EnrolmentClient::FeedEof() {
  if (phase_ == Phase::kDone) return {};
  if (phase_ == Phase::kFailed) {
    return Fail(ErrorKind::kLocalUsage, Errc::kClosed, "enrolment already failed");
  }
  return Failed(Error{ErrorKind::kPeerProtocol, Errc::kClosed,
                      "the MEF closed the connection" +
                          (stack_.top().failure().empty() ? std::string()
                                                          : ": " + stack_.top().failure())});
}

Result<void> EnrolmentClient::SendRequest(const HttpRequest& request) {
  if (auto r = stack_.WritePlaintext(AsBytes(request.Serialize())); !r) return Failed(r.error());
  return {};
}

Result<void> EnrolmentClient::Step() {
  while (true) {
    switch (phase_) {
      case Phase::kOuterHandshake: {
        if (!stack_.TopHandshakeComplete()) return {};
        if (auto ok = AdoptPinnedAnchor(stack_.top()); !ok) return Failed(ok.error());
        if (auto ok = CheckStaple(stack_.top()); !ok) return Failed(ok.error());
        // docs/conventions.md §2: the channel binding of the outer session, sent later inside the inner one.
        auto binding = stack_.top().Export(kChannelBindingLabel, kChannelBindingLength,
                                           ByteSpan());
        if (!binding) return Failed(binding.error());
        auto bytes = binding->Expose(SecretAccess::ForCrypto());
        outer_binding_.assign(bytes.begin(), bytes.end());
        result_.outer_tls_version = stack_.top().version();
        HttpRequest request;
        request.method = "POST";
        request.target = std::string(kTokenPath);
        request.headers.Set("Host", mef_fqdn_);
        request.headers.Set("Content-Type", "application/json");
        request.headers.Set(kHeaderRequestId, "token-1");
        request.headers.Set(kHeaderRvi, kReleaseVersion);
        std::vector<std::string> names;
        for (const auto& rspf : rspfs_) names.emplace_back(rspf->name());
        nlohmann::json body = {{"token", bundle_.token}, {"rspfs", names}};
        request.body = body.dump();
        phase_ = Phase::kTokenExchange;
        MTE_TRY(SendRequest(request));
        SecureWipe(request.body.data(), request.body.size());
        break;
      }
      case Phase::kRspfHandshake: {
        if (!stack_.TopHandshakeComplete()) return {};
        if (auto ok = CheckStaple(stack_.top()); !ok) return Failed(ok.error());
        MTE_TRY(SendEnrolment());
        break;
      }
      case Phase::kTokenExchange:
      case Phase::kUpgrade:
      case Phase::kEnrolmentExchange: {
        Bytes plain = stack_.TakePlaintext();
        auto decoded = decoder_.Feed(plain);
        if (!decoded) return Failed(decoded.error());
        if (!decoded->has_value()) return {};
        MTE_TRY(OnResponse(std::move(**decoded)));
        if (phase_ == Phase::kDone) return {};
        break;
      }
      case Phase::kDone:
      case Phase::kFailed:
        return {};
    }
  }
}

Result<void> EnrolmentClient::StartRspf() {
  // Seed 8.y.4 step 17: the RSPF's TLS handshake inside the established outer session.
  auto engine = rspf_->NewEngine(mef_fqdn_, mef_trust_pem_);
  if (!engine) return Failed(engine.error());
  stack_.Push(std::move(*engine), decoder_.TakeBuffered());
  decoder_ = ResponseDecoder();
  phase_ = Phase::kRspfHandshake;
  if (auto r = stack_.Advance(); !r) return Failed(r.error());
  return {};
}

Result<void> EnrolmentClient::SendEnrolment() {
  const auto& tls = stack_.top();
  auto exported = tls.Export(crypto::kBootstrapExporterLabel, crypto::kBootstrapExportLength);
  if (!exported) return Failed(exported.error());
  auto key = crypto::SplitBootstrapExport(*exported);
  if (!key) return Failed(key.error());
  result_.ke_id = crypto::MakeKeId(key->relative_ke_id, mef_fqdn_);
  result_.ke = std::move(key->ke);
  result_.tls_version = tls.version();
  result_.cipher = tls.cipher();
  HttpRequest request;
  request.method = "POST";
  request.target = std::string(kEnrolmentPath);
  request.headers.Set("Host", mef_fqdn_);
  request.headers.Set("Content-Type", "application/json");
  request.headers.Set("Accept", "application/json");
  request.headers.Set(kHeaderOrigin, rspf_->origin());
  request.headers.Set(kHeaderRequestId, "enrol-1");
  request.headers.Set(kHeaderRvi, kReleaseVersion);
  nlohmann::json body = {{"mafEnrolment", true}};
  if (via_token_) {
    body["channelBinding"] = HexLower(binding_override_ ? *binding_override_ : outer_binding_);
  }
  request.body = body.dump();
  phase_ = Phase::kEnrolmentExchange;
  return SendRequest(request);
}

Result<void> EnrolmentClient::OnResponse(HttpResponse response) {
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  switch (phase_) {
    case Phase::kTokenExchange: {
      if (response.status != 200 || !body.is_object() || !body.contains("rspf") ||
          !body["rspf"].is_string()) {
        return Failed(RefusalError(response, ErrorKind::kPeerAuth, Errc::kForbidden));
      }
      result_.rspf = body["rspf"].get<std::string>();
      if (body.contains("enroleeId") && body["enroleeId"].is_number_integer()) {
        result_.enrolee_id = body["enroleeId"].get<int64_t>();
      }
      for (auto& offered : rspfs_) {
        if (offered && offered->name() == result_.rspf) rspf_ = std::move(offered);
      }
      if (!rspf_) {
        return Failed(Error{ErrorKind::kPeerProtocol, Errc::kUnsupported,
                            "the MEF selected RSPF '" + result_.rspf.substr(0, 32) +
                                "', which this enrolee did not offer"});
      }
      HttpRequest request;
      request.method = "GET";
      request.target = std::string(kRspfPath);
      request.headers.Set("Host", mef_fqdn_);
      request.headers.Set("Connection", "Upgrade");
      request.headers.Set("Upgrade", kUpgradeProtocol);
      request.headers.Set(kHeaderRequestId, "rspf-1");
      request.headers.Set(kHeaderRvi, kReleaseVersion);
      phase_ = Phase::kUpgrade;
      return SendRequest(request);
    }
    case Phase::kUpgrade: {
      auto upgrade = response.headers.Get("Upgrade");
      if (response.status != 101 || !upgrade || *upgrade != kUpgradeProtocol) {
        return Failed(RefusalError(response, ErrorKind::kPeerProtocol, Errc::kMalformed));
      }
      return StartRspf();
    }
    case Phase::kEnrolmentExchange: {
      if (response.status != 201 || !body.is_object()) {
        return Failed(RefusalError(response, ErrorKind::kPeerAuth, Errc::kForbidden));
      }
      try {
        std::string ke_id = body.at("keId").get<std::string>();
        // Both ends derive KeID from the same exporter output: a mismatch means a broken MEF.
        if (!crypto::KeIdEquals(ke_id, result_.ke_id)) {
          return Failed(Error{ErrorKind::kPeerProtocol, Errc::kMalformed,
                              "MEF reported KeID " + ke_id.substr(0, 128) +
                                  " but the session gives " + result_.ke_id});
        }
        result_.expires_at = body.at("expiresAt").get<std::string>();
        if (result_.rspf.empty()) result_.rspf = body.value("rspf", std::string(rspf_->name()));
        if (body.contains("enroleeId") && body["enroleeId"].is_number_integer()) {
          result_.enrolee_id = body["enroleeId"].get<int64_t>();
        }
        for (const auto& instruction : body.at("instructions")) {
          if (instruction.at("type") == "mafEnrolment") {
            result_.km_id = instruction.at("kmId").get<std::string>();
            result_.maf_fqdn = instruction.at("mafFqdn").get<std::string>();
            result_.maf_id = instruction.at("mafId").get<std::string>();
          }
        }
      } catch (const nlohmann::json::exception&) {
        return Failed(Error{ErrorKind::kPeerProtocol, Errc::kMalformed,
                            "MEF response lacks keId, expiresAt or instructions"});
      }
      if (!result_.km_id.empty()) {
        if (auto ok = crypto::CheckIdentifier(result_.maf_id, "MAF-ID"); !ok) {
          return Failed(ok.error());
        }
        auto km = crypto::DeriveKm(result_.ke, result_.maf_id);  // TS-0003 §10.3.2
        if (!km) return Failed(km.error());
        result_.km = std::move(*km);
      }
      phase_ = Phase::kDone;
      stack_.Shutdown(/*all=*/true);
      return {};
    }
    case Phase::kOuterHandshake:
    case Phase::kRspfHandshake:
    case Phase::kDone:
    case Phase::kFailed:
      break;
  }
  return Failed(Error{ErrorKind::kPeerProtocol, Errc::kMalformed, "unexpected response"});
}

}  // namespace mte::proto
