// OCSP stapling for the MEF's own certificate (RFC 6066 §8; TS-0003 §8.1.2.2): fetches the
// certificate's status from the responder of its issuer, keeps the latest good response, and
// hands it to the MEF port's TLS context, which staples it to handshakes whose client asks.
// A worker thread refreshes half-way between thisUpdate and nextUpdate (at the latest after
// `max_interval`), retries a failed fetch after `retry`, and drops a response once it is past
// its nextUpdate: a stale staple is worse than none.
// Thread-safety: Current() from any thread (TLS handshakes); the rest from one thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/result.h"
#include "mef/rspf/cert/revocation.h"

namespace mte::mef {

class OcspStapler {
 public:
  // `cert_pem_file`: the MEF certificate (its first certificate is the one stapled);
  // `issuer_pem_file`: the certificate that issued it; `url`: the responder ("" = the
  // certificate's AIA OCSP URL; kLocalUsage/kConfig if it has none).
  // The responder for `cert_pem_file`'s status: `configured` when set, else the certificate's AIA
  // OCSP URL, else "" (nothing to staple). kLocalUsage/kConfig when the file cannot be read.
  static Result<std::string> ResponderUrl(const std::string& cert_pem_file,
                                          const std::string& configured);
  static Result<std::unique_ptr<OcspStapler>> Create(const std::string& cert_pem_file,
                                                     const std::string& issuer_pem_file,
                                                     std::string url, OcspTransport transport,
                                                     Rng& rng, const Clock& clock);
  ~OcspStapler();

  // The response to staple now, or null (none yet, or past its nextUpdate).
  std::shared_ptr<const Bytes> Current() const;
  // Fetches once and waits for the answer (at most `wait`); keeps it if it is good.
  Result<void> RefreshNow(std::chrono::milliseconds wait = std::chrono::seconds(10));
  // Starts the refresh thread (after a first RefreshNow, whatever its outcome).
  void Start(std::chrono::seconds max_interval = std::chrono::hours(1),
             std::chrono::seconds retry = std::chrono::seconds(30));
  const std::string& url() const { return url_; }

 private:
  OcspStapler(Rng& rng, const Clock& clock) : rng_(rng), clock_(clock) {}
  void Run(std::chrono::seconds max_interval, std::chrono::seconds retry);

  Rng& rng_;
  const Clock& clock_;
  Bytes leaf_der_;
  Bytes issuer_der_;
  std::string url_;
  OcspTransport transport_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<const Bytes> current_;
  int64_t this_update_ = 0;
  int64_t next_update_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mte::mef
