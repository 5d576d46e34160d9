#include "mef/rspf/cert/revocation.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "base/file.h"

namespace mte::mef {
namespace {

constexpr size_t kNonceBytes = 16;                 // RFC 6960 §4.4.1 (RFC 8954: 1..32 octets)
constexpr int64_t kNoNextUpdateCacheSeconds = 3600;

std::string Time(int64_t t) {
  char buf[32];
  return std::string(FormatRfc3339(t, buf));
}

Error Refusal(std::string detail) {
  return Error{ErrorKind::kPeerAuth, Errc::kForbidden, std::move(detail)};
}

}  // namespace

RevocationChecker::RevocationChecker(OcspTransport transport, Rng& rng, const Clock& clock,
                                     size_t cache_limit)
    : transport_(std::move(transport)), rng_(rng), clock_(clock), cache_limit_(cache_limit) {}

Result<std::string> RevocationChecker::Judge(const crypto::OcspVerdict& verdict,
                                             std::string_view source,
                                             const std::string& responder) {
  switch (verdict.status) {
    case crypto::CertStatus::kGood: {
      std::string line = std::string(source) + " good" + responder + ", thisUpdate " +
                         Time(verdict.this_update);
      if (verdict.next_update != 0) line += ", nextUpdate " + Time(verdict.next_update);
      return line;
    }
    case crypto::CertStatus::kRevoked: {
      std::string detail = "device certificate revoked (" + std::string(source) + ", at " +
                           Time(verdict.revoked_at);
      if (!verdict.revocation_reason.empty()) detail += ", " + verdict.revocation_reason;
      return Fail(Refusal(detail + ")"));
    }
    case crypto::CertStatus::kUnknown:
      return Fail(Refusal("device certificate status unknown to the " + std::string(source) +
                          " responder"));
  }
  return Fail(Refusal("device certificate status unknown"));
}

Result<std::string> RevocationChecker::Unavailable(const RevocationPolicy& policy,
                                                   const std::string& why) {
  if (policy.fail_open) {
    // An operator's audited choice per device CA: the enrolment is accepted and says why.
    return "revocation status unavailable (" + why + "); accepted: device CA '" +
           policy.ca_name + "' is fail-open";
  }
  return Fail(Refusal("device certificate status could not be checked: " + why));
}

void RevocationChecker::Remember(const std::string& cert_sha256, int64_t until,
                                 const std::string& audit) {
  std::lock_guard lock(mutex_);
  if (good_.find(cert_sha256) == good_.end()) {
    while (good_.size() >= cache_limit_ && !order_.empty()) {
      good_.erase(order_.front());
      order_.pop_front();
    }
    order_.push_back(cert_sha256);
  }
  good_[cert_sha256] = CachedGood{until, audit};
}

void RevocationChecker::CheckCrl(const crypto::VerifiedChain& chain,
                                 const RevocationPolicy& policy, int64_t now,
                                 const std::function<void(Result<std::string>)>& done) {
  struct stat st {};
  if (::stat(policy.crl_file.c_str(), &st) != 0) {
    return done(Unavailable(policy, "CRL file " + policy.crl_file + " is missing"));
  }
  int64_t mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  std::shared_ptr<const crypto::Crl> crl;
  {
    std::lock_guard lock(mutex_);
    auto it = crls_.find(policy.crl_file);
    if (it != crls_.end() && it->second.mtime_ns == mtime_ns &&
        it->second.size == static_cast<uintmax_t>(st.st_size)) {
      crl = it->second.crl;
    }
  }
  if (!crl) {
    // Reloaded whenever the file changes (size or modification time).
    auto bytes = ReadBoundedFile(policy.crl_file, crypto::kMaxCrlSize);
    if (!bytes) return done(Unavailable(policy, bytes.error().detail));
    auto parsed = crypto::Crl::Parse(AsBytes(*bytes), chain.issuer_der, now);
    if (!parsed) return done(Unavailable(policy, parsed.error().detail));
    crl = std::make_shared<const crypto::Crl>(std::move(*parsed));
    std::lock_guard lock(mutex_);
    crls_[policy.crl_file] = CachedCrl{mtime_ns, static_cast<uintmax_t>(st.st_size), crl};
  }
  if (crl->next_update() < now) {
    return done(Unavailable(policy, "the CRL of device CA '" + policy.ca_name + "' is stale"));
  }
  // The issuer and serial the chain check took from the leaf: no second parse of it.
  done(Judge(crl->Status(chain.leaf_issuer_name_der, chain.leaf_serial_der), "CRL", ""));
}

void RevocationChecker::Check(const crypto::VerifiedChain& chain, const RevocationPolicy& policy,
                              std::function<void(Result<std::string>)> done) {
  const int64_t now = UnixSeconds(clock_.Now());
  if (!policy.crl_file.empty()) return CheckCrl(chain, policy, now, done);
  {
    std::lock_guard lock(mutex_);
    auto it = good_.find(chain.leaf.cert_sha256);
    if (it != good_.end() && it->second.until > now) return done(it->second.audit + " (cached)");
  }
  std::string url = chain.leaf.ocsp_url.empty() ? policy.ocsp_url : chain.leaf.ocsp_url;
  if (url.empty()) {
    return done(Unavailable(policy, "the certificate names no OCSP responder and device CA '" +
                                        policy.ca_name + "' has neither an OCSP URL nor a CRL"));
  }
  Bytes nonce(kNonceBytes);
  rng_.Fill(nonce);
  auto request = crypto::MakeOcspRequest(chain.leaf_der, chain.issuer_der, nonce);
  if (!request) return done(Fail(request.error()));
  auto leaf = std::make_shared<const crypto::VerifiedChain>(chain);
  transport_(url, std::move(request->der),
             [this, leaf, policy, url, nonce, done](Result<Bytes> answer) {
               if (!answer) {
                 return done(Unavailable(policy, "OCSP responder " + url + ": " +
                                                     answer.error().detail));
               }
               crypto::OcspCheck check;
               check.expected_nonce = ByteSpan(nonce);
               check.now = UnixSeconds(clock_.Now());
               auto verdict =
                   crypto::VerifyOcspResponse(*answer, leaf->leaf_der, leaf->issuer_der, check);
               if (!verdict) {
                 return done(Unavailable(policy, "unusable answer from OCSP responder " + url +
                                                     ": " + verdict.error().detail));
               }
               auto judged = Judge(*verdict, "OCSP", " from " + url);
               if (judged && verdict->status == crypto::CertStatus::kGood) {
                 int64_t until = verdict->next_update != 0
                                     ? verdict->next_update
                                     : verdict->this_update + kNoNextUpdateCacheSeconds;
                 Remember(leaf->leaf.cert_sha256, until, *judged);
               }
               done(std::move(judged));
             });
}

}  // namespace mte::mef
