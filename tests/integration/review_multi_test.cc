// Review of the MultiLock (merge ae899d0, commits 5b47886..a2e0662): faults
// found in that code, each reproduced against a real etcd. Each test names its
// finding (RM-n); a test here fails on the code it was written against (main
// at 33a7cae), unless it says it is a control or a check.
//
// RM-1, RM-2 and RM-3 are fixed (queue/multi_hold.cc): a hold's loss only
// posts a task, which holds what it needs by shared_ptr, tells the
// application, and then retires the other entries unless the owner has begun
// to give the hold up.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>

#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class ReviewMulti : public LockTest {};

// The application's state, busy while the thread that unlocks works on it; a
// loss callback waits until it is not. (A std::timed_mutex would do, but
// GCC 12's TSan does not see try_lock_for take it, and reports its unlock.)
class AppState {
 public:
  bool wait_until_idle(std::chrono::seconds limit) {
    std::unique_lock lock(mu_);
    return idle_.wait_for(lock, limit, [&] { return !busy_; });
  }
  void done() {
    {
      std::lock_guard lock(mu_);
      busy_ = false;
    }
    idle_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  bool busy_ = true;
};

// ---------------------------------------------------------------------------
// RM-1: unlock() (and the destructor) of a MultiLock hangs while a loss
// callback runs on the notifier's thread and waits for the unlocking thread.
//
// MultiHold keeps a std::stop_callback on each name's Hold token
// (multi_hold.cc:26-29), and that callback, on_hold_lost, requests the
// MultiHold's own token inline (multi_hold.cc:53), so the application's loss
// callbacks run *inside* it. The MultiHold's destructor destroys those
// stop_callbacks (on_lost_.clear(), multi_hold.cc:33), and destroying a
// stop_callback that is running on another thread waits for it to finish.
// MultiLockImpl::release drops the MultiHold at its end (multi_lock_impl.cc:
// 133-153), so unlock() waits for the application's loss callback.
//
// An application that records the loss under its own mutex, and unlocks
// under that mutex, deadlocks: the callback waits for the mutex, the thread
// holding the mutex waits in unlock() for the callback. A Lock in the same
// spot returns at once (control below): Hold owns no callback on its own
// token, and request_stop() on a token already being requested does not wait.
// The notifier thread is stuck meanwhile, so every other loss signal of the
// manager waits too. Here the callback gives up on the mutex after 20 s, so
// the test ends; unlock() takes those 20 s.
// ---------------------------------------------------------------------------
// What unlock() of `held` (a Lock or a MultiLock that holds "y") did while
// a loss callback waited for the unlocking thread: its code and how long it
// took. The loss is a force unlock of "y" by `admin`.
template <class Held>
std::pair<std::error_code, Clock::duration> unlock_while_a_loss_callback_waits(Held& held, LockManager& admin) {
  AppState app;  // busy while this thread unlocks
  std::atomic<bool> entered{false};
  std::stop_callback on_lost(held.lost_token(), [&] {
    entered = true;
    app.wait_until_idle(20s);
  });
  EXPECT_TRUE(admin.force_unlock("y"));
  EXPECT_TRUE(eventually([&] { return entered.load(); })) << "the loss was not signalled";
  const auto started = Clock::now();
  std::error_code ec;
  held.unlock(ec);
  const auto took = Clock::now() - started;
  app.done();
  return {ec, took};
}

TEST_F(ReviewMulti, RM1_UnlockReturnsWhileALossCallbackWaitsForTheUnlockingThread) {
  auto m = manager();
  auto admin = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  xy->lock();
  const auto [ec, took] = unlock_while_a_loss_callback_waits(*xy, *admin);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_LT(took, 5s) << "unlock() waited " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                      << " ms for the loss callback that waited for the unlocking thread";
}

// Control for RM-1: the same with a Lock returns at once (passes on 33a7cae).
TEST_F(ReviewMulti, RM1_Control_LockUnlockReturnsWhileALossCallbackWaits) {
  auto m = manager();
  auto admin = manager();
  auto y = m->get_lock("y");
  y->lock();
  const auto [ec, took] = unlock_while_a_loss_callback_waits(*y, *admin);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_LT(took, 5s);
}

// ---------------------------------------------------------------------------
// RM-3: on_hold_lost retires a name's key after checking that its hold is not
// lost, with a log call in between (multi_hold.cc:55-58); the owner can
// unlock meanwhile, and another thread take the same MultiLock again on the
// same keys (the unlock deleted them, so they were not retired). The late
// retire then makes the stray guard delete the NEW hold's entry: a spurious
// loss of a hold that nothing touched, and for the time its watch takes to
// see the delete, another manager may be admitted to x while the new holder
// still believes it holds it. (A retired key also stays retired for the
// lease, so later attempts take suffixed keys.) A slow log sink widens the
// window here; any scheduling delay of the notifier's thread opens it.
// ---------------------------------------------------------------------------
TEST_F(ReviewMulti, RM3_ALateRetireOfTheLostHoldDoesNotRemoveTheNextHoldsEntry) {
  std::atomic<bool> in_slow_log{false};
  auto slow = options();
  const auto to_stderr = stderr_log_sink(LogLevel::warning);
  slow.log_sink = [&](LogLevel level, std::string_view message, std::span<const LogField> fields) {
    to_stderr(level, message, fields);
    if (message.find("releasing the others") != std::string_view::npos) {
      in_slow_log = true;
      std::this_thread::sleep_for(1500ms);  // a slow sink (a full pipe, a remote collector)
    }
  };
  auto m = std::make_unique<LockManager>(slow);
  auto admin = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  xy->lock();
  std::atomic<bool> second_holds{false};
  std::atomic<bool> second_done{false};
  std::atomic<bool> second_lost{false};
  std::jthread second([&] {
    xy->lock();  // waits for the turns
    second_holds = true;
    const auto lost = xy->lost_token();
    for (int i = 0; i < 60 && !lost.stop_requested(); ++i) std::this_thread::sleep_for(50ms);
    second_lost = lost.stop_requested();
    std::error_code ec;
    xy->unlock(ec);
    second_done = true;
  });
  ASSERT_TRUE(admin->force_unlock("y"));
  ASSERT_TRUE(eventually([&] { return in_slow_log.load(); })) << "the loss was not signalled";
  std::error_code ec;
  xy->unlock(ec);  // first holder; the second thread gets the turns now
  EXPECT_EQ(ec, errc::lock_expired);
  ASSERT_TRUE(eventually([&] { return second_done.load(); }, 20s));
  EXPECT_TRUE(second_holds.load());
  EXPECT_FALSE(second_lost.load()) << "the second hold of {x, y} was lost, though nothing touched its keys";
}

// Check (passes on 33a7cae): nested names in one set, {a, a/b}, against
// Locks of each name in other managers: no overlap per name, no deadlock, no
// key left.
TEST_F(ReviewMulti, Check_NestedNamesInOneSetExcludeLocksOfEachName) {
  auto a = manager();
  auto b = manager();
  auto c = manager();
  auto both = a->get_multi_lock({"a/b", "a"});
  auto outer = b->get_lock("a");
  auto inner = c->get_lock("a/b");
  std::atomic<int> in_a{0};
  std::atomic<int> in_ab{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> done{0};
  const auto enter = [&](std::atomic<int>& inside) {
    if (inside.fetch_add(1) != 0) ++overlaps;
    std::this_thread::sleep_for(2ms);
    inside.fetch_sub(1);
  };
  std::jthread t1([&] {
    for (int i = 0; i < 30; ++i) {
      std::lock_guard guard(*both);
      in_a.fetch_add(1) == 0 ? void() : void(++overlaps);
      in_ab.fetch_add(1) == 0 ? void() : void(++overlaps);
      std::this_thread::sleep_for(2ms);
      in_a.fetch_sub(1);
      in_ab.fetch_sub(1);
    }
    ++done;
  });
  std::jthread t2([&] {
    for (int i = 0; i < 30; ++i) {
      std::lock_guard guard(*outer);
      enter(in_a);
    }
    ++done;
  });
  std::jthread t3([&] {
    for (int i = 0; i < 30; ++i) {
      std::lock_guard guard(*inner);
      enter(in_ab);
    }
    ++done;
  });
  ASSERT_TRUE(eventually([&] { return done.load() == 3; }, 120s)) << "no progress: deadlock?";
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_TRUE(both->try_lock());
  both->unlock();
  EXPECT_TRUE(eventually([&] { return entries("a") == 0; }));
}

// Check: close() from a MultiLock's loss callback, as the manager's header
// allows, returns, and unlock() afterwards reports the loss.
TEST_F(ReviewMulti, Check_CloseFromALossCallbackReturns) {
  auto m = manager();
  auto admin = manager();
  auto xyz = m->get_multi_lock({"x", "y", "z"});
  xyz->lock();
  std::atomic<bool> closed{false};
  std::stop_callback on_lost(xyz->lost_token(), [&] {
    m->close();
    closed = true;
  });
  ASSERT_TRUE(admin->force_unlock("y"));
  ASSERT_TRUE(eventually([&] { return closed.load(); }, 20s)) << "close() from the loss callback did not return";
  std::error_code ec;
  xyz->unlock(ec);
  EXPECT_TRUE(ec == errc::lock_expired || ec == errc::closed) << ec.message();
}

// ---------------------------------------------------------------------------
// RM-2: a loss callback that drops the last handle of the MultiLock makes
// on_hold_lost use the MultiHold after it was freed.
//
// on_hold_lost (multi_hold.cc:50-60) runs the application's callbacks through
// lost_source_.request_stop(), then reads holds_, context_ and logs. A
// callback that lets go of the MultiLock (a job dropped on loss, say)
// destroys MultiLockImpl there, on the notifier's thread: its destructor
// releases the hold and destroys the MultiHold (multi_lock_impl.cc:25-41),
// whose destructor destroys the very stop_callback that is running (allowed
// on its own thread: no wait). on_hold_lost then goes on with a freed `this`
// and freed Holds: heap-use-after-free. For a Lock the same is safe: nothing
// of the Hold runs after its token is requested (hold.cc:110, a copy of the
// stop_source). On 33a7cae this test crashes the test binary (SIGSEGV in
// MultiHold::on_hold_lost, multi_hold.cc:55, reading holds_[i]->lost() of
// the freed MultiHold, on the "etcdlock-notify" thread; 3 of 3 runs, and under
// gdb). ctest runs each test in a process of its own, so the crash hides no
// other result.
// ---------------------------------------------------------------------------
TEST_F(ReviewMulti, RM2_DroppingTheMultiLockInItsLossCallbackIsSafe) {
  auto m = manager();
  auto admin = manager();
  std::shared_ptr<MultiLock> job = m->get_multi_lock({"x", "y", "z"});
  job->lock();
  std::atomic<bool> dropped{false};
  std::stop_callback on_lost(job->lost_token(), [&] {
    job.reset();  // the last handle: ~MultiLockImpl runs here, on the notifier's thread
    dropped = true;
  });
  ASSERT_TRUE(admin->force_unlock("y"));
  ASSERT_TRUE(eventually([&] { return dropped.load(); })) << "the loss was not signalled";
  // Let on_hold_lost go on with what it has left.
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; })) << "entries left behind";
}

}  // namespace
}  // namespace etcdlock::testing
