#include "mef/outbox.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "base/failpoint.h"
#include "base/thread_name.h"

namespace mte {
namespace {

constexpr int64_t kMaxBackoffSeconds = 60;
constexpr auto kPollInterval = std::chrono::seconds(1);
// After a wake-up, wait this long for further commits, so that a burst of enrolments is delivered
// and marked as one batch.
constexpr auto kGatherInterval = std::chrono::milliseconds(10);

}  // namespace

BatchOutcome DeliverEach(const DeliverFn& deliver, const std::vector<SecretBytes>& payloads) {
  BatchOutcome outcome;
  for (const SecretBytes& payload : payloads) {
    outcome.results.push_back(deliver(payload));
    const Result<void>& sent = outcome.results.back();
    if (!sent && sent.error().code != Errc::kForbidden) {
      outcome.target_failed = true;
      break;
    }
  }
  return outcome;
}

Result<void> DeliveryResult(int status, std::string_view detail) {
  if (status == 200 || status == 201) return {};
  const bool refused = status / 100 == 4 && status != 429;
  return Fail(
      ErrorKind::kPeerProtocol, refused ? Errc::kForbidden : Errc::kRateLimited,
      "MAF answered HTTP " + std::to_string(status) + ": " + std::string(detail.substr(0, 200)));
}

std::string BatchBody(const std::vector<SecretBytes>& payloads) {
  constexpr std::string_view kHead = R"({"deliveries":[)", kTail = "]}";
  size_t size = kHead.size() + payloads.size() + kTail.size();
  for (const SecretBytes& p : payloads) size += p.Expose(SecretAccess::ForCrypto()).size();
  std::string body;
  body.reserve(size);  // no reallocation: no unwiped copy of a Km is left behind
  body += kHead;
  for (size_t i = 0; i < payloads.size(); ++i) {
    if (i > 0) body += ',';
    body += AsText(payloads[i].Expose(SecretAccess::ForCrypto()));
  }
  body += kTail;
  return body;
}

std::optional<BatchOutcome> BatchResult(int status, std::string_view body, size_t count) {
  if (status != 200) {
    auto failed = DeliveryResult(status, body);
    if (failed.error().code == Errc::kForbidden) return std::nullopt;
    return BatchOutcome{{std::move(failed)}, true};
  }
  auto answer = nlohmann::json::parse(body, nullptr, false);
  const nlohmann::json* results =
      answer.is_object() && answer.contains("results") ? &answer["results"] : nullptr;
  if (results == nullptr || !results->is_array() || results->size() != count) {
    return BatchOutcome{{Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                              "MAF answered a batch without one result per delivery")},
                        true};
  }
  BatchOutcome outcome;
  for (const auto& result : *results) {
    const bool has_status =
        result.is_object() && result.contains("status") && result["status"].is_number_integer();
    const bool has_error =
        result.is_object() && result.contains("error") && result["error"].is_string();
    outcome.results.push_back(
        has_status ? DeliveryResult(result["status"].get<int>(),
                                    has_error ? result["error"].get<std::string>() : "")
                   : Fail(ErrorKind::kPeerProtocol, Errc::kMalformed,
                          "MAF answered a delivery without a status"));
  }
  return outcome;
}

OutboxWorker::OutboxWorker(store::Store& store, const crypto::KeyEncryptionKey& kek,
                           const Clock& clock, DeliverBatchFn deliver)
    : store_(store), kek_(kek), clock_(clock), deliver_(std::move(deliver)) {}

OutboxWorker::OutboxWorker(store::Store& store, const crypto::KeyEncryptionKey& kek,
                           const Clock& clock, DeliverFn deliver)
    : OutboxWorker(store, kek, clock,
                   [deliver = std::move(deliver)](const std::vector<SecretBytes>& payloads) {
                     return DeliverEach(deliver, payloads);
                   }) {}

OutboxWorker::~OutboxWorker() { Stop(); }

void OutboxWorker::Start() {
  thread_ = std::thread([this] {
    SetThreadName("mte-outbox");
    Loop();
  });
}

void OutboxWorker::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OutboxWorker::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void OutboxWorker::RecordFailure(const store::OutboxItem& item, int64_t now, const Error& error) {
  int64_t backoff = std::min<int64_t>(kMaxBackoffSeconds, int64_t{1} << std::min(item.attempts, 6));
  spdlog::warn("outbox: delivery of enrolee {} to the {} failed (attempt {}), retry in {} s: {}",
               item.enrolee_id, item.target, item.attempts + 1, backoff, Describe(error));
  if (auto marked = store_.MarkAttemptFailed(item.id, now + backoff, Describe(error)); !marked) {
    spdlog::error("outbox: cannot record failure: {}", Describe(marked.error()));
  }
}

OutboxWorker::Pass OutboxWorker::RunPass() {
  Pass pass;
  int64_t now = UnixSeconds(clock_.Now());
  auto due = claim_lease_seconds_ > 0
                 ? store_.ClaimDueOutbox(now, kBatch, now + claim_lease_seconds_)
                 : store_.DueOutbox(now, kBatch);
  if (!due) {
    spdlog::error("outbox: cannot read: {}", Describe(due.error()));
    return pass;
  }
  std::vector<SecretBytes> payloads;
  std::vector<const store::OutboxItem*> sent_items;
  for (const auto& item : *due) {
    auto payload = kek_.Open(item.payload_sealed, store::OutboxAad(item.enrolee_id, item.generation));
    if (!payload) {
      RecordFailure(item, now, payload.error());  // this item only: the target was not involved
      continue;
    }
    payloads.push_back(std::move(*payload));
    sent_items.push_back(&item);
  }
  if (payloads.empty()) return pass;
  BatchOutcome outcome = deliver_(payloads);
  payloads.clear();  // wiped
  std::vector<int64_t> delivered;
  std::vector<const store::OutboxItem*> delivered_items;
  for (size_t i = 0; i < outcome.results.size() && i < sent_items.size(); ++i) {
    if (outcome.results[i]) {
      delivered.push_back(sent_items[i]->id);
      delivered_items.push_back(sent_items[i]);
    } else {
      RecordFailure(*sent_items[i], now, outcome.results[i].error());
    }
  }
  pass.target_failed = outcome.target_failed;
  if (claim_lease_seconds_ > 0 && outcome.target_failed) {
    // Claimed but not sent (the target failed before them): back off with the failed one rather
    // than wait for the lease's end.
    const Error unsent = Error{ErrorKind::kIo, Errc::kUnavailable,
                               "not sent: the target failed earlier in the batch"};
    for (size_t i = outcome.results.size(); i < sent_items.size(); ++i) {
      RecordFailure(*sent_items[i], now, unsent);
    }
  }
  if (delivered.empty()) return pass;
  MTE_FAILPOINT_HIT("outbox-after-send");
  // One transaction for the whole batch. Should it fail, the items stay due and are delivered
  // again, which the receiving end treats as a repeat.
  if (auto marked = store_.MarkDelivered(delivered, UnixSeconds(clock_.Now())); !marked) {
    spdlog::error("outbox: delivered {} item(s) but cannot mark them: {}", delivered.size(),
                  Describe(marked.error()));
    return pass;
  }
  for (const auto* item : delivered_items) {
    spdlog::info("outbox: delivered credential of enrolee {} (generation {}) to the {}",
                 item->enrolee_id, item->generation, item->target);
  }
  pass.delivered = static_cast<int>(delivered.size());
  pass.more_due = !pass.target_failed && due->size() == static_cast<size_t>(kBatch);
  return pass;
}

void OutboxWorker::Loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (stop_) return;
      woken_ = false;
    }
    // A backlog drains as fast as the target takes it: full batches follow each other at once.
    if (RunPass().more_due) continue;
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, kPollInterval, [this] { return stop_ || woken_; }) && !stop_) {
      cv_.wait_for(lock, kGatherInterval, [this] { return stop_; });
    }
    if (stop_) return;
  }
}

}  // namespace mte
