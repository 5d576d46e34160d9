#include "mef/outbox.h"

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

OutboxWorker::OutboxWorker(store::Store& store, const crypto::KeyEncryptionKey& kek,
                           const Clock& clock, DeliverFn deliver)
    : store_(store), kek_(kek), clock_(clock), deliver_(std::move(deliver)) {}

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

OutboxWorker::Pass OutboxWorker::RunPass() {
  Pass pass;
  int64_t now = UnixSeconds(clock_.Now());
  auto due = store_.DueOutbox(now, kBatch);
  if (!due) {
    spdlog::error("outbox: cannot read: {}", Describe(due.error()));
    return pass;
  }
  std::vector<int64_t> delivered;
  std::vector<const store::OutboxItem*> delivered_items;
  for (const auto& item : *due) {
    auto payload = kek_.Open(item.payload_sealed, store::OutboxAad(item.enrolee_id, item.generation));
    Result<void> sent = payload ? deliver_(*payload) : Result<void>(Fail(payload.error()));
    if (sent) {
      MTE_FAILPOINT_HIT("outbox-after-send");
      delivered.push_back(item.id);
      delivered_items.push_back(&item);
      continue;
    }
    int64_t backoff =
        std::min<int64_t>(kMaxBackoffSeconds, int64_t{1} << std::min(item.attempts, 6));
    spdlog::warn("outbox: delivery of enrolee {} to the {} failed (attempt {}), retry in {} s: {}",
                 item.enrolee_id, item.target, item.attempts + 1, backoff, Describe(sent.error()));
    if (auto marked = store_.MarkAttemptFailed(item.id, now + backoff, Describe(sent.error()));
        !marked) {
      spdlog::error("outbox: cannot record failure: {}", Describe(marked.error()));
    }
    if (sent.error().code != Errc::kForbidden) {
      pass.target_failed = true;
      break;
    }
  }
  if (delivered.empty()) return pass;
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
