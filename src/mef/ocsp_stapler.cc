#include "mef/ocsp_stapler.h"

#include <spdlog/spdlog.h>

#include <future>

#include "base/file.h"
#include "base/thread_name.h"
#include "crypto/device_cert.h"
#include "crypto/ocsp.h"

namespace mte::mef {
namespace {

Result<Bytes> FirstCertificate(const std::string& path) {
  MTE_TRY_ASSIGN(std::string text, ReadBoundedFile(path, crypto::kMaxPemFileSize));
  auto certs = crypto::CertificatesFromPem(text);
  if (!certs) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig, path + ": " + certs.error().detail);
  }
  return std::move(certs->front());
}

}  // namespace

Result<std::string> OcspStapler::ResponderUrl(const std::string& cert_pem_file,
                                              const std::string& configured) {
  if (!configured.empty()) return configured;
  MTE_TRY_ASSIGN(Bytes leaf, FirstCertificate(cert_pem_file));
  MTE_TRY_ASSIGN(auto facts, crypto::DescribeCertificate(leaf));
  return facts.ocsp_url;
}

Result<std::unique_ptr<OcspStapler>> OcspStapler::Create(const std::string& cert_pem_file,
                                                         const std::string& issuer_pem_file,
                                                         std::string url, OcspTransport transport,
                                                         Rng& rng, const Clock& clock) {
  auto stapler = std::unique_ptr<OcspStapler>(new OcspStapler(rng, clock));
  MTE_TRY_ASSIGN(stapler->leaf_der_, FirstCertificate(cert_pem_file));
  MTE_TRY_ASSIGN(stapler->issuer_der_, FirstCertificate(issuer_pem_file));
  MTE_TRY_ASSIGN(url, ResponderUrl(cert_pem_file, url));
  if (url.empty()) {
    return Fail(ErrorKind::kLocalUsage, Errc::kConfig,
                cert_pem_file + " names no OCSP responder; set mefOcspUrl");
  }
  stapler->url_ = std::move(url);
  stapler->transport_ = std::move(transport);
  return stapler;
}

OcspStapler::~OcspStapler() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const Bytes> OcspStapler::Current() const {
  std::lock_guard lock(mutex_);
  if (!current_) return nullptr;
  if (next_update_ != 0 && UnixSeconds(clock_.Now()) > next_update_) return nullptr;
  return current_;
}

Result<void> OcspStapler::RefreshNow(std::chrono::milliseconds wait) {
  Bytes nonce(16);
  rng_.Fill(nonce);
  MTE_TRY_ASSIGN(auto request, crypto::MakeOcspRequest(leaf_der_, issuer_der_, nonce));
  auto answer = std::make_shared<std::promise<Result<Bytes>>>();
  auto future = answer->get_future();
  transport_(url_, std::move(request.der),
             [answer](Result<Bytes> response) { answer->set_value(std::move(response)); });
  if (future.wait_for(wait) != std::future_status::ready) {
    return Fail(ErrorKind::kTimeout, Errc::kDeadline, "OCSP responder " + url_ + " did not answer");
  }
  MTE_TRY_ASSIGN(Bytes response, future.get());
  crypto::OcspCheck check;
  check.expected_nonce = ByteSpan(nonce);
  check.now = UnixSeconds(clock_.Now());
  MTE_TRY_ASSIGN(auto verdict, crypto::VerifyOcspResponse(response, leaf_der_, issuer_der_, check));
  if (verdict.status != crypto::CertStatus::kGood) {
    // Never staple a revoked or unknown status: clients would refuse anyway, and the operator must
    // act.
    std::lock_guard lock(mutex_);
    current_.reset();
    return Fail(ErrorKind::kLocalUsage, Errc::kExpired,
                "the MEF certificate's OCSP status is " +
                    std::string(crypto::ToString(verdict.status)));
  }
  std::lock_guard lock(mutex_);
  current_ = std::make_shared<const Bytes>(std::move(response));
  this_update_ = verdict.this_update;
  next_update_ = verdict.next_update;
  return {};
}

void OcspStapler::Start(std::chrono::seconds max_interval, std::chrono::seconds retry) {
  thread_ = std::thread([this, max_interval, retry] { Run(max_interval, retry); });
}

void OcspStapler::Run(std::chrono::seconds max_interval, std::chrono::seconds retry) {
  SetThreadName("mte-staple");
  std::unique_lock lock(mutex_);
  bool failed = false;
  while (!stopping_) {
    int64_t now = UnixSeconds(clock_.Now());
    auto wait = std::chrono::seconds(retry);
    if (failed) {
      // A failing responder is asked again after `retry`, never in a tight loop.
    } else if (current_ && next_update_ != 0) {
      int64_t half = this_update_ + (next_update_ - this_update_) / 2;
      wait = std::chrono::seconds(std::clamp<int64_t>(half - now, 1, max_interval.count()));
    } else if (current_) {
      wait = max_interval;
    }
    if (wake_.wait_for(lock, wait, [this] { return stopping_; })) return;
    lock.unlock();
    auto refreshed = RefreshNow();
    if (!refreshed) {
      spdlog::warn("mef: OCSP staple refresh from {} failed: {}", url_, Describe(refreshed.error()));
    }
    lock.lock();
    failed = !refreshed;
  }
}

}  // namespace mte::mef
