// Adversarial review of 78ba95e: LockManager::close() with locks held notes
// the new head of each held lock's queue after the lease revoke. Against real
// etcd: many locks held, close racing unlock(), nested names, a revoke whose
// reply is lost, a close racing an acquisition that is completing.
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
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

class ReviewClose : public LockTest {
 protected:
  void many_locks(int kLocks, bool strict);
};

// One waiter per lock: the time from close() to its admission.
struct Waiting {
  std::promise<Clock::time_point> in_at;
  std::future<Clock::time_point> got = in_at.get_future();
  std::jthread thread;
};

void wait_on(std::shared_ptr<Lock> lock, Waiting& w, std::atomic<int>* inside = nullptr,
             std::atomic<int>* overlaps = nullptr) {
  w.thread = std::jthread([lock, &w, inside, overlaps] {
    try {
      if (lock->try_lock_for(20s)) {
        const auto at = Clock::now();
        if (inside && inside->fetch_add(1) != 0 && overlaps) ++*overlaps;
        std::this_thread::sleep_for(30ms);
        if (inside) inside->fetch_sub(1);
        lock->unlock();
        w.in_at.set_value(at);
        return;
      }
    } catch (...) {
    }
    w.in_at.set_value({});
  });
}

// Many locks held, each with a waiter of another manager: close() makes one
// read and one note per lock, one after another, where it used to make one
// revoke. How long does close() take, and does every waiter get in quickly?
void ReviewClose::many_locks(int kLocks, bool strict) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  // What this measures is how long close() spends on its notes, one after
  // another: under ThreadSanitizer, with another test beside it, 48 took
  // 775 ms and 300 took 13 s (CI-like run, 2026-12-04), which says nothing
  // about whether the waiters were let in by a note or by their watch.
  GTEST_SKIP() << "a timing of serial requests, meaningless under a sanitizer";
#endif
  auto holder = manager(20s);
  auto waiter = manager(20s);
  std::vector<std::shared_ptr<Lock>> held;
  for (int i = 0; i < kLocks; ++i) {
    held.push_back(holder->get_lock("m" + std::to_string(i)));
    held.back()->lock();
  }
  std::vector<Waiting> waits(kLocks);
  for (int i = 0; i < kLocks; ++i) wait_on(waiter->get_lock("m" + std::to_string(i)), waits[i]);
  ASSERT_TRUE(eventually(
      [&] {
        for (int i = 0; i < kLocks; ++i) {
          if (entries("m" + std::to_string(i)) != 2) return false;
        }
        return true;
      },
      10s));
  std::this_thread::sleep_for(20ms);
  const auto closed_at = Clock::now();
  holder->close();
  const auto close_took = ms(Clock::now() - closed_at);
  long worst = 0;
  int late = 0;
  for (auto& w : waits) {
    const auto at = w.got.get();
    ASSERT_NE(at, Clock::time_point{});
    const auto took = ms(at - closed_at);
    worst = std::max(worst, took);
    if (took >= 400) ++late;
  }
  std::fprintf(stderr, "%d locks: close() took %ld ms; worst admission %ld ms after close began; %d at >= 400 ms\n",
               kLocks, close_took, worst, late);
  // 300 locks: close() took 377-418 ms with one read and one note per lock in
  // series, and 0-2 waiters came in at >= 400 ms; 275 ms and none with the
  // heads read 128 to a Txn. Only reported: the notes still go one by one.
  if (strict) {
    EXPECT_EQ(late, 0);
  }
  EXPECT_LT(close_took, 2000);
}

TEST_F(ReviewClose, ManyLocksHeldCloseTimeAndAdmission) { many_locks(48, true); }
TEST_F(ReviewClose, ManyMoreLocksHeldCloseTimeAndAdmission) { many_locks(300, false); }

// unlock() on one thread while close() runs on another: the unlock's note
// and the close's note must not let two waiters in at once, and the next
// waiter gets in quickly.
TEST_F(ReviewClose, CloseRacingUnlockNoOverlapNoDelay) {
  auto b_mgr = manager(20s);
  auto c_mgr = manager(20s);
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  long worst = 0;
  for (int trial = 0; trial < 8; ++trial) {
    auto a_mgr = manager(20s);
    auto a = a_mgr->get_lock("x");
    a->lock();
    Waiting wb;
    wait_on(b_mgr->get_lock("x"), wb, &inside, &overlaps);
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    Waiting wc;
    wait_on(c_mgr->get_lock("x"), wc, &inside, &overlaps);
    ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
    std::this_thread::sleep_for(20ms);
    const auto start = Clock::now();
    std::jthread unlocker([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(300 * trial));
      a->unlock();
    });
    a_mgr->close();
    unlocker.join();
    const auto b_at = wb.got.get();
    const auto c_at = wc.got.get();
    ASSERT_NE(b_at, Clock::time_point{});
    ASSERT_NE(c_at, Clock::time_point{});
    const auto first = std::min(ms(b_at - start), ms(c_at - start));
    worst = std::max(worst, first);
    std::fprintf(stderr, "trial %d: first waiter in %ld ms after close began (b %ld, c %ld)\n", trial, first,
                 ms(b_at - start), ms(c_at - start));
  }
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_LT(worst, 250);
}

// Nested names: the closing manager holds "a" and "a/b"; one waiter on each.
TEST_F(ReviewClose, NestedNamesBothWaitersNotedNoOverlap) {
  auto w_mgr = manager(20s);
  long worst_a = 0;
  long worst_ab = 0;
  for (int trial = 0; trial < 4; ++trial) {
    auto h = manager(20s);
    auto ha = h->get_lock("a");
    auto hab = h->get_lock("a/b");
    ha->lock();
    hab->lock();
    Waiting wa;
    Waiting wab;
    wait_on(w_mgr->get_lock("a/b"), wab);
    ASSERT_TRUE(eventually([&] { return entries("a/b") == 2; }));
    wait_on(w_mgr->get_lock("a"), wa);
    ASSERT_TRUE(eventually([&] { return entries("a") == 4; }));
    std::this_thread::sleep_for(20ms);
    const auto start = Clock::now();
    h->close();
    const auto a_at = wa.got.get();
    const auto ab_at = wab.got.get();
    ASSERT_NE(a_at, Clock::time_point{});
    ASSERT_NE(ab_at, Clock::time_point{});
    worst_a = std::max(worst_a, ms(a_at - start));
    worst_ab = std::max(worst_ab, ms(ab_at - start));
    std::fprintf(stderr, "trial %d: 'a' waiter in %ld ms, 'a/b' waiter in %ld ms\n", trial, ms(a_at - start),
                 ms(ab_at - start));
  }
  // The "a" waiter is behind the "a/b" waiter's entry (which holds "a/b"
  // for 30 ms), so its admission is that plus a hand-over it is not noted of.
  EXPECT_LT(worst_ab, 250);
  EXPECT_LT(worst_a, 600);
}

// The revoke commits but its reply is lost: close() writes no note (by
// design). How long are close() and the waiter's admission?
TEST_F(ReviewClose, RevokeReplyLostNoNoteWaiterDelay) {
  TcpProxy proxy(port_of(etcd_.endpoints().front()));
  auto w_mgr = manager(20s);
  auto h = std::make_unique<LockManager>(options_through(proxy.endpoint()));
  auto held = h->get_lock("x");
  held->lock();
  Waiting w;
  wait_on(w_mgr->get_lock("x"), w);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  std::this_thread::sleep_for(20ms);
  proxy.hold_replies();
  const auto start = Clock::now();
  std::jthread closer([&] { h->close(); });
  const auto at = w.got.get();
  closer.join();
  const auto close_took = ms(Clock::now() - start);
  proxy.resume_replies();
  ASSERT_NE(at, Clock::time_point{});
  std::fprintf(stderr, "revoke reply held: waiter in %ld ms, close() returned within %ld ms\n", ms(at - start),
               close_took);
}

// A close that races an acquisition completing on another thread of the same
// manager: the acquirer (A) is let in by the holder's (C's) unlock while A's
// manager closes. B waits behind A. B must get in quickly once A is gone.
// Late (483-554 ms) in 6-9 trials of 12 when only Holds registered their
// queue: A's wait ended with errc::closed, or its Hold started after the
// notes were taken.
TEST_F(ReviewClose, CloseRacingCompletingAcquisitionLeavesNoWaiterBehind) {
  auto b_mgr = manager(20s);
  auto c_mgr = manager(20s);
  long worst = 0;
  int late = 0;
  for (int trial = 0; trial < 12; ++trial) {
    auto a_mgr = manager(20s);
    auto c = c_mgr->get_lock("x");
    c->lock();
    auto a = a_mgr->get_lock("x");
    std::jthread a_thread([&] {
      try {
        if (a->try_lock_for(20s)) a->unlock();
      } catch (...) {
      }
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    Waiting wb;
    wait_on(b_mgr->get_lock("x"), wb);
    ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
    std::this_thread::sleep_for(20ms);
    const auto start = Clock::now();
    std::jthread closer([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(250 * (trial % 8)));
      a_mgr->close();
    });
    c->unlock();
    closer.join();
    a_thread.join();
    const auto at = wb.got.get();
    ASSERT_NE(at, Clock::time_point{});
    const auto took = ms(at - start);
    worst = std::max(worst, took);
    if (took >= 400) ++late;
    std::fprintf(stderr, "trial %d: B in %ld ms after C's unlock / A's close\n", trial, took);
  }
  std::fprintf(stderr, "worst %ld ms, %d trials >= 400 ms\n", worst, late);
  EXPECT_EQ(late, 0);
}

// The closing manager's waiter is the queue's head without knowing it: the
// holder before it went without a note (its lease revoked, as by a crash),
// and its watch of that holder is deferred. When close() noted only the
// queues of Holds, the waiter behind it (B) was told of nothing and waited
// for its own deferred watch (506-550 ms, 4 trials of 4); the queues of
// waiting entries are noted too now.
TEST_F(ReviewClose, AWaiterAtTheHeadUnawareWhenClosedHandsOver) {
  auto b_mgr = manager(20s);
  long worst = 0;
  int late = 0;
  for (int trial = 0; trial < 4; ++trial) {
    auto c_mgr = manager(20s);
    auto a_mgr = manager(20s);
    auto c = c_mgr->get_lock("x");
    c->lock();
    auto a = a_mgr->get_lock("x");
    std::jthread a_thread([&] {
      try {
        if (a->try_lock_for(20s)) a->unlock();
      } catch (...) {
      }
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    Waiting wb;
    wait_on(b_mgr->get_lock("x"), wb);
    ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
    std::this_thread::sleep_for(20ms);
    // C goes without a note: A is the head now, and does not know it yet.
    etcdserverpb::RangeRequest request;
    const auto dir = prefix_ + "/x/";
    request.set_key(dir);
    request.set_range_end(detail::prefix_range_end(dir));
    request.set_sort_target(etcdserverpb::RangeRequest::CREATE);
    request.set_sort_order(etcdserverpb::RangeRequest::ASCEND);
    const auto found = raw_.range(request, in(5s));
    ASSERT_GE(found.kvs_size(), 1);
    ASSERT_TRUE(raw_.lease_revoke(found.kvs(0).lease(), in(5s)));
    std::this_thread::sleep_for(5ms);
    const auto start = Clock::now();
    a_mgr->close();
    a_thread.join();
    const auto at = wb.got.get();
    ASSERT_NE(at, Clock::time_point{});
    const auto took = ms(at - start);
    worst = std::max(worst, took);
    if (took >= 300) ++late;
    std::fprintf(stderr, "trial %d: B in %ld ms after A's close began\n", trial, took);
  }
  EXPECT_EQ(late, 0) << "worst " << worst << " ms";
}

}  // namespace
}  // namespace etcdlock::testing
