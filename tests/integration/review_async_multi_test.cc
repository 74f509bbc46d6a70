// Adversarial review of the asynchronous MultiLock (36fa333:
// queue/async_acquisition.cc over a list of turns, queue/multi_acquisition.cc
// as a QueueAttempt, recipes/multi_lock_impl.cc async_acquire/release,
// etcdlock/multi_lock_hold.h).
//
// A test named after a finding fails on the reviewed code; a test named
// Held_... is an attack that did not break it, kept as a regression check.
//
// Finding 1 (fixed in 353183f: the grant of a turn and the take of the next
// are one critical section, and a ticket of 0 is never withdrawn) failed on
// 36fa333 in 6 of 6 runs of 30,000 rounds (at rounds 779 to 7,675) and at
// rounds 186 and 459 in ctest runs; the rounds here are fewer, so that the
// suite's three runs (plain and sanitized) stay short: a guard, not a proof.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "delivery.h"
#include "etcd/lost_replies.h"
#include "lock_fixture.h"
#include "occupancy.h"
#include "sanitizer.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using MultiDelivery = etcdlock::testing::Delivery<MultiLockHold>;
using LockDelivery = etcdlock::testing::Delivery<LockHold>;
using detail::etcd::LostReplies;
namespace write_site = detail::etcd::write_site;

class ReviewAsyncMulti : public LockTest {};

// Rounds of the race of finding 1 (REVIEW_ROUNDS overrides): about 3 s in a
// plain build; a sanitizer slows each round several times.
constexpr int kRaceRounds = ETCDLOCK_TEST_SANITIZED ? 2000 : 10000;

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoi(value) : fallback;
}

void spin(int n) {
  for (int i = 0; i < n; ++i) asm volatile("" ::: "memory");
}

// Cancels `first` after a spin of up to 200 and `second` after one of up to
// `max_delay` (or a sleep of `second_sleep_ms`), the two released at once.
void cancel_both(std::mt19937& rng, int max_delay, int second_sleep_ms, std::stop_source& first,
                 std::stop_source& second) {
  std::atomic<int> go{0};
  const int first_delay = static_cast<int>(rng() % 200);
  const int second_delay = static_cast<int>(rng() % static_cast<unsigned>(max_delay));
  std::thread cancel_first([&] {
    while (go.load() == 0) {
    }
    spin(first_delay);
    first.request_stop();
  });
  std::thread cancel_second([&] {
    while (go.load() == 0) {
    }
    if (second_sleep_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(second_sleep_ms));
    } else {
      spin(second_delay);
    }
    second.request_stop();
  });
  go = 1;
  cancel_first.join();
  cancel_second.join();
}

std::shared_ptr<MultiLock> multi(LockManager& manager, const std::vector<std::string>& names,
                                 LockOptions options = {}) {
  std::vector<std::string_view> views(names.begin(), names.end());
  return manager.get_multi_lock(std::span<const std::string_view>(views), options);
}

// Finding 1. AsyncAcquisition::on_turn(index) records turns_taken_ = index + 1
// and releases mu_ before take_turns() queues for turns[index + 1] and records
// its ticket. In that gap turn_ticket_ still holds the id of turns[index]'s
// (now granted) ticket, while turns_taken_ points at turns[index + 1]. A
// cancel (end_if_nothing_sent) or a step (one_step) in the gap calls
// turns[index + 1]->withdraw(<a ticket id of turns[index]>). Ticket ids are
// per Turn (Turn::next_id_ starts at 1 in each), so that id may be another
// waiter's in turns[index + 1]: that waiter is erased from the queue and is
// never granted. A blocked thread then waits for ever (or times out on a
// free lock); an asynchronous waiter never gets its handler, not even on
// cancel.
//
// Each round uses fresh names a-k, b-k, whose turns number their tickets from
// 1, so Q's ticket on a-k and R's on b-k are both 1:
//   z:    held by this thread (Lock::lock, the only write to etcd here)
//   H:    multi {b-k, z}: takes b-k's turn, queues for z's
//   P:    multi {a-k, z}: takes a-k's turn, queues for z's
//   Q:    multi {a-k, b-k}: queues for a-k's turn (ticket 1)
//   R:    Lock b-k, async: queues for b-k's turn (ticket 1)
// Then two threads at once: one cancels P (which gives a-k's turn to Q, on
// that thread: Q's on_turn(0)), the other cancels Q. Then R and H are
// cancelled. Every handler must be called; nothing reaches etcd.
TEST_F(ReviewAsyncMulti, CancelRacingTheGrantOfAnEarlierTurnWithdrawsAnotherWaiter) {
  const int rounds = env_int("REVIEW_ROUNDS", kRaceRounds);
  const int max_delay = env_int("REVIEW_MAX_DELAY", 6000);
  // Under gdb (scripts in the report), the grant's thread is held in the gap
  // for a second, and the cancel comes this many ms after it started.
  const int y_sleep_ms = env_int("REVIEW_Y_SLEEP_MS", 0);
  // Declared before the manager: a stuck acquisition's Delivery must outlive
  // it (closing the manager calls its handler).
  std::vector<std::unique_ptr<MultiDelivery>> kept_multi;
  std::vector<std::unique_ptr<LockDelivery>> kept_lock;
  auto m = manager();
  auto z = m->get_lock("z");
  z->lock();
  std::mt19937 rng(env_int("REVIEW_SEED", 1));
  int stuck_round = -1;
  bool b_free_while_r_waits = false;
  int q_got_a = 0;
  for (int k = 0; k < rounds && stuck_round < 0; ++k) {
    char tag[16];
    std::snprintf(tag, sizeof tag, "%06d", k);
    const std::string a = std::string("a-") + tag;
    const std::string b = std::string("b-") + tag;
    auto hd = std::make_unique<MultiDelivery>();
    auto pd = std::make_unique<MultiDelivery>();
    auto qd = std::make_unique<MultiDelivery>();
    auto rd = std::make_unique<LockDelivery>();
    std::stop_source hs, ps, qs, rs;
    auto h = multi(*m, {b, "z"});
    auto p = multi(*m, {a, "z"});
    auto q = multi(*m, {a, b});
    auto r = m->get_lock(b);
    h->async_lock(hd->handler(), hs.get_token());
    p->async_lock(pd->handler(), ps.get_token());
    q->async_lock(qd->handler(), qs.get_token());
    r->async_lock(rd->handler(), rs.get_token());
    cancel_both(rng, max_delay, y_sleep_ms, ps, qs);
    rs.request_stop();
    hs.request_stop();
    const bool all = pd->wait(5s) && qd->wait(5s) && hd->wait(5s);
    ASSERT_TRUE(all) << "round " << k << ": a handler of P, Q or H was not called";
    if (!rd->wait(2s)) {
      stuck_round = k;
      // b-k's turn is free (H gave it back), yet R, queued for it, was never
      // granted and ignores its cancel.
      std::thread([&] {
        b_free_while_r_waits = m->get_lock(b)->try_lock();
        if (b_free_while_r_waits) m->get_lock(b)->unlock();
      }).join();
      kept_multi.push_back(std::move(hd));
      kept_multi.push_back(std::move(pd));
      kept_multi.push_back(std::move(qd));
      kept_lock.push_back(std::move(rd));
      break;
    }
    EXPECT_EQ(pd->error(), errc::cancelled);
    EXPECT_EQ(qd->error(), errc::cancelled);
    EXPECT_EQ(rd->error(), errc::cancelled);
    EXPECT_EQ(hd->error(), errc::cancelled);
    (void)q_got_a;
  }
  EXPECT_EQ(stuck_round, -1) << "round " << stuck_round
                             << ": the asynchronous Lock waiter R on b-k was never called back after its cancel"
                             << (b_free_while_r_waits ? " while b-k's turn was free (its ticket was withdrawn by Q)"
                                                      : "");
  z->unlock();
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// The same race, but the erased waiter is a thread blocked in Lock::lock_for
// on b-k: it times out although b-k's turn is free long before its deadline.
TEST_F(ReviewAsyncMulti, CancelRacingTheGrantOfAnEarlierTurnStrandsABlockedThread) {
  const int rounds = env_int("REVIEW_ROUNDS", kRaceRounds / 5);
  const int max_delay = env_int("REVIEW_MAX_DELAY", 6000);
  const int y_sleep_ms = env_int("REVIEW_Y_SLEEP_MS", 0);
  std::vector<std::unique_ptr<MultiDelivery>> kept_multi;
  auto m = manager();
  auto z = m->get_lock("z");
  z->lock();
  std::mt19937 rng(env_int("REVIEW_SEED", 2));
  int stuck_round = -1;
  for (int k = 0; k < rounds && stuck_round < 0; ++k) {
    char tag[16];
    std::snprintf(tag, sizeof tag, "%06d", k);
    const std::string a = std::string("a-") + tag;
    const std::string b = std::string("b-") + tag;
    auto hd = std::make_unique<MultiDelivery>();
    auto pd = std::make_unique<MultiDelivery>();
    auto qd = std::make_unique<MultiDelivery>();
    std::stop_source hs, ps, qs, ts;
    auto h = multi(*m, {b, "z"});
    auto p = multi(*m, {a, "z"});
    auto q = multi(*m, {a, b});
    auto r = m->get_lock(b);
    h->async_lock(hd->handler(), hs.get_token());
    p->async_lock(pd->handler(), ps.get_token());
    q->async_lock(qd->handler(), qs.get_token());
    // A thread queues for b-k's turn (ticket 1), and waits, cancellably.
    std::atomic<int> r_result{-1};  // -1 waiting, 0 false, 1 acquired, 2 cancelled/other error
    std::thread tr([&] {
      try {
        const bool got = r->try_lock_for(std::chrono::seconds(30), ts.get_token());
        r_result = got ? 1 : 0;
        if (got) r->unlock();
      } catch (const Error&) {
        r_result = 2;
      }
    });
    // Wait until the thread is queued on b-k's turn (it cannot be seen; 1 ms is plenty).
    std::this_thread::sleep_for(1ms);
    cancel_both(rng, max_delay, y_sleep_ms, ps, qs);
    ASSERT_TRUE(pd->wait(5s) && qd->wait(5s)) << "round " << k;
    hs.request_stop();  // b-k's turn passes to the thread, which acquires b-k in etcd
    ASSERT_TRUE(hd->wait(5s)) << "round " << k;
    const auto until = Clock::now() + 5s;
    while (r_result.load() == -1 && Clock::now() < until) std::this_thread::sleep_for(1ms);
    if (r_result.load() != 1) {
      stuck_round = k;
      ts.request_stop();
      tr.join();
      kept_multi.push_back(std::move(hd));
      kept_multi.push_back(std::move(pd));
      kept_multi.push_back(std::move(qd));
      break;
    }
    tr.join();
  }
  EXPECT_EQ(stuck_round, -1) << "round " << stuck_round
                             << ": a thread in Lock::try_lock_for(30 s) on b-k did not get b-k within 5 s of its "
                                "turn being given back";
  z->unlock();
}

// A multi-enqueue whose reply is lost (it committed), then a cancel before
// the retry: the entries must not stay in etcd.
TEST_F(ReviewAsyncMulti, Held_LostMultiEnqueueReplyThenCancelLeavesNoKey) {
  for (int round = 0; round < env_int("REVIEW_LOST_ROUNDS", 5); ++round) {
    auto a = manager();
    auto b = manager();
    auto y = b->get_lock("y");
    y->lock();
    LockOptions slow_retries;
    slow_retries.retry_interval = 2000ms;
    auto xy = a->get_multi_lock({"x", "y"}, slow_retries);
    const int before = LostReplies::dropped(write_site::multi_enqueue);
    LostReplies::arm(write_site::multi_enqueue, prefix_ + "/x/");
    std::stop_source cancel;
    MultiDelivery delivery;
    xy->async_lock(delivery.handler(), cancel.get_token());
    ASSERT_TRUE(eventually([&] { return LostReplies::dropped(write_site::multi_enqueue) > before; }));
    ASSERT_TRUE(eventually([&] { return entries("x") == 1 && entries("y") == 2; }));
    if (round % 2 == 1) std::this_thread::sleep_for(std::chrono::milliseconds(round * 100));
    cancel.request_stop();
    ASSERT_TRUE(delivery.wait());
    EXPECT_EQ(delivery.error(), errc::cancelled);
    EXPECT_TRUE(eventually([&] { return entries("x") == 0 && entries("y") == 1; }))
        << "round " << round << ": x " << entries("x") << ", y " << entries("y");
    // The turns are back.
    std::thread([&] {
      auto x = a->get_lock("x", slow_retries);
      EXPECT_TRUE(x->try_lock());
      x->unlock();
    }).join();
    y->unlock();
    EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
    LostReplies::disarm();
  }
}

// A multi-enqueue whose reply is lost while nothing waits: the retry must
// find the entries its lost create made and take them (one create revision),
// not a second set; the hold then releases everything.
TEST_F(ReviewAsyncMulti, Held_LostMultiEnqueueReplyUncontendedAcquiresOnce) {
  for (int round = 0; round < env_int("REVIEW_LOST_ROUNDS", 5); ++round) {
    auto a = manager();
    auto xy = a->get_multi_lock({"x", "y"});
    LostReplies::arm(write_site::multi_enqueue, prefix_ + "/x/");
    MultiDelivery delivery;
    xy->async_lock(delivery.handler());
    ASSERT_TRUE(delivery.wait());
    ASSERT_FALSE(delivery.error()) << delivery.error().message();
    auto hold = delivery.take();
    EXPECT_TRUE(hold.held());
    EXPECT_EQ(entries("x"), 1);
    EXPECT_EQ(entries("y"), 1);
    // Another manager cannot get either name meanwhile.
    auto other = manager();
    EXPECT_FALSE(other->get_lock("x")->try_lock());
    EXPECT_FALSE(other->get_lock("y")->try_lock());
    hold.release();
    EXPECT_TRUE(eventually([&] { return all_keys() == 0; })) << all_keys();
    LostReplies::disarm();
  }
}

// An async MultiLockHold released on one thread while another thread of
// this process is in MultiLock::lock() of the same object, and more async
// acquisitions of the same object queue behind: never two holders, every
// handler called, everything given back.
TEST_F(ReviewAsyncMulti, Held_AsyncHoldsAndThreadLocksOfOneMultiLockNeverOverlap) {
  auto m = manager();
  auto other = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  Occupancy occupancy;
  std::atomic<int> thread_rounds{0};
  std::atomic<bool> stop{false};
  std::thread locker([&] {
    while (!stop) {
      xy->lock();
      EXPECT_TRUE(xy->held_by_this_thread());
      EXPECT_EQ(occupancy.enter(), 1);
      std::this_thread::sleep_for(1ms);
      occupancy.leave();
      xy->unlock();
      ++thread_rounds;
    }
  });
  const int rounds = env_int("REVIEW_OVERLAP_ROUNDS", 40);
  for (int i = 0; i < rounds; ++i) {
    MultiDelivery first, second;
    xy->async_lock(first.handler());
    xy->async_lock(second.handler());
    ASSERT_TRUE(first.wait(20s)) << i;
    ASSERT_FALSE(first.error()) << first.error().message();
    auto hold = first.take();
    EXPECT_EQ(occupancy.enter(), 1);
    EXPECT_TRUE(hold.held());
    EXPECT_FALSE(other->get_lock("x")->try_lock());
    occupancy.leave();
    std::thread([&] { hold.release(); }).join();
    ASSERT_TRUE(second.wait(20s)) << i;
    ASSERT_FALSE(second.error()) << second.error().message();
    auto hold2 = second.take();
    EXPECT_EQ(occupancy.enter(), 1);
    occupancy.leave();
    hold2.release();
  }
  stop = true;
  locker.join();
  EXPECT_EQ(occupancy.most(), 1);
  EXPECT_GT(thread_rounds.load(), 0);
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

// Deadlines and cancels racing the grants of the second turn, while a
// thread flips y: every handler is called once, no key is left, every turn
// comes back.
TEST_F(ReviewAsyncMulti, Held_DeadlinesAndCancelsRacingTurnGrantsLeaveNothing) {
  auto m = manager();
  auto y = m->get_lock("y");
  std::atomic<bool> stop{false};
  std::thread flipper([&] {
    while (!stop) {
      y->lock();
      std::this_thread::sleep_for(2ms);
      y->unlock();
    }
  });
  std::mt19937 rng(7);
  const int rounds = env_int("REVIEW_RACE_ROUNDS", 150);
  std::vector<std::unique_ptr<MultiDelivery>> deliveries;
  std::vector<std::unique_ptr<std::stop_source>> cancels;
  for (int i = 0; i < rounds; ++i) {
    auto delivery = std::make_unique<MultiDelivery>();
    auto cancel = std::make_unique<std::stop_source>();
    auto xy = m->get_multi_lock({"x", "y"});
    const auto timeout = std::chrono::microseconds(rng() % 20000);
    auto* d = delivery.get();
    xy->async_lock_for(
        timeout,
        [handler = d->handler()](std::error_code ec, MultiLockHold hold) mutable {
          if (!ec) hold.release();
          handler(ec, std::move(hold));
        },
        cancel->get_token());
    if (rng() % 2) {
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 5000));
      cancel->request_stop();
    }
    deliveries.push_back(std::move(delivery));
    cancels.push_back(std::move(cancel));
  }
  for (std::size_t i = 0; i < deliveries.size(); ++i) {
    EXPECT_TRUE(deliveries[i]->wait(20s)) << "handler " << i << " never called";
    EXPECT_EQ(deliveries[i]->calls(), 1);
  }
  stop = true;
  flipper.join();
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; })) << all_keys();
  std::thread([&] {
    auto xy = m->get_multi_lock({"x", "y"});
    EXPECT_TRUE(xy->try_lock()) << "a turn is still taken";
    xy->unlock();
  }).join();
}

// The lease revoked while the set waits in its second queue (the first
// admitted it): the acquisition queues again on a new lease, takes the set
// once the other holder leaves, and nothing of the old lease stays.
TEST_F(ReviewAsyncMulti, Held_LeaseRevokedWhileWaitingOnTheSecondQueue) {
  for (int round = 0; round < env_int("REVIEW_LOST_ROUNDS", 3); ++round) {
    auto a = manager();
    auto b = manager();
    auto y = b->get_lock("y");
    y->lock();
    auto xy = a->get_multi_lock({"x", "y"});
    MultiDelivery delivery;
    xy->async_lock(delivery.handler());
    ASSERT_TRUE(eventually([&] { return entries("x") == 1 && entries("y") == 2; }));
    const auto old_lease = a->lease_id();
    ASSERT_TRUE(raw_.lease_revoke(old_lease, in(5s)));
    // Queued again, on a new lease.
    ASSERT_TRUE(eventually([&] { return a->lease_id() != old_lease && entries("x") == 1 && entries("y") == 2; }))
        << "x " << entries("x") << ", y " << entries("y");
    EXPECT_FALSE(delivery.done());
    y->unlock();
    ASSERT_TRUE(delivery.wait(20s));
    ASSERT_FALSE(delivery.error()) << delivery.error().message();
    auto hold = delivery.take();
    EXPECT_TRUE(hold.held());
    EXPECT_EQ(entries("x"), 1);
    EXPECT_EQ(entries("y"), 1);
    EXPECT_FALSE(b->get_lock("x")->try_lock());
    hold.release();
    EXPECT_TRUE(eventually([&] { return all_keys() == 0; })) << all_keys();
  }
}

// A cancel while the multi-enqueue Txn is out and its reply held back (then
// let through before the command timeout, or after it: in doubt): the
// handler says cancelled, no key stays, the turns come back.
TEST_F(ReviewAsyncMulti, Held_CancelWhileTheMultiEnqueueIsInFlightLeavesNoKey) {
  const auto endpoint = etcd_.endpoints().at(0);
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto through = options_through(link.endpoint());
  through.command_timeout = 2s;
  LockManager a(through);
  auto b = manager();
  auto y = b->get_lock("y");
  y->lock();
  {
    MultiDelivery warm;
    a.get_multi_lock({"w1", "w2"})->async_lock(warm.handler());
    ASSERT_TRUE(warm.wait());
    ASSERT_FALSE(warm.error());
    warm.take().release();
  }
  for (const auto hold_for : {300ms, 2500ms}) {
    link.hold_replies();
    std::stop_source cancel;
    MultiDelivery delivery;
    a.get_multi_lock({"x", "y"})->async_lock(delivery.handler(), cancel.get_token());
    std::this_thread::sleep_for(100ms);  // the enqueue is out, its reply held back
    cancel.request_stop();
    std::this_thread::sleep_for(hold_for);
    link.resume_replies();
    ASSERT_TRUE(delivery.wait(15s));
    EXPECT_EQ(delivery.error(), errc::cancelled) << delivery.error().message();
    EXPECT_TRUE(eventually([&] { return entries("x") == 0 && entries("y") == 1; }))
        << "held " << hold_for.count() << " ms: x " << entries("x") << ", y " << entries("y");
    std::thread([&] {
      auto x = a.get_lock("x");
      EXPECT_TRUE(x->try_lock()) << "x's turn was not given back";
      x->unlock();
    }).join();
  }
  y->unlock();
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; })) << all_keys();
}

// A handler that releases and locks again, chained, and a last handler that
// destroys the manager.
TEST_F(ReviewAsyncMulti, Held_HandlerChainsRelockAndFinallyDestroysTheManager) {
  auto m = std::shared_ptr<LockManager>(manager().release());
  auto xy = m->get_multi_lock({"x", "y"});
  std::atomic<int> count{0};
  std::promise<void> finished;
  std::function<void(std::error_code, MultiLockHold)> handler;
  handler = [&](std::error_code ec, MultiLockHold hold) {
    EXPECT_FALSE(ec) << ec.message();
    if (ec) {
      finished.set_value();
      return;
    }
    hold.release();
    if (++count < 30) {
      xy->async_lock(handler);
      return;
    }
    xy.reset();
    m.reset();  // the last reference, on a notifier thread
    finished.set_value();
  };
  xy->async_lock(handler);
  ASSERT_EQ(finished.get_future().wait_for(30s), std::future_status::ready);
  EXPECT_EQ(count.load(), 30);
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }));
}

}  // namespace
}  // namespace etcdlock::testing
