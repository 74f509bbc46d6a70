// Review of MultiHold's loss path (commit eb7f0c8, queue/multi_hold.{h,cc}
// as used by recipes/multi_lock_impl.cc): faults found in it, each reproduced
// against a real etcd. A test named MHn_ fails on eb7f0c8 (MH2b_ in some
// runs only: it is a race); a test named Check_... held there, and is kept as
// a check. Both faults are fixed (queue/multi_hold.cc): only the task whose
// request_stop() made the request retires the other names, after the
// callbacks it ran; ~MultiHold sends on a loss that its holds found last.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>

#include "busy_notifier.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class ReviewMH : public LockTest {};

// Waits until `go` is set, at most `limit`.
void wait_for(const std::atomic<bool>& go, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!go.load() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
}

// ---------------------------------------------------------------------------
// MH-1: when a second name is lost while the first loss's task is still
// running the application's loss callbacks, the second task retires the
// names still held at once: another holder is admitted to them before the
// application's callbacks have run (they may not even have started).
//
// Each name's loss posts its own task (multi_hold.cc:31-34), so two lost
// names give two tasks, on two notifier threads (the notifier starts a
// thread per queued signal, base/notifier.cc:18-22). after_hold_lost
// "tells the application first" with lost_source.request_stop()
// (multi_hold.cc:58), and then retires the other entries (multi_hold.cc:
// 63-72). But std::stop_source::request_stop() runs the callbacks only in
// the call that made the request: the second task's call returns false as
// soon as the stop state is set, without waiting for the callbacks that the
// first task is running (or has yet to begin). The second task then takes
// Shared::mu, finds given_up and others_retired both false, and retires the
// entries of the names still held (here z), and StrayEntries deletes them:
// the next holder of z is let in while the application's loss callback is
// still running. The header's own rule (multi_hold.h:10, "the application
// is told before any other holder can be let in") holds for one lost name,
// whose single task runs the callbacks to their end before it retires.
//
// Reproduced: {x, y, z} held; x force-unlocked; the loss callback blocks
// (a slow reaction: flushing, stopping writers to x, y, z); y
// force-unlocked; another manager's Lock on z is admitted while the callback
// still blocks. Fails on eb7f0c8 every run (z is admitted within ~100 ms).
// ---------------------------------------------------------------------------
TEST_F(ReviewMH, MH1_ASecondLostNameDoesNotLetOthersInBeforeTheLossCallbacksRan) {
  auto m = manager();
  auto admin = manager();
  auto other = manager();
  auto xyz = m->get_multi_lock({"x", "y", "z"});
  xyz->lock();
  std::atomic<bool> entered{false};
  std::atomic<bool> finish{false};
  std::atomic<bool> callback_done{false};
  std::stop_callback on_lost(xyz->lost_token(), [&] {
    entered = true;
    wait_for(finish, 20s);  // the application reacts to the loss
    callback_done = true;
  });
  ASSERT_TRUE(admin->force_unlock("x"));
  ASSERT_TRUE(eventually([&] { return entered.load(); })) << "the loss was not signalled";
  ASSERT_TRUE(admin->force_unlock("y"));  // a second name lost, while the callback runs
  auto z = other->get_lock("z");
  const bool admitted = z->try_lock_for(3s);
  const bool callback_had_run = callback_done.load();
  finish = true;
  EXPECT_FALSE(admitted && !callback_had_run)
      << "another manager was admitted to z, still held by the multi-lock, while the application's loss "
         "callback had not returned";
  if (admitted) z->unlock();
  // Once the callback has run, z goes: the order, not the release, is at fault.
  ASSERT_TRUE(eventually([&] { return callback_done.load(); }));
  EXPECT_TRUE(eventually([&] { return entries("z") == 0; })) << "z's entry was not removed after the callback";
  std::error_code ec;
  xyz->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// Control for MH-1: with one lost name the rule holds on eb7f0c8: z stays
// held until the callback has returned (a single task runs the callbacks,
// then retires).
TEST_F(ReviewMH, Check_OneLostNameLetsOthersInOnlyAfterTheLossCallbacks) {
  auto m = manager();
  auto admin = manager();
  auto other = manager();
  auto xyz = m->get_multi_lock({"x", "y", "z"});
  xyz->lock();
  std::atomic<bool> entered{false};
  std::atomic<bool> finish{false};
  std::atomic<bool> callback_done{false};
  std::stop_callback on_lost(xyz->lost_token(), [&] {
    entered = true;
    wait_for(finish, 20s);
    callback_done = true;
  });
  ASSERT_TRUE(admin->force_unlock("x"));
  ASSERT_TRUE(eventually([&] { return entered.load(); })) << "the loss was not signalled";
  auto z = other->get_lock("z");
  EXPECT_FALSE(z->try_lock_for(3s)) << "z was let in before the loss callback returned";
  finish = true;
  EXPECT_TRUE(z->try_lock_for(10s)) << "z was not released after the loss callback";
  z->unlock();
  std::error_code ec;
  xyz->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// ---------------------------------------------------------------------------
// MH-2: a MultiLock destroyed while held, whose release finds (or makes) the
// loss, never requests its lost token when the notifier is busy: the loss
// signal is not late but missing, for good.
//
// The multi token is requested only by after_hold_lost (multi_hold.cc:58),
// which a Hold's token reaches through the stop_callbacks in on_lost_
// (multi_hold.cc:31-34), or by signal_loss_now (multi_hold.cc:119-124),
// which only release() calls (multi_lock_impl.cc:152). ~MultiLockImpl
// (multi_lock_impl.cc:25-41) gives the hold up and drops it without
// signal_loss_now, and ~MultiHold destroys on_lost_ first (multi_hold.cc:
// 38-39). A Hold signals its loss by posting request_stop of its own token to
// the notifier (hold.cc:110); when that post runs only after ~MultiHold (the
// notifier busy with the application's callbacks, which the notifier allows:
// base/notifier.h:7-9), the Hold's token has no callback left, and the
// MultiLock's token, which the application holds, is never requested. A Lock
// in the same spot signals late but signals (control below): its token is
// the Hold's own. The same race, without a busy notifier, is between the
// notifier's wake-up and the end of the destructor (tightest when the release
// Txn goes unanswered: Hold::give_up then signals `unconfirmed` and nothing
// else is sent before ~MultiHold).
//
// Reproduced: {x, y} held, its token kept by the application; the
// notifier's 8 threads busy (tests/support/busy_notifier.h); x
// force-unlocked (the Hold is lost, its signal queued); the MultiLock
// dropped; the notifier freed. The token stays unrequested. Fails on
// eb7f0c8 every run.
// ---------------------------------------------------------------------------
TEST_F(ReviewMH, MH2_ALossFoundWhenAHeldMultiLockIsDestroyedIsSignalled) {
  auto m = manager();
  auto admin = manager();
  BusyNotifier busy;  // after m: goes first
  auto xy = m->get_multi_lock({"x", "y"});
  xy->lock();
  const std::stop_token token = xy->lost_token();  // the application's worker keeps it
  ASSERT_NO_FATAL_FAILURE(busy.occupy(*m, *admin));
  ASSERT_TRUE(admin->force_unlock("x"));
  ASSERT_TRUE(eventually([&] { return xy->lost(); })) << "the hold did not learn of the delete";
  xy.reset();  // destroyed while held: its destructor gives the hold up
  busy.release();
  EXPECT_TRUE(eventually([&] { return token.stop_requested(); }, 5s))
      << "the lost token of the destroyed multi-lock was never requested, though x was deleted while it was held";
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// Control for MH-2: a Lock's token in the same spot is requested once the
// notifier is free.
TEST_F(ReviewMH, Check_MH2Control_ALossFoundWhenAHeldLockIsDestroyedIsSignalled) {
  auto m = manager();
  auto admin = manager();
  BusyNotifier busy;
  auto x = m->get_lock("x");
  x->lock();
  const std::stop_token token = x->lost_token();
  ASSERT_NO_FATAL_FAILURE(busy.occupy(*m, *admin));
  ASSERT_TRUE(admin->force_unlock("x"));
  ASSERT_TRUE(eventually([&] { return x->lost(); })) << "the hold did not learn of the delete";
  x.reset();
  busy.release();
  EXPECT_TRUE(eventually([&] { return token.stop_requested(); }, 5s));
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// MH-2b: MH-2 without a busy notifier. The destructor's release Txn goes
// unanswered (the proxy holds etcd's reply back), so Hold::give_up counts
// every name lost (`unconfirmed`, hold.cc:129-136) and posts the signals
// (hold.cc:110), and the destructor then goes on to ~MultiHold, which removes
// the callbacks that would forward them (multi_hold.cc:38-39). It is a race
// between the notifier's wake-up and the rest of the destructor (retires and
// log lines), which the destructor sometimes wins: on eb7f0c8, 2 of 80
// rounds missed in the RelWithDebInfo build (the test failed 1 of 4 runs),
// 2 of 20 under TSan and 2 of 20 under ASan (1 of 1 runs each). Each miss
// is a hold counted lost whose token is never requested.
TEST_F(ReviewMH, MH2b_ALossFromTheDestructorsUnansweredReleaseIsSignalled) {
  const auto endpoint = etcd_.endpoints().at(0);
  TcpProxy link(port_of(endpoint));
  const auto slow = options_through(link.endpoint());
  auto m = std::make_unique<LockManager>(slow);
  constexpr int kRounds = 20;
  int missed = 0;
  for (int round = 0; round < kRounds; ++round) {
    auto xy = m->get_multi_lock({"x", "y"});
    xy->lock();
    const std::stop_token token = xy->lost_token();
    link.hold_replies();
    xy.reset();  // destroyed while held; its release goes unanswered
    link.resume_replies();
    if (!eventually([&] { return token.stop_requested(); }, 2s)) ++missed;
    ASSERT_TRUE(eventually([&] { return all_keys() == 0; }, 15s)) << "round " << round;
  }
  EXPECT_EQ(missed, 0) << missed << " of " << kRounds
                       << " destroyed multi-locks whose release went unanswered never requested their lost token";
}

// Check: unlock() that finds the loss returns with the lost token requested,
// even while the notifier is busy (signal_loss_now on the caller's thread).
TEST_F(ReviewMH, Check_UnlockThatFindsTheLossReturnsWithTheTokenRequested) {
  auto m = manager();
  auto admin = manager();
  BusyNotifier busy;
  auto xy = m->get_multi_lock({"x", "y"});
  xy->lock();
  const std::stop_token token = xy->lost_token();
  ASSERT_NO_FATAL_FAILURE(busy.occupy(*m, *admin));
  ASSERT_TRUE(admin->force_unlock("y"));
  ASSERT_TRUE(eventually([&] { return xy->lost(); }));
  EXPECT_FALSE(token.stop_requested()) << "the notifier is busy: only unlock() can request it now";
  std::error_code ec;
  xy->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_TRUE(token.stop_requested()) << "unlock() reported the loss but returned with the token not requested";
  busy.release();
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// Check: a loss callback that locks the same MultiLock again (it waits for
// the turns, which the owner gives back at unlock) gets a hold that nothing
// touches: the first hold's task skips its retire (given_up), and no stray
// guard removes the new hold's entries, which use the same keys.
TEST_F(ReviewMH, Check_ALossCallbackThatLocksAgainKeepsTheNewHold) {
  for (int round = 0; round < 5; ++round) {
    auto m = manager();
    auto admin = manager();
    auto other = manager();
    auto xyz = m->get_multi_lock({"x", "y", "z"});
    xyz->lock();
    std::atomic<bool> relocked{false};
    std::atomic<bool> entered{false};
    std::stop_callback on_lost(xyz->lost_token(), [&] {
      entered = true;
      relocked = xyz->try_lock_for(10s);  // on the notifier's thread: waits for the owner's unlock
    });
    ASSERT_TRUE(admin->force_unlock("y"));
    ASSERT_TRUE(eventually([&] { return entered.load(); }));
    std::error_code ec;
    xyz->unlock(ec);
    EXPECT_EQ(ec, errc::lock_expired);
    ASSERT_TRUE(eventually([&] { return relocked.load(); }, 15s)) << "round " << round;
    const auto token = xyz->lost_token();
    std::this_thread::sleep_for(500ms);
    EXPECT_FALSE(token.stop_requested()) << "round " << round << ": the new hold was lost";
    EXPECT_TRUE(xyz->held());
    for (const auto* name : {"x", "y", "z"}) {
      EXPECT_FALSE(other->get_lock(name)->try_lock()) << "round " << round << ": " << name << " let in";
    }
    EXPECT_EQ(entries("x") + entries("y") + entries("z"), 3) << "round " << round;
    // The hold belongs to the notifier's thread now: the destructor gives it up.
    xyz.reset();
    EXPECT_TRUE(eventually([&] { return all_keys() == 0; })) << "round " << round;
  }
}

// Check: a loss racing unlock() on the owner's thread, and another thread
// that takes the same MultiLock right after: the second hold is never lost,
// two holders never overlap, and nothing is left in etcd.
TEST_F(ReviewMH, Check_ALossRacingUnlockNeverTouchesTheNextHold) {
  auto m = manager();
  auto admin = manager();
  auto other = manager();
  auto xyz = m->get_multi_lock({"x", "y", "z"});
  for (int round = 0; round < 20; ++round) {
    xyz->lock();
    std::this_thread::sleep_for(std::chrono::milliseconds(60 + (round % 5) * 3));  // the watch is up
    std::jthread force([&] { admin->force_unlock(round % 2 ? "y" : "x"); });
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (round % 8)));
    std::error_code ec;
    xyz->unlock(ec);
    force.join();
    std::atomic<bool> second_lost{false};
    std::atomic<bool> second_done{false};
    std::jthread second([&] {
      xyz->lock();
      const auto token = xyz->lost_token();
      std::this_thread::sleep_for(300ms);
      second_lost = token.stop_requested();
      xyz->unlock();
      second_done = true;
    });
    second.join();
    EXPECT_FALSE(second_lost.load()) << "round " << round << ": the next hold was lost";
    ASSERT_TRUE(eventually([&] { return all_keys() == 0; })) << "round " << round;
  }
}

// Check: the manager closing while a loss's task runs the application's
// callback and the owner unlocks: no hang, no key left.
TEST_F(ReviewMH, Check_CloseWhileALossTaskRunsAndTheOwnerUnlocks) {
  auto m = manager();
  auto admin = manager();
  auto xyz = m->get_multi_lock({"x", "y", "z"});
  xyz->lock();
  std::atomic<bool> entered{false};
  std::atomic<bool> finish{false};
  std::stop_callback on_lost(xyz->lost_token(), [&] {
    entered = true;
    wait_for(finish, 20s);
  });
  ASSERT_TRUE(admin->force_unlock("x"));
  ASSERT_TRUE(eventually([&] { return entered.load(); }));
  std::atomic<bool> closed{false};
  std::jthread closer([&] {
    m->close();
    closed = true;
  });
  std::error_code ec;
  xyz->unlock(ec);
  EXPECT_TRUE(ec == errc::lock_expired || ec == errc::closed) << ec.message();
  finish = true;
  ASSERT_TRUE(eventually([&] { return closed.load(); }, 20s)) << "close() hangs";
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

}  // namespace
}  // namespace etcdlock::testing
