// Conformance tests of the Flow B parts of store::Store (seed 8.y.4, docs/architecture.md §5), run
// on SQLite ":memory:", a SQLite file and PostgreSQL: enrolee entries without a claim,
// Enrolment-Tokens (issue, revoke, find), the commit that spends a token exactly once and records
// the device authenticated by the RSPF, commits without an outbox item, and MAF credential
// retirement.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "store/store.h"
#include "store/store_test_support.h"

namespace mte::store {
namespace {

using test_support::Backend;
using test_support::BackendTest;
using test_support::BackendName;
using test_support::IsError;
using test_support::MakeCredential;
using test_support::MakeDevice;
using test_support::Ok;
using test_support::SomeBytes;
using test_support::TempDir;

// A 32-octet stand-in for SHA-256(token text); distinct per n.
Bytes TokenHash(int n) {
  Bytes hash(32, 0xa5);
  hash[0] = static_cast<uint8_t>(n);
  hash[31] = static_cast<uint8_t>(n >> 8);
  return hash;
}

// A Flow B commit for `enrolee_id` at generation 0 -> 1 that spends `token_id` and binds `device`.
EnrolmentCommit FlowBCommit(int64_t enrolee_id, int64_t token_id, std::string device,
                            int64_t now, int64_t expected_generation = 0) {
  const int64_t generation = expected_generation + 1;
  EnrolmentCommit commit;
  commit.enrolee_id = enrolee_id;
  commit.expected_generation = expected_generation;
  commit.rspf = "PPSK";
  commit.ke_id = "KE" + std::to_string(enrolee_id) + "G" + std::to_string(generation) +
                 "@mef.example";
  commit.ke_sealed = SomeBytes(commit.ke_id);
  commit.ke_expires_at = now + 3600;
  commit.credential_ids = {"11-" + commit.ke_id};
  commit.outbox.enrolee_id = enrolee_id;
  commit.outbox.generation = generation;
  commit.outbox.target = "maf";
  commit.outbox.payload_sealed = SomeBytes("payload|" + std::to_string(enrolee_id));
  commit.outbox.next_attempt_at = now;
  commit.spend_token_id = token_id;
  commit.bind_device_id = std::move(device);
  commit.now = now;
  return commit;
}

class FlowBStoreTest : public BackendTest {
 protected:
  static constexpr int64_t kNow = 10'000;
  static constexpr int64_t kLifetime = 600;

  void SetUp() override {
    BackendTest::SetUp();
    auto id = store().AddStakeholder("alice", "$argon2id$alice", 10);
    ASSERT_TRUE(Ok(id));
    alice_ = *id;
    std::vector<DeviceRecord> devices;  // dev-1 .. dev-8, one for each racer below
    for (int n = 1; n <= 8; ++n) devices.push_back(MakeDevice(n));
    ASSERT_TRUE(Ok(store().ImportDevices(devices)));
  }

  EnroleeRecord AddEntry(std::optional<std::string_view> device = std::nullopt,
                         std::string label = "entry") {
    auto entry = store().AddEnroleeEntry(alice_, device, label, "info for " + label, kNow);
    EXPECT_TRUE(Ok(entry));
    return entry ? *entry : EnroleeRecord{};
  }

  TokenRecord Issue(int64_t enrolee_id, int n, int64_t now = kNow) {
    auto token = store().IssueToken(enrolee_id, TokenHash(n), now, now + kLifetime);
    EXPECT_TRUE(Ok(token));
    return token ? *token : TokenRecord{};
  }

  std::optional<TokenRecord> Find(int n) {
    auto found = store().FindToken(TokenHash(n));
    EXPECT_TRUE(Ok(found));
    return found ? *found : std::nullopt;
  }

  EnroleeRecord Get(int64_t id) {
    auto found = store().GetEnrolee(id);
    EXPECT_TRUE(Ok(found));
    return found && found->has_value() ? **found : EnroleeRecord{};
  }

  std::vector<OutboxItem> AllUndelivered() {
    auto items = store().DueOutbox(std::numeric_limits<int64_t>::max(), INT_MAX);
    EXPECT_TRUE(Ok(items));
    return items ? *items : std::vector<OutboxItem>{};
  }

  // The entry, its token and the outbox must be exactly as before a refused commit.
  void ExpectUnchanged(const EnroleeRecord& before, int token_n, TokenState token_state,
                       size_t outbox) {
    EnroleeRecord now = Get(before.id);
    EXPECT_EQ(now.state, before.state);
    EXPECT_EQ(now.generation, before.generation);
    EXPECT_EQ(now.device_id, before.device_id);
    EXPECT_EQ(now.ke_id, before.ke_id);
    EXPECT_EQ(now.ke_sealed, before.ke_sealed);
    EXPECT_EQ(now.credential_ids, before.credential_ids);
    EXPECT_EQ(now.maf_delivery, before.maf_delivery);
    EXPECT_EQ(now.updated_at, before.updated_at);
    auto token = Find(token_n);
    ASSERT_TRUE(token.has_value());
    EXPECT_EQ(token->state, token_state);
    EXPECT_EQ(AllUndelivered().size(), outbox);
  }

  int64_t alice_ = 0;
};

INSTANTIATE_TEST_SUITE_P(Backends, FlowBStoreTest, test_support::AllBackends(), BackendName);

TEST(FlowBStoreEnumTest, TokenStatesHaveNames) {
  EXPECT_EQ(ToString(TokenState::kActive), "active");
  EXPECT_EQ(ToString(TokenState::kSpent), "spent");
  EXPECT_EQ(ToString(TokenState::kRevoked), "revoked");
}

// --- enrolee entries (seed 8.y.4 step 6) -------------------------------------------------------

TEST_P(FlowBStoreTest, EntryWithoutDeviceIsPendingAndNamesNoDevice) {
  EnroleeRecord entry = AddEntry(std::nullopt, "hall sensor");
  ASSERT_GT(entry.id, 0);
  EXPECT_EQ(entry.stakeholder_id, alice_);
  EXPECT_EQ(entry.stakeholder_name, "alice");
  EXPECT_EQ(entry.device_id, "");
  EXPECT_EQ(entry.label, "hall sensor");
  EXPECT_EQ(entry.device_info, "info for hall sensor");
  EXPECT_EQ(entry.state, EnroleeState::kPending);
  EXPECT_EQ(entry.generation, 0);
  EXPECT_EQ(entry.maf_delivery, DeliveryStatus::kNone);
  EXPECT_EQ(entry.created_at, kNow);
  EnroleeRecord stored = Get(entry.id);
  EXPECT_EQ(stored.device_id, "");
  EXPECT_EQ(stored.device_info, "info for hall sensor");
  // Several entries without a device may coexist (the device is learnt at enrolment).
  EnroleeRecord second = AddEntry(std::nullopt, "porch sensor");
  EXPECT_GT(second.id, entry.id);
  auto list = store().ListEnrolees(alice_);
  ASSERT_TRUE(Ok(list));
  EXPECT_EQ(list->size(), 2u);
}

TEST_P(FlowBStoreTest, EntryWithDeviceNamesIt) {
  EnroleeRecord entry = AddEntry("dev-1");
  EXPECT_EQ(entry.device_id, "dev-1");
  auto by_device = store().FindEnroleeByDevice("dev-1");
  ASSERT_TRUE(Ok(by_device));
  ASSERT_TRUE(by_device->has_value());
  EXPECT_EQ((*by_device)->id, entry.id);
}

TEST_P(FlowBStoreTest, EntryErrors) {
  EXPECT_TRUE(IsError(store().AddEnroleeEntry(alice_, "dev-404", "x", "", kNow),
                      ErrorKind::kLocalUsage, Errc::kNotFound, "dev-404"));
  AddEntry("dev-1");
  EXPECT_TRUE(IsError(store().AddEnroleeEntry(alice_, "dev-1", "again", "", kNow),
                      ErrorKind::kLocalUsage, Errc::kConflict, "dev-1"));
  EXPECT_TRUE(IsError(store().AddEnroleeEntry(alice_ + 99, std::nullopt, "x", "", kNow),
                      ErrorKind::kLocalUsage, Errc::kNotFound));
  auto list = store().ListEnrolees(std::nullopt);
  ASSERT_TRUE(Ok(list));
  EXPECT_EQ(list->size(), 1u) << "a refused entry must not be stored";
}

// --- Enrolment-Tokens ----------------------------------------------------------------------------

TEST_P(FlowBStoreTest, IssuedTokenIsFoundByItsHashOnly) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  EXPECT_GT(token.id, 0);
  EXPECT_EQ(token.enrolee_id, entry.id);
  EXPECT_EQ(token.state, TokenState::kActive);
  EXPECT_EQ(token.created_at, kNow);
  EXPECT_EQ(token.expires_at, kNow + kLifetime);
  EXPECT_EQ(token.spent_at, 0);
  auto found = Find(1);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, token.id);
  EXPECT_EQ(found->state, TokenState::kActive);
  EXPECT_EQ(found->expires_at, kNow + kLifetime);
  EXPECT_FALSE(Find(2).has_value()) << "an unknown hash finds nothing";
  const Bytes full = TokenHash(1);
  const Bytes prefix(full.begin(), full.begin() + 16);
  auto partial = store().FindToken(prefix);
  ASSERT_TRUE(Ok(partial));
  EXPECT_FALSE(partial->has_value()) << "a prefix of the hash must not match";
}

TEST_P(FlowBStoreTest, IssuingRevokesThePreviousActiveTokens) {
  EnroleeRecord entry = AddEntry();
  EnroleeRecord other = AddEntry(std::nullopt, "other");
  TokenRecord first = Issue(entry.id, 1);
  TokenRecord theirs = Issue(other.id, 9);
  TokenRecord second = Issue(entry.id, 2, kNow + 5);
  EXPECT_NE(first.id, second.id);
  EXPECT_EQ(Find(1)->state, TokenState::kRevoked);
  EXPECT_EQ(Find(2)->state, TokenState::kActive);
  EXPECT_EQ(Find(9)->state, TokenState::kActive) << "another enrolee's token is untouched";
  Issue(entry.id, 3, kNow + 6);
  EXPECT_EQ(Find(1)->state, TokenState::kRevoked);
  EXPECT_EQ(Find(2)->state, TokenState::kRevoked);
  EXPECT_EQ(Find(3)->state, TokenState::kActive);
  EXPECT_EQ(theirs.state, TokenState::kActive);
}

TEST_P(FlowBStoreTest, IssuingDoesNotTouchASpentToken) {
  EnroleeRecord entry = AddEntry();
  TokenRecord first = Issue(entry.id, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, first.id, "dev-1", kNow + 1))));
  Issue(entry.id, 2, kNow + 2);
  auto spent = Find(1);
  ASSERT_TRUE(spent.has_value());
  EXPECT_EQ(spent->state, TokenState::kSpent);
  EXPECT_EQ(spent->spent_at, kNow + 1);
}

TEST_P(FlowBStoreTest, IssueForUnknownEnroleeIsNotFound) {
  EXPECT_TRUE(IsError(store().IssueToken(4242, TokenHash(1), kNow, kNow + 1),
                      ErrorKind::kLocalUsage, Errc::kNotFound, "4242"));
  EXPECT_FALSE(Find(1).has_value());
}

// --- the commit that spends a token (docs/architecture.md §5) ---------------------------------------------

TEST_P(FlowBStoreTest, CommitSpendsTheTokenAndBindsTheDevice) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  auto committed = store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-2", kNow + 10));
  ASSERT_TRUE(Ok(committed));
  EXPECT_EQ(committed->state, EnroleeState::kEnrolled);
  EXPECT_EQ(committed->generation, 1);
  EXPECT_EQ(committed->device_id, "dev-2");
  EXPECT_EQ(committed->maf_delivery, DeliveryStatus::kPending);
  auto spent = Find(1);
  ASSERT_TRUE(spent.has_value());
  EXPECT_EQ(spent->state, TokenState::kSpent);
  EXPECT_EQ(spent->spent_at, kNow + 10);
  auto by_device = store().FindEnroleeByDevice("dev-2");
  ASSERT_TRUE(Ok(by_device));
  ASSERT_TRUE(by_device->has_value());
  EXPECT_EQ((*by_device)->id, entry.id);
  EXPECT_EQ(AllUndelivered().size(), 1u);
}

TEST_P(FlowBStoreTest, ASpentTokenIsNotSpentByAnotherDevice) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 10))));
  EnroleeRecord after_first = Get(entry.id);
  // The right generation this time: only the token stands in the way.
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-2", kNow + 20,
                                                          /*expected_generation=*/1)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  ExpectUnchanged(after_first, 1, TokenState::kSpent, 1);
  EXPECT_EQ(Find(1)->spent_at, kNow + 10) << "the second attempt must not re-spend the token";
}

// The answer to the first enrolment may have been lost: the device it bound enrols again with
// the same token, a new generation that supersedes the first.
TEST_P(FlowBStoreTest, ASpentTokenReEnrolsTheDeviceItBound) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 10))));
  auto again = store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 20,
                                                   /*expected_generation=*/1));
  ASSERT_TRUE(Ok(again));
  EXPECT_EQ(again->generation, 2);
  EXPECT_EQ(again->device_id, "dev-1");
  EXPECT_EQ(again->ke_id, "KE" + std::to_string(entry.id) + "G2@mef.example");
  EXPECT_EQ(Find(1)->state, TokenState::kSpent);
  EXPECT_EQ(Find(1)->spent_at, kNow + 10) << "spent_at stays the first use";
  EXPECT_EQ(AllUndelivered().size(), 2u);
  // A stale generation still loses, as for any concurrent enrolment.
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 30,
                                                          /*expected_generation=*/1)),
                      ErrorKind::kLocalUsage, Errc::kConflict, "generation"));
}

TEST_P(FlowBStoreTest, ASpentTokenSupersededByANewerOneCannotEnrolAgain) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 10))));
  EXPECT_FALSE(Find(1)->superseded);
  Issue(entry.id, 2, kNow + 15);
  EXPECT_TRUE(Find(1)->superseded);
  EXPECT_FALSE(Find(2)->superseded);
  EnroleeRecord after_issue = Get(entry.id);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 20,
                                                          /*expected_generation=*/1)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  ExpectUnchanged(after_issue, 1, TokenState::kSpent, 1);
}

TEST_P(FlowBStoreTest, ASpentTokenCannotEnrolAgainAfterItExpired) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  ASSERT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 10))));
  EnroleeRecord after_first = Get(entry.id);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1",
                                                          token.expires_at,
                                                          /*expected_generation=*/1)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  ExpectUnchanged(after_first, 1, TokenState::kSpent, 1);
}

TEST_P(FlowBStoreTest, ExpiredTokenAtCommitTimeIsAConflict) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1",
                                                          token.expires_at)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  ExpectUnchanged(entry, 1, TokenState::kActive, 0);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1",
                                                          token.expires_at + 100)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  ExpectUnchanged(entry, 1, TokenState::kActive, 0);
  // One second before expiry it is still good.
  EXPECT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1",
                                                     token.expires_at - 1))));
}

TEST_P(FlowBStoreTest, RevokedTokenCannotBeSpent) {
  EnroleeRecord entry = AddEntry();
  TokenRecord first = Issue(entry.id, 1);
  TokenRecord second = Issue(entry.id, 2);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, first.id, "dev-1", kNow + 1)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  ExpectUnchanged(entry, 1, TokenState::kRevoked, 0);
  EXPECT_EQ(Find(2)->state, TokenState::kActive);
  EXPECT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, second.id, "dev-1", kNow + 2))));
}

TEST_P(FlowBStoreTest, TokenOfAnotherEnroleeCannotBeSpent) {
  EnroleeRecord entry = AddEntry();
  EnroleeRecord other = AddEntry(std::nullopt, "other");
  TokenRecord theirs = Issue(other.id, 7);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, theirs.id, "dev-1", kNow + 1)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  ExpectUnchanged(entry, 7, TokenState::kActive, 0);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, 987654, "dev-1", kNow + 1)),
                      ErrorKind::kLocalUsage, Errc::kExpired, "Enrolment-Token"));
  EXPECT_EQ(Get(entry.id).state, EnroleeState::kPending);
}

TEST_P(FlowBStoreTest, BindKeepsTheDeviceTheEntryAlreadyNames) {
  EnroleeRecord entry = AddEntry("dev-1");
  TokenRecord token = Issue(entry.id, 1);
  auto committed = store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 1));
  ASSERT_TRUE(Ok(committed));
  EXPECT_EQ(committed->device_id, "dev-1");
}

TEST_P(FlowBStoreTest, EntryNamingAnotherDeviceIsForbiddenAndNothingChanges) {
  EnroleeRecord entry = AddEntry("dev-1");
  TokenRecord token = Issue(entry.id, 1);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-2", kNow + 1)),
                      ErrorKind::kPeerAuth, Errc::kForbidden, "another device"));
  // The token was spent inside the refused transaction: it must be active again.
  ExpectUnchanged(entry, 1, TokenState::kActive, 0);
  auto dev2 = store().FindEnroleeByDevice("dev-2");
  ASSERT_TRUE(Ok(dev2));
  EXPECT_FALSE(dev2->has_value());
  EXPECT_TRUE(Ok(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 2))));
}

TEST_P(FlowBStoreTest, DeviceWithAnotherEntryIsAConflictAndNothingChanges) {
  EnroleeRecord claimed = AddEntry("dev-1", "claimed");
  EnroleeRecord entry = AddEntry(std::nullopt, "open");
  TokenRecord token = Issue(entry.id, 1);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 1)),
                      ErrorKind::kLocalUsage, Errc::kConflict, "dev-1"));
  ExpectUnchanged(entry, 1, TokenState::kActive, 0);
  EXPECT_EQ(Get(claimed.id).state, EnroleeState::kPending);
  EXPECT_EQ(Get(entry.id).device_id, "");
}

TEST_P(FlowBStoreTest, StaleGenerationWithTokenChangesNothing) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  EXPECT_TRUE(IsError(store().CommitEnrolment(FlowBCommit(entry.id, token.id, "dev-1", kNow + 1,
                                                          /*expected_generation=*/3)),
                      ErrorKind::kLocalUsage, Errc::kConflict));
  ExpectUnchanged(entry, 1, TokenState::kActive, 0);
}

TEST_P(FlowBStoreTest, EmptyOutboxTargetCommitsWithoutAnOutboxItem) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  EnrolmentCommit commit = FlowBCommit(entry.id, token.id, "dev-3", kNow + 1);
  commit.outbox = OutboxItem{};
  commit.credential_ids.clear();
  auto committed = store().CommitEnrolment(commit);
  ASSERT_TRUE(Ok(committed));
  EXPECT_EQ(committed->state, EnroleeState::kEnrolled);
  EXPECT_EQ(committed->generation, 1);
  EXPECT_EQ(committed->maf_delivery, DeliveryStatus::kNone);
  EXPECT_TRUE(committed->credential_ids.empty());
  EXPECT_EQ(Get(entry.id).maf_delivery, DeliveryStatus::kNone);
  EXPECT_TRUE(AllUndelivered().empty());
  EXPECT_EQ(Find(1)->state, TokenState::kSpent);
}

// Outcomes of kThreads commits that all spend the same token at once.
struct RaceOutcome {
  int won = 0, token_spent = 0, other = 0;
};
constexpr int kRacers = 8;

// Racer t commits through store_for(t), at now + t, as device "dev-<t+1>" (or all as "dev-1").
RaceOutcome RaceForToken(const std::function<Store&(int)>& store_for, int64_t enrolee_id,
                         int64_t token_id, int64_t now, bool same_device = false) {
  std::atomic<int> won{0}, token_spent{0}, other{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kRacers; ++t) {
    threads.emplace_back([&, t] {
      Store& s = store_for(t);
      while (!go.load()) std::this_thread::yield();
      auto result = s.CommitEnrolment(
          FlowBCommit(enrolee_id, token_id, same_device ? "dev-1" : "dev-" + std::to_string(t + 1),
                      now + t));
      if (result.has_value()) {
        ++won;
      } else if (result.error().code == Errc::kExpired) {  // another device spent the token
        ++token_spent;
      } else {
        ++other;
      }
    });
  }
  go = true;
  for (auto& thread : threads) thread.join();
  return {won.load(), token_spent.load(), other.load()};
}

TEST_P(FlowBStoreTest, ConcurrentCommitsWithOneTokenHaveExactlyOneWinner) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  const RaceOutcome race =
      RaceForToken([this](int) -> Store& { return store(); }, entry.id, token.id, kNow);
  EXPECT_EQ(race.won, 1);
  EXPECT_EQ(race.token_spent, kRacers - 1);
  EXPECT_EQ(race.other, 0);
  EXPECT_EQ(Find(1)->state, TokenState::kSpent);
  EXPECT_EQ(Get(entry.id).generation, 1);
  EXPECT_EQ(AllUndelivered().size(), 1u);
}

// One device racing itself (its retries overlapping): one commit wins, the others lost on the
// generation, and the entry moved by one generation only.
TEST_P(FlowBStoreTest, ConcurrentCommitsOfOneDeviceWithOneTokenHaveExactlyOneWinner) {
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  const RaceOutcome race = RaceForToken([this](int) -> Store& { return store(); }, entry.id,
                                        token.id, kNow, /*same_device=*/true);
  EXPECT_EQ(race.won, 1);
  EXPECT_EQ(race.token_spent, 0);
  EXPECT_EQ(race.other, kRacers - 1);
  EXPECT_EQ(Get(entry.id).generation, 1);
  EXPECT_EQ(AllUndelivered().size(), 1u);
}

// Two stores on one database stand for two MEF processes sharing it.
TEST_P(FlowBStoreTest, ConcurrentCommitsFromTwoConnectionsHaveExactlyOneWinner) {
  if (!Shareable()) GTEST_SKIP() << "needs a database a second store can open";
  std::unique_ptr<Store> second = OpenAnother();
  ASSERT_NE(second, nullptr);
  EnroleeRecord entry = AddEntry();
  TokenRecord token = Issue(entry.id, 1);
  const RaceOutcome race = RaceForToken(
      [&](int t) -> Store& { return t % 2 == 0 ? store() : *second; }, entry.id, token.id, kNow);
  EXPECT_EQ(race.won, 1);
  EXPECT_EQ(race.token_spent, kRacers - 1);
  EXPECT_EQ(race.other, 0);
  EXPECT_EQ(Find(1)->state, TokenState::kSpent);
  EXPECT_EQ(AllUndelivered().size(), 1u);
}

// --- MAF credential retirement -------------------------------------------------------------------

TEST_P(FlowBStoreTest, RetireRemovesOlderCredentialsAndIsIdempotent) {
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("KM1@mef", 5, 1))));
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("KMX@mef", 6, 1))));
  auto retired = store().RetireMafCredentials(5, 2);
  ASSERT_TRUE(Ok(retired));
  EXPECT_TRUE(*retired);
  auto gone = store().FindMafCredential("KM1@mef");
  ASSERT_TRUE(Ok(gone));
  EXPECT_FALSE(gone->has_value());
  auto kept = store().FindMafCredential("KMX@mef");
  ASSERT_TRUE(Ok(kept));
  EXPECT_TRUE(kept->has_value()) << "another enrolee's credential must stay";

  auto again = store().RetireMafCredentials(5, 2);
  ASSERT_TRUE(Ok(again));
  EXPECT_FALSE(*again) << "a repeat retirement reports nothing new";
  auto older = store().RetireMafCredentials(5, 1);
  ASSERT_TRUE(Ok(older));
  EXPECT_FALSE(*older);

  // A late delivery of the retired (or any older) generation is ignored.
  auto late = store().PutMafCredential(MakeCredential("KM1@mef", 5, 1));
  ASSERT_TRUE(Ok(late));
  EXPECT_FALSE(*late);
  auto late2 = store().PutMafCredential(MakeCredential("KM2@mef", 5, 2));
  ASSERT_TRUE(Ok(late2));
  EXPECT_FALSE(*late2) << "the retired generation itself holds no credential";
  auto none = store().FindMafCredential("KM1@mef");
  ASSERT_TRUE(Ok(none));
  EXPECT_FALSE(none->has_value());
  auto none2 = store().FindMafCredential("KM2@mef");
  ASSERT_TRUE(Ok(none2));
  EXPECT_FALSE(none2->has_value());

  // A newer generation is stored again.
  auto newer = store().PutMafCredential(MakeCredential("KM3@mef", 5, 3));
  ASSERT_TRUE(Ok(newer));
  EXPECT_TRUE(*newer);
  auto listed = store().ListMafCredentials();
  ASSERT_TRUE(Ok(listed));
  EXPECT_EQ(listed->size(), 2u);
}

// A batch is one transaction in which each delivery behaves as its single method would; the one
// that fails leaves nothing behind (its savepoint), and the others still apply.
TEST_P(FlowBStoreTest, ApplyMafDeliveriesTreatsEachAsItsSingleMethodWould) {
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("KMA@mef", 7, 1))));
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("KM9@mef", 9, 1))));
  auto receipt = [](const MafCredential& c) {
    return AuditEntry{0, 5000, "maf", "credential.receive", "KmID " + c.km_id, ""};
  };
  std::vector<MafDelivery> batch;
  for (const MafCredential& c : {MakeCredential("KMB@mef", 8, 1),     // new
                                 MakeCredential("KMA@mef", 7, 1),     // a repeat
                                 MakeCredential("KMA@mef", 9, 2)}) {  // KmID of enrolee 7
    batch.push_back({false, c, receipt(c)});
  }
  MafDelivery retire;
  retire.retire = true;
  retire.credential.enrolee_id = 8;
  retire.credential.generation = 2;
  retire.audit = {0, 5000, "maf", "credential.retire", "enrolee 8", ""};
  batch.push_back(retire);
  const size_t audit_before = store().ListAudit()->size();

  auto applied = store().ApplyMafDeliveries(batch);
  ASSERT_TRUE(Ok(applied));
  ASSERT_EQ(applied->size(), 4u);
  ASSERT_TRUE(Ok((*applied)[0]));
  EXPECT_TRUE(*(*applied)[0]);
  ASSERT_TRUE(Ok((*applied)[1]));
  EXPECT_FALSE(*(*applied)[1]) << "a repeat changes nothing";
  ASSERT_FALSE((*applied)[2].has_value());
  EXPECT_EQ((*applied)[2].error().code, Errc::kConflict);
  ASSERT_TRUE(Ok((*applied)[3]));
  EXPECT_TRUE(*(*applied)[3]);

  auto kept = store().FindMafCredential("KM9@mef");
  ASSERT_TRUE(Ok(kept));
  EXPECT_TRUE(kept->has_value()) << "the failed item's delete was rolled back";
  auto retired = store().FindMafCredential("KMB@mef");
  ASSERT_TRUE(Ok(retired));
  EXPECT_FALSE(retired->has_value()) << "the retirement after it in the batch removed it";
  auto owner = store().FindMafCredential("KMA@mef");
  ASSERT_TRUE(Ok(owner));
  ASSERT_TRUE(owner->has_value());
  EXPECT_EQ((*owner)->enrolee_id, 7);
  auto audit = store().ListAudit();
  ASSERT_TRUE(Ok(audit));
  ASSERT_EQ(audit->size(), audit_before + 2) << "one entry per change: KMB stored, 8 retired";
  EXPECT_EQ((*audit)[audit_before].action, "credential.receive");
  EXPECT_EQ((*audit)[audit_before + 1].action, "credential.retire");

  auto again = store().ApplyMafDeliveries(batch);
  ASSERT_TRUE(Ok(again));
  for (size_t i : {0u, 1u, 3u}) {
    ASSERT_TRUE(Ok((*again)[i]));
    EXPECT_FALSE(*(*again)[i]) << "item " << i << " repeated";
  }
  EXPECT_EQ(store().ListAudit()->size(), audit_before + 2);
}

TEST_P(FlowBStoreTest, RetireDoesNotRemoveANewerOrEqualCredential) {
  ASSERT_TRUE(Ok(store().PutMafCredential(MakeCredential("KM3@mef", 5, 3))));
  auto retired = store().RetireMafCredentials(5, 2);
  ASSERT_TRUE(Ok(retired));
  EXPECT_FALSE(*retired);
  auto same = store().RetireMafCredentials(5, 3);
  ASSERT_TRUE(Ok(same));
  EXPECT_FALSE(*same);
  auto kept = store().FindMafCredential("KM3@mef");
  ASSERT_TRUE(Ok(kept));
  EXPECT_TRUE(kept->has_value());
}

TEST_P(FlowBStoreTest, RetireWithoutAnyCredentialRemembersTheGeneration) {
  auto retired = store().RetireMafCredentials(8, 4);
  ASSERT_TRUE(Ok(retired));
  EXPECT_TRUE(*retired);
  auto late = store().PutMafCredential(MakeCredential("KM8@mef", 8, 4));
  ASSERT_TRUE(Ok(late));
  EXPECT_FALSE(*late);
  auto newer = store().PutMafCredential(MakeCredential("KM8@mef", 8, 5));
  ASSERT_TRUE(Ok(newer));
  EXPECT_TRUE(*newer);
}

}  // namespace
}  // namespace mte::store
