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
  auto stakeholder = world_.AddStakeholder("dave", "dave's passphrase");
  for (int i = 0; i < n; ++i) {
    std::string id = "urn:dev:acme:pump-" + std::to_string(i);
    TestDevice device = world_.ImportDevice(id, "kpm-pump-" + std::to_string(i), "PUMP-" + id);
    ASSERT_GT(world_.Claim(stakeholder, device).id, 0);
    auto response = world_.CallMef(device, JsonRequest("POST", "/enrolment", "{}"));
    ASSERT_TRUE(Ok(response));
    ASSERT_EQ(response->status, 201) << response->body;
  }
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

}  // namespace
}  // namespace mte::testing
