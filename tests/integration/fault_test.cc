// Faults where an event is missed, late or lost: a watch stream broken and
// resumed across a compaction, a delete that lands while a stream is down, a
// reply lost after its request committed, a release that cannot reach etcd, a
// loss callback that calls back in. Each test stands for a way to get two
// holders, a hang or a leak that a review found in an earlier design.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "lock_fixture.h"
#include "occupancy.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

// A log sink that records every message, and can be told to stall the lines
// that one thread logs, to widen a race window the way a slow sink would.
class SlowSink {
 public:
  LogSink sink() {
    return [this](LogLevel, std::string_view message, std::span<const LogField>) {
      std::chrono::milliseconds stall{0};
      {
        std::lock_guard lock(mu_);
        messages_.emplace_back(message);
        if (stalled_thread_ == std::this_thread::get_id()) stall = stall_;
      }
      std::this_thread::sleep_for(stall);
    };
  }
  void stall(std::thread::id thread, std::chrono::milliseconds how_long) {
    std::lock_guard lock(mu_);
    stalled_thread_ = thread;
    stall_ = how_long;
  }
  int count(std::string_view message) const {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count(messages_.begin(), messages_.end(), message));
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> messages_;
  std::thread::id stalled_thread_;
  std::chrono::milliseconds stall_{0};
};

class Fault : public LockTest {
 protected:
  int etcd_port() const {
    const auto endpoint = etcd_.endpoints()[0];
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }

  // A manager whose every connection goes through `link`.
  std::unique_ptr<LockManager> manager_through(TcpProxy& link, LogSink sink = {},
                                               std::chrono::milliseconds command_timeout = 5s) {
    auto through = options();
    through.endpoints = {link.endpoint()};
    through.command_timeout = command_timeout;
    if (sink) through.log_sink = std::move(sink);
    return std::make_unique<LockManager>(through);
  }

  // Writes elsewhere, then discards all history up to now.
  void compact() {
    std::int64_t revision = 0;
    for (int i = 0; i < 20; ++i) revision = put(raw_, prefix_ + "-filler", std::to_string(i));
    raw_.compact(revision, in(5s));
  }
};

// A watch that is idle (its lock is held, nothing happens) falls behind
// compaction. After a reconnect etcd cancels it; re-creating it must work, so
// that a later force unlock still reaches the holder.
TEST_F(Fault, IdleWatchResumedAcrossACompactionStillDeliversDeletes) {
  TcpProxy link(etcd_port());
  SlowSink log;
  auto holder_manager = manager_through(link, log.sink());
  auto holding = holder_manager->get_lock("x");
  holding->lock();
  const auto lost = holding->lost_token();
  std::this_thread::sleep_for(1s);  // a hold long enough for any holder watch to be in place
  compact();
  link.cut();
  std::this_thread::sleep_for(200ms);
  link.restore();
  std::this_thread::sleep_for(1500ms);  // reconnected, and the watch re-created
  EXPECT_TRUE(holding->held());

  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("x"));
  EXPECT_TRUE(eventually([&] { return lost.stop_requested(); }, 5s)) << "the holder never learned of the force unlock";
  EXPECT_FALSE(holding->held());
  EXPECT_LE(log.count("watch cancelled by etcd; re-creating it"), 3) << "watches re-created in a loop";
  std::error_code ec;
  holding->unlock(ec);
}

// A delete that lands while the holder's stream is down, with its history
// compacted before the stream comes back, reaches the holder as a gap only.
TEST_F(Fault, HolderLearnsOfADeleteThatFellInAWatchGap) {
  TcpProxy link(etcd_port());
  auto holder_manager = manager_through(link);
  auto holding = holder_manager->get_lock("x");
  holding->lock();
  const auto lost = holding->lost_token();
  std::this_thread::sleep_for(1s);
  link.cut();
  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("x"));
  compact();
  link.restore();
  EXPECT_TRUE(eventually([&] { return lost.stop_requested(); }, 3s)) << "the deleted hold was never signalled";

  auto other_manager = manager();
  auto other = other_manager->get_lock("x");
  ASSERT_TRUE(other->try_lock());
  EXPECT_FALSE(holding->held() && other->held()) << "two holders";
  other->unlock();
  std::error_code ec;
  holding->unlock(ec);
}

// A waiter whose own entry was deleted while its stream was down must not
// call itself the holder: it would hold with no key in etcd.
TEST_F(Fault, WaiterWhoseEntryWasDeletedDoesNotAcquireWithoutAKey) {
  TcpProxy link(etcd_port());
  auto holder_manager = manager();
  auto holding = holder_manager->get_lock("x");
  holding->lock();
  auto waiter_manager = manager_through(link);
  auto waiting = waiter_manager->get_lock("x");
  std::atomic<bool> acquired{false};
  std::atomic<bool> done{false};
  std::string waiter_key;
  std::jthread waiter([&] {
    acquired = waiting->try_lock_for(10s);
    done = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  waiter_key = waiting->key();
  link.cut();
  ASSERT_EQ(erase(raw_, waiter_key), 1);
  holding->unlock();
  compact();
  link.restore();
  ASSERT_TRUE(eventually([&] { return done.load(); }, 12s));
  waiter.join();
  if (acquired) {
    const auto info = holder_manager->info("x");
    ASSERT_TRUE(info) << "the waiter holds with no key in etcd";
    EXPECT_EQ(info->key, waiting->key());
    auto third_manager = manager();
    EXPECT_FALSE(third_manager->get_lock("x")->try_lock()) << "a third manager acquired beside the waiter";
  }
  // The waiter's hold is per thread; its thread has ended, so close cleans up.
  waiter_manager->close();
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; }));
}

// The last unlock cannot reach etcd, so the key is deleted in the background;
// however slow the releasing thread, no two threads may hold at once.
TEST_F(Fault, ReleaseThatFailsNeverLetsTwoThreadsIn) {
  TcpProxy link(etcd_port());
  SlowSink log;
  auto manager = manager_through(link, log.sink(), 300ms);
  auto lock = manager->get_lock("x", LockOptions{.retry_interval = 50ms});
  Occupancy inside;
  auto hold_a_while = [&] {
    lock->lock();
    inside.enter();
    std::this_thread::sleep_for(2500ms);
    inside.leave();
    lock->unlock();
  };
  std::jthread first([&] {
    lock->lock();
    inside.enter();
    std::this_thread::sleep_for(300ms);  // the others are queued behind this thread
    link.pause();
    log.stall(std::this_thread::get_id(), 1500ms);
    inside.leave();
    lock->unlock();
  });
  std::this_thread::sleep_for(100ms);
  std::jthread second(hold_a_while);
  std::jthread third(hold_a_while);
  std::this_thread::sleep_for(1200ms);
  link.resume();
  first.join();
  second.join();
  third.join();
  EXPECT_EQ(inside.most(), 1) << "two threads of one process held the lock at once";
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; }));
}

// try_lock's Txn commits but its reply is lost; by the time it retries,
// another process has queued behind its entry. Either it holds (its entry is
// first) or it leaves no entry: never an entry that blocks everyone.
TEST_F(Fault, TryLockWhoseReplyWasLostLeavesNoEntryBehind) {
  TcpProxy link(etcd_port());
  auto trying_manager = manager_through(link);
  auto trying = trying_manager->get_lock("x");
  auto other_manager = manager();
  auto other = other_manager->get_lock("x");

  link.hold_replies();
  std::atomic<int> result{-1};
  std::string first_key;
  std::jthread attempt([&] {
    try {
      result = trying->try_lock() ? 1 : 0;
    } catch (const Error&) {
      result = 2;  // failed: it must leave no entry either
    }
    if (result == 1) {
      const auto info = other_manager->info("x");
      first_key = info ? info->key : "";
      trying->unlock();  // ownership is per thread
    }
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 1; })) << "the try's Txn did not commit";
  std::atomic<bool> other_acquired{false};
  std::jthread queued([&] {
    other_acquired = other->try_lock_for(8s);
    if (other_acquired) other->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  link.cut();
  link.resume_replies();
  link.restore();
  attempt.join();
  if (result == 1) {
    EXPECT_EQ(first_key, trying->key()) << "try_lock returned true but its entry was not first";
  }
  queued.join();
  EXPECT_TRUE(other_acquired) << "the try left an entry that blocked the queue (try_lock returned " << result << ")";
}

// close() from inside a loss callback, which runs on one of etcdlock's threads.
TEST_F(Fault, CloseFromALossCallbackIsSafe) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  std::atomic<bool> closed_inside{false};
  std::stop_callback on_loss(lock->lost_token(), [&] {
    manager->close();
    closed_inside = true;
  });
  auto admin = this->manager();
  ASSERT_TRUE(admin->force_unlock("x"));
  ASSERT_TRUE(eventually([&] { return closed_inside.load(); }, 5s));
  EXPECT_EQ(manager->state(), SessionState::closed);
  std::error_code ec;
  lock->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// A loss callback that blocks stalls only itself: the manager's other locks
// still hear of their turn.
TEST_F(Fault, BlockingLossCallbackDoesNotStallOtherLocks) {
  auto manager = this->manager();
  auto other_manager = this->manager();
  auto blocked = manager->get_lock("blocked");
  blocked->lock();
  std::atomic<bool> release_callback{false};
  std::atomic<bool> in_callback{false};
  std::stop_callback on_loss(blocked->lost_token(), [&] {
    in_callback = true;
    eventually([&] { return release_callback.load(); }, 15s);
  });
  auto busy = other_manager->get_lock("busy");
  busy->lock();
  auto waiting = manager->get_lock("busy");
  std::atomic<bool> acquired{false};
  std::jthread waiter([&] {
    acquired = waiting->try_lock_for(10s);
    if (acquired) waiting->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("busy") == 2; }));
  ASSERT_TRUE(other_manager->force_unlock("blocked"));
  ASSERT_TRUE(eventually([&] { return in_callback.load(); }, 5s));
  busy->unlock();
  EXPECT_TRUE(eventually([&] { return acquired.load(); }, 3s)) << "a blocked loss callback stalled another lock";
  release_callback = true;
  waiter.join();
  std::error_code ec;
  blocked->unlock(ec);
}

// std::timed_mutex treats a zero timeout as try_lock(): a free lock is taken.
TEST_F(Fault, ZeroTimeoutTakesAFreeLock) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  ASSERT_TRUE(lock->try_lock_for(0s));
  lock->unlock();
  ASSERT_TRUE(lock->try_lock_until(std::chrono::system_clock::now() - 1s));
  lock->unlock();
  auto other_manager = this->manager();
  auto other = other_manager->get_lock("x");
  other->lock();
  EXPECT_FALSE(lock->try_lock_for(0s));
  EXPECT_EQ(entries("x"), 1);
  other->unlock();
}

// A second close() returns only once the manager is closed: its keys are gone.
TEST_F(Fault, ConcurrentCloseReturnsOnlyWhenClosed) {
  SlowSink log;
  auto slow = options();
  slow.log_sink = log.sink();
  auto manager = std::make_unique<LockManager>(slow);
  auto lock = manager->get_lock("x");
  lock->lock();
  std::atomic<bool> first_started{false};
  std::jthread first([&] {
    log.stall(std::this_thread::get_id(), 500ms);
    first_started = true;
    manager->close();
  });
  ASSERT_TRUE(eventually([&] { return first_started.load(); }));
  std::this_thread::sleep_for(50ms);
  manager->close();
  EXPECT_EQ(all_keys(), 0) << "close() returned while another close() was still releasing";
  first.join();
}

// A hold lost at its local deadline (renewals unanswered) may still have its
// key in etcd; unlocking it removes that key, so the queue need not wait for
// the lease to expire on the server.
TEST_F(Fault, UnlockingAHoldLostAtItsDeadlineRemovesItsKey) {
  TcpProxy link(etcd_port());
  auto through = options();
  through.endpoints = {link.endpoint()};
  through.ttl = 10s;
  LockManager holder_manager(through);
  auto holding = holder_manager.get_lock("x");
  holding->lock();
  const auto lost = holding->lost_token();
  link.pause();
  ASSERT_TRUE(eventually([&] { return lost.stop_requested(); }, 12s));
  link.resume();
  std::error_code ec;
  holding->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; }, 500ms))
      << "the lost hold's key stayed until the lease expired";
}

}  // namespace
}  // namespace etcdlock::testing
