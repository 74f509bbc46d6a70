// Adversarial review of 78ba95e: LockManager::close() with locks held notes
// the new head of each held lock's queue after the lease revoke. Against real
// etcd: many locks held, close racing unlock(), nested names, a revoke whose
// reply is lost, a close racing an acquisition that is completing; and, from
// the review of 0a789be, close racing unlock() on the holding thread and
// random closes checked for two holders.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "etcd/watch_hub.h"
#include "keys/key_layout.h"
#include "lock_fixture.h"
#include "queue_entries.h"
#include "recording_listener.h"
#include "sanitizer.h"
#include "session/inbox.h"
#include "tcp_proxy.h"
#include "timed_waiter.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

enum class Release;

class ReviewClose : public LockTest {
 protected:
  void many_locks(int kLocks, int kWaiters);
  void unlock_racing_close(Release release);
  // Revokes the lease of the entry first in `name`'s queue: its holder goes
  // without a note.
  void revoke_lease_of_head(const std::string& name);
  // With C first in "x" and A's wait behind it: B of `b_mgr` queues behind
  // A, C goes without a note, and A's manager closes. How long after close()
  // began B got in (ms); -1, a failure, when it did not.
  long b_in_after_head_goes_and_a_closes(LockManager& b_mgr, LockManager& a_mgr, std::jthread& a_thread);
};

long ReviewClose::b_in_after_head_goes_and_a_closes(LockManager& b_mgr, LockManager& a_mgr, std::jthread& a_thread) {
  Waiting wb;
  wait_on(b_mgr.get_lock("x"), wb);
  EXPECT_TRUE(eventually([&] { return entries("x") == 3; }));
  std::this_thread::sleep_for(20ms);
  // C goes without a note: A is the head now, and does not know it yet.
  revoke_lease_of_head("x");
  std::this_thread::sleep_for(5ms);
  const auto start = Clock::now();
  a_mgr.close();
  a_thread.join();
  const auto at = wb.got.get();
  if (at == Clock::time_point{}) {
    ADD_FAILURE() << "B never got in";
    return -1;
  }
  return ms(at - start);
}

void ReviewClose::revoke_lease_of_head(const std::string& name) {
  const auto found = queue_entries(raw_, prefix_ + "/" + name + "/");
  ASSERT_GE(found.size(), 1u);
  ASSERT_TRUE(raw_.lease_revoke(found.front().lease(), in(5s)));
}

// Many locks held, each with a waiter of another manager (`kWaiters` of them,
// the locks dealt out in turn): close() reads the queues and notes each new
// head, where it used to make one revoke. How long does close() take, and does
// every waiter get in quickly?
void ReviewClose::many_locks(int kLocks, int kWaiters) {
#if ETCDLOCK_TEST_SANITIZED
  // What this measures is how long close() spends on its notes, one after
  // another: under ThreadSanitizer, with another test beside it, 48 took
  // 775 ms and 300 took 13 s (CI-like run, 2026-12-04), which says nothing
  // about whether the waiters were let in by a note or by their watch.
  GTEST_SKIP() << "a timing of serial requests, meaningless under a sanitizer";
#endif
  auto holder = manager(20s);
  std::vector<std::unique_ptr<LockManager>> waiters;
  for (int i = 0; i < kWaiters; ++i) waiters.push_back(manager(20s));
  std::vector<std::shared_ptr<Lock>> held;
  for (int i = 0; i < kLocks; ++i) {
    held.push_back(holder->get_lock("m" + std::to_string(i)));
    held.back()->lock();
  }
  std::vector<Waiting> waits(kLocks);
  for (int i = 0; i < kLocks; ++i) wait_on(waiters[i % kWaiters]->get_lock("m" + std::to_string(i)), waits[i]);
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
  std::fprintf(stderr,
               "%d locks, %d waiting managers: close() took %ld ms; worst admission %ld ms after close began; %d at >= "
               "400 ms\n",
               kLocks, kWaiters, close_took, worst, late);
  // 300 locks, one waiting manager: close() took 377-418 ms with one read
  // and one note per lock in series, and 0-125 waiters came in at >= 400 ms
  // (let in by their watches, not by a note); 28-59 ms, worst admission
  // 70-81 ms, with the notes grouped by inbox, 64 groups of 64 to a Txn.
  EXPECT_EQ(late, 0);
  EXPECT_LT(close_took, 2000);
}

TEST_F(ReviewClose, ManyLocksHeldCloseTimeAndAdmission) { many_locks(48, 1); }
TEST_F(ReviewClose, ManyMoreLocksHeldCloseTimeAndAdmission) { many_locks(300, 1); }
// More inboxes than one Txn of notes takes: two Txns, each manager one note.
TEST_F(ReviewClose, ManyLocksOfManyWaitingManagersCloseTimeAndAdmission) { many_locks(140, 70); }

// unlock() of A's hold on its own thread races A's close(); B, of another
// manager, waits behind A. The close's revoke may take A's entry before the
// release's Txn, which then finds it gone and notes no one: the close must
// note B itself (Hold::give_up follows the close until its release is
// answered), or B waits out its deferred watch (500 ms). Until 2026-12-04
// it did not, for a close that began after give_up() checked for one: late in
// 14–16 of 24 trials with the head read first, 5 of 24 with one Txn, 18–20 of
// 24 for a multi-lock (the review of 0a789be). An earlier form of this test
// unlocked on a thread that did not hold the lock, and so never raced.
enum class Release { read_first, one_txn, multi_read_first };

void ReviewClose::unlock_racing_close(Release release) {
  constexpr int kTrials = 24;
  auto b_mgr = manager(20s);
  auto c_mgr = manager(20s);
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  int late = 0;
  long worst = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    auto a_mgr = manager(20s);
    std::shared_ptr<Lock> a;
    std::shared_ptr<MultiLock> a_multi;
    if (release == Release::multi_read_first) {
      a_multi = a_mgr->get_multi_lock({"x", "y"});
    } else {
      a = a_mgr->get_lock("x");
    }
    // A waits behind C first, so that its release expects a successor and
    // reads the head before its Txn: a wider window.
    auto c = c_mgr->get_lock("x");
    if (release != Release::one_txn) c->lock();
    std::promise<void> a_in;
    std::promise<void> go;
    std::error_code unlock_error;
    std::jthread a_thread([&] {
      a_multi ? a_multi->lock() : a->lock();
      a_in.set_value();
      go.get_future().get();
      a_multi ? a_multi->unlock(unlock_error) : a->unlock(unlock_error);  // on the thread that holds it
    });
    if (release != Release::one_txn) {
      ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
      c->unlock();
    }
    a_in.get_future().get();
    Waiting wb;
    wait_on(b_mgr->get_lock("x"), wb, &inside, &overlaps);
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    std::this_thread::sleep_for(20ms);
    const auto start = Clock::now();
    go.set_value();
    std::this_thread::sleep_for(std::chrono::microseconds(40 * (trial % 12)));
    a_mgr->close();
    a_thread.join();
    const auto b_at = wb.got.get();
    ASSERT_NE(b_at, Clock::time_point{}) << "B never got in";
    const auto took = ms(b_at - start);
    worst = std::max(worst, took);
    if (took >= 300) ++late;
    std::fprintf(stderr, "trial %2d: unlock %s, B in %ld ms after the race began\n", trial,
                 unlock_error ? unlock_error.message().c_str() : "ok", took);
  }
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(late, 0) << "worst " << worst << " ms";
}

TEST_F(ReviewClose, CloseRacingUnlockWithAHeadReadNotesTheNextWaiter) { unlock_racing_close(Release::read_first); }
TEST_F(ReviewClose, CloseRacingAOneTxnUnlockNotesTheNextWaiter) { unlock_racing_close(Release::one_txn); }
TEST_F(ReviewClose, CloseRacingAMultiLockUnlockNotesTheNextWaiter) { unlock_racing_close(Release::multi_read_first); }

// Safety: workers on managers that close at random (while waiting, while
// holding, racing their own unlock, right after it), one of them sometimes
// through a MultiLock on {x, y}. Whenever a Lock is admitted to "x", a read
// of the queue then must show its entry first: an entry ahead of it was
// there at the admission (entries are created last), so two would hold. It
// fails (118 violations in 20 s) with close()'s note sent to the second entry
// instead of the head.
TEST_F(ReviewClose, RandomClosesNeverAdmitAWaiterThatIsNotFirst) {
  std::atomic<int> checked{0};
  std::atomic<int> violations{0};
  const auto dir = prefix_ + "/x/";
  constexpr int kWorkers = 4;
  const auto until = Clock::now() + 10s;
  std::vector<std::jthread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::mt19937 rng(1234 + w);
      while (Clock::now() < until) {
        auto m = manager(20s);
        const bool multi = w == kWorkers - 1 && rng() % 2 == 0;
        std::shared_ptr<Lock> lock;
        std::shared_ptr<MultiLock> multi_lock;
        if (multi) {
          multi_lock = m->get_multi_lock({"x", "y"});
        } else {
          lock = m->get_lock("x");
        }
        enum Closes { never, after_admission, after_unlock, while_waiting };
        const auto closes = static_cast<Closes>(rng() % 4);
        std::jthread closer;
        if (closes == while_waiting) {
          closer = std::jthread([&m, delay = std::chrono::microseconds(rng() % 30000)] {
            std::this_thread::sleep_for(delay);
            m->close();
          });
        }
        bool got = false;
        try {
          got = multi ? multi_lock->try_lock_for(10s) : lock->try_lock_for(10s);
        } catch (const Error&) {
          // closed while waiting
        }
        if (!got) {
          if (closer.joinable()) closer.join();
          continue;
        }
        if (!multi) {  // a multi-lock's entries only take part
          const auto found = queue_entries(raw_, dir);
          const auto own = std::find_if(found.begin(), found.end(), [&](const auto& kv) {
            return kv.key() == lock->key() && kv.create_revision() == lock->fencing_token();
          });
          if (own != found.end()) {  // gone already: closed, proves nothing
            ++checked;
            if (own != found.begin()) {
              ++violations;
              std::fprintf(stderr, "two holders: %s admitted behind %s\n", lock->key().c_str(),
                           found.front().key().c_str());
            }
          }
        }
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
        if (closes == after_admission) {
          closer = std::jthread([&m, delay = std::chrono::microseconds(rng() % 1500)] {
            std::this_thread::sleep_for(delay);
            m->close();
          });
        }
        std::error_code ec;
        multi ? multi_lock->unlock(ec) : lock->unlock(ec);
        if (closes == after_unlock) m->close();
        if (closer.joinable()) closer.join();
      }
    });
  }
  workers.clear();
  std::fprintf(stderr, "admissions checked %d, two holders %d\n", checked.load(), violations.load());
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(checked.load(), 0);
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

// A waiter's create has made the first entry, but its reply is lost (the
// connection cut while it was held) when its manager closes; another
// manager's waiter queued behind it. The revoke takes the entry: the one
// behind is noted by close(), as behind any entry of the closing manager,
// not left to its deferred watch (500 ms after it read the queue). Failed
// before an unanswered create registered its queue for close()'s notes (the
// review of 0a789be suspected it). What is judged is the note itself, a put
// to an inbox naming the waiter's entry: under ThreadSanitizer close() may
// take longer (its revoke reconnects) than the deferred watch waits, so the
// time the waiter got in tells the two apart only in other builds.
TEST_F(ReviewClose, AWaiterWhoseCreateIsUnansweredAtCloseStillHandsOver) {
  TcpProxy proxy(port_of(etcd_.endpoints().front()));
  auto behind_mgr = manager(20s);
  auto through = options_through(proxy.endpoint());
  // Time for the revoke to reconnect after the cut, even on a loaded
  // machine: a revoke that fails leaves the entry to its lease (20 s).
  through.command_timeout = 5s;
  auto closing = std::make_unique<LockManager>(through);
  {
    auto warm = closing->get_lock("warm");
    warm->lock();
    warm->unlock();
  }
  proxy.hold_replies();
  std::jthread first([&] {
    try {
      // Whatever it returns: what is judged is the waiter behind it.
      [[maybe_unused]] const bool held = closing->get_lock("x")->try_lock_for(10s);
    } catch (const Error&) {
      // closed while its create was unanswered
    }
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 1; }));
  // Every put under the prefix from here on: the notes are puts to inboxes.
  detail::Logger log{stderr_log_sink(LogLevel::warning)};
  detail::etcd::WatchHub hub(raw_, log);
  auto puts = std::make_shared<RecordingListener>();
  hub.add(prefix_ + "/", detail::prefix_range_end(prefix_ + "/"), 0, puts, detail::etcd::WatchHub::Events::puts_only);
  ASSERT_TRUE(eventually([&] { return puts->start_revision() != 0; }, 5s));
  Waiting behind;
  // It holds for 2 s once in: a note is put only while its entry stands,
  // whether the note or the watch let it in first.
  wait_on(behind_mgr->get_lock("x"), behind, nullptr, nullptr, 2s);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  const auto behind_queued = Clock::now();
  const auto behind_entry = queue_entries(raw_, prefix_ + "/x/").back().key();
  proxy.cut();  // the create's reply goes with the connection
  proxy.resume_replies();
  proxy.restore();
  const auto start = Clock::now();
  closing->close();  // its revoke goes on a new connection
  const auto closed = Clock::now();
  const auto at = behind.got.get();
  ASSERT_NE(at, Clock::time_point{});
  std::fprintf(stderr,
               "close() took %ld ms; the waiter behind got in %ld ms after close() began, %ld ms after it "
               "queued\n",
               ms(closed - start), ms(at - start), ms(at - behind_queued));
  bool noted = false;
  for (const auto& event : puts->events()) {
    if (event.key.find('\0') == std::string::npos) continue;  // an entry, not an inbox
    for (const auto& note : detail::decode_notes(event.value)) noted = noted || note.entry.key == behind_entry;
  }
  EXPECT_TRUE(noted) << "close() left no note for the entry behind its unanswered create";
#if !ETCDLOCK_TEST_SANITIZED
  EXPECT_LT(ms(at - behind_queued), 400) << "let in by its deferred watch, not by close()'s note";
#endif
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
#if ETCDLOCK_TEST_THREAD_SANITIZER
  // In ThreadSanitizer runs of many tests at once, 1 trial of 12 let B in by
  // its deferred watch, twice (542 ms in a CI-like run, 538 ms in a run of
  // 90 tests, both 2026-12-04). Found: A's wait, woken by close(), ended
  // before close() ran the callback that registers A's queue for its note
  // (AWaiterWokenByCloseBeforeItsNoteIsRegisteredStillHandsOver); fixed in
  // ~QueueWait. Still only reported here: under a sanitizer and load, a
  // trial may be slow for other reasons; the ordinary build holds the bound.
  (void)late;
#else
  EXPECT_EQ(late, 0);
#endif
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
    const long took = b_in_after_head_goes_and_a_closes(*b_mgr, *a_mgr, a_thread);
    ASSERT_GE(took, 0);
    worst = std::max(worst, took);
    if (took >= 300) ++late;
    std::fprintf(stderr, "trial %d: B in %ld ms after A's close began\n", trial, took);
  }
  EXPECT_EQ(late, 0) << "worst " << worst << " ms";
}

// close() runs its callbacks newest first, so a waiter's wake-up runs before
// the callback that registers its queue for close()'s note (registered when
// the wait began). Woken, the waiter sees the manager closed and ends its
// wait, and a std::stop_callback destroyed before its turn never runs: the
// queue went unnoted, and B, behind A, waited for its deferred watch. Here
// that is made likely: between A's two callbacks lie those of threads of
// A's manager that wait for the turn of a lock held there, which began to
// wait while A's create was on its way (a proxy holds etcd's replies).
// (ThreadSanitizer found it in CloseRacingCompletingAcquisitionLeavesNoWaiterBehind:
// 4 late trials of 780, each with no queue registered for close's note.)
TEST_F(ReviewClose, AWaiterWokenByCloseBeforeItsNoteIsRegisteredStillHandsOver) {
  constexpr int kCrowd = 64;
  auto b_mgr = manager(20s);
  long worst = 0;
  int late = 0;
  for (int trial = 0; trial < 3; ++trial) {
    auto c_mgr = manager(20s);
    TcpProxy proxy(port_of(etcd_.endpoints().front()));
    auto a_mgr = std::make_unique<LockManager>(options_through(proxy.endpoint()));
    auto c = c_mgr->get_lock("x");
    c->lock();
    auto y = a_mgr->get_lock("y");
    y->lock();  // the turn the crowd waits for
    proxy.hold_replies();
    auto a = a_mgr->get_lock("x");
    std::jthread a_thread([&] {
      try {
        if (a->try_lock_for(20s)) a->unlock();
      } catch (...) {
      }
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));  // A's create landed; its reply is held
    std::vector<std::jthread> crowd;
    for (int i = 0; i < kCrowd; ++i) {
      crowd.emplace_back([&] {
        try {
          if (y->try_lock_for(20s)) y->unlock();
        } catch (...) {
        }
      });
    }
    std::this_thread::sleep_for(200ms);  // the crowd waits for y's turn
    proxy.resume_replies();
    std::this_thread::sleep_for(100ms);  // A waits behind C
    const long took = b_in_after_head_goes_and_a_closes(*b_mgr, *a_mgr, a_thread);
    ASSERT_GE(took, 0);
    crowd.clear();
    worst = std::max(worst, took);
    if (took >= 300) ++late;
    std::fprintf(stderr, "trial %d: B in %ld ms after A's close began\n", trial, took);
  }
#if ETCDLOCK_TEST_THREAD_SANITIZER
  // Within 300 ms close() runs 65 callbacks while their threads unwind, and
  // revokes, reads and notes; under ThreadSanitizer with another test beside
  // it that bound measures the sanitizer. Reported only; the ordinary build
  // holds it.
  (void)late;
#else
  EXPECT_EQ(late, 0) << "worst " << worst << " ms";
#endif
}

}  // namespace
}  // namespace etcdlock::testing
