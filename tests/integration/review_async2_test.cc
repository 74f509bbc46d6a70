// Adversarial review of the asynchronous acquisitions of Semaphore, Election
// and SharedLock (AsyncAcquisition with and without a turn). A test named
// after a finding fails on the code it was written against; Held_ tests are
// attacks that did not break it.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "etcd/lost_replies.h"
#include "lock_fixture.h"
#include "occupancy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class ReviewAsync2 : public LockTest {};

using Past = std::chrono::steady_clock;

std::pair<std::error_code, Leadership> campaign_async(
    Election& election, std::string value, std::chrono::steady_clock::time_point deadline = Past::time_point::max(),
    std::stop_token cancel = {}) {
  auto got = std::make_shared<std::promise<std::pair<std::error_code, Leadership>>>();
  auto future = got->get_future();
  election.async_campaign_until(
      std::move(value), deadline,
      [got](std::error_code ec, Leadership leadership) {
        got->set_value({ec, std::move(leadership)});
      },
      std::move(cancel));
  if (future.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "the campaign's handler was never called";
    return {};
  }
  return future.get();
}

std::pair<std::error_code, Permit> permit_async(
    Semaphore& semaphore, std::chrono::steady_clock::time_point deadline = Past::time_point::max(),
    std::stop_token cancel = {}) {
  auto got = std::make_shared<std::promise<std::pair<std::error_code, Permit>>>();
  auto future = got->get_future();
  semaphore.async_acquire_permit_until(
      deadline,
      [got](std::error_code ec, Permit permit) {
        got->set_value({ec, std::move(permit)});
      },
      std::move(cancel));
  if (future.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "the permit's handler was never called";
    return {};
  }
  return future.get();
}

std::pair<std::error_code, SharedLockHold> shared_async(
    SharedLock& lock, bool shared, std::chrono::steady_clock::time_point deadline = Past::time_point::max(),
    std::stop_token cancel = {}) {
  auto got = std::make_shared<std::promise<std::pair<std::error_code, SharedLockHold>>>();
  auto future = got->get_future();
  auto handler = [got](std::error_code ec, SharedLockHold hold) { got->set_value({ec, std::move(hold)}); };
  if (shared) {
    lock.async_lock_shared_until(deadline, handler, std::move(cancel));
  } else {
    lock.async_lock_until(deadline, handler, std::move(cancel));
  }
  if (future.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "the shared lock's handler was never called";
    return {};
  }
  return future.get();
}

// The semaphore's limit check through the asynchronous path: a different
// limit in etcd is refused, and the attempt leaves no key.
TEST_F(ReviewAsync2, Held_AsyncPermitWithAnotherLimitIsRefusedAndLeavesNoKey) {
  auto first = manager();
  auto second = manager();
  auto held = first->get_semaphore("pool", 2)->acquire_permit();
  auto [ec, permit] = permit_async(*second->get_semaphore("pool", 3));
  EXPECT_EQ(ec, errc::invalid_argument) << ec.message();
  EXPECT_FALSE(permit);
  EXPECT_TRUE(eventually([&] { return entries("pool") == 1; }));
  held.release();
}

// A deadline already passed makes one try on each primitive: refused while
// another process holds, and no key left behind.
TEST_F(ReviewAsync2, Held_ATryOnEachPrimitiveIsOneTryAndLeavesNoKey) {
  auto first = manager();
  auto second = manager();
  const auto past = Past::now() - 1s;
  auto permit = first->get_semaphore("pool", 1)->acquire_permit();
  auto leader = first->get_election("vote");
  leader->campaign("first");
  auto writer = first->get_shared_lock("rw");
  writer->lock();
  const auto start = Past::now();
  {
    auto [ec, got] = permit_async(*second->get_semaphore("pool", 1), past);
    EXPECT_EQ(ec, errc::lock_timeout) << ec.message();
    EXPECT_FALSE(got);
  }
  {
    auto [ec, got] = campaign_async(*second->get_election("vote"), "second", past);
    EXPECT_EQ(ec, errc::lock_timeout) << ec.message();
    EXPECT_FALSE(got);
  }
  {
    auto [ec, got] = shared_async(*second->get_shared_lock("rw"), true, past);
    EXPECT_EQ(ec, errc::lock_timeout) << ec.message();
    EXPECT_FALSE(got);
  }
  EXPECT_LT(Past::now() - start, 6s);
  EXPECT_TRUE(eventually([&] { return entries("pool") == 1 && entries("vote") == 1 && entries("rw") == 1; }));
  // And a try that can succeed does, even with its deadline passed.
  permit.release();
  auto [ec, got] = permit_async(*second->get_semaphore("pool", 1), past);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_TRUE(got.held());
  leader->resign();
  writer->unlock();
}

// Election::resign() on one thread racing Leadership::resign() on another:
// exactly one of them gives the turn back, so the next campaign (blocking)
// gets in, and no key is left.
TEST_F(ReviewAsync2, Held_ElectionResignRacingLeadershipResignGivesTheTurnBackOnce) {
  auto manager = this->manager();
  auto election = manager->get_election("vote");
  for (int i = 0; i < 20; ++i) {
    auto [ec, leadership] = campaign_async(*election, "async");
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(leadership.is_leader());
    std::atomic<bool> go{false};
    std::thread a([&] {
      while (!go) {
      }
      election->resign();
    });
    std::thread b([&] {
      while (!go) {
      }
      leadership.resign();
    });
    go = true;
    a.join();
    b.join();
    EXPECT_FALSE(election->is_leader());
    ASSERT_TRUE(election->campaign_for("sync", 5s)) << "the turn was not given back (round " << i << ")";
    election->resign();
    ASSERT_TRUE(eventually([&] { return entries("vote") == 0; })) << "round " << i;
  }
}

// A blocking campaign() while an asynchronous Leadership is held waits
// behind it, and gets in once it is resigned; the stale Leadership cannot
// end the new one (same lease, same key).
TEST_F(ReviewAsync2, Held_BlockingCampaignWaitsBehindALeadershipAndTheStaleOneCannotEndIt) {
  auto manager = this->manager();
  auto election = manager->get_election("vote");
  auto [ec, leadership] = campaign_async(*election, "async");
  ASSERT_FALSE(ec) << ec.message();
  const auto first_token = leadership.fencing_token();
  auto blocked = std::async(std::launch::async, [&] { return election->campaign_for("sync", 10s); });
  EXPECT_EQ(blocked.wait_for(300ms), std::future_status::timeout);
  election->resign();  // ends the Leadership; the blocked thread gets in
  ASSERT_TRUE(blocked.get());
  EXPECT_TRUE(election->is_leader());
  EXPECT_FALSE(leadership.is_leader());
  EXPECT_FALSE(leadership.proclaim("stale"));
  EXPECT_FALSE(leadership.guarded_put(prefix_ + "-data/x", "stale"));
  std::error_code resigned;
  leadership.resign(resigned);
  EXPECT_EQ(resigned, errc::lock_not_held);
  EXPECT_TRUE(election->is_leader());
  EXPECT_EQ(entries("vote"), 1);
  ASSERT_TRUE(election->leader());
  EXPECT_EQ(election->leader()->value, "sync");
  EXPECT_GT(election->fencing_token(), first_token);
  election->resign();
}

// Cancelling a campaign as the leadership comes to it: whatever the outcome,
// the turn comes back and no key is left.
TEST_F(ReviewAsync2, Held_CancelRacingTheGrantOfALeadershipLeavesNothing) {
  auto first = manager();
  auto second = manager();
  auto leading = first->get_election("vote");
  auto election = second->get_election("vote");
  for (int i = 0; i < 15; ++i) {
    leading->campaign("first");
    std::stop_source cancel;
    auto got = std::make_shared<std::promise<std::pair<std::error_code, Leadership>>>();
    auto future = got->get_future();
    election->async_campaign(
        "second",
        [got](std::error_code ec, Leadership leadership) {
          got->set_value({ec, std::move(leadership)});
        },
        cancel.get_token());
    ASSERT_TRUE(eventually([&] { return entries("vote") == 2; }));
    std::thread resigner([&] { leading->resign(); });
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (i % 8)));
    cancel.request_stop();
    resigner.join();
    ASSERT_EQ(future.wait_for(20s), std::future_status::ready) << "round " << i;
    auto [ec, leadership] = future.get();
    leadership.resign();
    ASSERT_TRUE(election->campaign_for("sync", 5s)) << "round " << i;
    election->resign();
    ASSERT_TRUE(eventually([&] { return entries("vote") == 0; })) << "round " << i;
  }
}

// Permits in one process, async and blocking mixed, never exceed the limit.
TEST_F(ReviewAsync2, Held_AsyncAndBlockingPermitsNeverExceedTheLimit) {
  auto first = manager();
  auto second = manager();
  Occupancy holding;
  std::atomic<int> done{0};
  constexpr int kRounds = 6;
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<std::function<void(int)>>> chains;
  for (auto* manager : {first.get(), second.get()}) {
    threads.emplace_back([&, manager] {
      auto pool = manager->get_semaphore("pool", 2);
      for (int i = 0; i < kRounds; ++i) {
        auto permit = pool->acquire_permit();
        holding.enter();
        std::this_thread::sleep_for(20ms);
        holding.leave();
        permit.release();
      }
    });
    // An async chain: each handler holds, releases, and asks again.
    auto pool = manager->get_semaphore("pool", 2);
    auto chain = std::make_shared<std::function<void(int)>>();
    *chain = [&, pool, chain_weak = std::weak_ptr<std::function<void(int)>>(chain)](int left) {
      pool->async_acquire_permit([&, left, chain_weak](std::error_code ec, Permit permit) {
        if (ec) {
          ADD_FAILURE() << ec.message();
          ++done;
          return;
        }
        holding.enter();
        std::this_thread::sleep_for(20ms);
        holding.leave();
        permit.release();
        if (left > 1) {
          if (auto next = chain_weak.lock()) return (*next)(left - 1);
        }
        ++done;
      });
    };
    chains.push_back(chain);
    (*chain)(kRounds);
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(eventually([&] { return done == 2; }, 60s));
  EXPECT_LE(holding.most(), 2);
  EXPECT_TRUE(eventually([&] { return entries("pool") == 0; }));
}

// close() racing the steps of pending waits on every primitive: every
// handler is called, and nothing of the closed manager is left in etcd.
TEST_F(ReviewAsync2, Held_CloseRacingPendingWaitsLeavesNoKeyAndCallsEveryHandler) {
  auto holder = manager();
  auto permit = holder->get_semaphore("pool", 1)->acquire_permit();
  auto leader = holder->get_election("vote");
  leader->campaign("holder");
  auto writer = holder->get_shared_lock("rw");
  writer->lock();
  for (int round = 0; round < 8; ++round) {
    auto manager = this->manager();
    std::atomic<int> called{0};
    std::vector<Leadership> kept_leaderships;
    std::mutex kept_mu;
    const int kEach = 4;
    for (int i = 0; i < kEach; ++i) {
      manager->get_semaphore("pool", 1)->async_acquire_permit([&](std::error_code, Permit) { ++called; });
      manager->get_election("vote")->async_campaign("x", [&](std::error_code, Leadership l) {
        std::lock_guard lock(kept_mu);
        kept_leaderships.push_back(std::move(l));
        ++called;
      });
      manager->get_shared_lock("rw")->async_lock_shared([&](std::error_code, SharedLockHold) { ++called; });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * round));
    manager->close();
    EXPECT_TRUE(eventually([&] { return called == 3 * kEach; })) << "round " << round << ": " << called;
    EXPECT_TRUE(eventually([&] { return entries("pool") == 1 && entries("vote") == 1 && entries("rw") == 1; }))
        << "round " << round << ": " << entries("pool") << " " << entries("vote") << " " << entries("rw");
    std::lock_guard lock(kept_mu);
    kept_leaderships.clear();
  }
  permit.release();
  leader->resign();
  writer->unlock();
}

// Holds given up after their manager closed: no hang, no crash, no key.
TEST_F(ReviewAsync2, Held_HoldsReleasedAfterTheirManagerClosed) {
  auto manager = this->manager();
  auto [pe, permit] = permit_async(*manager->get_semaphore("pool", 2));
  auto [le, leadership] = campaign_async(*manager->get_election("vote"), "me");
  auto [se, shared] = shared_async(*manager->get_shared_lock("rw"), false);
  ASSERT_FALSE(pe || le || se);
  manager->close();
  EXPECT_TRUE(permit.lost_token().stop_requested());
  EXPECT_TRUE(leadership.lost_token().stop_requested());
  EXPECT_TRUE(shared.lost_token().stop_requested());
  auto released = std::async(std::launch::async, [&] {
    permit.release();
    leadership.resign();
    shared.release();
  });
  EXPECT_EQ(released.wait_for(10s), std::future_status::ready);
  manager.reset();
  EXPECT_EQ(all_keys(), 0);
}

// A handler that destroys its manager (and the primitive) while it holds.
TEST_F(ReviewAsync2, Held_ACampaignHandlerMayDestroyTheManagerAndTheElection) {
  auto manager = this->manager();
  auto election = manager->get_election("vote");
  std::promise<bool> leading;
  election->async_campaign("me", [&](std::error_code ec, Leadership leadership) {
    const bool was = !ec && leadership.is_leader();
    election.reset();
    manager.reset();  // closes: the leadership is lost
    leading.set_value(was && leadership.lost());
  });
  auto future = leading.get_future();
  ASSERT_EQ(future.wait_for(20s), std::future_status::ready);
  EXPECT_TRUE(future.get());
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

}  // namespace
}  // namespace etcdlock::testing

namespace etcdlock::testing {
namespace {

using detail::etcd::LostReplies;
namespace write_site = detail::etcd::write_site;

// An asynchronous permit wait whose enqueue commits while its reply is
// lost (the matrix has no async permit row): it still waits its turn, the
// limit holds, and nothing is left once it is released.
TEST_F(ReviewAsync2, Held_AsyncPermitWhoseEnqueueReplyIsLostKeepsTheLimit) {
  auto first = manager();
  auto second = manager();
  auto third = manager();
  auto held = first->get_semaphore("pool", 1)->acquire_permit();
  LostReplies::arm(write_site::enqueue, prefix_ + "/pool/");
  auto got = std::make_shared<std::promise<std::pair<std::error_code, Permit>>>();
  second->get_semaphore("pool", 1)->async_acquire_permit([got](std::error_code ec, Permit permit) {
    got->set_value({ec, std::move(permit)});
  });
  ASSERT_TRUE(eventually([&] { return LostReplies::dropped(write_site::enqueue) >= 1; }));
  LostReplies::disarm();
  auto future = got->get_future();
  EXPECT_EQ(future.wait_for(500ms), std::future_status::timeout);
  EXPECT_FALSE(third->get_semaphore("pool", 1)->try_acquire_permit());
  held.release();
  ASSERT_EQ(future.wait_for(20s), std::future_status::ready);
  auto [ec, permit] = future.get();
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_TRUE(permit.held());
  EXPECT_FALSE(third->get_semaphore("pool", 1)->try_acquire_permit());
  EXPECT_EQ(entries("pool"), 1);
  permit.release();
  EXPECT_TRUE(eventually([&] { return entries("pool") == 0; }));
  EXPECT_TRUE(third->get_semaphore("pool", 1)->try_acquire_permit());
}

// Election::resign() whose delete commits while its reply is lost, ending
// an asynchronous Leadership, while a thread of the same process waits in
// campaign() and another process waits in an async campaign: never two
// leaders, the Leadership's lost token fires, and the blocked thread leads
// after the other process resigns.
TEST_F(ReviewAsync2, Held_LostResignReplyEndingALeadershipAdmitsOneLeader) {
  auto first = manager();
  auto second = manager();
  auto election = first->get_election("vote");
  auto other = second->get_election("vote");
  auto [ec, leadership] = campaign_async(*election, "async");
  ASSERT_FALSE(ec) << ec.message();
  auto other_got = std::make_shared<std::promise<std::pair<std::error_code, Leadership>>>();
  other->async_campaign("other", [other_got](std::error_code e, Leadership l) {
    other_got->set_value({e, std::move(l)});
  });
  ASSERT_TRUE(eventually([&] { return entries("vote") == 2; }));
  auto blocked = std::async(std::launch::async, [&] { return election->campaign_for("sync", 15s); });
  std::atomic<bool> stop{false};
  std::atomic<int> both{0};
  std::thread sampler([&] {
    while (!stop) {
      if (election->is_leader() && other->is_leader()) ++both;
      std::this_thread::sleep_for(1ms);
    }
  });
  LostReplies::arm(write_site::resign, prefix_ + "/vote/");
  election->resign();
  LostReplies::disarm();
  EXPECT_TRUE(eventually([&] { return leadership.lost_token().stop_requested(); }));
  auto other_future = other_got->get_future();
  ASSERT_EQ(other_future.wait_for(10s), std::future_status::ready);
  auto [oec, other_leadership] = other_future.get();
  ASSERT_FALSE(oec) << oec.message();
  EXPECT_EQ(blocked.wait_for(500ms), std::future_status::timeout);
  other_leadership.resign();
  EXPECT_TRUE(blocked.get());
  stop = true;
  sampler.join();
  EXPECT_EQ(both, 0);
  election->resign();
  EXPECT_TRUE(eventually([&] { return entries("vote") == 0; }));
}

}  // namespace
}  // namespace etcdlock::testing

namespace etcdlock::testing {
namespace {

// Many asynchronous chains and blocking threads in two managers on one
// read-write lock: a writer is always alone.
TEST_F(ReviewAsync2, Held_AsyncAndBlockingSharedLockHoldersExcludeWriters) {
  auto first = manager();
  auto second = manager();
  std::atomic<int> readers{0};
  std::atomic<int> writers{0};
  std::atomic<int> violations{0};
  std::atomic<int> chains_done{0};
  const auto enter = [&](bool write) {
    if (write) {
      if (++writers != 1 || readers != 0) ++violations;
    } else {
      ++readers;
      if (writers != 0) ++violations;
    }
  };
  const auto leave = [&](bool write) { write ? --writers : --readers; };
  constexpr int kRounds = 5;
  constexpr int kChainsPerManager = 4;
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<std::function<void(int)>>> chains;
  int chain_index = 0;
  for (auto* manager : {first.get(), second.get()}) {
    auto rw = manager->get_shared_lock("rw");
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, rw, t] {
        for (int i = 0; i < kRounds; ++i) {
          const bool write = (i + t) % 2 == 0;
          if (write) {
            rw->lock();
          } else {
            rw->lock_shared();
          }
          enter(write);
          std::this_thread::sleep_for(5ms);
          leave(write);
          if (write) {
            rw->unlock();
          } else {
            rw->unlock_shared();
          }
        }
      });
    }
    for (int c = 0; c < kChainsPerManager; ++c) {
      auto chain = std::make_shared<std::function<void(int)>>();
      const int index = chain_index++;
      *chain = [&, rw, index, weak = std::weak_ptr<std::function<void(int)>>(chain)](int left) {
        const bool write = (left + index) % 3 == 0;
        auto handler = [&, write, left, weak](std::error_code ec, SharedLockHold hold) {
          if (ec) {
            ADD_FAILURE() << ec.message();
            ++chains_done;
            return;
          }
          enter(write);
          std::this_thread::sleep_for(5ms);
          leave(write);
          hold.release();
          if (left > 1) {
            if (auto next = weak.lock()) return (*next)(left - 1);
          }
          ++chains_done;
        };
        if (write) {
          rw->async_lock(handler);
        } else {
          rw->async_lock_shared(handler);
        }
      };
      chains.push_back(chain);
    }
  }
  for (auto& chain : chains) (*chain)(kRounds);
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(eventually([&] { return chains_done == 2 * kChainsPerManager; }, 90s)) << chains_done;
  EXPECT_EQ(violations, 0);
  EXPECT_TRUE(eventually([&] { return entries("rw") == 0; }));
}

// Two processes campaign asynchronously and by a blocking thread each; each
// leader resigns after a moment: never two leaders at once.
TEST_F(ReviewAsync2, Held_AsyncAndBlockingCampaignsNeverMakeTwoLeaders) {
  auto first = manager();
  auto second = manager();
  Occupancy leading;
  std::atomic<int> chains_done{0};
  constexpr int kRounds = 4;
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<std::function<void(int)>>> chains;
  for (auto* manager : {first.get(), second.get()}) {
    auto election = manager->get_election("vote");
    threads.emplace_back([&, election] {
      for (int i = 0; i < kRounds; ++i) {
        election->campaign("sync");
        leading.enter();
        std::this_thread::sleep_for(5ms);
        leading.leave();
        election->resign();
      }
    });
    for (int c = 0; c < 2; ++c) {
      auto chain = std::make_shared<std::function<void(int)>>();
      *chain = [&, election, weak = std::weak_ptr<std::function<void(int)>>(chain)](int left) {
        election->async_campaign("async", [&, left, weak](std::error_code ec, Leadership leadership) {
          if (ec) {
            ADD_FAILURE() << ec.message();
            ++chains_done;
            return;
          }
          leading.enter();
          std::this_thread::sleep_for(5ms);
          leading.leave();
          leadership.resign();
          if (left > 1) {
            if (auto next = weak.lock()) return (*next)(left - 1);
          }
          ++chains_done;
        });
      };
      chains.push_back(chain);
    }
  }
  for (auto& chain : chains) (*chain)(kRounds);
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(eventually([&] { return chains_done == 4; }, 90s)) << chains_done;
  EXPECT_LE(leading.most(), 1);
  EXPECT_TRUE(eventually([&] { return entries("vote") == 0; }));
}

}  // namespace
}  // namespace etcdlock::testing

namespace etcdlock::testing {
namespace {

// A permit's handler destroys the manager (and the semaphore) while other
// waits of that manager are pending: each of those still gets its handler
// (closed), and nothing is left in etcd.
TEST_F(ReviewAsync2, Held_APermitHandlerMayDestroyTheManagerWithOtherWaitsPending) {
  auto holder = this->manager();
  auto manager = this->manager();
  auto held = holder->get_semaphore("pool", 2)->acquire_permit();
  auto held2 = holder->get_semaphore("pool", 2)->acquire_permit();
  auto pool = manager->get_semaphore("pool", 2);
  std::atomic<int> closed{0};
  std::atomic<int> others{0};
  constexpr int kPending = 5;
  for (int i = 0; i < kPending; ++i) {
    pool->async_acquire_permit([&](std::error_code ec, Permit) { ec == errc::closed ? ++closed : ++others; });
  }
  ASSERT_TRUE(eventually([&] { return entries("pool") == 2 + kPending; }));
  // A write lock of the same manager is admitted at once, and its handler closes.
  std::promise<bool> destroyed;
  auto rw = manager->get_shared_lock("rw");
  rw->async_lock([&](std::error_code ec, SharedLockHold hold) {
    const bool ok = !ec && hold.held();
    pool.reset();
    rw.reset();
    manager.reset();
    destroyed.set_value(ok && hold.lost());
  });
  auto future = destroyed.get_future();
  ASSERT_EQ(future.wait_for(20s), std::future_status::ready);
  EXPECT_TRUE(future.get());
  EXPECT_TRUE(eventually([&] { return closed + others == kPending; })) << closed << " " << others;
  EXPECT_EQ(others, 0);
  EXPECT_TRUE(eventually([&] { return entries("pool") == 2 && entries("rw") == 0; }));
  held.release();
  held2.release();
}

}  // namespace
}  // namespace etcdlock::testing

namespace etcdlock::testing {
namespace {

// Cancelling permit and read-lock waits as the holder ahead releases: a
// permit delivered is within the limit, a cancelled wait leaves no key.
TEST_F(ReviewAsync2, Held_CancelRacingTheGrantOfAPermitOrAReadLockLeavesNothing) {
  auto first = manager();
  auto second = manager();
  auto pool_ahead = first->get_semaphore("pool", 1);
  auto rw_ahead = first->get_shared_lock("rw");
  auto pool = second->get_semaphore("pool", 1);
  auto rw = second->get_shared_lock("rw");
  for (int i = 0; i < 12; ++i) {
    auto permit = pool_ahead->acquire_permit();
    auto [wec, writer] = shared_async(*rw_ahead, false);  // releasable from any thread
    ASSERT_FALSE(wec) << wec.message();
    std::stop_source cancel;
    auto got_permit = std::make_shared<std::promise<std::pair<std::error_code, Permit>>>();
    auto got_read = std::make_shared<std::promise<std::pair<std::error_code, SharedLockHold>>>();
    pool->async_acquire_permit(
        [got_permit](std::error_code ec, Permit p) {
          got_permit->set_value({ec, std::move(p)});
        },
        cancel.get_token());
    rw->async_lock_shared(
        [got_read](std::error_code ec, SharedLockHold h) {
          got_read->set_value({ec, std::move(h)});
        },
        cancel.get_token());
    ASSERT_TRUE(eventually([&] { return entries("pool") == 2 && entries("rw") == 2; }));
    std::thread releaser([&] {
      permit.release();
      writer.release();
    });
    std::this_thread::sleep_for(std::chrono::microseconds(300 * (i % 6)));
    cancel.request_stop();
    releaser.join();
    auto fp = got_permit->get_future();
    auto fr = got_read->get_future();
    ASSERT_EQ(fp.wait_for(20s), std::future_status::ready) << "round " << i;
    ASSERT_EQ(fr.wait_for(20s), std::future_status::ready) << "round " << i;
    auto [pec, p] = fp.get();
    auto [rec, r] = fr.get();
    EXPECT_TRUE(!pec || pec == errc::cancelled) << pec.message();
    EXPECT_TRUE(!rec || rec == errc::cancelled) << rec.message();
    EXPECT_EQ(bool(p), !pec);
    EXPECT_EQ(bool(r), !rec);
    if (p) {
      EXPECT_FALSE(pool_ahead->try_acquire_permit()) << "round " << i;
    }
    if (r) {
      EXPECT_FALSE(rw_ahead->try_lock()) << "round " << i;
    }
    p.release();
    r.release();
    ASSERT_TRUE(eventually([&] { return entries("pool") == 0 && entries("rw") == 0; }))
        << "round " << i << ": " << entries("pool") << " " << entries("rw");
  }
}

// close() while a thread is blocked in campaign() behind an asynchronous
// Leadership: close() returns, the thread gets closed, the leadership is lost.
TEST_F(ReviewAsync2, Held_CloseWakesACampaignBlockedBehindALeadership) {
  auto manager = this->manager();
  auto election = manager->get_election("vote");
  auto [ec, leadership] = campaign_async(*election, "async");
  ASSERT_FALSE(ec) << ec.message();
  auto blocked = std::async(std::launch::async, [&]() -> std::error_code {
    try {
      election->campaign("sync");
      return {};
    } catch (const Error& error) {
      return error.code();
    }
  });
  EXPECT_EQ(blocked.wait_for(300ms), std::future_status::timeout);
  auto closing = std::async(std::launch::async, [&] { manager->close(); });
  ASSERT_EQ(closing.wait_for(15s), std::future_status::ready);
  ASSERT_EQ(blocked.wait_for(15s), std::future_status::ready);
  EXPECT_EQ(blocked.get(), errc::closed);
  EXPECT_TRUE(leadership.lost());
  leadership.resign();
  EXPECT_EQ(entries("vote"), 0);
}

// Leadership::proclaim() racing Election::resign() while a thread waits in
// campaign() (same lease, hence the same key once resigned): the stale
// proclaim never overwrites the new leader's value.
TEST_F(ReviewAsync2, Held_AStaleProclaimRacingResignNeverOverwritesTheNextLeader) {
  auto manager = this->manager();
  auto election = manager->get_election("vote");
  for (int i = 0; i < 15; ++i) {
    auto [ec, leadership] = campaign_async(*election, "async");
    ASSERT_FALSE(ec) << ec.message();
    auto blocked = std::async(std::launch::async, [&] { return election->campaign_for("sync", 10s); });
    std::this_thread::sleep_for(20ms);
    std::atomic<bool> go{false};
    std::thread proclaimer([&] {
      while (!go) {
      }
      for (int k = 0; k < 20; ++k) {
        try {
          if (!leadership.proclaim("stale")) break;
        } catch (const Error&) {
        }
      }
    });
    go = true;
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (i % 5)));
    election->resign();
    proclaimer.join();
    ASSERT_TRUE(blocked.get());
    ASSERT_TRUE(election->leader());
    EXPECT_EQ(election->leader()->value, "sync") << "round " << i;
    EXPECT_FALSE(leadership.is_leader());
    election->resign();
    leadership.resign();
    ASSERT_TRUE(eventually([&] { return entries("vote") == 0; }));
  }
}

}  // namespace
}  // namespace etcdlock::testing

namespace etcdlock::testing {
namespace {

// An asynchronous try (deadline passed) on an election whose turn this
// process's Leadership holds, with a thread blocked in campaign() behind it:
// the try ends at once without the turn, and the thread still comes next.
TEST_F(ReviewAsync2, Held_AnAsyncTryBehindALeadershipWithdrawsAndKeepsTheOrder) {
  auto manager = this->manager();
  auto election = manager->get_election("vote");
  auto [ec, leadership] = campaign_async(*election, "async");
  ASSERT_FALSE(ec) << ec.message();
  auto blocked = std::async(std::launch::async, [&] { return election->campaign_for("sync", 10s); });
  std::this_thread::sleep_for(100ms);
  const auto start = Past::now();
  auto [tec, tried] = campaign_async(*election, "try", Past::now() - 1s);
  EXPECT_EQ(tec, errc::lock_timeout) << tec.message();
  EXPECT_FALSE(tried);
  EXPECT_LT(Past::now() - start, 1s);
  EXPECT_TRUE(leadership.is_leader());
  leadership.resign();
  ASSERT_TRUE(blocked.get());
  ASSERT_TRUE(election->leader());
  EXPECT_EQ(election->leader()->value, "sync");
  election->resign();
  EXPECT_TRUE(eventually([&] { return entries("vote") == 0; }));
}

}  // namespace
}  // namespace etcdlock::testing

namespace etcdlock::testing {
namespace {

// Last in the file: on the current code these crash the test binary
// (SIGSEGV), which would hide the results of any test after them.
//
// AsyncAcquisition::begin() posts a step as soon as it registers a cancel
// callback on a token already requested, but only afterwards marks a
// turn-less acquisition (a permit, a SharedLock hold) as owning its "turn".
// A step that runs in between takes the not-yet-turn path and calls
// request_.turn->withdraw() on a null turn. Many threads make many
// pre-cancelled waits so that the step thread sometimes wins the race.
void pre_cancelled_waits(LockManager& manager, bool permits) {
  std::stop_source cancel;
  cancel.request_stop();
  constexpr int kThreads = 4;
  constexpr int kEach = 3000;
  std::atomic<int> delivered{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      auto pool = manager.get_semaphore("pool", 1);
      auto rw = manager.get_shared_lock("rw");
      for (int i = 0; i < kEach; ++i) {
        if (permits) {
          pool->async_acquire_permit(
              [&](std::error_code ec, Permit) {
                if (ec != errc::cancelled) ++wrong;
                ++delivered;
              },
              cancel.get_token());
        } else {
          rw->async_lock_shared(
              [&](std::error_code ec, SharedLockHold) {
                if (ec != errc::cancelled) ++wrong;
                ++delivered;
              },
              cancel.get_token());
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_TRUE(eventually([&] { return delivered == kThreads * kEach; }, 60s)) << delivered;
  EXPECT_EQ(wrong, 0);
}

TEST_F(ReviewAsync2, PreCancelledPermitWaitRacesBeginIntoANullTurn) {
  auto manager = this->manager();
  pre_cancelled_waits(*manager, true);
  EXPECT_EQ(entries("pool"), 0);
}

TEST_F(ReviewAsync2, PreCancelledSharedLockWaitRacesBeginIntoANullTurn) {
  auto manager = this->manager();
  pre_cancelled_waits(*manager, false);
  EXPECT_EQ(entries("rw"), 0);
}

}  // namespace
}  // namespace etcdlock::testing
