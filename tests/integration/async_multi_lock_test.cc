// MultiLock's asynchronous acquisition (MultiLock::async_lock,
// MultiLockHold): the hold as an object, waits that no thread makes behind
// other managers and behind this process's own holders (the names' turns,
// taken in sorted order), cancellation and deadlines that leave no key and
// give every turn back, loss of one name, close, and no overlap or deadlock
// when chains of asynchronous acquisitions ask for overlapping sets in
// opposite orders.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "delivery.h"
#include "lock_fixture.h"
#include "queue/queue_wait.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

using Delivery = etcdlock::testing::Delivery<MultiLockHold>;

// QueueWait::kPredecessorWatchDelay: how long a waiter counts on its
// predecessor's note alone before it watches the predecessor too.
constexpr long kWatchDelayMs = detail::QueueWait::kPredecessorWatchDelay.count();

class AsyncMultiLock : public LockTest {};

TEST_F(AsyncMultiLock, HoldIsAnObjectThatAnotherThreadReleases) {
  auto manager = this->manager();
  auto xy = manager->get_multi_lock({"y", "x"});
  Delivery delivery;
  xy->async_lock(delivery.handler());
  ASSERT_TRUE(delivery.wait());
  ASSERT_FALSE(delivery.error()) << delivery.error().message();
  auto hold = delivery.take();
  ASSERT_TRUE(hold);
  EXPECT_TRUE(hold.held());
  EXPECT_EQ(hold.names(), (std::vector<std::string>{"x", "y"}));
  const auto keys = hold.keys();
  ASSERT_EQ(keys.size(), 2u);
  for (const auto& key : keys) {
    const auto stored = get(raw_, key);
    ASSERT_EQ(stored.kvs_size(), 1) << key;
    EXPECT_EQ(hold.fencing_token(), stored.kvs(0).create_revision()) << key;
  }
  EXPECT_EQ(hold.fencing_token("x"), hold.fencing_token("y"));
  EXPECT_THROW((void)hold.fencing_token("z"), Error);
  EXPECT_TRUE(xy->held());
  EXPECT_FALSE(xy->held_by_this_thread());
  std::error_code ec;
  xy->unlock(ec);  // a thread's unlock: this thread holds nothing
  EXPECT_EQ(ec, errc::lock_not_held);
  EXPECT_TRUE(hold.guarded_put(prefix_ + "-data/k", "1"));
  std::thread([&] { hold.release(ec); }).join();
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(hold);
  EXPECT_FALSE(xy->held());
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
  hold.release(ec);
  EXPECT_EQ(ec, errc::lock_not_held);
  EXPECT_THROW((void)hold.guarded_put(prefix_ + "-data/k", "2"), Error);
  EXPECT_THROW(xy->async_lock({}), Error);
}

TEST_F(AsyncMultiLock, WaitsForEveryNameHeldByOtherManagers) {
  auto a = manager();
  auto b = manager();
  auto c = manager();
  auto x = b->get_lock("x");
  auto y = c->get_lock("y");
  x->lock();
  y->lock();
  const auto before = std::max(x->fencing_token(), y->fencing_token());
  Delivery delivery;
  a->get_multi_lock({"x", "y"})->async_lock(delivery.handler());
  ASSERT_TRUE(eventually([&] { return entries("x") == 2 && entries("y") == 2; }));
  x->unlock();
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(delivery.done()) << "held while y was still taken";
  y->unlock();
  ASSERT_TRUE(delivery.wait());
  ASSERT_FALSE(delivery.error()) << delivery.error().message();
  auto hold = delivery.take();
  EXPECT_TRUE(hold.held());
  EXPECT_GT(hold.fencing_token(), before);
  // Neither name can be taken by anyone else meanwhile.
  EXPECT_FALSE(x->try_lock());
  EXPECT_FALSE(y->try_lock());
  hold.release();
  EXPECT_TRUE(x->try_lock());
  x->unlock();
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
}

// The names' local turns are taken in sorted order, one after the other:
// behind a thread of this process that holds y, the acquisition holds x's
// turn and waits for y's; a cancel then gives x's back, and nothing reached
// etcd.
TEST_F(AsyncMultiLock, WaitsForTheTurnsOfThisProcesssHoldersAndGivesThemBackOnCancel) {
  auto manager = this->manager();
  auto x = manager->get_lock("x");
  auto y = manager->get_lock("y");
  y->lock();
  std::stop_source cancel;
  Delivery cancelled;
  manager->get_multi_lock({"x", "y"})->async_lock(cancelled.handler(), cancel.get_token());
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(cancelled.done());
  EXPECT_EQ(entries("x"), 0);
  // x's turn is the acquisition's while it waits for y's.
  std::thread([&] { EXPECT_FALSE(x->try_lock()); }).join();
  cancel.request_stop();
  ASSERT_TRUE(cancelled.wait());
  EXPECT_EQ(cancelled.error(), errc::cancelled);
  std::thread([&] {
    EXPECT_TRUE(x->try_lock()) << "x's turn was not given back";
    x->unlock();
  }).join();
  // A deadline, and a deadline that has passed (one try), end it the same way.
  Delivery timed_out;
  manager->get_multi_lock({"x", "y"})->async_lock_for(300ms, timed_out.handler());
  ASSERT_TRUE(timed_out.wait());
  EXPECT_EQ(timed_out.error(), errc::lock_timeout);
  Delivery tried;
  manager->get_multi_lock({"x", "y"})->async_lock_for(0ms, tried.handler());
  ASSERT_TRUE(tried.wait());
  EXPECT_EQ(tried.error(), errc::lock_timeout);
  std::thread([&] {
    EXPECT_TRUE(x->try_lock()) << "x's turn was not given back";
    x->unlock();
  }).join();
  EXPECT_EQ(entries("x"), 0);
  // Once y is free, the set is taken.
  Delivery taken;
  manager->get_multi_lock({"x", "y"})->async_lock(taken.handler());
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(taken.done());
  y->unlock();
  ASSERT_TRUE(taken.wait());
  EXPECT_FALSE(taken.error()) << taken.error().message();
  EXPECT_TRUE(taken.take().held());
}

// A cancel that races the grant of the first turn: the acquisition then
// waits for the second, and must withdraw that turn's ticket, never the
// first turn's (ticket ids are per turn: a stale one would take another
// waiter's place in the second turn's queue, which then never comes). Each
// round ends with every handler called and both turns free. On 36fa333 a
// stale ticket could be withdrawn in a window of a few instructions, between
// a grant and the record of the next ticket; this test did not hit it there
// in 1,000 rounds, and the window is closed by construction now (the grant
// and the next take are one critical section). It stays as a guard of the
// cancel against the grants.
TEST_F(AsyncMultiLock, ACancelRacingTheGrantOfATurnWithdrawsOnlyItsOwnTicket) {
  auto manager = this->manager();
  for (int round = 0; round < 100; ++round) {
    // Fresh names: each turn numbers its tickets from 1, so the multi-lock's
    // ticket for x and the first waiter's for y have one id.
    const auto x_name = "x" + std::to_string(round);
    const auto y_name = "y" + std::to_string(round);
    auto x = manager->get_lock(x_name);
    auto y = manager->get_lock(y_name);
    auto xy = manager->get_multi_lock({x_name, y_name});
    std::promise<void> x_held;
    std::promise<void> let_go;
    std::thread x_holder([&] {
      x->lock();
      x_held.set_value();
      let_go.get_future().wait();
      x->unlock();
    });
    x_held.get_future().wait();
    y->lock();
    std::stop_source cancel;
    Delivery multi;
    xy->async_lock(multi.handler(), cancel.get_token());
    etcdlock::testing::Delivery<LockHold> y_waiter;  // ticket 1 of y's turn, as the multi-lock's of x's
    y->async_lock(y_waiter.handler());
    // x's grant and the cancel, as close together as two threads make them.
    std::thread canceller([&] { cancel.request_stop(); });
    let_go.set_value();
    canceller.join();
    x_holder.join();
    ASSERT_TRUE(multi.wait()) << "round " << round << ": the multi-lock's handler was never called";
    y->unlock();
    ASSERT_TRUE(y_waiter.wait()) << "round " << round << ": the waiter of y's turn lost its place";
    EXPECT_FALSE(y_waiter.error()) << y_waiter.error().message();
    y_waiter.take().release();
    if (!multi.error()) multi.take().release();  // won as the cancel came: delivered, as lock() does
    std::thread([&] {
      EXPECT_TRUE(x->try_lock()) << "round " << round << ": x's turn was not given back";
      x->unlock();
      EXPECT_TRUE(y->try_lock()) << "round " << round << ": y's turn was not given back";
      y->unlock();
    }).join();
  }
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// The note for a later queue may come while an earlier one is still waited
// for: y's holder releases first, then x's. The acquisition acts on x's
// note, then starts waiting in y's queue, whose note came before that wait
// began and woke nothing that looks at y. On 36fa333 it lay there until the
// deferred watch of y's predecessor (QueueWait::kPredecessorWatchDelay, 500
// ms after the enqueue's read) let the waiter in: 8 managers served 15.6
// acquisitions/s asynchronously against 250 blocking. The best of three
// hand-overs here must come well before that watch could.
TEST_F(AsyncMultiLock, ANoteForALaterQueueThatCameFirstIsActedOnOnceThatQueueIsWaitedFor) {
  auto a = manager();
  auto b = manager();
  auto c = manager();
  auto x = b->get_lock("x");
  auto y = c->get_lock("y");
  auto xy = a->get_multi_lock({"x", "y"});
  auto best = std::chrono::steady_clock::duration::max();
  for (int round = 0; round < 3; ++round) {
    x->lock();
    y->lock();
    Delivery delivery;
    xy->async_lock(delivery.handler());
    ASSERT_TRUE(eventually([&] { return entries("x") == 2 && entries("y") == 2; }));
    y->unlock();  // its note reaches the multi-lock while it waits for x
    std::this_thread::sleep_for(50ms);
    const auto released = std::chrono::steady_clock::now();
    x->unlock();
    ASSERT_TRUE(delivery.wait());
    ASSERT_FALSE(delivery.error()) << delivery.error().message();
    best = std::min(best, delivery.at() - released);
    delivery.take().release();
  }
  const auto best_ms = std::chrono::duration_cast<std::chrono::milliseconds>(best).count();
  std::cout << "best hand-over of three, after x's release: " << best_ms << " ms\n";
  EXPECT_LT(best, std::chrono::milliseconds(kWatchDelayMs / 2))
      << "admitted " << best_ms << " ms after x's release: by the deferred watch, not by y's note";
}

TEST_F(AsyncMultiLock, CancelledAndTimedOutWaitsInEtcdLeaveNoKey) {
  auto a = manager();
  auto b = manager();
  auto y = b->get_lock("y");
  y->lock();
  auto xy = a->get_multi_lock({"x", "y"});
  std::stop_source cancel;
  Delivery cancelled;
  xy->async_lock(cancelled.handler(), cancel.get_token());
  ASSERT_TRUE(eventually([&] { return entries("x") == 1 && entries("y") == 2; }));
  cancel.request_stop();
  ASSERT_TRUE(cancelled.wait());
  EXPECT_EQ(cancelled.error(), errc::cancelled);
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 1);
  Delivery timed_out;
  xy->async_lock_for(300ms, timed_out.handler());
  ASSERT_TRUE(timed_out.wait());
  EXPECT_EQ(timed_out.error(), errc::lock_timeout);
  Delivery tried;
  xy->async_lock_until(std::chrono::steady_clock::now() - 1s, tried.handler());
  ASSERT_TRUE(tried.wait());
  EXPECT_EQ(tried.error(), errc::lock_timeout);
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 1);
  y->unlock();
  EXPECT_EQ(all_keys(), 0);
}

TEST_F(AsyncMultiLock, LossOfOneNameRequestsTheTokenAndRemovesTheOthers) {
  auto m = manager();
  auto admin = manager();
  Delivery delivery;
  m->get_multi_lock({"x", "y"})->async_lock(delivery.handler());
  ASSERT_TRUE(delivery.wait());
  auto hold = delivery.take();
  ASSERT_TRUE(hold.held());
  const auto lost = hold.lost_token();
  ASSERT_TRUE(admin->force_unlock("y"));
  ASSERT_TRUE(eventually([&] { return lost.stop_requested(); }));
  EXPECT_TRUE(hold.lost());
  EXPECT_FALSE(hold.held());
  EXPECT_EQ(hold.fencing_token(), 0);
  EXPECT_FALSE(hold.guarded_put(prefix_ + "-data/k", "stale"));
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; })) << "the other name's entry stayed";
  std::error_code ec;
  hold.release(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  Delivery again;
  m->get_multi_lock({"x", "y"})->async_lock(again.handler());
  ASSERT_TRUE(again.wait());
  EXPECT_FALSE(again.error()) << again.error().message();
}

TEST_F(AsyncMultiLock, CloseEndsAPendingWaitWithClosed) {
  auto a = manager();
  auto b = manager();
  auto y = b->get_lock("y");
  y->lock();
  Delivery in_etcd;
  a->get_multi_lock({"x", "y"})->async_lock(in_etcd.handler());
  ASSERT_TRUE(eventually([&] { return entries("y") == 2; }));
  a->close();
  ASSERT_TRUE(in_etcd.wait());
  EXPECT_EQ(in_etcd.error(), errc::closed);
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 1);
  y->unlock();
}

// Chains of asynchronous acquisitions (each handler checks the names it
// holds, releases and asks again) on overlapping sets named in both orders,
// beside blocking threads of the same managers: nobody deadlocks, and no
// name has two holders.
TEST_F(AsyncMultiLock, ChainsOnOverlappingSetsNeitherDeadlockNorOverlap) {
  struct Name {
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
  };
  std::map<std::string, Name> names;
  for (const auto* name : {"x", "y", "z"}) names[name];
  constexpr int kRounds = 8;
  std::mutex mu;
  std::condition_variable all_done;
  int chains_left = 0;
  int failures = 0;
  std::vector<std::unique_ptr<LockManager>> managers;
  for (int i = 0; i < 3; ++i) managers.push_back(manager());
  const std::vector<std::vector<std::string_view>> sets{{"x", "y"}, {"y", "x"}, {"y", "z"}, {"z", "x"}};
  std::vector<std::shared_ptr<MultiLock>> locks;
  for (std::size_t i = 0; i < sets.size(); ++i) locks.push_back(managers[i % managers.size()]->get_multi_lock(sets[i]));
  std::function<void(std::shared_ptr<MultiLock>, int)> chain = [&](std::shared_ptr<MultiLock> lock, int left) {
    lock->async_lock([&, lock, left](std::error_code ec, MultiLockHold hold) {
      if (ec) {
        std::lock_guard guard(mu);
        ++failures;
      } else {
        for (const auto& name : hold.names()) {
          if (names[name].inside.fetch_add(1) != 0) ++names[name].overlaps;
        }
        std::this_thread::sleep_for(1ms);
        for (const auto& name : hold.names()) names[name].inside.fetch_sub(1);
        hold.release();
      }
      if (left > 1 && !ec) return chain(lock, left - 1);
      std::lock_guard guard(mu);
      --chains_left;
      all_done.notify_all();
    });
  };
  chains_left = static_cast<int>(locks.size());
  for (const auto& lock : locks) chain(lock, kRounds);
  // Blocking holders of the same names on the same managers, meanwhile.
  std::vector<std::jthread> threads;
  for (std::size_t i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      auto lock = managers[i]->get_lock(i == 0 ? "x" : "z");
      auto name = i == 0 ? "x" : "z";
      for (int round = 0; round < kRounds; ++round) {
        lock->lock();
        if (names[name].inside.fetch_add(1) != 0) ++names[name].overlaps;
        std::this_thread::sleep_for(1ms);
        names[name].inside.fetch_sub(1);
        lock->unlock();
      }
    });
  }
  threads.clear();
  std::unique_lock lock(mu);
  ASSERT_TRUE(all_done.wait_for(lock, 120s, [&] { return chains_left == 0; })) << "a chain never ended";
  EXPECT_EQ(failures, 0);
  for (const auto& [name, counts] : names) EXPECT_EQ(counts.overlaps.load(), 0) << name;
  lock.unlock();
  for (const auto* name : {"x", "y", "z"}) EXPECT_TRUE(eventually([&] { return entries(name) == 0; })) << name;
}

}  // namespace
}  // namespace etcdlock::testing
