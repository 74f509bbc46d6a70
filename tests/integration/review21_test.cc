// Review of issue 21's round (review21): faults found in the code that the
// round changed, each reproduced against a real etcd. Each test names its
// finding (R21-n); a test here fails on the code it was written against.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "busy_notifier.h"
#include "etcd/lost_replies.h"
#include "expect_error.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using detail::etcd::LostReplies;
namespace write_site = detail::etcd::write_site;

class Review21 : public LockTest {
 protected:
  ~Review21() override { LostReplies::disarm(); }

  int etcd_port() const {
    const auto endpoint = etcd_.endpoints()[0];
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }
  ManagerOptions through(TcpProxy& link, std::chrono::milliseconds command_timeout) const {
    auto options = this->options();
    options.endpoints = {link.endpoint()};
    options.command_timeout = command_timeout;
    options.ttl = 20s;
    if (std::getenv("DEBUG_R21")) options.log_sink = stderr_log_sink(LogLevel::debug);
    return options;
  }
};

// R21-1 (fixed: the registry makes no new state for a name until the last
// one's destructor has ended, queue/named_queue.h's lifetime). A lock's state is destroyed while it holds (the last
// handle goes: ~LockImpl releases), and its delete's reply does not come in time. The registry already counts that
// state as gone, so a new state for the same name is made at once, and its first attempt uses the same key (one entry
// per lease) since the key is not retired yet. When the old delete times out,
// the key is retired (Hold::give_up): its guard (StrayEntries) removes every
// entry of ours under it on our lease, including the live hold of the new
// state. The waiter behind is admitted while the new state still claims the
// lock: two holders, and a hold deleted by the library itself.
TEST_F(Review21, NewStateOfANameLosesItsHoldToTheOldStatesRetiredKey) {
  TcpProxy link(etcd_port());
  LockManager a(through(link, 1s));
  auto c_manager = manager(20s);
  auto old_lock = a.get_lock("x");
  old_lock->lock();
  const auto key = old_lock->key();

  link.hold_replies();
  // The old state's destructor releases: its delete commits, its reply is held.
  std::jthread dropper([&] { old_lock.reset(); });
  ASSERT_TRUE(eventually([&] { return entries("x") == 0; })) << "the old state's delete never committed";

  auto new_lock = a.get_lock("x");  // a new state: the old one is expired for the registry
  std::atomic<int> new_got{-1};
  std::atomic<bool> new_release{false};
  std::jthread taker([&] {
    new_got = new_lock->try_lock_for(20s) ? 1 : 0;
    if (new_got == 1) {
      while (!new_release) std::this_thread::sleep_for(5ms);
      std::error_code ignored;
      new_lock->unlock(ignored);
    }
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 1; }));
  EXPECT_EQ(get(raw_, key).kvs_size(), 0) << "the new state queued under the key the old state's release retired";

  auto c = c_manager->get_lock("x");
  std::atomic<bool> c_holds{false};
  std::atomic<bool> c_release{false};
  std::jthread c_thread([&] {
    c->lock();
    c_holds = true;
    while (!c_release) std::this_thread::sleep_for(5ms);
    c->unlock();
  });
  struct Unblock {
    std::atomic<bool>& a;
    std::atomic<bool>& b;
    TcpProxy& link;
    ~Unblock() {
      link.resume_replies();
      a = true;
      b = true;
    }
  } unblock{new_release, c_release, link};
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));

  std::this_thread::sleep_for(1500ms);  // both of A's calls time out
  link.resume_replies();

  // Watch for 3 s: C admitted while the new state claims the lock.
  bool overlap = false;
  bool new_lost = false;
  const auto until = Clock::now() + 3s;
  while (Clock::now() < until) {
    const bool c_now = c_holds.load();
    const bool new_now = new_lock->held();
    if (c_now && new_now) overlap = true;
    if (new_got == 1 && new_lock->lost()) new_lost = true;
    std::this_thread::sleep_for(1ms);
  }
  std::cerr << "new state: got=" << new_got << " lost=" << new_lost << " held=" << new_lock->held()
            << "; C holds=" << c_holds << "\n";
  EXPECT_FALSE(overlap) << "C was admitted while the new state claimed the lock";
  EXPECT_FALSE(new_lost) << "the new state's hold was deleted, by no one but this manager";
  EXPECT_FALSE(new_got == 1 && c_holds) << "both hold";
}

// R21-2 (fixed: Hold::give_up leaves the loss signal to the caller, who gives
// it once the turn is back; the callback may still run on the unlocking
// thread, as lock_manager.h says, but with nothing held). An unlock whose reply is lost requests the hold's lost token
// on the unlocking thread (Hold::give_up -> signal_loss_now), inside unlock(), while that thread still owns the lock's
// turn (LockImpl::release gives it back only afterwards). lock_manager.h promises that loss callbacks run on notifier
// threads, that they may call any etcdlock function, and that one that blocks
// delays only the signals queued behind it. Which thread runs the callback is
// a race between the notifier (lose() posts the request) and the unlocking
// thread (signal_loss_now()); the notifier usually wins, unless its threads
// are busy: here all eight run callbacks that block (as the header allows), so
// the unlocking thread runs the callback every time. A callback that takes the
// lock again is then stuck behind the very unlock() that ran it: lock() waits
// for ever, try_lock_for() for its whole timeout, and fails on a free lock.
// The same holds for resign() and campaign() (ElectionImpl::resign).
class Review21Callbacks : public Review21 {};

TEST_F(Review21Callbacks, LossCallbackOfAnUnconfirmedUnlockRunsInsideUnlock) {
  auto m = manager(20s);
  BusyNotifier busy;
  ASSERT_NO_FATAL_FAILURE(busy.occupy(*m, *manager(20s)));
  auto lock = m->get_lock("x");
  lock->lock();
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  std::atomic<int> relocked{-1};
  std::stop_callback on_lost(lock->lost_token(), [&] {
    on_caller = std::this_thread::get_id() == caller;
    // What a "take it back when lost" loop does; lock() would hang for ever.
    const bool got = lock->try_lock_for(2s);
    if (got) lock->unlock();
    relocked = got ? 1 : 0;
  });
  LostReplies::arm(write_site::release, lock->key());
  const auto started = Clock::now();
  std::error_code ec;
  lock->unlock(ec);
  const auto took = Clock::now() - started;
  EXPECT_EQ(ec, errc::unavailable);
  busy.release();
  ASSERT_TRUE(eventually([&] { return relocked.load() != -1; }));
  EXPECT_TRUE(on_caller.load()) << "setup: with the notifier busy, the callback runs in unlock()";
  EXPECT_LT(took, 1s) << "unlock() waited for its own loss callback";
  EXPECT_EQ(relocked.load(), 1) << "the loss callback could not take a free lock";
}

TEST_F(Review21Callbacks, LossCallbackOfAnUnconfirmedResignRunsInsideResign) {
  auto m = manager(20s);
  BusyNotifier busy;
  ASSERT_NO_FATAL_FAILURE(busy.occupy(*m, *manager(20s)));
  auto election = m->get_election("e");
  election->campaign("a");
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  std::atomic<int> elected{-1};
  std::stop_callback on_lost(election->lost_token(), [&] {
    on_caller = std::this_thread::get_id() == caller;
    const bool got = election->campaign_for("again", 2s);
    if (got) election->resign();
    elected = got ? 1 : 0;
  });
  LostReplies::arm(write_site::resign, prefix_ + "/e/");
  const auto started = Clock::now();
  election->resign();
  const auto took = Clock::now() - started;
  busy.release();
  ASSERT_TRUE(eventually([&] { return elected.load() != -1; }));
  EXPECT_TRUE(on_caller.load()) << "setup: with the notifier busy, the callback runs in resign()";
  EXPECT_LT(took, 1s) << "resign() waited for its own loss callback";
  EXPECT_EQ(elected.load(), 1) << "the loss callback could not win a free election";
}

// Checked, held (no finding): a manager destroyed while asynchronous calls
// are in flight (a retired key's guard, a hold's key check, the inbox) and
// replies come back during the drain. Meant for ASan as much as for hangs.
TEST_F(Review21, ManagerDestroyedWhileAsyncCallsAreInFlight) {
  TcpProxy link(etcd_port());
  auto m = std::make_unique<LockManager>(through(link, 500ms));
  auto x = m->get_lock("x");
  auto y = m->get_lock("y");
  x->lock();
  std::this_thread::sleep_for(200ms);  // x's key watch is in place
  link.hold_replies();
  std::error_code ec;
  x->unlock(ec);  // times out: the key is retired, its guard's watch and read wait for replies
  EXPECT_EQ(ec, errc::unavailable);
  std::atomic<bool> y_done{false};
  std::jthread y_thread([&] {
    try {
      (void)y->try_lock_for(300ms);
    } catch (const Error&) {
    }
    y_done = true;
  });
  ASSERT_TRUE(eventually([&] { return y_done.load(); }));
  std::jthread resumer([&] {
    std::this_thread::sleep_for(300ms);  // during the lease revoke's wait
    link.resume_replies();
  });
  const auto started = Clock::now();
  m.reset();
  EXPECT_LT(Clock::now() - started, 5s);
  EXPECT_FALSE(x->held());
  EXPECT_FALSE(y->held());
  expect_error(errc::closed, "closed", [&] { (void)x->try_lock(); });
  y->unlock(ec);
}

}  // namespace
}  // namespace etcdlock::testing
