// Durable delivery of enrolee credentials to the MAF (seed step 7/18, docs/architecture.md §5): a worker
// thread that sends due outbox items, marks them delivered on success, and retries with
// exponential backoff (1 s doubling to 60 s) on failure. A MAF that is down loses nothing; a crash
// after the MAF stored a credential but before it was marked delivered causes one repeat
// delivery, which the MAF recognises (idempotent per enrolee and generation).
// Thread-safety: Start/Stop/Wake from any thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "base/clock.h"
#include "crypto/aead.h"
#include "store/store.h"

namespace mte {

// Sends one sealed-then-opened payload (JSON text) to the target. Blocking. Errc::kForbidden
// means the target answered and refused this item (the pass goes on with the next one); any
// other error means the target failed (no connection, a timeout, a 5xx or 429), and the pass
// stops.
using DeliverFn = std::function<Result<void>(const SecretBytes& payload_json)>;

class OutboxWorker {
 public:
  OutboxWorker(store::Store& store, const crypto::KeyEncryptionKey& kek, const Clock& clock,
               DeliverFn deliver);
  ~OutboxWorker();

  void Start();
  void Stop();
  void Wake();

  // Items one pass reads and sends (one MarkDelivered transaction).
  static constexpr int kBatch = 64;

  // One pass over up to kBatch due items, in order. A failed item backs off; a failed target
  // (see DeliverFn) also ends the pass, and the rest wait for the next one.
  struct Pass {
    int delivered = 0;
    bool more_due = false;       // a full batch went out: the next pass starts at once
    bool target_failed = false;  // a delivery failed: the next pass waits for the poll interval
  };
  Pass RunPass();
  // RunPass().delivered. Used by tests.
  int RunOnce() { return RunPass().delivered; }

 private:
  void Loop();

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  const Clock& clock_;
  DeliverFn deliver_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace mte
