// Fencing tokens: strictly increasing from one holder to the next, across
// many hand-overs and across the loss of a lease.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class Fencing : public LockTest {};

TEST_F(Fencing, TokensIncreaseOverAThousandHandOversBetweenFourManagers) {
  constexpr int kManagers = 4;
  constexpr int kHoldsEach = 300;
  std::vector<std::unique_ptr<LockManager>> managers;
  for (int i = 0; i < kManagers; ++i) managers.push_back(manager());
  std::mutex log_mutex;
  std::vector<std::int64_t> tokens;  // in the order the holds happened
  std::vector<int> holders;          // which manager held each
  std::vector<std::thread> workers;
  for (int i = 0; i < kManagers; ++i) {
    workers.emplace_back([&, i] {
      auto lock = managers[i]->get_lock("fenced");
      for (int hold = 0; hold < kHoldsEach; ++hold) {
        std::lock_guard guard(*lock);
        std::lock_guard record(log_mutex);
        tokens.push_back(lock->fencing_token());
        holders.push_back(i);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  ASSERT_EQ(tokens.size(), static_cast<std::size_t>(kManagers * kHoldsEach));
  int hand_overs = 0;  // holds that followed another manager's hold
  for (std::size_t i = 1; i < tokens.size(); ++i) {
    ASSERT_LT(tokens[i - 1], tokens[i]) << "at hold " << i;
    hand_overs += holders[i] != holders[i - 1];
  }
  EXPECT_GE(hand_overs, 1000);
}

TEST_F(Fencing, TokensIncreaseAcrossALostLease) {
  auto a = manager();
  auto b = manager();
  auto admin = manager();
  auto lock_a = a->get_lock("fenced");
  auto lock_b = b->get_lock("fenced");
  lock_a->lock();
  const auto first = lock_a->fencing_token();
  ASSERT_TRUE(admin->revoke_lease(a->lease_id()));
  ASSERT_TRUE(eventually([&] { return !lock_a->held(); }));
  lock_a->unlock();
  lock_b->lock();
  const auto second = lock_b->fencing_token();
  lock_b->unlock();
  lock_a->lock();  // on a new lease
  const auto third = lock_a->fencing_token();
  lock_a->unlock();
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);
}

}  // namespace
}  // namespace etcdlock::testing
