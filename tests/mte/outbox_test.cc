// Durable delivery of enrolee credentials to the MAF (docs/architecture.md §5): retries with exponential
// backoff capped at 60 s, a repeat delivery after a crash is recognised by the MAF, and deliveries
// of several generations leave the MAF with the newest credential whatever their order.
#include "mef/outbox.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "service_world.h"

namespace mte::testing {
namespace {

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    device_ = world_.ImportDevice("urn:dev:acme:valve-0001", "kpm-valve-0001", "VALVE-CODE");
    enrolee_ = world_.Claim(world_.AddStakeholder("carol", "carol's passphrase"), device_);
    ASSERT_GT(enrolee_.id, 0);
  }

  std::string Enrol() {
    auto response = world_.CallMef(device_, JsonRequest("POST", "/enrolment", "{}"));
    EXPECT_TRUE(Ok(response));
    if (!response) return "";
    EXPECT_EQ(response->status, 201) << response->body;
    return JsonBody(*response).value("keId", "");
  }

  // Sends the payload to the MAF over mutual TLS; records what happened.
  Result<void> SendToMaf(const SecretBytes& payload) {
    std::string text = ExposeText(payload);
    generations_.push_back(nlohmann::json::parse(text).value("generation", int64_t{0}));
    auto answer = world_.Deliver(text);
    if (!answer) return Fail(answer.error());
    statuses_.push_back(answer->status);
    if (answer->status / 100 != 2) {
      return Fail(ErrorKind::kPeerProtocol, Errc::kMalformed, "MAF answered " + answer->body);
    }
    return {};
  }

  // Imports, claims and enrols `n` devices named urn:dev:acme:<stem>-<i> (Flow A); their KeIDs.
  std::vector<std::string> EnrolMany(int n, const std::string& stem) {
    auto stakeholder = world_.AddStakeholder(stem + "-owner", stem + "'s passphrase");
    std::vector<std::string> ke_ids;
    for (int i = 0; i < n; ++i) {
      std::string id = "urn:dev:acme:" + stem + "-" + std::to_string(i);
      TestDevice device =
          world_.ImportDevice(id, "kpm-" + stem + "-" + std::to_string(i), "CODE-" + id);
      EXPECT_GT(world_.Claim(stakeholder, device).id, 0);
      auto response = world_.CallMef(device, JsonRequest("POST", "/enrolment", "{}"));
      EXPECT_TRUE(Ok(response));
      if (!response) return ke_ids;
      EXPECT_EQ(response->status, 201) << response->body;
      ke_ids.push_back(JsonBody(*response).value("keId", ""));
    }
    return ke_ids;
  }

  store::DeliveryStatus Delivery() {
    auto e = world_.store->GetEnrolee(enrolee_.id);
    EXPECT_TRUE(Ok(e));
    return e && e->has_value() ? (*e)->maf_delivery : store::DeliveryStatus::kNone;
  }

  ServiceWorld world_;
  TestDevice device_;
  store::EnroleeRecord enrolee_;
  std::vector<int64_t> generations_;
  std::vector<int> statuses_;
};

TEST_F(OutboxTest, FailedDeliveriesBackOffExponentiallyUpToAMinute) {
  std::string ke_id = Enrol();
  int calls = 0;
  bool maf_up = false;
  OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                      [&](const SecretBytes& payload) -> Result<void> {
                        ++calls;
                        if (!maf_up) {
                          return Fail(ErrorKind::kIo, Errc::kIoFailed, "connection refused");
                        }
                        return SendToMaf(payload);
                      });
  const std::vector<int64_t> expected_backoff = {1, 2, 4, 8, 16, 32, 60, 60};
  for (size_t attempt = 0; attempt < expected_backoff.size(); ++attempt) {
    int64_t now = world_.clock.seconds();
    EXPECT_EQ(worker.RunOnce(), 0);
    EXPECT_EQ(calls, static_cast<int>(attempt) + 1);
    auto item = world_.store->GetOutboxItem(1);
    ASSERT_TRUE(Ok(item));
    ASSERT_TRUE(item->has_value());
    EXPECT_EQ((*item)->attempts, static_cast<int>(attempt) + 1);
    EXPECT_EQ((*item)->next_attempt_at, now + expected_backoff[attempt]) << "attempt " << attempt;
    EXPECT_NE((*item)->last_error.find("connection refused"), std::string::npos);
    EXPECT_EQ((*item)->delivered_at, 0);
    // Not due before its time.
    world_.clock.Advance(expected_backoff[attempt] - 1);
    EXPECT_EQ(worker.RunOnce(), 0);
    EXPECT_EQ(calls, static_cast<int>(attempt) + 1);
    world_.clock.Advance(1);
  }
  EXPECT_EQ(Delivery(), store::DeliveryStatus::kPending);

  maf_up = true;
  EXPECT_EQ(worker.RunOnce(), 1);
  EXPECT_EQ(statuses_, std::vector<int>{201});
  EXPECT_EQ(Delivery(), store::DeliveryStatus::kDelivered);
  EXPECT_TRUE(world_.maf.LookupKm(ke_id).has_value());
}

TEST_F(OutboxTest, RepeatDeliveryAfterACrashIsRecognisedByTheMaf) {
  std::string ke_id = Enrol();
  // The first attempt reached the MAF, then the MTE stopped before marking the item delivered.
  auto items = AllOutbox(*world_.store);
  ASSERT_EQ(items.size(), 1u);
  auto payload = world_.kek.Open(items[0].payload_sealed,
                                 "outbox|" + std::to_string(enrolee_.id) + "|1");
  ASSERT_TRUE(Ok(payload));
  ASSERT_TRUE(Ok(SendToMaf(*payload)));

  OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                      [&](const SecretBytes& p) { return SendToMaf(p); });
  EXPECT_EQ(worker.RunOnce(), 1);
  EXPECT_EQ(statuses_, (std::vector<int>{201, 200}));
  EXPECT_EQ(Delivery(), store::DeliveryStatus::kDelivered);
  auto credentials = world_.store->ListMafCredentials();
  ASSERT_TRUE(Ok(credentials));
  EXPECT_EQ(credentials->size(), 1u);
  EXPECT_TRUE(world_.maf.LookupKm(ke_id).has_value());
}

TEST_F(OutboxTest, TwoGenerationsDeliveredInOrderLeaveTheNewest) {
  std::string first = Enrol();
  world_.clock.Advance(10);
  std::string second = Enrol();
  OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                      [&](const SecretBytes& p) { return SendToMaf(p); });
  EXPECT_EQ(worker.RunOnce(), 2);
  EXPECT_EQ(generations_, (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(world_.maf.LookupKm(first).has_value());
  EXPECT_TRUE(world_.maf.LookupKm(second).has_value());
  EXPECT_EQ(Delivery(), store::DeliveryStatus::kDelivered);
}

TEST_F(OutboxTest, AnOlderGenerationDeliveredLateDoesNotReplaceTheNewer) {
  std::string first = Enrol();
  world_.clock.Advance(10);
  std::string second = Enrol();
  bool fail_generation_1 = true;
  OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                      [&](const SecretBytes& p) -> Result<void> {
                        auto j = nlohmann::json::parse(ExposeText(p));
                        if (fail_generation_1 && j.value("generation", 0) == 1) {
                          return Fail(ErrorKind::kPeerProtocol, Errc::kForbidden,
                                      "MAF answered HTTP 409");
                        }
                        return SendToMaf(p);
                      });
  EXPECT_EQ(worker.RunOnce(), 1);  // generation 2 only
  EXPECT_EQ(Delivery(), store::DeliveryStatus::kDelivered);
  fail_generation_1 = false;
  world_.clock.Advance(1);
  EXPECT_EQ(worker.RunOnce(), 1);  // generation 1, late
  EXPECT_EQ(generations_, (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(statuses_, (std::vector<int>{201, 200}));
  EXPECT_FALSE(world_.maf.LookupKm(first).has_value());
  EXPECT_TRUE(world_.maf.LookupKm(second).has_value());
  EXPECT_EQ(Delivery(), store::DeliveryStatus::kDelivered);
  auto due = world_.store->DueOutbox(world_.clock.seconds() + 3600, 10);
  ASSERT_TRUE(Ok(due));
  EXPECT_TRUE(due->empty());
}

// A backlog drains in full batches one after another, and a failing target ends a pass at its
// first failure instead of costing one attempt deadline per queued item.
TEST_F(OutboxTest, FullBatchesFollowAtOnceAndAFailedTargetEndsThePass) {
  const int n = OutboxWorker::kBatch + 6;
  ASSERT_EQ(EnrolMany(n, "pump").size(), static_cast<size_t>(n));
  bool maf_up = false;
  int calls = 0;
  OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                      [&](const SecretBytes& p) -> Result<void> {
                        ++calls;
                        if (!maf_up) return Fail(ErrorKind::kTimeout, Errc::kDeadline, "timed out");
                        return SendToMaf(p);
                      });
  auto failed = worker.RunPass();
  EXPECT_EQ(calls, 1);  // not one attempt per queued item
  EXPECT_EQ(failed.delivered, 0);
  EXPECT_TRUE(failed.target_failed);
  EXPECT_FALSE(failed.more_due);

  maf_up = true;
  world_.clock.Advance(1);  // the item that failed is due again
  auto first = worker.RunPass();
  EXPECT_EQ(first.delivered, OutboxWorker::kBatch);
  EXPECT_TRUE(first.more_due);
  EXPECT_FALSE(first.target_failed);
  auto second = worker.RunPass();
  EXPECT_EQ(second.delivered, 6);
  EXPECT_FALSE(second.more_due);
  auto due = world_.store->DueOutbox(world_.clock.seconds() + 3600, 10);
  ASSERT_TRUE(Ok(due));
  EXPECT_TRUE(due->empty());
}

// With claims (several MEF processes on one store): a pass claims its items for the lease; the
// items a failed target left unsent back off like the failed one instead of waiting for the
// lease's end, and a claimed item is not claimed again while its lease runs.
TEST_F(OutboxTest, AClaimingPassReleasesWhatAFailedTargetLeftUnsent) {
  ASSERT_EQ(EnrolMany(3, "claim").size(), 3u);
  bool maf_up = false;
  OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                      [&](const SecretBytes& p) -> Result<void> {
                        if (!maf_up) return Fail(ErrorKind::kTimeout, Errc::kDeadline, "timed out");
                        return SendToMaf(p);
                      });
  worker.set_claim_lease(600);
  const int64_t now = world_.clock.seconds();
  auto failed = worker.RunPass();
  EXPECT_TRUE(failed.target_failed);
  EXPECT_EQ(failed.delivered, 0);
  // Nothing is due now, and nothing is left under the 600 s lease: all three back off (1 s).
  auto due_now = world_.store->DueOutbox(now, 10);
  ASSERT_TRUE(Ok(due_now));
  EXPECT_TRUE(due_now->empty());
  auto due_soon = world_.store->DueOutbox(now + 1, 10);
  ASSERT_TRUE(Ok(due_soon));
  EXPECT_EQ(due_soon->size(), 3u);
  maf_up = true;
  world_.clock.Advance(1);
  EXPECT_EQ(worker.RunPass().delivered, 3);
  auto left = world_.store->DueOutbox(world_.clock.seconds() + 3600, 10);
  ASSERT_TRUE(Ok(left));
  EXPECT_TRUE(left->empty());
}

// A pass sends its due items to the MAF as one batch, which the MAF applies in one transaction.
TEST_F(OutboxTest, APassSendsItsDueItemsAsOneBatchRequest) {
  const std::vector<std::string> ke_ids = EnrolMany(3, "fan");
  ASSERT_EQ(ke_ids.size(), 3u);
  std::vector<size_t> batch_sizes;
  OutboxWorker worker(*world_.store, world_.kek, world_.clock,
                      [&](const std::vector<SecretBytes>& payloads) -> BatchOutcome {
                        batch_sizes.push_back(payloads.size());
                        std::string body = BatchBody(payloads);
                        auto answer = world_.Deliver(body, "mef", "/maf/v1/credentials/batch");
                        SecureWipe(body.data(), body.size());
                        if (!answer) return {{Fail(answer.error())}, true};
                        auto outcome = BatchResult(answer->status, answer->body, payloads.size());
                        EXPECT_TRUE(outcome.has_value()) << answer->body;
                        return outcome ? *outcome : BatchOutcome{};
                      });
  auto pass = worker.RunPass();
  EXPECT_EQ(pass.delivered, 3);
  EXPECT_FALSE(pass.target_failed);
  EXPECT_EQ(batch_sizes, std::vector<size_t>{3});
  for (const auto& ke_id : ke_ids) EXPECT_TRUE(world_.maf.LookupKm(ke_id).has_value()) << ke_id;
  auto due = world_.store->DueOutbox(world_.clock.seconds() + 3600, 10);
  ASSERT_TRUE(Ok(due));
  EXPECT_TRUE(due->empty());
}

// Per item, a batch answer means what a single answer would: a refused item backs off alone; an
// answer that does not say which items the MAF took, or a 5xx, marks none.
TEST_F(OutboxTest, BatchAnswersAreReadPerItem) {
  auto mixed = BatchResult(
      200,
      R"({"results":[{"status":201,"kmId":"A","stored":true},{"status":400,"error":"bad km"},)"
      R"({"status":500,"error":"internal error"},{"status":200,"kmId":"B","stored":false}]})",
      4);
  ASSERT_TRUE(mixed.has_value());
  EXPECT_FALSE(mixed->target_failed);
  ASSERT_EQ(mixed->results.size(), 4u);
  EXPECT_TRUE(Ok(mixed->results[0]));
  ASSERT_FALSE(mixed->results[1].has_value());
  EXPECT_EQ(mixed->results[1].error().code, Errc::kForbidden);
  EXPECT_NE(mixed->results[1].error().detail.find("bad km"), std::string::npos);
  ASSERT_FALSE(mixed->results[2].has_value());
  EXPECT_NE(mixed->results[2].error().code, Errc::kForbidden);
  EXPECT_TRUE(Ok(mixed->results[3]));

  for (auto [status, body] :
       {std::pair{200, R"({"results":[{"status":201}]})"}, std::pair{200, "not json"},
        std::pair{503, "{}"}, std::pair{429, "{}"}}) {
    auto failed = BatchResult(status, body, 2);
    ASSERT_TRUE(failed.has_value()) << status << " " << body;
    EXPECT_TRUE(failed->target_failed) << status << " " << body;
    ASSERT_EQ(failed->results.size(), 1u);
    EXPECT_FALSE(failed->results[0].has_value());
  }
  EXPECT_FALSE(BatchResult(400, R"({"m2m:dbg":"duplicate member in body"})", 2).has_value())
      << "a batch refused as a whole is sent one by one";
}

}  // namespace
}  // namespace mte::testing
