// Lock's asynchronous acquisition (Lock::async_lock, LockHold): holds as
// objects released from any thread, waits that no thread makes, cancellation
// and deadlines that leave no key, FIFO with this process's blocking holders,
// and what closing does to pending waits.
#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "delivery.h"
#include "lock_fixture.h"
#include "queue/primitive_context.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

using Delivery = etcdlock::testing::Delivery<LockHold>;

std::size_t thread_count() {
  std::size_t count = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
  }
  return count;
}

class AsyncLock : public LockTest {};

TEST_F(AsyncLock, HoldIsAnObjectThatAnotherThreadReleases) {
  auto manager = this->manager();
  auto lock = manager->get_lock("jobs");
  Delivery delivery;
  lock->async_lock(delivery.handler());
  ASSERT_TRUE(delivery.wait());
  ASSERT_FALSE(delivery.error()) << delivery.error().message();
  EXPECT_NE(delivery.thread(), std::this_thread::get_id());
  auto hold = delivery.take();
  ASSERT_TRUE(hold);
  EXPECT_TRUE(hold.held());
  EXPECT_EQ(hold.name(), "jobs");
  const auto stored = get(raw_, hold.key());
  ASSERT_EQ(stored.kvs_size(), 1);
  EXPECT_EQ(hold.fencing_token(), stored.kvs(0).create_revision());
  EXPECT_TRUE(lock->held());
  EXPECT_FALSE(lock->held_by_this_thread());
  // Lock::unlock() is a thread's: this thread holds nothing.
  std::error_code ec;
  lock->unlock(ec);
  EXPECT_EQ(ec, errc::lock_not_held);
  EXPECT_TRUE(hold.guarded_put(prefix_ + "-data/x", "1"));
  std::thread([&] { hold.release(ec); }).join();
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(hold);
  EXPECT_FALSE(lock->held());
  EXPECT_EQ(entries("jobs"), 0);
  hold.release(ec);
  EXPECT_EQ(ec, errc::lock_not_held);
  EXPECT_THROW((void)hold.guarded_put(prefix_ + "-data/x", "2"), Error);
}

TEST_F(AsyncLock, WaitsBehindAnotherManagerAndGetsTheLockWhenItIsReleased) {
  auto first = manager();
  auto second = manager();
  auto held = first->get_lock("jobs");
  held->lock();
  const auto first_token = held->fencing_token();
  Delivery delivery;
  second->get_lock("jobs")->async_lock(delivery.handler());
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));
  EXPECT_FALSE(delivery.wait(300ms));
  held->unlock();
  ASSERT_TRUE(delivery.wait());
  ASSERT_FALSE(delivery.error()) << delivery.error().message();
  auto hold = delivery.take();
  EXPECT_GT(hold.fencing_token(), first_token);
  EXPECT_FALSE(held->try_lock());
  hold.release();
  EXPECT_EQ(entries("jobs"), 0);
}

// The waiter counts on the holder's note and watches the holder only after
// QueueWait::kPredecessorWatchDelay; a holder deleted without a note before
// then (a force unlock) is seen by that watch, which starts from the
// waiter's read, not from when it is created.
TEST_F(AsyncLock, AWaiterWhoseHolderGoesWithoutANoteIsLetInByItsLaterWatch) {
  auto first = manager();
  auto second = manager();
  auto held = first->get_lock("jobs");
  held->lock();
  Delivery delivery;
  second->get_lock("jobs")->async_lock(delivery.handler());
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));
  ASSERT_TRUE(first->force_unlock("jobs"));
  ASSERT_TRUE(delivery.wait());
  ASSERT_FALSE(delivery.error()) << delivery.error().message();
  auto hold = delivery.take();
  EXPECT_FALSE(held->held());
  hold.release();
  std::error_code ec;
  held->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_EQ(entries("jobs"), 0);
}

TEST_F(AsyncLock, CancelledWaitGetsCancelledAndLeavesNoKey) {
  auto first = manager();
  auto second = manager();
  auto held = first->get_lock("jobs");
  held->lock();
  std::stop_source cancel;
  Delivery delivery;
  second->get_lock("jobs")->async_lock(delivery.handler(), cancel.get_token());
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));
  cancel.request_stop();
  ASSERT_TRUE(delivery.wait());
  EXPECT_EQ(delivery.error(), errc::cancelled);
  EXPECT_FALSE(delivery.take());
  // The entry went before the handler was called.
  EXPECT_EQ(entries("jobs"), 1);
  held->unlock();
  EXPECT_EQ(entries("jobs"), 0);
}

TEST_F(AsyncLock, DeadlineGivesLockTimeoutAndLeavesNoKey) {
  auto first = manager();
  auto second = manager();
  auto held = first->get_lock("jobs");
  held->lock();
  Delivery delivery;
  const auto started = std::chrono::steady_clock::now();
  second->get_lock("jobs")->async_lock_for(400ms, delivery.handler());
  ASSERT_TRUE(delivery.wait());
  EXPECT_GE(std::chrono::steady_clock::now() - started, 400ms);
  EXPECT_EQ(delivery.error(), errc::lock_timeout);
  EXPECT_EQ(entries("jobs"), 1);
  held->unlock();
}

TEST_F(AsyncLock, ADeadlineThatHasPassedMakesItOneTry) {
  auto first = manager();
  auto second = manager();
  Delivery free;
  first->get_lock("jobs")->async_lock_for(0ms, free.handler());
  ASSERT_TRUE(free.wait());
  ASSERT_FALSE(free.error()) << free.error().message();
  auto hold = free.take();
  EXPECT_TRUE(hold.held());
  Delivery busy;
  second->get_lock("jobs")->async_lock_until(std::chrono::steady_clock::now() - 1s, busy.handler());
  ASSERT_TRUE(busy.wait());
  EXPECT_EQ(busy.error(), errc::lock_timeout);
  EXPECT_EQ(entries("jobs"), 1);
  // Behind a holder of this process: no wait for the turn either.
  Delivery local;
  first->get_lock("jobs")->async_lock_for(0ms, local.handler());
  ASSERT_TRUE(local.wait());
  EXPECT_EQ(local.error(), errc::lock_timeout);
  hold.release();
  EXPECT_EQ(entries("jobs"), 0);
}

TEST_F(AsyncLock, ThreadsAndAsynchronousWaitersOfOneProcessAreServedInOrder) {
  auto manager = this->manager();
  auto lock = manager->get_lock("jobs");
  lock->lock();
  std::mutex mu;
  std::vector<int> order;
  std::vector<std::int64_t> tokens;
  std::vector<std::unique_ptr<Delivery>> deliveries;
  for (int i = 0; i < 3; ++i) {
    deliveries.push_back(std::make_unique<Delivery>());
    lock->async_lock([&, i, handler = deliveries.back()->handler()](std::error_code ec, LockHold hold) {
      {
        std::lock_guard guard(mu);
        order.push_back(i);
        tokens.push_back(hold.fencing_token());
      }
      handler(ec, {});  // the hold goes when this returns
    });
  }
  // A thread that asks after them waits behind them.
  std::promise<void> thread_done;
  std::thread late([&] {
    lock->lock();
    {
      std::lock_guard guard(mu);
      order.push_back(3);
    }
    lock->unlock();
    thread_done.set_value();
  });
  std::this_thread::sleep_for(200ms);
  {
    std::lock_guard guard(mu);
    EXPECT_TRUE(order.empty());
  }
  lock->unlock();
  for (auto& delivery : deliveries) {
    ASSERT_TRUE(delivery->wait());
    EXPECT_FALSE(delivery->error()) << delivery->error().message();
  }
  ASSERT_EQ(thread_done.get_future().wait_for(10s), std::future_status::ready);
  late.join();
  std::lock_guard guard(mu);
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
  ASSERT_EQ(tokens.size(), 3u);
  EXPECT_LT(tokens[0], tokens[1]);
  EXPECT_LT(tokens[1], tokens[2]);
  EXPECT_EQ(entries("jobs"), 0);
}

TEST_F(AsyncLock, ALostHoldRequestsItsTokenAndItsReleaseSaysExpired) {
  auto holder = manager();
  auto admin = manager();
  Delivery delivery;
  holder->get_lock("jobs")->async_lock(delivery.handler());
  ASSERT_TRUE(delivery.wait());
  auto hold = delivery.take();
  ASSERT_TRUE(hold);
  std::atomic<bool> signalled{false};
  std::stop_callback on_loss(hold.lost_token(), [&] { signalled = true; });
  ASSERT_TRUE(admin->force_unlock("jobs"));
  ASSERT_TRUE(eventually([&] { return signalled.load(); }));
  EXPECT_TRUE(hold.lost());
  EXPECT_FALSE(hold.held());
  EXPECT_EQ(hold.fencing_token(), 0);
  EXPECT_FALSE(hold.guarded_put(prefix_ + "-data/x", "stale"));
  std::error_code ec;
  hold.release(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  // The lock is free for the next holder of this process.
  Delivery next;
  holder->get_lock("jobs")->async_lock(next.handler());
  ASSERT_TRUE(next.wait());
  EXPECT_FALSE(next.error()) << next.error().message();
}

TEST_F(AsyncLock, CloseEndsEveryPendingWaitWithClosed) {
  auto first = manager();
  auto second = manager();
  auto held = first->get_lock("jobs");
  held->lock();
  std::vector<std::unique_ptr<Delivery>> deliveries;
  auto lock = second->get_lock("jobs");
  for (int i = 0; i < 3; ++i) {
    deliveries.push_back(std::make_unique<Delivery>());
    lock->async_lock(deliveries.back()->handler());
  }
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));
  second->close();
  for (auto& delivery : deliveries) {
    ASSERT_TRUE(delivery->wait());
    EXPECT_EQ(delivery->error(), errc::closed);
  }
  EXPECT_EQ(entries("jobs"), 1);  // closing revoked the lease of the waiting entry
  Delivery after;
  lock->async_lock(after.handler());
  ASSERT_TRUE(after.wait());
  EXPECT_EQ(after.error(), errc::closed);
}

TEST_F(AsyncLock, AHandlerMayDestroyTheManager) {
  auto manager = std::shared_ptr<LockManager>(this->manager());
  auto lock = manager->get_lock("jobs");
  std::promise<std::error_code> released;
  lock->async_lock([manager = std::move(manager), &released](std::error_code ec, LockHold hold) mutable {
    EXPECT_FALSE(ec) << ec.message();
    hold.release(ec);
    manager.reset();  // the last reference: closes the manager from its own notifier thread
    released.set_value(ec);
  });
  lock.reset();
  auto result = released.get_future();
  ASSERT_EQ(result.wait_for(20s), std::future_status::ready);
  EXPECT_FALSE(result.get());
  EXPECT_EQ(entries("jobs"), 0);
}

TEST_F(AsyncLock, PendingWaitsCostNoThreads) {
  auto holder = manager();
  auto waiter = manager();
  constexpr int kNames = 100;
  constexpr int kOnOneName = 500;
  std::vector<std::shared_ptr<Lock>> held;
  for (int i = 0; i < kNames; ++i) {
    held.push_back(holder->get_lock("n" + std::to_string(i)));
    held.back()->lock();
  }
  // One waiter first, so that the manager's threads are all started.
  Delivery warm;
  waiter->get_lock("warm")->async_lock(warm.handler());
  ASSERT_TRUE(warm.wait());
  warm.take().release();
  const auto threads_before = thread_count();
  std::atomic<int> delivered{0};
  std::atomic<int> failed{0};
  const auto count = [&](std::error_code ec, LockHold) {
    if (ec) ++failed;
    ++delivered;  // the hold goes at once: the next in line gets it
  };
  for (int i = 0; i < kNames; ++i) waiter->get_lock("n" + std::to_string(i))->async_lock(count);
  auto one_name = waiter->get_lock("n0");
  for (int i = 0; i < kOnOneName; ++i) one_name->async_lock(count);
  ASSERT_TRUE(eventually([&] { return all_keys() == 2 * kNames; }));
  EXPECT_EQ(delivered.load(), 0);
  // The steps may have spread over the manager's few step threads while
  // their requests were out (a fixed limit), and one more may come and go.
  EXPECT_LE(thread_count(), threads_before + detail::PrimitiveContext::kStepThreads)
      << "threads grew with pending waits";
  for (auto& lock : held) lock->unlock();
  // One name's waiters take turns one after another: slow under a sanitizer.
  ASSERT_TRUE(eventually([&] { return delivered.load() == kNames + kOnOneName; }, 120s));
  EXPECT_EQ(failed.load(), 0);
  ASSERT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// Semaphore::async_acquire_permit: the same core, without a turn (each permit
// has a key of its own).
class AsyncPermit : public LockTest {};

TEST_F(AsyncPermit, AWaitBeyondTheLimitGetsThePermitWhenOneIsReleased) {
  auto first = manager();
  auto second = manager();
  auto pool = first->get_semaphore("pool", 2);
  std::vector<Permit> held;
  for (int i = 0; i < 2; ++i) {
    std::promise<std::pair<std::error_code, Permit>> got;
    pool->async_acquire_permit([&](std::error_code ec, Permit permit) { got.set_value({ec, std::move(permit)}); });
    auto [ec, permit] = got.get_future().get();
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(permit.held());
    held.push_back(std::move(permit));
  }
  EXPECT_NE(held[0].key(), held[1].key());
  std::promise<std::pair<std::error_code, Permit>> third;
  second->get_semaphore("pool", 2)->async_acquire_permit([&](std::error_code ec, Permit permit) {
    third.set_value({ec, std::move(permit)});
  });
  ASSERT_TRUE(eventually([&] { return entries("pool") == 3; }));
  auto waiting = third.get_future();
  EXPECT_EQ(waiting.wait_for(300ms), std::future_status::timeout);
  std::thread([&] { held[0].release(); }).join();
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  auto [ec, permit] = waiting.get();
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(permit.held());
  EXPECT_GT(permit.fencing_token(), held[1].fencing_token());
  permit.release();
  held[1].release();
  EXPECT_EQ(entries("pool"), 0);
}

TEST_F(AsyncPermit, CancelledAndTimedOutWaitsLeaveNoKey) {
  auto first = manager();
  auto second = manager();
  auto permit = first->get_semaphore("pool", 1)->acquire_permit();
  auto pool = second->get_semaphore("pool", 1);
  std::promise<std::error_code> timed_out;
  pool->async_acquire_permit_for(300ms, [&](std::error_code ec, Permit got) {
    EXPECT_FALSE(got);
    timed_out.set_value(ec);
  });
  EXPECT_EQ(timed_out.get_future().get(), errc::lock_timeout);
  EXPECT_EQ(entries("pool"), 1);
  std::stop_source cancel;
  std::promise<std::error_code> cancelled;
  pool->async_acquire_permit(
      [&](std::error_code ec, Permit got) {
        EXPECT_FALSE(got);
        cancelled.set_value(ec);
      },
      cancel.get_token());
  ASSERT_TRUE(eventually([&] { return entries("pool") == 2; }));
  cancel.request_stop();
  EXPECT_EQ(cancelled.get_future().get(), errc::cancelled);
  EXPECT_EQ(entries("pool"), 1);
  permit.release();
}

// Election::async_campaign: a leadership as an object.
class AsyncElection : public LockTest {};

std::pair<std::error_code, Leadership> campaign_async(Election& election, std::string value,
                                                      std::stop_token cancel = {}) {
  std::promise<std::pair<std::error_code, Leadership>> got;
  election.async_campaign(
      std::move(value),
      [&](std::error_code ec, Leadership leadership) {
        got.set_value({ec, std::move(leadership)});
      },
      std::move(cancel));
  return got.get_future().get();
}

TEST_F(AsyncElection, ACandidateLeadsOnceTheLeaderResignsAndProclaimsAsTheLeader) {
  auto first = manager();
  auto second = manager();
  auto leading = first->get_election("scheduler");
  leading->campaign("first");
  auto election = second->get_election("scheduler");
  auto result = std::async(std::launch::async, [&] { return campaign_async(*election, "second"); });
  ASSERT_TRUE(eventually([&] { return entries("scheduler") == 2; }));
  EXPECT_EQ(result.wait_for(300ms), std::future_status::timeout);
  leading->resign();
  ASSERT_EQ(result.wait_for(10s), std::future_status::ready);
  auto [ec, leadership] = result.get();
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(leadership.is_leader());
  EXPECT_TRUE(election->is_leader());
  EXPECT_EQ(leadership.name(), "scheduler");
  ASSERT_TRUE(leading->leader());
  EXPECT_EQ(leading->leader()->value, "second");
  EXPECT_EQ(leading->leader()->key, leadership.key());
  EXPECT_TRUE(leadership.proclaim("second, again"));
  EXPECT_EQ(leading->leader()->value, "second, again");
  EXPECT_GT(leadership.fencing_token(), 0);
  EXPECT_TRUE(leadership.guarded_put(prefix_ + "-data/x", "1"));
  std::error_code resigned;
  std::thread([&] { leadership.resign(resigned); }).join();
  EXPECT_FALSE(resigned) << resigned.message();
  EXPECT_FALSE(election->is_leader());
  EXPECT_EQ(entries("scheduler"), 0);
}

TEST_F(AsyncElection, ACancelledCampaignLeavesNoKey) {
  auto first = manager();
  auto second = manager();
  auto leading = first->get_election("scheduler");
  leading->campaign("first");
  std::stop_source cancel;
  auto election = second->get_election("scheduler");
  auto result = std::async(std::launch::async, [&] { return campaign_async(*election, "second", cancel.get_token()); });
  ASSERT_TRUE(eventually([&] { return entries("scheduler") == 2; }));
  cancel.request_stop();
  auto [ec, leadership] = result.get();
  EXPECT_EQ(ec, errc::cancelled);
  EXPECT_FALSE(leadership);
  EXPECT_EQ(entries("scheduler"), 1);
  leading->resign();
}

TEST_F(AsyncElection, TheElectionsResignEndsTheLeadershipObjectToo) {
  auto manager = this->manager();
  auto election = manager->get_election("scheduler");
  auto [ec, leadership] = campaign_async(*election, "me");
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(leadership.is_leader());
  election->resign();  // this process's leadership, whoever holds it
  EXPECT_FALSE(leadership.is_leader());
  EXPECT_EQ(leadership.fencing_token(), 0);
  EXPECT_FALSE(leadership.proclaim("stale"));
  EXPECT_FALSE(leadership.guarded_put(prefix_ + "-data/x", "stale"));
  std::error_code resigned;
  leadership.resign(resigned);
  EXPECT_EQ(resigned, errc::lock_not_held);
  EXPECT_EQ(entries("scheduler"), 0);
  // The turn went back with the sync resign: a thread campaigns at once.
  EXPECT_TRUE(election->campaign_for("again", 5s));
  election->resign();
}

// SharedLock::async_lock / async_lock_shared: each hold an entry of its own.
class AsyncSharedLock : public LockTest {};

std::future<std::pair<std::error_code, SharedLockHold>> shared_async(SharedLock& lock, bool shared,
                                                                     std::stop_token cancel = {}) {
  auto got = std::make_shared<std::promise<std::pair<std::error_code, SharedLockHold>>>();
  auto future = got->get_future();
  auto handler = [got](std::error_code ec, SharedLockHold hold) { got->set_value({ec, std::move(hold)}); };
  if (shared) {
    lock.async_lock_shared(handler, std::move(cancel));
  } else {
    lock.async_lock(handler, std::move(cancel));
  }
  return future;
}

TEST_F(AsyncSharedLock, ReadersTogetherAWriterAloneInOrder) {
  auto manager = this->manager();
  auto table = manager->get_shared_lock("table");
  auto [ec1, reader1] = shared_async(*table, true).get();
  auto [ec2, reader2] = shared_async(*table, true).get();
  ASSERT_FALSE(ec1 || ec2);
  EXPECT_TRUE(reader1.held() && reader2.held());
  EXPECT_FALSE(reader1.writing());
  auto writer = shared_async(*table, false);
  ASSERT_TRUE(eventually([&] { return entries("table") == 3; }));
  auto late_reader = shared_async(*table, true);  // behind the writer
  ASSERT_TRUE(eventually([&] { return entries("table") == 4; }));
  EXPECT_EQ(writer.wait_for(200ms), std::future_status::timeout);
  reader1.release();
  std::thread([&] { reader2.release(); }).join();
  ASSERT_EQ(writer.wait_for(10s), std::future_status::ready);
  auto [ec3, writing] = writer.get();
  ASSERT_FALSE(ec3) << ec3.message();
  EXPECT_TRUE(writing.writing());
  EXPECT_TRUE(writing.guarded_put(prefix_ + "-data/x", "written"));
  EXPECT_EQ(late_reader.wait_for(200ms), std::future_status::timeout);
  writing.release();
  ASSERT_EQ(late_reader.wait_for(10s), std::future_status::ready);
  auto [ec4, reading] = late_reader.get();
  ASSERT_FALSE(ec4) << ec4.message();
  EXPECT_GT(reading.fencing_token(), 0);
  reading.release();
  EXPECT_EQ(entries("table"), 0);
}

TEST_F(AsyncSharedLock, ACancelledWaitLeavesNoKey) {
  auto first = manager();
  auto second = manager();
  auto [ec, writing] = shared_async(*first->get_shared_lock("table"), false).get();
  ASSERT_FALSE(ec);
  std::stop_source cancel;
  auto reader = shared_async(*second->get_shared_lock("table"), true, cancel.get_token());
  ASSERT_TRUE(eventually([&] { return entries("table") == 2; }));
  cancel.request_stop();
  auto [cancelled, none] = reader.get();
  EXPECT_EQ(cancelled, errc::cancelled);
  EXPECT_FALSE(none);
  EXPECT_EQ(entries("table"), 1);
  writing.release();
  EXPECT_EQ(entries("table"), 0);
}

// The CI hang of ACancelledWaitLeavesNoKey (1 run in about 30 under load): a
// reader's watch starts "from now" and, once in place, asks for a read. When
// that request and the cancel came while one step ran, the next step read,
// found the writer still ahead, watched again and waited for a wake-up that
// had already come: the handler never ran. Two spinning threads make the step
// thread lose its core between the two signals, as a loaded machine does.
TEST_F(AsyncSharedLock, ACancelOrDeadlineThatComesWithTheWatchsFirstSignalEndsTheWait) {
  auto first = manager();
  auto second = manager();
  auto [ec, writing] = shared_async(*first->get_shared_lock("table"), false).get();
  ASSERT_FALSE(ec);
  auto table = second->get_shared_lock("table");
  std::atomic<bool> spinning{true};
  std::vector<std::jthread> load;
  for (int i = 0; i < 2; ++i) {
    load.emplace_back([&] {
      while (spinning.load(std::memory_order_relaxed)) {
      }
    });
  }
  const auto stop_load = [&] {
    spinning = false;
    load.clear();
  };
  for (int round = 0; round < 100; ++round) {
    std::stop_source cancel;
    std::future<std::pair<std::error_code, SharedLockHold>> reader;
    if (round % 2 == 0) {
      reader = shared_async(*table, true, cancel.get_token());
      // At once: the step that queued the entry is still under way.
      while (entries("table") < 2) {
      }
      cancel.request_stop();
    } else {
      auto got = std::make_shared<std::promise<std::pair<std::error_code, SharedLockHold>>>();
      reader = got->get_future();
      table->async_lock_shared_until(std::chrono::steady_clock::now() + std::chrono::milliseconds(2 + round % 7),
                                     [got](std::error_code ec, SharedLockHold hold) {
                                       got->set_value({ec, std::move(hold)});
                                     });
    }
    if (reader.wait_for(10s) != std::future_status::ready) {
      stop_load();
      FAIL() << "round " << round << ": no outcome 10 s after the " << (round % 2 == 0 ? "cancel" : "deadline");
    }
    auto [given_up, none] = reader.get();
    EXPECT_EQ(given_up, round % 2 == 0 ? errc::cancelled : errc::lock_timeout) << given_up.message();
    EXPECT_FALSE(none);
    ASSERT_TRUE(eventually([&] { return entries("table") == 1; })) << "round " << round;
  }
  stop_load();
  writing.release();
  EXPECT_EQ(entries("table"), 0);
}

}  // namespace
}  // namespace etcdlock::testing
