// Holds on a 3-member cluster that loses members.
#include <gtest/gtest.h>

#include <thread>

#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class ClusterLoss : public LockTest {
 protected:
  ClusterLoss() : LockTest(3) {}
};

TEST_F(ClusterLoss, KillingAnyOneMemberEndsNoHold) {
  for (std::size_t victim = 0; victim < 3; ++victim) {
    auto manager = this->manager(2s);
    auto lock = manager->get_lock("x");
    lock->lock();
    const auto lost = lock->lost_token();
    etcd_.member(victim).kill();
    std::this_thread::sleep_for(3 * 2s);
    EXPECT_FALSE(lost.stop_requested()) << "false loss with member " << victim << " down";
    EXPECT_TRUE(lock->held());
    EXPECT_TRUE(eventually([&] {
      try {
        return lock->guarded_put(prefix_ + "-data", std::to_string(victim));
      } catch (const Error&) {
        return false;
      }
    }));
    lock->unlock();
    etcd_.member(victim).start();
    etcd_.wait_ready(victim);
  }
}

TEST_F(ClusterLoss, KillingTheLeaderHandsOverToTheNextWaiter) {
  auto holder = manager(2s);
  auto waiter_manager = manager(2s);
  auto held = holder->get_lock("x");
  held->lock();
  auto waiting = waiter_manager->get_lock("x");
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    ASSERT_TRUE(waiting->try_lock_for(30s));
    acquired = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  etcd_.member(etcd_.leader_index()).kill();
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(acquired) << "the waiter went ahead while the holder still held";
  held->unlock();
  waiter.join();
  EXPECT_TRUE(acquired);
  EXPECT_FALSE(held->lost());
  waiting->unlock();
}

}  // namespace
}  // namespace etcdlock::testing
