// Adversarial review of 9bee341, 7b02a12, 3683334: a lock's (or multi-lock's)
// waiter behind an etcdlock entry defers its watch of that entry for
// QueueWait::kPredecessorWatchDelay (500 ms). Against real etcd: predecessors
// that go without a note while the watch is deferred (lease revoked, key
// deleted), compaction of the read's revision before the deferred watch
// starts, waiters that give up while the deferral is pending, and chains of
// predecessors that change.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "lock_fixture.h"
#include "queue_entries.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// Waits for `lock` (a Lock or a MultiLock) on a thread of its own, for up to
// `timeout`, and releases it as soon as it is in.
class WaiterThread {
 public:
  template <class Lockable>
  WaiterThread(Lockable& lock, Clock::duration timeout)
      : thread_([this, &lock, timeout] {
          if (lock.try_lock_for(timeout)) {
            in_at_.set_value(Clock::now());
            lock.unlock();
          } else {
            in_at_.set_value(Clock::time_point{});
          }
        }) {}
  WaiterThread(const WaiterThread&) = delete;
  WaiterThread& operator=(const WaiterThread&) = delete;

  // When it got in, or Clock::time_point{} if it timed out; joins the thread.
  Clock::time_point admitted_at() {
    const auto at = in_at_.get_future().get();
    thread_.join();
    return at;
  }

 private:
  std::promise<Clock::time_point> in_at_;  // before thread_, which sets it
  std::jthread thread_;
};

class ReviewDeferred : public LockTest {
 protected:
  // The entries of `name`, oldest first.
  std::vector<mvccpb::KeyValue> queue_of(const std::string& name) {
    return queue_entries(raw_, prefix_ + "/" + name + "/");
  }
  std::int64_t bump(int n) {
    std::int64_t revision = 0;
    for (int i = 0; i < n; ++i) revision = put(raw_, prefix_ + "-filler", std::to_string(i));
    return revision;
  }
};

// The holder's lease is revoked (a crash, an admin) while the waiter's watch
// is deferred: no note. The waiter must be in within about the delay.
TEST_F(ReviewDeferred, HolderLeaseRevokedDuringDeferralAdmitsWithinTheDelay) {
  auto waiter_manager = manager(20s);
  auto waiter = waiter_manager->get_lock("x");
  for (int trial = 0; trial < 4; ++trial) {
    auto holder_manager = manager(20s);
    auto held = holder_manager->get_lock("x");
    held->lock();
    WaiterThread waiting(*waiter, 20s);
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * trial));
    const auto head = queue_of("x").at(0);
    const auto revoked_at = Clock::now();
    ASSERT_TRUE(raw_.lease_revoke(head.lease(), in(5s)));
    const auto admitted = waiting.admitted_at();
    ASSERT_NE(admitted, Clock::time_point{}) << "trial " << trial << ": not admitted in 20 s";
    const auto took = ms(admitted - revoked_at);
    std::fprintf(stderr, "trial %d: admitted %ld ms after the revoke\n", trial, took);
    EXPECT_LT(took, 1500) << "trial " << trial;
  }
}

// The revision the waiter read is compacted before its deferred watch starts
// (from read.revision + 1), and the holder went without a note meanwhile.
TEST_F(ReviewDeferred, CompactionBeforeTheDeferredWatchStartsStillAdmits) {
  auto holder_manager = manager(20s);
  auto held = holder_manager->get_lock("x");
  auto waiter_manager = manager(20s);
  auto waiter = waiter_manager->get_lock("x");
  for (int trial = 0; trial < 3; ++trial) {
    held->lock();
    WaiterThread waiting(*waiter, 20s);
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }, 10s));
    const auto head = queue_of("x").at(0);
    const auto deleted_at = Clock::now();
    ASSERT_EQ(erase(raw_, head.key()), 1);  // no note
    const auto revision = bump(20);
    raw_.compact(revision, in(5s));
    const auto admitted = waiting.admitted_at();
    ASSERT_NE(admitted, Clock::time_point{}) << "trial " << trial << ": not admitted in 20 s";
    const auto took = ms(admitted - deleted_at);
    std::fprintf(stderr, "trial %d: admitted %ld ms after the delete\n", trial, took);
    EXPECT_LT(took, 2000) << "trial " << trial;
    std::error_code ec;
    held->unlock(ec);
  }
}

// Z holds; H waits behind Z, P behind H, W behind P. Z releases: H holds,
// knowing P as its successor. P gives up (no note). H releases: its note
// must reach W (the hand-over's second write), or W's deferred watch must.
TEST_F(ReviewDeferred, APredecessorThatGivesUpThenARelease) {
  auto mz = manager(20s);
  auto mh = manager(20s);
  auto mp = manager(20s);
  auto mw = manager(20s);
  auto z = mz->get_lock("x");
  auto h = mh->get_lock("x");
  auto p = mp->get_lock("x");
  auto w = mw->get_lock("x");
  for (int trial = 0; trial < 3; ++trial) {
    z->lock();
    std::promise<void> h_in;
    std::promise<void> h_go;
    auto h_go_f = h_go.get_future().share();
    std::jthread th([&] {
      h->lock();
      h_in.set_value();
      h_go_f.wait();
      h->unlock();
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    std::jthread tp([&] { EXPECT_FALSE(p->try_lock_for(1200ms)); });
    ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
    WaiterThread tw(*w, 20s);
    ASSERT_TRUE(eventually([&] { return entries("x") == 4; }));
    z->unlock();
    h_in.get_future().wait();
    tp.join();  // P gave up
    const auto released_at = Clock::now();
    h_go.set_value();
    const auto admitted = tw.admitted_at();
    th.join();
    ASSERT_NE(admitted, Clock::time_point{});
    const auto took = ms(admitted - released_at);
    std::fprintf(stderr, "trial %d: W admitted %ld ms after H's release\n", trial, took);
    EXPECT_LT(took, 300) << "trial " << trial;
  }
}

// Waiters that give up (timeout, cancel) while their deferral is pending or
// firing; many rounds: under ASan a task of a gone wait would show.
TEST_F(ReviewDeferred, WaitersGivingUpAroundTheDeferralLeaveNothing) {
  auto holder_manager = manager(20s);
  auto held = holder_manager->get_lock("x");
  held->lock();
  auto waiter_manager = manager(20s);
  std::atomic<int> wrong{0};
  for (int round = 0; round < 12; ++round) {
    std::vector<std::jthread> threads;
    for (int i = 0; i < 4; ++i) {
      threads.emplace_back([&, i, round] {
        auto lock = waiter_manager->get_lock("x");
        const auto timeout = std::chrono::milliseconds(440 + 20 * i + 3 * round);
        if (lock->try_lock_for(timeout)) ++wrong;
      });
    }
    std::vector<std::shared_ptr<Lock>> async_locks;
    std::vector<std::stop_source> stops(4);
    std::atomic<int> done{0};
    for (int i = 0; i < 4; ++i) {
      auto lock = waiter_manager->get_lock("x");
      lock->async_lock_for(
          20s,
          [&](std::error_code ec, LockHold) {
            if (!ec) ++wrong;
            ++done;
          },
          stops[i].get_token());
      async_locks.push_back(lock);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(480 + 10 * (round % 4)));
    for (auto& stop : stops) stop.request_stop();
    threads.clear();
    ASSERT_TRUE(eventually([&] { return done.load() == 4; }, 5s));
  }
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_TRUE(eventually([&] { return entries("x") == 1; }, 5s));
  held->unlock();
  waiter_manager.reset();
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; }, 5s));
}

// A multi-lock behind a Lock holder of y whose lease is revoked while its
// watch is deferred.
TEST_F(ReviewDeferred, MultiLockBehindARevokedHolderIsAdmittedWithinTheDelay) {
  auto a = manager(20s);
  auto xy = a->get_multi_lock({"x", "y"});
  for (int trial = 0; trial < 3; ++trial) {
    auto b = manager(20s);
    auto y = b->get_lock("y");
    y->lock();
    WaiterThread waiting(*xy, 20s);
    ASSERT_TRUE(eventually([&] { return entries("y") == 2; }));
    const auto head = queue_of("y").at(0);
    const auto revoked_at = Clock::now();
    ASSERT_TRUE(raw_.lease_revoke(head.lease(), in(5s)));
    const auto admitted = waiting.admitted_at();
    ASSERT_NE(admitted, Clock::time_point{});
    const auto took = ms(admitted - revoked_at);
    std::fprintf(stderr, "trial %d: multi-lock admitted %ld ms after the revoke\n", trial, took);
    EXPECT_LT(took, 1500) << "trial " << trial;
  }
}

// The waiter's own lease is revoked while its watch is deferred: it queues
// again, and is let in soon after the holder releases.
TEST_F(ReviewDeferred, WaiterSessionLostDuringDeferralQueuesAgainAndGetsIn) {
  auto holder_manager = manager(20s);
  auto held = holder_manager->get_lock("x");
  auto waiter_manager = manager(20s);
  auto waiter = waiter_manager->get_lock("x");
  for (int trial = 0; trial < 3; ++trial) {
    held->lock();
    WaiterThread waiting(*waiter, 20s);
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    const auto own = queue_of("x").at(1);
    ASSERT_TRUE(raw_.lease_revoke(own.lease(), in(5s)));
    ASSERT_TRUE(eventually([&] { return entries("x") == 2 && queue_of("x").at(1).lease() != own.lease(); }, 10s));
    const auto released_at = Clock::now();
    held->unlock();
    const auto admitted = waiting.admitted_at();
    ASSERT_NE(admitted, Clock::time_point{});
    const auto took = ms(admitted - released_at);
    std::fprintf(stderr, "trial %d: admitted %ld ms after the release\n", trial, took);
    EXPECT_LT(took, 300) << "trial " << trial;
  }
}

// Many managers, some waiters giving up, waiters' keys deleted from the
// middle of the queue: never two holders, and every waiter gets in.
TEST_F(ReviewDeferred, MixedContentionNeverAdmitsTwo) {
  constexpr int kManagers = 5;
  std::vector<std::unique_ptr<LockManager>> managers;
  for (int i = 0; i < kManagers; ++i) managers.push_back(manager(20s));
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> acquired{0};
  std::atomic<int> gave_up{0};
  std::atomic<int> lost{0};
  std::atomic<bool> stop{false};
  std::vector<std::jthread> threads;
  for (int i = 0; i < kManagers; ++i) {
    threads.emplace_back([&, i] {
      auto lock = managers[i]->get_lock("x");
      for (int round = 0; round < 25 && !stop; ++round) {
        const auto timeout =
            (round + i) % 4 == 0 ? std::chrono::milliseconds(300 + 37 * i) : std::chrono::milliseconds(15000);
        bool got = false;
        try {
          got = lock->try_lock_for(timeout);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "manager %d: %s\n", i, e.what());
          continue;
        }
        if (!got) {
          if (timeout > std::chrono::milliseconds(10000)) ADD_FAILURE() << "manager " << i << " waited 15 s in vain";
          ++gave_up;
          continue;
        }
        if (inside.fetch_add(1) != 0) ++overlaps;
        ++acquired;
        std::this_thread::sleep_for(std::chrono::milliseconds(5 + (round * 7 + i * 3) % 30));
        // No holder is ever the disturber's victim, so none may be told lost.
        if (lock->lost_token().stop_requested()) ++lost;
        inside.fetch_sub(1);
        std::error_code ec;
        lock->unlock(ec);
      }
    });
  }
  // The disturber: deletes a waiter's key now and then.
  std::jthread disturber([&] {
    for (int k = 0; k < 30 && !stop; ++k) {
      std::this_thread::sleep_for(std::chrono::milliseconds(170 + 13 * (k % 5)));
      const auto q = queue_of("x");
      if (q.empty()) continue;
      // A waiter in the middle: the one behind it gets no note. Deleted only
      // while the head read is still there, so the victim is never the
      // holder: a holder force-deleted mid-section overlaps its successor by
      // design (its stop_token says so; this test's section does not look),
      // and a plain delete after the read hit a holder in CI.
      if (q.size() < 3) continue;
      etcdserverpb::TxnRequest txn;
      auto* head_present = txn.add_compare();
      head_present->set_key(q[0].key());
      head_present->set_target(etcdserverpb::Compare::CREATE);
      head_present->set_result(etcdserverpb::Compare::EQUAL);
      head_present->set_create_revision(q[0].create_revision());
      txn.add_success()->mutable_request_delete_range()->set_key(q[1 + k % (q.size() - 2)].key());
      raw_.txn(txn, in(5s));
    }
  });
  threads.clear();
  stop = true;
  disturber.join();
  std::fprintf(stderr, "acquired %d, gave up %d, overlaps %d\n", acquired.load(), gave_up.load(), overlaps.load());
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(lost.load(), 0);
  EXPECT_GT(acquired.load(), 0);
}

// A multi-lock over nested names ("a", "a/b") behind a Lock holder of "a/b"
// whose lease is revoked: queue "a" watches it at once, queue "a/b" defers.
TEST_F(ReviewDeferred, NestedMultiLockBehindARevokedHolder) {
  auto a = manager(20s);
  auto m = a->get_multi_lock({"a", "a/b"});
  for (int trial = 0; trial < 3; ++trial) {
    auto b = manager(20s);
    auto ab = b->get_lock("a/b");
    ab->lock();
    WaiterThread waiting(*m, 20s);
    ASSERT_TRUE(eventually([&] { return entries("a/b") == 2; }));
    const auto head = queue_of("a/b").at(0);
    std::this_thread::sleep_for(100ms);
    const auto revoked_at = Clock::now();
    ASSERT_TRUE(raw_.lease_revoke(head.lease(), in(5s)));
    const auto admitted = waiting.admitted_at();
    ASSERT_NE(admitted, Clock::time_point{});
    const auto took = ms(admitted - revoked_at);
    std::fprintf(stderr, "trial %d: nested multi-lock admitted %ld ms after the revoke\n", trial, took);
    EXPECT_LT(took, 1500) << "trial " << trial;
  }
}

// A multi-lock {x, y} waits on x first, then y (MultiAcquisition::try_once
// runs the queues' waits one after another). y's holder, an etcdlock Lock,
// is gone without a note (its lease revoked) long before x is handed over.
// The read that saw y's holder is seconds old by then, so the deferral is
// long over: the multi-lock should be in as soon as x is handed over.
TEST_F(ReviewDeferred, AMultiLocksLaterQueueCountsItsDeferralFromItsRead) {
  auto a = manager(20s);
  auto xy = a->get_multi_lock({"x", "y"});
  auto hx_manager = manager(20s);
  auto hx = hx_manager->get_lock("x");
  for (int trial = 0; trial < 3; ++trial) {
    auto hy_manager = manager(20s);
    auto hy = hy_manager->get_lock("y");
    hx->lock();
    hy->lock();
    WaiterThread waiting(*xy, 20s);
    ASSERT_TRUE(eventually([&] { return entries("x") == 2 && entries("y") == 2; }));
    ASSERT_TRUE(raw_.lease_revoke(queue_of("y").at(0).lease(), in(5s)));  // y's holder goes, no note
    ASSERT_EQ(entries("y"), 1);
    std::this_thread::sleep_for(2s);  // the read that saw y's holder is old now
    const auto released_at = Clock::now();
    hx->unlock();  // x is handed over with a note
    const auto admitted = waiting.admitted_at();
    ASSERT_NE(admitted, Clock::time_point{});
    const auto took = ms(admitted - released_at);
    std::fprintf(stderr, "trial %d: multi-lock admitted %ld ms after x's release (y's holder gone 2 s before)\n", trial,
                 took);
    EXPECT_LT(took, 450) << "trial " << trial;  // deferred from the wait's start: 500 ms or more
  }
}

// As above with {x, y, z}: y's and z's holders gone without notes long
// before x is handed over. A deferral counted from each later queue's wait
// would add one kPredecessorWatchDelay per queue.
TEST_F(ReviewDeferred, AMultiLocksDeferralsDoNotAddUpOverItsQueues) {
  auto a = manager(20s);
  auto xyz = a->get_multi_lock({"x", "y", "z"});
  auto hx_manager = manager(20s);
  auto hx = hx_manager->get_lock("x");
  auto hy_manager = manager(20s);
  auto hy = hy_manager->get_lock("y");
  auto hz_manager = manager(20s);
  auto hz = hz_manager->get_lock("z");
  hx->lock();
  hy->lock();
  hz->lock();
  WaiterThread waiting(*xyz, 20s);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2 && entries("y") == 2 && entries("z") == 2; }));
  ASSERT_TRUE(raw_.lease_revoke(queue_of("y").at(0).lease(), in(5s)));
  ASSERT_TRUE(raw_.lease_revoke(queue_of("z").at(0).lease(), in(5s)));
  std::this_thread::sleep_for(2s);
  const auto released_at = Clock::now();
  hx->unlock();
  const auto admitted = waiting.admitted_at();
  ASSERT_NE(admitted, Clock::time_point{});
  const auto took = ms(admitted - released_at);
  std::fprintf(stderr, "multi-lock {x,y,z} admitted %ld ms after x's release (y's, z's holders gone 2 s before)\n",
               took);
  EXPECT_LT(took, 450);  // one deferral per later queue: 1,000 ms or more
}

// The waiter's manager is closed, or destroyed, while the deferral is
// pending or firing (around 500 ms): the wait ends at once with closed or
// not acquired, nothing is left behind, and (under ASan) the worker's task
// touches nothing freed.
TEST_F(ReviewDeferred, ManagerClosedAroundTheDeferralEndsTheWaitPromptly) {
  auto holder_manager = manager(20s);
  auto held = holder_manager->get_lock("x");
  held->lock();
  for (int trial = 0; trial < 8; ++trial) {
    auto waiter_manager = manager(20s);
    auto waiter = waiter_manager->get_lock("x");
    auto async_waiter_manager = manager(20s);
    auto async_waiter = async_waiter_manager->get_lock("x");
    std::promise<std::error_code> async_done;
    async_waiter->async_lock_for(20s, [&](std::error_code ec, LockHold) { async_done.set_value(ec); });
    std::promise<Clock::time_point> ended_at;
    std::jthread waiting([&] {
      try {
        EXPECT_FALSE(waiter->try_lock_for(20s));
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), errc::closed) << e.what();
      }
      ended_at.set_value(Clock::now());
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(440 + 15 * trial));  // around the due time
    const auto closing = Clock::now();
    waiter_manager->close();
    async_waiter_manager.reset();
    const auto ended = ended_at.get_future().get();
    waiting.join();
    EXPECT_LT(ms(ended - closing), 2000) << "trial " << trial;
    auto f = async_done.get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready) << "trial " << trial;
    EXPECT_TRUE(f.get()) << "trial " << trial;
    waiter.reset();
    waiter_manager.reset();
    EXPECT_TRUE(eventually([&] { return entries("x") == 1; }, 5s)) << "trial " << trial;
  }
  held->unlock();
}

// The waiter reaches etcd through a proxy that holds its replies back while
// its watch is deferred; its holder's lease is revoked then (no note). Once
// the replies flow again, the waiter is let in soon.
TEST_F(ReviewDeferred, DeferralAcrossAStalledConnection) {
  TcpProxy proxy(port_of(etcd_.endpoints().at(0)));
  LockManager waiter_manager(options_through(proxy.endpoint()));
  auto waiter = waiter_manager.get_lock("x");
  for (int trial = 0; trial < 3; ++trial) {
    auto holder_manager = manager(20s);
    auto held = holder_manager->get_lock("x");
    held->lock();
    std::promise<Clock::time_point> in_at;
    std::jthread waiting([&] {
      try {
        if (waiter->try_lock_for(30s)) {
          in_at.set_value(Clock::now());
          waiter->unlock();
          return;
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "trial %d: %s\n", trial, e.what());
      }
      in_at.set_value({});
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    if (trial == 0)
      proxy.hold_replies();
    else
      proxy.pause();
    std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(raw_.lease_revoke(queue_of("x").at(0).lease(), in(5s)));
    std::this_thread::sleep_for(std::chrono::milliseconds(trial == 2 ? 700 : 2000));
    const auto resumed_at = Clock::now();
    if (trial == 0)
      proxy.resume_replies();
    else
      proxy.resume();
    const auto admitted = in_at.get_future().get();
    waiting.join();
    ASSERT_NE(admitted, Clock::time_point{}) << "trial " << trial;
    const auto took = ms(admitted - resumed_at);
    std::fprintf(stderr, "trial %d: admitted %ld ms after the connection resumed\n", trial, took);
    EXPECT_LT(took, 1500) << "trial " << trial;
  }
}

// The holder's process shuts down cleanly (LockManager::close(), or its
// destructor, with the lock held): close() revokes the lease, then notes the
// queue's new head. Without that note the next waiter, whose watch is
// deferred, was let in only when the deferral ended, up to 500 ms after the
// holder went (every trial, 486-570 ms).
TEST_F(ReviewDeferred, AHolderManagerClosedWithTheLockHeldNotesItsSuccessor) {
  auto waiter_manager = manager(20s);
  auto waiter = waiter_manager->get_lock("x");
  long worst = 0;
  for (int trial = 0; trial < 4; ++trial) {
    auto holder_manager = manager(20s);
    // Odd trials: "x" is held by a multi-lock, whose entries end the same way.
    auto held = holder_manager->get_lock("x");
    auto held_set = holder_manager->get_multi_lock({"w", "x"});
    if (trial % 2 == 0) {
      held->lock();
    } else {
      held_set->lock();
    }
    WaiterThread waiting(*waiter, 20s);
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    std::this_thread::sleep_for(20ms);
    const auto closed_at = Clock::now();
    holder_manager->close();
    const auto admitted = waiting.admitted_at();
    ASSERT_NE(admitted, Clock::time_point{});
    const auto took = ms(admitted - closed_at);
    worst = std::max(worst, took);
    std::fprintf(stderr, "trial %d: admitted %ld ms after the holder's manager began to close\n", trial, took);
  }
  EXPECT_LT(worst, 250);
}

// A manager holding more locks than one Txn reads (kMaxTxnOps heads a Txn)
// closes: the waiters on names read by the first and by the second Txn are
// each let in by a note, not the deferral.
TEST_F(ReviewDeferred, AManagerClosedHoldingManyLocksNotesTheSuccessorOfEach) {
  constexpr int kHeld = 200;
  auto holder_manager = manager(20s);
  std::vector<std::shared_ptr<Lock>> held;
  for (int i = 0; i < kHeld; ++i) {
    held.push_back(holder_manager->get_lock("n" + std::to_string(i)));
    held.back()->lock();
  }
  auto waiter_manager = manager(20s);
  // Read in the order of their queues' keys, as strings: n55 and n99 come
  // past the first kMaxTxnOps (128), in the second read.
  const std::vector<int> waited_on = {0, 55, 99};
  std::vector<std::promise<Clock::time_point>> in_at(waited_on.size());
  std::vector<std::jthread> waiting;
  for (std::size_t k = 0; k < waited_on.size(); ++k) {
    waiting.emplace_back([&, k] {
      auto lock = waiter_manager->get_lock("n" + std::to_string(waited_on[k]));
      if (lock->try_lock_for(20s)) {
        in_at[k].set_value(Clock::now());
        lock->unlock();
      } else {
        in_at[k].set_value({});
      }
    });
  }
  for (const int i : waited_on) ASSERT_TRUE(eventually([&] { return entries("n" + std::to_string(i)) == 2; }));
  std::this_thread::sleep_for(20ms);
  const auto closed_at = Clock::now();
  holder_manager->close();
  for (std::size_t k = 0; k < waited_on.size(); ++k) {
    const auto admitted = in_at[k].get_future().get();
    ASSERT_NE(admitted, Clock::time_point{});
    const auto took = ms(admitted - closed_at);
    std::fprintf(stderr, "n%d: admitted %ld ms after the holder's manager began to close\n", waited_on[k], took);
    EXPECT_LT(took, 300) << "n" << waited_on[k];
  }
}

// try_lock_for(400 ms) behind a holder whose lease is revoked 50 ms in: the
// lock is free for 350 ms of the wait. A watch deferred 500 ms after the
// waiter's read would start past its deadline and the wait would time out
// (it did, every trial, before the deferral was bounded by the deadline).
TEST_F(ReviewDeferred, AShortTimedWaitIsNotDeferredPastItsDeadline) {
  auto waiter_manager = manager(20s);
  auto waiter = waiter_manager->get_lock("x");
  int timed_out = 0;
  for (int trial = 0; trial < 3; ++trial) {
    auto holder_manager = manager(20s);
    auto held = holder_manager->get_lock("x");
    held->lock();
    std::atomic<bool> got{false};
    std::jthread waiting([&] {
      if (waiter->try_lock_for(400ms)) {
        got = true;
        waiter->unlock();
      }
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }, 10s));
    ASSERT_TRUE(raw_.lease_revoke(queue_of("x").at(0).lease(), in(5s)));
    waiting.join();
    if (!got) ++timed_out;
    std::fprintf(stderr, "trial %d: %s\n", trial, got ? "acquired" : "timed out with the lock free");
  }
  EXPECT_LE(timed_out, 1);  // deferred past the deadline, every trial timed out
}

}  // namespace
}  // namespace etcdlock::testing
