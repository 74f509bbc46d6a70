// Failover: what holds and waits do when members, the whole cluster, or a
// client's connection go away.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "lock_fixture.h"
#include "server_metrics.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

class Failover : public LockTest {
 protected:
  Failover() : LockTest(3) {}

  // A waiter thread that records the order in which waiters acquired.
  std::thread wait_in_turn(Lock& lock, int id) {
    return std::thread([this, &lock, id] {
      ASSERT_TRUE(lock.try_lock_for(30s)) << "waiter " << id;
      {
        std::lock_guard record(order_mutex_);
        order_.push_back(id);
      }
      lock.unlock();
    });
  }

  std::mutex order_mutex_;
  std::vector<int> order_;
};

TEST_F(Failover, WholeClusterOutageEndsHoldsWithinOneTtlOfTheLastRenewal) {
  auto manager = this->manager(2s);
  auto lock = manager->get_lock("x");
  lock->lock();
  const auto lost = lock->lost_token();
  for (std::size_t i = 0; i < 3; ++i) etcd_.member(i).freeze();
  const auto frozen_at = Steady::now();
  ASSERT_TRUE(eventually([&] { return lost.stop_requested(); }, 5s));
  // The last acknowledged renewal was sent before the freeze.
  EXPECT_LT(Steady::now() - frozen_at, 2s);
  EXPECT_FALSE(lock->held());
  for (std::size_t i = 0; i < 3; ++i) etcd_.member(i).thaw();
  // Back in service without a restart of the manager.
  auto next = manager->get_lock("y");
  ASSERT_TRUE(next->try_lock_for(20s));
  next->unlock();
}

// A member that hangs (stopped, its connections open) is worse than one that
// dies: nothing fails, replies just stop. Two healthy members remain, so the
// hold must survive: renewals move to another member well within the TTL, and
// the session says suspect while they are overdue.
TEST_F(Failover, OneHungMemberDoesNotCostTheHold) {
  auto manager = this->manager(10s);
  auto lock = manager->get_lock("x");
  lock->lock();
  const auto lost = lock->lost_token();
  // The member the session renews on: the client takes the first member that
  // accepts a connection, which under load need not be the first listed. A
  // renewal opens a keepalive stream of its own, every third of the TTL.
  std::size_t renewing = etcd_.size();
  ASSERT_TRUE(eventually(
      [&] {
        for (std::size_t i = 0; i < etcd_.size(); ++i) {
          if (bench::server_counts(etcd_.member(i).endpoint()).keepalive_streams_started > 0) renewing = i;
        }
        return renewing < etcd_.size();
      },
      8s))
      << "no member has had a renewal";
  // The session may be suspect for only the moment between a renewal that
  // went unanswered and its retry on another member: its events tell.
  std::atomic<bool> saw_suspect{false};
  auto subscription = manager->subscribe([&](const SessionEvent& event) {
    if (event.state == SessionState::suspect) saw_suspect = true;
  });
  etcd_.member(renewing).freeze();
  const auto until = Steady::now() + 20s;
  while (Steady::now() < until && !lost.stop_requested()) std::this_thread::sleep_for(20ms);
  etcd_.member(renewing).thaw();
  EXPECT_FALSE(lost.stop_requested()) << "the hold was lost though two members were healthy";
  EXPECT_TRUE(saw_suspect) << "renewals were overdue without the session saying suspect";
  EXPECT_TRUE(lock->held());
  EXPECT_TRUE(eventually([&] { return manager->state() == SessionState::healthy; }, 10s));
  EXPECT_TRUE(lock->guarded_put(prefix_ + "/data", "still the holder"));
  lock->unlock();
}

TEST_F(Failover, WaitersKeepTheirPlacesWhenTheirMemberDies) {
  auto holder = manager();
  auto first = manager();
  auto second = manager();
  auto held = holder->get_lock("x");
  held->lock();
  auto first_lock = first->get_lock("x");
  auto second_lock = second->get_lock("x");
  auto first_waiter = wait_in_turn(*first_lock, 1);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  auto second_waiter = wait_in_turn(*second_lock, 2);
  ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
  etcd_.member(0).kill();  // every manager's connection: pick_first chose it
  std::this_thread::sleep_for(500ms);
  held->unlock();
  first_waiter.join();
  second_waiter.join();
  EXPECT_EQ(order_, (std::vector<int>{1, 2}));
}

TEST_F(Failover, WaiterWhoseWatchHistoryWasCompactedGetsTheLockInOrder) {
  const auto endpoint = etcd_.endpoints()[0];
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto through_link = options();
  through_link.endpoints = {link.endpoint()};
  LockManager first(through_link);
  auto holder = manager();
  auto second = manager();
  auto held = holder->get_lock("x");
  held->lock();
  auto first_lock = first.get_lock("x");
  auto second_lock = second->get_lock("x");
  auto first_waiter = wait_in_turn(*first_lock, 1);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  auto second_waiter = wait_in_turn(*second_lock, 2);
  ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));

  // The first waiter loses its connection; meanwhile the holder releases and
  // the history it would have resumed its watch from is compacted away.
  link.cut();
  held->unlock();
  const auto revision = put(raw_, prefix_ + "-marker", "x");
  raw_.compact(revision, in(5s));
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard read(order_mutex_);
    EXPECT_TRUE(order_.empty()) << "the second waiter went ahead of the first";
  }
  link.restore();
  first_waiter.join();
  second_waiter.join();
  EXPECT_EQ(order_, (std::vector<int>{1, 2}));
}

// A create whose reply was lost may be applied long after the attempt gave
// up: here its member forwarded it to a leader that hangs, and the leader,
// once thawed, passes it on. It must not recreate an entry that no one waits
// for, on a lease that lives on: the lock would stay taken forever.
TEST_F(Failover, AStaleCreateCannotRecreateAnEntryAfterItsAttemptGaveUp) {
  for (int trial = 0; trial < 3; ++trial) {
    auto holder = manager();
    auto held = holder->get_lock("x");
    held->lock();
    const auto leader = etcd_.leader_index();
    std::vector<std::string> followers;
    for (std::size_t i = 0; i < 3; ++i) {
      if (i != leader) followers.push_back(etcd_.member(i).endpoint());
    }
    auto through = options();
    through.endpoints = followers;
    through.command_timeout = 1s;
    LockManager delayed(through);
    auto lock = delayed.get_lock("x");
    etcd_.member(leader).freeze();
    EXPECT_FALSE(lock->try_lock_for(4s)) << "trial " << trial;
    etcd_.member(leader).thaw();
    std::this_thread::sleep_for(2s);  // the old leader passes on what it had
    held->unlock();
    auto third_manager = manager();
    auto third = third_manager->get_lock("x");
    EXPECT_TRUE(third->try_lock_for(4s)) << "trial " << trial << ": an entry that no one waits for blocks the lock";
    third->unlock();
    ASSERT_TRUE(eventually([&] { return entries("x") == 0; })) << "trial " << trial;
  }
}

}  // namespace
}  // namespace etcdlock::testing
