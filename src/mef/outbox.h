// Durable delivery of enrolee credentials to the MAF (seed step 7/18, docs/architecture.md §5): a worker
// thread that sends due outbox items in batches, marks them delivered on success, and retries with
// exponential backoff (1 s doubling to 60 s) on failure. A MAF that is down loses nothing; a crash
// after the MAF stored a credential but before it was marked delivered causes one repeat
// delivery, which the MAF recognises (idempotent per enrolee and generation).
// Thread-safety: Start/Stop/Wake from any thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "crypto/aead.h"
#include "store/store.h"

namespace mte {

// Sends one sealed-then-opened payload (JSON text) to the target. Blocking. Errc::kForbidden
// means the target answered and refused this item (the pass goes on with the next one); any
// other error means the target failed (no connection, a timeout, a 5xx or 429), and the pass
// stops.
using DeliverFn = std::function<Result<void>(const SecretBytes& payload_json)>;

// What the target said to a batch of payloads, in order: one result per payload that was sent, as
// DeliverFn would have returned it. With target_failed the last result is the target's failure and
// the payloads after it were not sent; otherwise every payload has its result.
struct BatchOutcome {
  std::vector<Result<void>> results;
  bool target_failed = false;
};
// Sends a batch of payloads (one request for all of them, docs/protocol.md §10.5). Blocking.
using DeliverBatchFn = std::function<BatchOutcome(const std::vector<SecretBytes>& payloads)>;

// A batch sent one payload at a time with `deliver`, in order, until the target fails.
BatchOutcome DeliverEach(const DeliverFn& deliver, const std::vector<SecretBytes>& payloads);

// The MEF's reading of the MAF's delivery answers (docs/protocol.md §10.3, §10.5), transport-free.
// What an HTTP status says about one delivery: 200 and 201 delivered; another 4xx refuses this
// item (Errc::kForbidden); a 5xx or 429 says that the MAF cannot take any now.
Result<void> DeliveryResult(int status, std::string_view detail);
// The body of a batch request for these payloads (JSON texts): {"deliveries":[...]}. It holds
// every Km: the caller wipes it.
std::string BatchBody(const std::vector<SecretBytes>& payloads);
// The outcome of a batch of `count` payloads from the MAF's answer (HTTP status and body);
// nullopt when the MAF refused the batch as a whole with a 4xx other than 429, so that the items
// are sent one by one, which isolates the one at fault. An answer without one result per
// payload marks none delivered (all are sent again; the MAF takes repeats as such).
std::optional<BatchOutcome> BatchResult(int status, std::string_view body, size_t count);

class OutboxWorker {
 public:
  OutboxWorker(store::Store& store, const crypto::KeyEncryptionKey& kek, const Clock& clock,
               DeliverBatchFn deliver);
  // Each item sent on its own (DeliverEach).
  OutboxWorker(store::Store& store, const crypto::KeyEncryptionKey& kek, const Clock& clock,
               DeliverFn deliver);
  ~OutboxWorker();

  void Start();
  void Stop();
  void Wake();

  // Several MEF processes sharing one store (PostgreSQL): each pass claims its items for this
  // many seconds (Store::ClaimDueOutbox), so that no other process sends them meanwhile, and a
  // process that dies mid-pass leaves them to the others once the lease ends. 0 (the default):
  // this process is the store's only MEF, and a pass reads the due items without claiming them.
  // Call before Start.
  void set_claim_lease(int64_t seconds) { claim_lease_seconds_ = seconds; }

  // Items one pass reads and sends (one batch, one MarkDelivered transaction).
  static constexpr int kBatch = 64;

  // One pass over up to kBatch due items, in order, sent as one batch. A failed item backs off; a
  // failed target (see DeliverFn) also ends the pass, and the rest wait for the next one.
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
  // Records a failed attempt of `item` at `now` with its backoff.
  void RecordFailure(const store::OutboxItem& item, int64_t now, const Error& error);

  store::Store& store_;
  const crypto::KeyEncryptionKey& kek_;
  const Clock& clock_;
  DeliverBatchFn deliver_;
  int64_t claim_lease_seconds_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace mte
