// Adversarial review of the asynchronous acquisition of Lock (issue 27:
// queue/turn.cc, queue/async_acquisition.cc, recipes/lock_impl.cc
// async_acquire/async_acquired/release(AsyncLockHold&), etcdlock/lock_hold.h).
//
// A test named after a finding fails on the reviewed code (54d5aa3); a test
// named Held_... is an attack that did not break it, kept as a regression
// check.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "delivery.h"
#include "lock_fixture.h"
#include "occupancy.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using Delivery = etcdlock::testing::Delivery<LockHold>;

// A hold of `lock` by an asynchronous acquisition, waited for.
LockHold hold_async(Lock& lock) {
  Delivery delivery;
  lock.async_lock(delivery.handler());
  if (!delivery.wait()) return {};
  return delivery.take();
}

class ReviewAsync : public LockTest {};

// Finding 1. A failed asynchronous wait (deadline, cancel) that had taken the
// turn gives it back only when the AsyncAcquisition is destroyed, which is
// after the handler returns (the notifier task that calls it holds the last
// reference). While the handler runs, the lock is free in etcd and no holder
// of this process has it, yet every other holder of this process is refused
// (try_lock) or waits (lock) behind a turn that nobody owns.
TEST_F(ReviewAsync, TurnOfAFailedWaitIsBusyWhileItsHandlerRuns) {
  auto first = manager();
  auto second = manager();
  auto other = hold_async(*first->get_lock("jobs"));
  ASSERT_TRUE(other);
  auto lock = second->get_lock("jobs");
  std::promise<void> in_handler;
  std::promise<void> may_return;
  // The handler holds its own copy: it may still be inside wait_for() when
  // this test has returned (AddressSanitizer saw the test's future freed
  // under it).
  auto may_return_future = may_return.get_future().share();
  std::atomic<bool> got_timeout{false};
  lock->async_lock_for(300ms, [&, may_return_future](std::error_code ec, LockHold) {
    got_timeout = ec == errc::lock_timeout;
    in_handler.set_value();
    may_return_future.wait_for(10s);
  });
  ASSERT_EQ(in_handler.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(got_timeout.load());
  // The wait is over and left no key; the other manager lets go.
  EXPECT_EQ(entries("jobs"), 1);
  other.release();
  EXPECT_EQ(entries("jobs"), 0);
  // Nobody holds "jobs", nobody waits for it: this thread should get it.
  const bool got = lock->try_lock();
  may_return.set_value();
  EXPECT_TRUE(got) << "try_lock() refused: the failed wait's turn is still taken while its handler runs";
  if (got) lock->unlock();
}

// Finding 1, as a hang: the handler of a cancelled wait locks again (Lock
// says "the handler may call any etcdlock function"). With lock() it would
// wait forever: the turn it waits for goes back once the handler returns.
TEST_F(ReviewAsync, HandlerOfACancelledWaitCannotLockAgain) {
  auto first = manager();
  auto second = manager();
  auto other = hold_async(*first->get_lock("jobs"));
  ASSERT_TRUE(other);
  auto lock = second->get_lock("jobs");
  std::stop_source cancel;
  std::promise<std::pair<bool, Clock::duration>> result;
  lock->async_lock(
      [&](std::error_code ec, LockHold) {
        EXPECT_EQ(ec, errc::cancelled);
        other.release();  // from any thread: now nobody holds "jobs"
        const auto started = Clock::now();
        const bool got = lock->try_lock_for(3s);  // lock() here never returns
        const auto took = Clock::now() - started;
        if (got) lock->unlock();
        result.set_value({got, took});
      },
      cancel.get_token());
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));
  cancel.request_stop();
  auto future = result.get_future();
  ASSERT_EQ(future.wait_for(15s), std::future_status::ready);
  const auto [got, took] = future.get();
  EXPECT_TRUE(got) << "the handler waited " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                   << " ms for a turn that its own acquisition holds until the handler returns";
  EXPECT_LT(took, 2s);
}

// Finding 2. Every asynchronous acquisition of a manager runs its steps on
// one thread, and a step blocks in its requests. One acquisition whose
// request hangs (a stalled connection, a slow member) holds up every other
// one of the manager, on any name: their deadlines and cancellations are
// acted on only when the stalled request gives up (command_timeout), where a
// thread in try_lock_for() would have returned at its deadline.
TEST_F(ReviewAsync, AStalledRequestOfOneNameDelaysTheDeadlineOfAnother) {
  // Fixed: a manager has several step threads, started while steps block.
  const auto endpoint = etcd_.endpoints().at(0);
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto through = options_through(link.endpoint());
  through.command_timeout = 4s;
  LockManager manager(through);
  auto holder = this->manager();
  auto other = hold_async(*holder->get_lock("b"));
  ASSERT_TRUE(other);
  // A session first, so that what follows needs no lease grant.
  {
    auto warm = hold_async(*manager.get_lock("warm"));
    ASSERT_TRUE(warm);
  }
  link.hold_replies();
  Delivery on_a;
  manager.get_lock("a")->async_lock_for(10s, on_a.handler());
  std::this_thread::sleep_for(100ms);  // a's enqueue is out, its reply held back
  Delivery on_b;
  const auto started = Clock::now();
  manager.get_lock("b")->async_lock_for(300ms, on_b.handler());
  const bool delivered = on_b.wait(10s);
  link.resume_replies();
  ASSERT_TRUE(delivered);
  const auto took = on_b.at() - started;
  EXPECT_LT(took, 1500ms) << "async_lock_for(300 ms) on \"b\" answered after "
                          << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                          << " ms, behind a stalled request of \"a\"";
  ASSERT_TRUE(on_a.wait(15s));
  on_a.take().release();
}

// Runs `body` in a child process (a death test that starts the test afresh)
// with a watchdog: the child exits 0 when `body` returns, 3 when it has not
// returned after `limit` (a deadlock: the parent cannot recover from one).
template <typename Body>
void in_child_with_watchdog(std::chrono::seconds limit, Body body) {
  // REVIEW_ASYNC_DIRECT=1: in this process, without a watchdog (to attach a debugger).
  if (std::getenv("REVIEW_ASYNC_DIRECT")) return body();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        std::thread([limit] {
          std::this_thread::sleep_for(limit);
          std::fprintf(stderr, "DEADLOCK: no progress after %lld s\n", static_cast<long long>(limit.count()));
          std::_Exit(3);
        }).detach();
        body();
        std::fflush(stdout);
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Finding 4 (the worst). QueueWait::wait_until_first and QueueWait::poll,
// since 3f0fb81, call notes_expected() -- which takes the HandOverInbox
// mutex -- while they hold WaitSignals::mu; the watch hub's thread delivers a
// hand-over note under the inbox mutex and then takes WaitSignals::mu
// (HandOverInbox::on_notes -> WaitSignals::on_note). A hand-over (the
// predecessor's delete, which sets check_queue, and its note in the same
// revision) can take the two in opposite orders: the waiting thread (or the
// step thread) and the watch hub deadlock, then the worker, the renew thread
// (a session loss waits on WaitSignals::mu) and every lock of the manager.
// Before 3f0fb81, wait_until_first read notes_expected once, outside the lock.
TEST_F(ReviewAsync, HandOverDeadlocksWaiterAndWatchHub_Sync) {
  in_child_with_watchdog(60s, [&] {
    auto one = manager();
    auto two = manager();
    auto a = one->get_lock("jobs");
    auto b = two->get_lock("jobs");
    std::thread other([&] {
      for (int i = 0; i < 300; ++i) {
        b->lock();
        b->unlock();
      }
    });
    for (int i = 0; i < 300; ++i) {
      a->lock();
      a->unlock();
    }
    other.join();
  });
}

// Finding 4, asynchronous: the step thread is the one that deadlocks with the
// watch hub (QueueWait::poll), and with it every asynchronous acquisition of
// the manager.
TEST_F(ReviewAsync, HandOverDeadlocksStepThreadAndWatchHub_Async) {
  in_child_with_watchdog(60s, [&] {
    auto one = manager();
    auto two = manager();
    auto a = one->get_lock("jobs");
    auto b = two->get_lock("jobs");
    std::atomic<int> left{600};
    std::mutex mu;
    std::condition_variable all_done;
    int chains_ended = 0;  // under mu: `next` is used until both chains end
    std::function<void(Lock&)> next = [&](Lock& lock) {
      lock.async_lock([&](std::error_code ec, LockHold hold) {
        hold.release();
        if (ec) std::fprintf(stderr, "error: %s\n", ec.message().c_str());
        if (--left > 1) {
          next(lock);
        } else {
          std::lock_guard guard(mu);
          ++chains_ended;
          all_done.notify_all();
        }
      });
    };
    next(*a);
    next(*b);
    std::unique_lock lock(mu);
    all_done.wait(lock, [&] { return chains_ended == 2; });
  });
}

// Finding 3. A deadline that comes while a change ahead (or a hand-over
// note) is still to be acted on: the step at the deadline reacts with the
// expired deadline as its requests' deadline, the read fails at once
// (DEADLINE_EXCEEDED), and the acquisition ends with errc::unavailable and a
// warning "etcd is unavailable", on a healthy etcd, instead of lock_timeout
// (or the lock, which was free). Swept over release times around the deadline.
TEST_F(ReviewAsync, DeadlineRacingTheReleaseAheadSaysUnavailable) {
  auto holder = manager();
  auto waiter = manager();
  auto held = holder->get_lock("jobs");
  auto lock = waiter->get_lock("jobs");
  int unavailable = 0;
  int timeouts = 0;
  int acquired = 0;
  for (int round = 0; round < 80; ++round) {
    held->lock();
    Delivery delivery;
    lock->async_lock_for(60ms, delivery.handler());
    // Release from 45 to 75 ms after the wait began.
    std::this_thread::sleep_for(std::chrono::microseconds(45000 + (round % 16) * 2000));
    held->unlock();
    ASSERT_TRUE(delivery.wait());
    if (delivery.error() == errc::unavailable) {
      ++unavailable;
    } else if (delivery.error() == errc::lock_timeout) {
      ++timeouts;
    } else if (!delivery.error()) {
      ++acquired;
    } else {
      ADD_FAILURE() << delivery.error().message();
    }
    delivery.take().release();
    ASSERT_TRUE(eventually([&] { return entries("jobs") == 0; }));
  }
  std::printf("acquired %d, lock_timeout %d, unavailable %d\n", acquired, timeouts, unavailable);
  EXPECT_EQ(unavailable, 0) << "async_lock_for ended with errc::unavailable on a healthy etcd";
}

// The same sweep with a thread in try_lock_for(): whether the synchronous
// path (QueueWait::run) shares finding 3. It hit finding 4 (the hand-over
// deadlock) in 1 of its first 2 runs, so it runs in a child with a watchdog.
TEST_F(ReviewAsync, SyncTryLockForRacingTheReleaseAhead) {
  in_child_with_watchdog(60s, [&] {
    auto holder = manager();
    auto waiter = manager();
    auto held = holder->get_lock("jobs");
    auto lock = waiter->get_lock("jobs");
    int unavailable = 0;
    int timeouts = 0;
    int acquired = 0;
    for (int round = 0; round < 80; ++round) {
      held->lock();
      auto result = std::async(std::launch::async, [&]() -> int {
        try {
          if (!lock->try_lock_for(60ms)) return 0;
          lock->unlock();
          return 1;
        } catch (const Error& error) {
          return error.code() == errc::unavailable ? 2 : 3;
        }
      });
      std::this_thread::sleep_for(std::chrono::microseconds(45000 + (round % 16) * 2000));
      held->unlock();
      const int outcome = result.get();
      if (outcome == 3) std::_Exit(4);
      (outcome == 0 ? timeouts : outcome == 1 ? acquired : unavailable)++;
      if (!eventually([&] { return entries("jobs") == 0; })) std::_Exit(5);
    }
    std::printf("sync: acquired %d, timeouts %d, unavailable %d\n", acquired, timeouts, unavailable);
    if (unavailable != 0) std::_Exit(6);
  });
}

// Held: a thread in lock() whose cancel comes as the turn is granted to it
// (Turn::take) either gets the lock or passes the turn on; the turn is never
// stuck, and there are never two holders.
TEST_F(ReviewAsync, Held_SyncWaiterCancelledAsTheTurnIsGrantedPassesItOn) {
  auto manager = this->manager();
  auto lock = manager->get_lock("jobs");
  std::mt19937 random(27);
  int got = 0;
  int cancelled = 0;
  for (int round = 0; round < 60; ++round) {
    auto hold = hold_async(*lock);
    ASSERT_TRUE(hold) << "round " << round;
    std::stop_source cancel;
    std::atomic<int> outcome{0};  // 1 got, 2 cancelled
    std::atomic<bool> second_holder{false};
    std::thread waiter([&] {
      try {
        lock->lock(cancel.get_token());
        // Exclusion: no asynchronous acquisition may get it meanwhile.
        Delivery intruder;
        lock->async_lock_for(50ms, intruder.handler());
        if (intruder.wait(5s) && !intruder.error()) second_holder = true;
        intruder.take().release();
        lock->unlock();
        outcome = 1;
      } catch (const Error& error) {
        EXPECT_EQ(error.code(), errc::cancelled);
        outcome = 2;
      }
    });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
    std::thread releaser([&] { hold.release(); });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 300));
    cancel.request_stop();
    releaser.join();
    waiter.join();
    EXPECT_FALSE(second_holder.load()) << "round " << round;
    ASSERT_NE(outcome.load(), 0);
    (outcome == 1 ? got : cancelled)++;
    // The turn went on: an asynchronous acquisition gets the lock at once.
    Delivery next;
    lock->async_lock_for(3s, next.handler());
    ASSERT_TRUE(next.wait(5s)) << "round " << round;
    ASSERT_FALSE(next.error()) << "round " << round << ": " << next.error().message();
    next.take().release();
  }
  EXPECT_EQ(entries("jobs"), 0);
  std::printf("sync waiter: %d got the lock, %d cancelled\n", got, cancelled);
}

// Held: one thread in a lock()/unlock() loop and many asynchronous waiters on
// the same Lock, with another manager competing: never two holders, fencing
// tokens strictly increase, every handler is called once, no key is left.
TEST_F(ReviewAsync, Held_ThreadAndManyAsyncWaitersNeverHoldTogether) {
  auto one = manager();
  auto two = manager();
  auto lock = one->get_lock("jobs");
  auto rival = two->get_lock("jobs");
  Occupancy inside;
  std::mutex tokens_mu;
  std::vector<std::int64_t> tokens;
  const auto enter = [&](std::int64_t token) {
    inside.enter();
    std::lock_guard guard(tokens_mu);
    tokens.push_back(token);
  };
  constexpr int kAsync = 40;
  std::atomic<int> delivered{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> releasers;
  std::mutex releasers_mu;
  std::atomic<bool> stop{false};
  std::thread blocking([&] {
    for (int i = 0; i < 15; ++i) {
      lock->lock();
      enter(lock->fencing_token());
      std::this_thread::sleep_for(2ms);
      inside.leave();
      lock->unlock();
    }
  });
  std::thread rival_thread([&] {
    for (int i = 0; i < 10; ++i) {
      rival->lock();
      enter(rival->fencing_token());
      std::this_thread::sleep_for(2ms);
      inside.leave();
      rival->unlock();
    }
  });
  for (int i = 0; i < kAsync; ++i) {
    lock->async_lock([&](std::error_code ec, LockHold hold) {
      if (ec) {
        ++failed;
        ++delivered;
        return;
      }
      enter(hold.fencing_token());
      // Released from another thread, a moment later.
      std::lock_guard guard(releasers_mu);
      releasers.emplace_back([&, hold = std::move(hold)]() mutable {
        std::this_thread::sleep_for(1ms);
        inside.leave();
        hold.release();
        ++delivered;
      });
    });
  }
  blocking.join();
  rival_thread.join();
  ASSERT_TRUE(eventually([&] { return delivered.load() == kAsync; }, 60s));
  {
    std::lock_guard guard(releasers_mu);
    for (auto& thread : releasers) thread.join();
  }
  stop = true;
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(inside.most(), 1) << "two holders at once";
  {
    std::lock_guard guard(tokens_mu);
    EXPECT_EQ(tokens.size(), static_cast<std::size_t>(kAsync + 25));
    EXPECT_TRUE(std::is_sorted(tokens.begin(), tokens.end()));
    EXPECT_EQ(std::adjacent_find(tokens.begin(), tokens.end()), tokens.end());
  }
  EXPECT_EQ(entries("jobs"), 0);
}

// Held: cancels and deadlines thrown at many asynchronous waiters of one
// process, some while they wait for the turn, some in etcd's queue, some as
// the turn or the lock comes: every handler once, no key left, and the lock
// is free afterwards (the turn was given back).
TEST_F(ReviewAsync, Held_CancelsAndDeadlinesRacingGrantsLeaveNothing) {
  auto one = manager();
  auto two = manager();
  auto lock = one->get_lock("jobs");
  auto rival = two->get_lock("jobs");
  std::mt19937 random(11);
  constexpr int kWaiters = 60;
  std::vector<std::unique_ptr<Delivery>> deliveries;
  std::vector<std::unique_ptr<std::stop_source>> cancels;
  auto rival_hold = hold_async(*rival);
  ASSERT_TRUE(rival_hold);
  for (int i = 0; i < kWaiters; ++i) {
    deliveries.push_back(std::make_unique<Delivery>());
    cancels.push_back(std::make_unique<std::stop_source>());
    auto handler = [d = deliveries.back().get()](std::error_code ec, LockHold hold) {
      // Hold it briefly, then release: the next one's grant follows.
      d->handler()(ec, {});
      hold.release();
    };
    if (i % 3 == 0) {
      lock->async_lock_for(std::chrono::milliseconds(random() % 80), handler, cancels.back()->get_token());
    } else {
      lock->async_lock(handler, cancels.back()->get_token());
    }
  }
  std::thread canceller([&] {
    for (int i = 0; i < kWaiters; ++i) {
      if (i % 2 == 1) cancels[i]->request_stop();
      std::this_thread::sleep_for(std::chrono::microseconds(random() % 3000));
      if (i == kWaiters / 3) rival_hold.release();
    }
  });
  canceller.join();
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(deliveries[i]->wait(20s)) << "waiter " << i << " never got its handler";
  }
  std::this_thread::sleep_for(100ms);
  for (int i = 0; i < kWaiters; ++i) EXPECT_EQ(deliveries[i]->calls(), 1) << "waiter " << i;
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 0; }));
  EXPECT_TRUE(lock->try_lock()) << "the turn was not given back";
  lock->unlock();
}

// Held: a LockHold that outlives its manager (closed, then destroyed) is
// released without a crash or a hang, and says the hold was lost.
TEST_F(ReviewAsync, Held_LockHoldReleasedAfterItsManagerWasDestroyed) {
  auto manager = this->manager();
  auto hold = hold_async(*manager->get_lock("jobs"));
  ASSERT_TRUE(hold);
  EXPECT_EQ(entries("jobs"), 1);
  manager.reset();
  EXPECT_TRUE(hold.lost());
  std::error_code ec;
  auto done = std::async(std::launch::async, [&] { hold.release(ec); });
  ASSERT_EQ(done.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_EQ(entries("jobs"), 0);
}

// Held: close() while many acquisitions are pending on many names, some in
// a step: close returns, each handler is called once with closed (or a hold
// won just before), and the lease's keys are gone.
TEST_F(ReviewAsync, Held_CloseWhileStepsRunEndsEveryWait) {
  auto holder = manager();
  auto waiter = manager();
  std::vector<std::shared_ptr<Lock>> held;
  for (int i = 0; i < 10; ++i) {
    held.push_back(holder->get_lock("n" + std::to_string(i)));
    held.back()->lock();
  }
  std::vector<std::unique_ptr<Delivery>> deliveries;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 20; ++i) {
      deliveries.push_back(std::make_unique<Delivery>());
      waiter->get_lock("n" + std::to_string(i))->async_lock(deliveries.back()->handler());
    }
  }
  // Release some, so that grants and steps are under way as it closes.
  for (int i = 0; i < 5; ++i) held[i]->unlock();
  auto closed = std::async(std::launch::async, [&] { waiter->close(); });
  ASSERT_EQ(closed.wait_for(15s), std::future_status::ready) << "close() hangs";
  for (auto& delivery : deliveries) {
    ASSERT_TRUE(delivery->wait(10s));
    EXPECT_EQ(delivery->calls(), 1);
    delivery->take().release();
  }
  for (int i = 5; i < 10; ++i) held[i]->unlock();
  ASSERT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// Held: the waiting manager's lease is revoked mid-wait: the wait queues
// again on a new lease, gets the lock once it is free, and leaves no key.
TEST_F(ReviewAsync, Held_LeaseRevokedMidWaitQueuesAgain) {
  auto holder = manager();
  auto waiter = manager();
  auto held = holder->get_lock("x");
  held->lock();
  Delivery delivery;
  waiter->get_lock("x")->async_lock(delivery.handler());
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  const auto old_lease = waiter->lease_id();
  ASSERT_TRUE(holder->revoke_lease(old_lease));
  ASSERT_TRUE(eventually([&] { return waiter->lease_id() != old_lease && entries("x") == 2; }));
  EXPECT_FALSE(delivery.wait(200ms));
  held->unlock();
  ASSERT_TRUE(delivery.wait());
  EXPECT_FALSE(delivery.error()) << delivery.error().message();
  auto hold = delivery.take();
  EXPECT_TRUE(hold.held());
  hold.release();
  EXPECT_EQ(entries("x"), 0);
}

}  // namespace
}  // namespace etcdlock::testing
