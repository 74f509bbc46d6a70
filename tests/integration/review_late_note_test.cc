// Notes that arrive late: a lock's waiter whose hand-over note was written,
// and whose entry an admin then removed (a force unlock, a revoke of its
// lease) while its connection stalled, was cut or its etcd member frozen,
// must not be let in beside the waiter that was let in meanwhile: it reads
// its entry before it acts on a note. From an adversarial review of a change
// that let such a waiter in without the read (f73520a, reverted: 3 of 3
// overlaps each, W2 in while W1's lock() returned). Also: a successor known
// to a holder that queues again under its key.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cued_holder.h"
#include "lock_fixture.h"
#include "queue_entries.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// Who is inside the critical section, by the API's word (lock() returned
// and the lost token has not fired yet).
struct Inside {
  std::atomic<int> count{0};
  std::atomic<int> overlaps{0};
  void enter() {
    if (count.fetch_add(1) != 0) ++overlaps;
  }
  void leave() { count.fetch_sub(1); }
};

// A waiter that holds for `hold` once in, or until its lost token fires;
// records when it got in and when (if) the loss was signalled.
class Waiter {
 public:
  Waiter(Lock& lock, Inside& inside, std::chrono::milliseconds hold, std::chrono::seconds timeout = 30s)
      : thread_([this, &lock, &inside, hold, timeout] {
          if (!lock.try_lock_for(timeout)) {
            in_.set_value(Clock::time_point{});
            return;
          }
          const auto in_at = Clock::now();
          in_at_ = in_at;
          inside.enter();
          in_.set_value(in_at);
          const auto token = lock.lost_token();
          while (Clock::now() - in_at < hold && !token.stop_requested()) std::this_thread::sleep_for(1ms);
          inside.leave();
          if (token.stop_requested()) {
            lost_at_ = Clock::now();
            lost_.store(true);
          }
          std::error_code ec;
          lock.unlock(ec);
          done_.store(true);
        }) {}
  // When it got in (Clock::time_point{} if it timed out), within `bound`.
  std::optional<Clock::time_point> admitted(std::chrono::milliseconds bound) {
    if (future_.wait_for(bound) != std::future_status::ready) return std::nullopt;
    return future_.get();
  }
  void join() { thread_.join(); }
  Clock::time_point lost_at() const { return lost_at_; }  // once joined
  bool lost() const { return lost_.load(); }

 private:
  std::promise<Clock::time_point> in_;
  std::shared_future<Clock::time_point> future_ = in_.get_future().share();
  Clock::time_point in_at_{};
  Clock::time_point lost_at_{};
  std::atomic<bool> done_{false};
  std::atomic<bool> lost_{false};
  std::jthread thread_;
};

// As Waiter, through Lock::async_lock_for: the handler hands the hold to a
// thread of the test's.
class AsyncWaiter {
 public:
  AsyncWaiter(Lock& lock, Inside& inside, std::chrono::milliseconds hold, std::chrono::seconds timeout = 30s) {
    lock.async_lock_for(
        timeout, [this](std::error_code ec, LockHold held) { got_.set_value(ec ? LockHold() : std::move(held)); });
    thread_ = std::jthread([this, &inside, hold] {
      auto held = got_.get_future().get();
      if (!held) {
        in_.set_value(Clock::time_point{});
        return;
      }
      const auto in_at = Clock::now();
      inside.enter();
      in_.set_value(in_at);
      const auto token = held.lost_token();
      while (Clock::now() - in_at < hold && !token.stop_requested()) std::this_thread::sleep_for(1ms);
      inside.leave();
      if (token.stop_requested()) lost_at_ = Clock::now();
      held.release();
    });
  }
  std::optional<Clock::time_point> admitted(std::chrono::milliseconds bound) {
    if (future_.wait_for(bound) != std::future_status::ready) return std::nullopt;
    return future_.get();
  }
  void join() { thread_.join(); }
  Clock::time_point lost_at() const { return lost_at_; }

 private:
  std::promise<LockHold> got_;
  std::promise<Clock::time_point> in_;
  std::shared_future<Clock::time_point> future_ = in_.get_future().share();
  Clock::time_point lost_at_{};
  std::jthread thread_;
};

class ReviewLateNote : public LockTest {
 public:
  using LockTest::entries;
  using LockTest::etcd_;
  using LockTest::manager;
  using LockTest::options_through;
  using LockTest::raw_;
  // The entries of `name`, oldest first.
  std::vector<mvccpb::KeyValue> queue_of(const std::string& name) {
    return queue_entries(raw_, prefix_ + "/" + name + "/");
  }
};

enum class Removal { force_unlock, revoke_lease };

// zero holds "x" (never waited); H waits behind it, W1 (through a proxy)
// behind H, W2 behind W1. zero releases: H is noted, and its confirming read
// finds W1 behind it. W1's connection stalls; H releases: its Txn deletes
// H's entry and notes W1. An admin then removes W1's entry (force unlock, or
// a revoke of its lease): W2 is in. W1's connection comes back and the note
// arrives: W1 must read its entry, find it gone and queue again (README: "a
// note delivered late, after an admin removed the entry, admits no one"),
// not be let in while W2 holds.
enum class Fault { pause, cut, pause_async };

void late_note_after_removal(ReviewLateNote& test, Removal removal, Fault fault = Fault::pause) {
  auto& etcd = test.etcd_;
  auto zero_manager = test.manager(20s);
  auto zero = zero_manager->get_lock("x");
  zero->lock();
  auto h_manager = test.manager(20s);
  auto h_lock = h_manager->get_lock("x");
  CuedHolder h(*h_lock);
  ASSERT_TRUE(eventually([&] { return test.entries("x") == 2; }));
  TcpProxy proxy(port_of(etcd.endpoints().at(0)));
  auto w1_manager = std::make_unique<LockManager>(test.options_through(proxy.endpoint()));
  auto w1_lock = w1_manager->get_lock("x");
  Inside inside;
  std::optional<Waiter> w1_sync;
  std::optional<AsyncWaiter> w1_async;
  if (fault == Fault::pause_async) {
    w1_async.emplace(*w1_lock, inside, 3000ms, 90s);
  } else {
    w1_sync.emplace(*w1_lock, inside, 3000ms, 90s);
  }
  const auto w1_admitted = [&](std::chrono::milliseconds bound) {
    return w1_async ? w1_async->admitted(bound) : w1_sync->admitted(bound);
  };
  ASSERT_TRUE(eventually([&] { return test.entries("x") == 3; }));
  auto w2_manager = test.manager(20s);
  auto w2_lock = w2_manager->get_lock("x");
  Waiter w2(*w2_lock, inside, 1500ms);
  ASSERT_TRUE(eventually([&] { return test.entries("x") == 4; }));
  std::this_thread::sleep_for(700ms);  // past the waiters' deferred watches
  zero->unlock();
  ASSERT_TRUE(h.wait_held(10s));
  const auto queue = test.queue_of("x");
  ASSERT_EQ(queue.size(), 3u);
  const auto w1_key = queue.at(1).key();
  const auto w1_lease = queue.at(1).lease();
  if (fault != Fault::cut) {
    proxy.pause();
  } else {
    proxy.cut();
  }
  h.release();  // notes W1
  const auto removed_at = Clock::now();
  if (removal == Removal::force_unlock) {
    ASSERT_TRUE(zero_manager->force_unlock("x"));
  } else {
    ASSERT_TRUE(zero_manager->revoke_lease(w1_lease));
  }
  ASSERT_TRUE(eventually([&] { return test.queue_of("x").empty() || test.queue_of("x").at(0).key() != w1_key; }));
  const auto w2_in = w2.admitted(5000ms);
  ASSERT_TRUE(w2_in && *w2_in != Clock::time_point{}) << "W2 was not let in after W1's entry went";
  std::fprintf(stderr, "W2 in %ld ms after the removal\n", ms(*w2_in - removed_at));
  const auto resumed_at = Clock::now();
  if (fault != Fault::cut) {
    proxy.resume();  // W1's note arrives now
  } else {
    proxy.restore();  // W1's watches resume from where they stopped
  }
  const auto w1_in = w1_admitted(fault != Fault::cut ? 1000ms : 10000ms);
  if (w1_in && *w1_in != Clock::time_point{}) {
    std::fprintf(stderr, "W1 in %ld ms after its connection came back, W2 held since %ld ms before that\n",
                 ms(*w1_in - resumed_at), ms(resumed_at - *w2_in));
  } else {
    std::fprintf(stderr, "W1 not in soon after its connection came back\n");
  }
  w2.join();
  if (w1_async) w1_async->join();
  if (w1_sync) w1_sync->join();
  const auto w1_lost_at = w1_async ? w1_async->lost_at() : w1_sync->lost_at();
  if (w1_lost_at != Clock::time_point{} && w1_in && *w1_in != Clock::time_point{}) {
    std::fprintf(stderr, "W1's lost token fired %ld ms after it got in\n", ms(w1_lost_at - *w1_in));
  }
  EXPECT_EQ(inside.overlaps.load(), 0) << "W1 was let in by a note that came after its entry was removed, while W2 "
                                          "held";
  w1_manager->close();
}

// The waiter's entry is force-unlocked after its note committed and before
// the note reached it.
TEST_F(ReviewLateNote, ALateNoteAfterAForceUnlockAdmitsNoOne) { late_note_after_removal(*this, Removal::force_unlock); }

// The same with its lease revoked by an admin: the waiter's session still
// counts as alive, its lease is gone in etcd.
TEST_F(ReviewLateNote, ALateNoteAfterALeaseRevokeAdmitsNoOne) { late_note_after_removal(*this, Removal::revoke_lease); }

// The same as the force unlock, W1 waiting through Lock::async_lock_for.
TEST_F(ReviewLateNote, ALateNoteAdmitsNoOneAsyncToo) {
  late_note_after_removal(*this, Removal::force_unlock, Fault::pause_async);
}

// The same as the force unlock, with W1's connection cut (not stalled):
// its watches resume from where they stopped once it reconnects.
TEST_F(ReviewLateNote, ANoteReplayedAfterAReconnectAdmitsNoOne) {
  late_note_after_removal(*this, Removal::force_unlock, Fault::cut);
}

// The entry a holder knows to be behind it (W2, two places behind H, read
// by W1's confirming read) leaves and queues again under the same key (same
// lease, a new create revision) while W1 holds: W1's hand-over compares the
// create revision it knew, fails, and notes the one first now; the re-queued
// entry waits its new turn. W3, queued before W2's new entry, goes first.
TEST_F(ReviewLateNote, AKnownSuccessorRequeuedUnderItsKeyWaitsItsNewTurn) {
  auto zero_manager = manager(20s);
  auto zero = zero_manager->get_lock("x");
  zero->lock();
  auto h_manager = manager(20s);
  auto h_lock = h_manager->get_lock("x");
  CuedHolder h(*h_lock);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  auto w1_manager = manager(20s);
  auto w1_lock = w1_manager->get_lock("x");
  CuedHolder w1(*w1_lock);
  ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
  auto w2_manager = manager(20s);
  auto w2_lock = w2_manager->get_lock("x");
  std::promise<void> w2_gave_up;
  std::promise<void> w2_requeue;
  std::atomic<int> order{0};
  std::atomic<int> w2_turn{0};
  std::atomic<int> w3_turn{0};
  Inside inside;
  std::jthread w2([&] {
    EXPECT_FALSE(w2_lock->try_lock_for(2500ms));
    w2_gave_up.set_value();
    w2_requeue.get_future().wait();
    ASSERT_TRUE(w2_lock->try_lock_for(20s));
    inside.enter();
    w2_turn = ++order;
    std::this_thread::sleep_for(50ms);
    inside.leave();
    w2_lock->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 4; }));
  const auto w2_first_key = queue_of("x").at(3).key();
  const auto w2_first_revision = queue_of("x").at(3).create_revision();
  auto w3_manager = manager(20s);
  auto w3_lock = w3_manager->get_lock("x");
  std::jthread w3([&] {
    ASSERT_TRUE(w3_lock->try_lock_for(20s));
    inside.enter();
    w3_turn = ++order;
    std::this_thread::sleep_for(50ms);
    inside.leave();
    w3_lock->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 5; }));
  std::this_thread::sleep_for(700ms);
  zero->unlock();
  ASSERT_TRUE(h.wait_held(10s));
  h.release();  // W1 is noted, and reads W2 behind it
  ASSERT_TRUE(w1.wait_held(10s));
  w2_gave_up.get_future().wait();
  w2_requeue.set_value();
  ASSERT_TRUE(eventually([&] {
    for (const auto& kv : queue_of("x")) {
      if (kv.key() == w2_first_key && kv.create_revision() != w2_first_revision) return true;
    }
    return false;
  })) << "W2 did not queue again under its key";
  w1.release();
  w3.join();
  w2.join();
  EXPECT_EQ(w3_turn.load(), 1);
  EXPECT_EQ(w2_turn.load(), 2);
  EXPECT_EQ(inside.overlaps.load(), 0);
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; }, 10s));
}

class ReviewLateNoteCluster : public LockTest {
 protected:
  ReviewLateNoteCluster() : LockTest(3) {}
  ManagerOptions options_on(std::vector<std::string> endpoints, std::chrono::seconds ttl) const {
    auto on = options();
    on.endpoints = std::move(endpoints);
    on.ttl = ttl;
    on.command_timeout = std::chrono::seconds(1);
    on.dial_timeout = std::chrono::seconds(20);
    return on;
  }
};

// The first test's sequence on a 3-member cluster, without a proxy: W1 talks
// to a follower only, which is frozen (SIGSTOP) while H hands over to W1 and
// an admin force-unlocks W1; W2 gets in. The follower is thawed, catches up
// and delivers W1's note.
TEST_F(ReviewLateNoteCluster, ALateNoteFromAThawedFollowerAdmitsNoOne) {
  const auto leader = etcd_.leader_index();
  const std::size_t follower = (leader + 1) % 3;
  std::vector<std::string> others;
  for (std::size_t i = 0; i < 3; ++i) {
    if (i != follower) others.push_back(etcd_.member(i).endpoint());
  }
  auto zero_manager = std::make_unique<LockManager>(options_on(others, 20s));
  auto zero = zero_manager->get_lock("x");
  zero->lock();
  auto h_manager = std::make_unique<LockManager>(options_on(others, 20s));
  auto h_lock = h_manager->get_lock("x");
  CuedHolder h(*h_lock);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  auto w1_manager = std::make_unique<LockManager>(options_on({etcd_.member(follower).endpoint()}, 20s));
  auto w1_lock = w1_manager->get_lock("x");
  Inside inside;
  Waiter w1(*w1_lock, inside, 3000ms);
  ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
  auto w2_manager = std::make_unique<LockManager>(options_on(others, 20s));
  auto w2_lock = w2_manager->get_lock("x");
  Waiter w2(*w2_lock, inside, 1500ms);
  ASSERT_TRUE(eventually([&] { return entries("x") == 4; }));
  std::this_thread::sleep_for(700ms);
  zero->unlock();
  ASSERT_TRUE(h.wait_held(10s));
  etcd_.member(follower).freeze();
  h.release();
  const auto removed_at = Clock::now();
  ASSERT_TRUE(zero_manager->force_unlock("x"));
  const auto w2_in = w2.admitted(5000ms);
  if (!w2_in || *w2_in == Clock::time_point{}) {
    etcd_.member(follower).thaw();
    FAIL() << "W2 was not let in after W1's entry went";
  }
  std::fprintf(stderr, "W2 in %ld ms after the force unlock\n", ms(*w2_in - removed_at));
  const auto thawed_at = Clock::now();
  etcd_.member(follower).thaw();
  const auto w1_in = w1.admitted(3000ms);
  if (w1_in && *w1_in != Clock::time_point{}) {
    std::fprintf(stderr, "W1 in %ld ms after the thaw, W2 held since %ld ms before that\n", ms(*w1_in - thawed_at),
                 ms(thawed_at - *w2_in));
  } else {
    std::fprintf(stderr, "W1 not in within 3 s of the thaw\n");
  }
  w2.join();
  w1.join();
  if (w1.lost_at() != Clock::time_point{} && w1_in && *w1_in != Clock::time_point{}) {
    std::fprintf(stderr, "W1's lost token fired %ld ms after it got in\n", ms(w1.lost_at() - *w1_in));
  }
  EXPECT_EQ(inside.overlaps.load(), 0) << "W1 was let in by a note that came after its entry was removed, while W2 "
                                          "held";
}

}  // namespace
}  // namespace etcdlock::testing
