// Loss of a hold: every cause fires the hold's token exactly once, before etcd
// can give the lock to anyone else, and leaves no zombie hold behind.
#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>

#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

class Loss : public LockTest {
 protected:
  // Counts how often a hold's token fires, and when it first did.
  struct Watcher {
    explicit Watcher(std::stop_token token)
        : callback(token, [this] {
            // `at` first: a reader that sees `fired` may read it at once.
            if (fired.load() == 0) at = Steady::now();
            ++fired;
          }) {}
    std::atomic<int> fired{0};
    Steady::time_point at;
    std::stop_callback<std::function<void()>> callback;
  };

  int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }
};

int trials() {
  const char* wanted = std::getenv("ETCDLOCK_LOSS_TRIALS");
  return wanted ? std::max(1, std::atoi(wanted)) : 5;
}

TEST_F(Loss, HolderCutOffFromEtcdLearnsOfItBeforeAnotherProcessAcquires) {
  auto waiter_manager = manager(10s);
  auto waiting = waiter_manager->get_lock("x");
  for (int trial = 0; trial < trials(); ++trial) {
    TcpProxy link(port_of(etcd_.endpoints()[0]));
    auto holder_options = options();
    holder_options.endpoints = {link.endpoint()};
    holder_options.ttl = 2s;
    LockManager holder_manager(holder_options);
    auto holding = holder_manager.get_lock("x");
    holding->lock();
    Watcher loss(holding->lost_token());

    Steady::time_point acquired_at;
    std::thread waiter([&] {
      ASSERT_TRUE(waiting->try_lock_for(30s));
      acquired_at = Steady::now();
      waiting->unlock();  // ownership is per thread
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    link.pause();
    bool saw_suspect = false;
    while (!loss.fired) {
      saw_suspect = saw_suspect || holder_manager.state() == SessionState::suspect;
      std::this_thread::sleep_for(5ms);
    }
    waiter.join();
    ASSERT_EQ(loss.fired.load(), 1) << "trial " << trial;
    EXPECT_LT(loss.at, acquired_at) << "trial " << trial << ": another process acquired before the holder knew";
    EXPECT_TRUE(saw_suspect) << "renewals failed without the session turning suspect";
    EXPECT_FALSE(holding->held());
    EXPECT_EQ(holding->fencing_token(), 0);
    EXPECT_FALSE(holding->guarded_put(prefix_ + "/data", "stale")) << "a lost hold wrote";
    std::cout << "trial " << trial << ": loss signalled "
              << std::chrono::duration_cast<std::chrono::milliseconds>(acquired_at - loss.at).count()
              << " ms before the next holder acquired\n";
    link.resume();
    std::error_code ec;
    holding->unlock(ec);
    EXPECT_EQ(ec, errc::lock_expired);
    EXPECT_EQ(loss.fired.load(), 1);
  }
}

// A partition that heals just after the local deadline: the lost lease is
// not revoked, so the next holder still waits for it to expire in etcd, and
// the loss margin the holder was promised for stopping its work holds.
TEST_F(Loss, ALinkThatHealsAtTheLossKeepsTheMarginForStopping) {
  auto waiter_manager = manager(10s);
  auto waiting = waiter_manager->get_lock("x");
  TcpProxy link(port_of(etcd_.endpoints()[0]));
  auto holder_options = options();
  holder_options.endpoints = {link.endpoint()};
  holder_options.ttl = 2s;
  LockManager holder_manager(holder_options);
  auto holding = holder_manager.get_lock("x");
  holding->lock();
  Watcher loss(holding->lost_token());
  Steady::time_point acquired_at;
  std::thread waiter([&] {
    ASSERT_TRUE(waiting->try_lock_for(30s));
    acquired_at = Steady::now();
    waiting->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  link.pause();
  while (!loss.fired) std::this_thread::sleep_for(1ms);
  link.resume();  // etcd is reachable again at once
  waiter.join();
  const auto margin_kept = std::chrono::duration_cast<std::chrono::milliseconds>(acquired_at - loss.at);
  std::cout << "the next holder acquired " << margin_kept.count() << " ms after the loss was signalled\n";
  // The lease lives in etcd at least the loss margin past the local deadline
  // (less a little for this thread's polling).
  EXPECT_GE(margin_kept, loss_margin(2s) - 50ms) << "the lost lease was ended before its margin was up";
  std::error_code ec;
  holding->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
}

TEST_F(Loss, FrozenEtcdEndsTheHoldBeforeItCanExpireTheLease) {
  auto holder_manager = manager(2s);
  auto holding = holder_manager->get_lock("x");
  holding->lock();
  Watcher loss(holding->lost_token());
  etcd_.member(0).freeze();
  const auto frozen_at = Steady::now();
  ASSERT_TRUE(eventually([&] { return loss.fired > 0; }, 5s));
  // Counted from the last acknowledged renewal, which came before the freeze.
  EXPECT_LT(loss.at - frozen_at, 2s);
  EXPECT_EQ(holder_manager->state(), SessionState::lost);
  etcd_.member(0).thaw();
  EXPECT_FALSE(holding->held());
  // The manager takes a new lease for the next lock, without a restart.
  auto again = holder_manager->get_lock("y");
  ASSERT_TRUE(again->try_lock_for(10s));
  EXPECT_EQ(holder_manager->state(), SessionState::healthy);
  again->unlock();
  EXPECT_EQ(loss.fired.load(), 1);
}

TEST_F(Loss, EveryCauseFiresTheTokenExactlyOnce) {
  auto manager = this->manager();
  auto other = this->manager();
  // Revoked lease.
  {
    auto lock = manager->get_lock("revoked");
    lock->lock();
    Watcher loss(lock->lost_token());
    ASSERT_TRUE(other->revoke_lease(manager->lease_id()));
    ASSERT_TRUE(eventually([&] { return loss.fired > 0; }));
    EXPECT_FALSE(lock->held());
    lock->unlock();
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(loss.fired.load(), 1);
  }
  // Key deleted by a force unlock.
  {
    auto lock = manager->get_lock("forced");
    lock->lock();
    Watcher loss(lock->lost_token());
    ASSERT_TRUE(other->force_unlock("forced"));
    ASSERT_TRUE(eventually([&] { return loss.fired > 0; }));
    EXPECT_FALSE(lock->held());
    lock->unlock();
    EXPECT_EQ(loss.fired.load(), 1);
  }
  // Manager closed.
  {
    auto lock = manager->get_lock("closed");
    lock->lock();
    Watcher loss(lock->lost_token());
    manager->close();
    EXPECT_EQ(loss.fired.load(), 1);
    EXPECT_FALSE(lock->held());
  }
}

TEST_F(Loss, NormalUnlockDoesNotFireTheToken) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  EXPECT_FALSE(lock->lost_token().stop_possible());
  lock->lock();
  Watcher loss(lock->lost_token());
  lock->unlock();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(loss.fired.load(), 0);
  EXPECT_FALSE(lock->lost());
}

TEST_F(Loss, WaiterOnALostLeaseQueuesAgainOnTheNewOne) {
  auto holder = manager();
  auto waiter_manager = manager();
  auto held = holder->get_lock("x");
  held->lock();
  auto waiting = waiter_manager->get_lock("x");
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    ASSERT_TRUE(waiting->try_lock_for(20s));
    acquired = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  const auto old_lease = waiter_manager->lease_id();
  ASSERT_TRUE(holder->revoke_lease(old_lease));  // the waiter's lease, not the holder's
  ASSERT_TRUE(eventually([&] { return waiter_manager->lease_id() != old_lease && entries("x") == 2; }));
  EXPECT_FALSE(acquired);
  held->unlock();
  waiter.join();
  EXPECT_TRUE(acquired);
  EXPECT_TRUE(waiting->held());
  waiting->unlock();
}

}  // namespace
}  // namespace etcdlock::testing
