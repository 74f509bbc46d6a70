// Adversarial review (helper-53, 2026-12-06) of ebdead8: close() notes only
// heads created up to its revoke's revision, and a manager's inbox key goes
// at the latest kNoteMaxStay after its note came. Against real etcd.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "child_process.h"
#include "etcd/lost_replies.h"
#include "lock_fixture.h"
#include "sanitizer.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

long ms(Clock::duration d) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

bool is_inbox(const std::string& key) { return key.find(std::string_view("\0inbox/", 7)) != std::string::npos; }

class ReviewStaleNotes : public LockTest {
 protected:
  // (key, create_revision) of the inbox keys under `dir`.
  std::vector<std::pair<std::string, std::int64_t>> inbox_keys(const std::string& dir) {
    etcdserverpb::RangeRequest request;
    request.set_key(dir);
    request.set_range_end(detail::prefix_range_end(dir));
    request.set_keys_only(true);
    const auto response = raw_.range(request, in(5s));
    std::vector<std::pair<std::string, std::int64_t>> keys;
    for (const auto& kv : response.kvs()) {
      if (is_inbox(kv.key())) keys.emplace_back(kv.key(), kv.create_revision());
    }
    return keys;
  }

  // How long after `began` the inbox key under `dir` created at `revision`
  // went (deleted, or made again); -1 when it stood until `began + run`.
  long ms_until_gone(const std::string& dir, std::int64_t revision, Clock::time_point began,
                     std::chrono::milliseconds run) {
    while (Clock::now() - began < run) {
      const auto now = inbox_keys(dir);
      if (now.empty() || now[0].second != revision) return ms(Clock::now() - began);
      std::this_thread::sleep_for(50ms);
    }
    return -1;
  }

  // Two threads of `manager` that take turns at try_lock_for(1400ms) on "y",
  // so that one of them is nearly always waiting, until `stop`.
  static std::vector<std::jthread> always_waiting_for_y(LockManager& manager, const std::atomic<bool>& stop) {
    std::vector<std::jthread> pollers;
    for (int t = 0; t < 2; ++t) {
      pollers.emplace_back([&manager, &stop, t] {
        std::this_thread::sleep_for(t * 700ms);
        auto polled = manager.get_lock("y");
        while (!stop) {
          if (polled->try_lock_for(1400ms)) polled->unlock();
          std::this_thread::sleep_for(10ms);
        }
      });
    }
    return pollers;
  }

  // `holder` holds "x", a waiter of `waiter` queues behind it and is handed
  // over to with a note into `waiter`'s inbox; then unlocks.
  void note_to(LockManager& waiter, LockManager& holder, const std::string& waiter_prefix) {
    auto held = holder.get_lock("x");
    held->lock();
    auto waiting = waiter.get_lock("x");
    std::jthread thread([&] {
      waiting->lock();
      EXPECT_TRUE(eventually([&] { return !inbox_keys(waiter_prefix + "/").empty(); })) << "no hand-over note came";
      waiting->unlock();
    });
    ASSERT_TRUE(eventually([&] { return waiter.info("x").has_value() && waiter.info("x")->queue.size() == 2; }));
    held->unlock();
  }

  struct CloseTrial {
    long waiter_in_ms = -1;  // when B got "x", from the start of A's close(); -1: never
    int revoke_replies_lost = 0;
  };
  // A holds "x" under `prefix`, a waiter of B queues behind it, and A closes,
  // with its revoke's reply lost (after the revoke committed) when
  // `lose_revoke_reply`.
  CloseTrial close_before_a_waiter(const std::string& prefix, bool lose_revoke_reply) {
    namespace wire = detail::etcd;
    auto a = manager_on(prefix);
    auto b = manager_on(prefix);
    auto held = a->get_lock("x");
    held->lock();
    auto waiting = b->get_lock("x");
    std::atomic<Clock::rep> in_at{0};
    std::jthread waiter([&] {
      waiting->lock();
      in_at = Clock::now().time_since_epoch().count();
      waiting->unlock();
    });
    CloseTrial result;
    if (!eventually([&] { return count_prefix(raw_, prefix + "/x/") == 2; }, 2000ms)) {
      ADD_FAILURE() << "B's waiter did not queue behind A";
      a->close();
      return result;
    }
    if (lose_revoke_reply) wire::LostReplies::arm(wire::write_site::lease_revoke);
    const auto before = wire::LostReplies::dropped(wire::write_site::lease_revoke);
    const auto close_began = Clock::now();
    a->close();
    const auto closed = Clock::now();
    wire::LostReplies::disarm();
    waiter.join();
    result.revoke_replies_lost = wire::LostReplies::dropped(wire::write_site::lease_revoke) - before;
    result.waiter_in_ms = ms(Clock::time_point(Clock::duration(in_at.load())) - close_began);
    std::fprintf(stderr, "revoke replies lost %d, close %ld ms, B in %ld ms after close began\n",
                 result.revoke_replies_lost, ms(closed - close_began), result.waiter_in_ms);
    return result;
  }

  // Runs a poller on `inner` that waits `wait` for "y" (held by `other`
  // throughout), pauses `pause`, and again, for `run`; says for how long the
  // first inbox key (same create revision) stood after polling began.
  long inbox_key_stay(std::chrono::milliseconds wait, std::chrono::milliseconds pause, std::chrono::milliseconds run,
                      const std::string& sub) {
    const std::string inner_prefix = prefix_ + "/" + sub + "/jobs";
    auto inner = manager_on(inner_prefix);
    auto other = manager_on(inner_prefix);
    auto held_y = other->get_lock("y");
    held_y->lock();
    note_to(*inner, *other, inner_prefix);
    const auto first = inbox_keys(inner_prefix + "/");
    if (first.size() != 1) {
      ADD_FAILURE() << "no inbox key after the hand-over";
      return -1;
    }
    std::atomic<bool> stop{false};
    std::atomic<int> polls{0};
    std::atomic<int> got{0};
    const auto began = Clock::now();
    std::jthread poller([&] {
      auto polled = inner->get_lock("y");
      while (!stop) {
        if (polled->try_lock_for(wait)) {
          ++got;
          polled->unlock();
        }
        ++polls;
        std::this_thread::sleep_for(pause);
      }
    });
    const long stood = ms_until_gone(inner_prefix + "/", first[0].second, began, run);
    stop = true;
    poller.join();
    std::fprintf(stderr, "wait %ld ms pause %ld ms: %d polls (%d got y); the inbox key %s\n",
                 static_cast<long>(wait.count()), static_cast<long>(pause.count()), polls.load(), got.load(),
                 stood < 0 ? "stood the whole run" : ("went after " + std::to_string(stood) + " ms").c_str());
    held_y->unlock();
    return stood;
  }
};

// A manager whose waiter waits for longer than kNoteLinger minus its pause
// (try_lock_for(1500ms) every 1.7 s) was never found idle by the inbox's
// check: each forget() scheduled the next check a second later, which fell
// into the next wait and returned without scheduling again, so the cap of
// 3 s never applied and the key stood as long as the manager polled (3 of 3
// runs on ebdead8). The key now goes kNoteMaxStay after its note, waiters
// or not.
TEST_F(ReviewStaleNotes, AnInboxKeyGoesThoughItsManagerPollsWithTimedWaits) {
  const long stood = inbox_key_stay(1500ms, 200ms, 12000ms, "timed");
  EXPECT_GE(stood, 0) << "the inbox key stood 12 s while its manager polled try_lock_for(1.5 s) every 1.7 s";
  if (stood >= 0) {
    EXPECT_LE(stood, 5000);
  }
}

// Two threads of one manager that wait in turn (one always waiting): the
// check never found the manager idle (the key stood 12 s in 3 of 3 runs on
// ebdead8).
TEST_F(ReviewStaleNotes, AnInboxKeyGoesThoughItsManagerAlwaysHasAWaiter) {
  const std::string inner_prefix = prefix_ + "/jobs";
  auto inner = manager_on(inner_prefix);
  auto other = manager_on(inner_prefix);
  auto held_y = other->get_lock("y");
  held_y->lock();
  note_to(*inner, *other, inner_prefix);
  const auto first = inbox_keys(inner_prefix + "/");
  ASSERT_EQ(first.size(), 1u);
  std::atomic<bool> stop{false};
  const auto began = Clock::now();
  auto pollers = always_waiting_for_y(*inner, stop);
  const long stood = ms_until_gone(inner_prefix + "/", first[0].second, began, 12s);
  stop = true;
  pollers.clear();
  std::fprintf(stderr, "the inbox key %s\n",
               stood < 0 ? "stood the whole 12 s" : ("went after " + std::to_string(stood) + " ms").c_str());
  EXPECT_GE(stood, 0) << "the inbox key stood 12 s while a waiter of its manager always waited";
  if (stood >= 0) {
    EXPECT_LE(stood, 5000);
  }
  held_y->unlock();
}

// A holds "x", B waits; A closes with its revoke's reply lost (committed):
// the retry finds no lease, revoke_revision 0, and B is noted as before.
// B's wait after close() returns: a note takes a few ms, the deferred watch
// about 500 ms.
TEST_F(ReviewStaleNotes, ACloseWhoseRevokeReplyIsLostStillNotesTheWaiter) {
  int prompt = 0;
  int trials = 0;
  for (int trial = 0; trial < 5; ++trial) {
    const auto result = close_before_a_waiter(prefix_ + "/lr" + std::to_string(trial), true);
    if (result.revoke_replies_lost != 1) continue;
    ++trials;
    if (result.waiter_in_ms < 300) ++prompt;
  }
  std::fprintf(stderr, "B in promptly in %d of %d trials\n", prompt, trials);
  EXPECT_GE(trials, 3);
  EXPECT_EQ(prompt, trials);
}

// Same without a lost reply, B not yet past its deferred watch (it queued
// just before the close): a note in every trial.
TEST_F(ReviewStaleNotes, ACloseNotesAWaiterThatQueuedJustBefore) {
  int prompt = 0;
  for (int trial = 0; trial < 8; ++trial) {
    if (close_before_a_waiter(prefix_ + "/jb" + std::to_string(trial), false).waiter_in_ms < 300) ++prompt;
  }
  EXPECT_EQ(prompt, 8);
}

// The etcdctl view: `etcdctl lock P/jobs` (Go's Mutex: waits for every older
// key under P/jobs/) while a manager on P/jobs always has a waiter for "y",
// which `other` holds in cycles of 1.2 s (so no entry of "y" stays older
// than etcdctl's key): only the inbox key held it back, and etcdctl gave up
// after 12 s in 2 of 2 runs on ebdead8 (677 ms without the waiters).
TEST_F(ReviewStaleNotes, EtcdctlLockOnTheOuterNameWaitsBehindABusyManagersInbox) {
  const std::string inner_prefix = prefix_ + "/jobs";
  auto inner = manager_on(inner_prefix);
  auto other = manager_on(inner_prefix);
  note_to(*inner, *other, inner_prefix);
  ASSERT_EQ(inbox_keys(inner_prefix + "/").size(), 1u);
  std::atomic<bool> stop{false};
  std::jthread cycler([&] {
    auto y = other->get_lock("y");
    while (!stop) {
      if (y->try_lock_for(2s)) {
        std::this_thread::sleep_for(1200ms);
        y->unlock();
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  auto pollers = always_waiting_for_y(*inner, stop);
  std::this_thread::sleep_for(500ms);
  const auto began = Clock::now();
  ChildProcess etcdctl(
      {"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", inner_prefix, "--", "sh", "-c", "echo acquired"});
  const auto line = etcdctl.read_line(12s);
  const auto took = ms(Clock::now() - began);
  if (!line) etcdctl.signal(SIGTERM);
  etcdctl.wait();
  stop = true;
  pollers.clear();
  cycler.join();
  std::fprintf(stderr, "etcdctl lock %s: %s after %ld ms\n", inner_prefix.c_str(), line ? line->c_str() : "nothing",
               took);
  EXPECT_TRUE(line.has_value() && line->find("acquired") != std::string::npos)
      << "etcdctl lock on the outer name waited 12 s behind the inbox key";
}

// A contended manager whose inbox key is deleted every 3 s, also while a
// waiter of it awaits a note (A takes "x" with lock() every 300 ms, B holds
// it 30 ms at a time): no wait of A falls back to its deferred watch (A's
// waits stay well under 250 ms), since a note put before the delete is
// still delivered by the watch.
TEST_F(ReviewStaleNotes, AContendedManagersCappedClearsCostNoNote) {
  const std::string p = prefix_ + "/busy";
  auto a = manager_on(p);
  auto b = manager_on(p);
  std::atomic<bool> stop{false};
  std::jthread b_thread([&] {
    auto x = b->get_lock("x");
    while (!stop) {
      x->lock();
      std::this_thread::sleep_for(30ms);
      x->unlock();
      std::this_thread::sleep_for(20ms);
    }
  });
  std::vector<long> waits;
  std::jthread a_thread([&] {
    auto x = a->get_lock("x");
    while (!stop) {
      const auto began = Clock::now();
      x->lock();
      waits.push_back(ms(Clock::now() - began));
      std::this_thread::sleep_for(10ms);
      x->unlock();
      std::this_thread::sleep_for(300ms);
    }
  });
  std::vector<std::int64_t> revisions;
  const auto began = Clock::now();
  while (Clock::now() - began < 20s) {
    for (const auto& [key, rev] : inbox_keys(p + "/")) {
      if (std::find(revisions.begin(), revisions.end(), rev) == revisions.end()) revisions.push_back(rev);
    }
    std::this_thread::sleep_for(20ms);
  }
  stop = true;
  a_thread.join();
  b_thread.join();
  long slow = 0;
  long worst = 0;
  for (const auto w : waits) {
    if (w > 250) ++slow;
    worst = std::max(worst, w);
  }
  std::fprintf(stderr, "A waited %zu times, %ld over 250 ms, worst %ld ms; %zu inbox key incarnations seen\n",
               waits.size(), slow, worst, revisions.size());
#if ETCDLOCK_TEST_SANITIZED
  // Reported only: under ThreadSanitizer beside two other tests a wait took
  // 304 ms (2026-12-06), which measures the sanitizer, not a fallback to the
  // deferred watch. The ordinary build's timed run holds the bound.
#else
  EXPECT_EQ(slow, 0);
#endif
  EXPECT_GE(revisions.size(), 3u) << "the inbox key was not deleted while A kept waiting: the test shows nothing";
}

// The inbox's delete commits and its reply is lost: the key (already gone)
// leaves nothing behind, and a later note's key goes too.
TEST_F(ReviewStaleNotes, AnInboxDeleteWhoseReplyIsLostLeavesNoKey) {
  const std::string inner_prefix = prefix_ + "/jobs";
  auto inner = manager_on(inner_prefix);
  auto other = manager_on(inner_prefix);
  const auto before = detail::etcd::LostReplies::dropped(detail::etcd::write_site::removal);
  detail::etcd::LostReplies::arm(detail::etcd::write_site::removal, inner_prefix + "/" + std::string("\0inbox", 6), 1);
  note_to(*inner, *other, inner_prefix);
  const auto t0 = Clock::now();
  const bool gone = eventually([&] { return inbox_keys(inner_prefix + "/").empty(); }, 8s);
  // The key is gone once the delete commits; its reply is dropped when it
  // reaches the client, a moment later (a gRPC thread's callback: under
  // ThreadSanitizer beside other tests, after this test had looked).
  eventually([&] { return detail::etcd::LostReplies::dropped(detail::etcd::write_site::removal) - before >= 1; }, 5s);
  const auto dropped = detail::etcd::LostReplies::dropped(detail::etcd::write_site::removal) - before;
  std::fprintf(stderr, "dropped %d; key gone %d after %ld ms\n", dropped, gone, ms(Clock::now() - t0));
  note_to(*inner, *other, inner_prefix);
  const bool gone2 = eventually([&] { return inbox_keys(inner_prefix + "/").empty(); }, 8s);
  detail::etcd::LostReplies::disarm();
  EXPECT_EQ(dropped, 1);
  EXPECT_TRUE(gone);
  EXPECT_TRUE(gone2);
}

class ReviewStaleNotesCluster : public LockTest {
 protected:
  ReviewStaleNotesCluster() : LockTest(3) {}
  ManagerOptions on(std::string endpoint, const std::string& prefix) const {
    auto o = options();
    o.endpoints = {std::move(endpoint)};
    o.prefix = prefix;
    o.ttl = 20s;
    o.log_sink = stderr_log_sink(LogLevel::error);
    return o;
  }
};

// A on one member closes; B, waiting through another member, is noted.
TEST_F(ReviewStaleNotesCluster, ACloseNotesAWaiterOnAnotherMember) {
  int prompt = 0;
  int trials = 0;
  for (int trial = 0; trial < 6; ++trial) {
    const auto p = prefix_ + "/c" + std::to_string(trial);
    auto a = std::make_unique<LockManager>(on(etcd_.member(trial % 3).endpoint(), p));
    auto b = std::make_unique<LockManager>(on(etcd_.member((trial + 1) % 3).endpoint(), p));
    auto c = std::make_unique<LockManager>(on(etcd_.member((trial + 2) % 3).endpoint(), p));
    auto held = a->get_lock("x");
    held->lock();
    std::atomic<Clock::rep> b_in{0};
    std::atomic<Clock::rep> c_in{0};
    auto bw = b->get_lock("x");
    auto cw = c->get_lock("x");
    std::jthread b_thread([&] {
      bw->lock();
      b_in = Clock::now().time_since_epoch().count();
      std::this_thread::sleep_for(20ms);
      bw->unlock();
    });
    ASSERT_TRUE(eventually([&] { return count_prefix(raw_, p + "/x/") == 2; }));
    std::jthread c_thread([&] {
      cw->lock();
      c_in = Clock::now().time_since_epoch().count();
      cw->unlock();
    });
    ASSERT_TRUE(eventually([&] { return count_prefix(raw_, p + "/x/") == 3; }));
    if (trial % 2 == 1) std::this_thread::sleep_for(700ms);
    const auto began = Clock::now();
    a->close();
    b_thread.join();
    c_thread.join();
    const auto bw_ms = ms(Clock::time_point(Clock::duration(b_in.load())) - began);
    const auto cw_ms = ms(Clock::time_point(Clock::duration(c_in.load())) - began);
    std::fprintf(stderr, "trial %d: B in %ld ms, C in %ld ms after close began\n", trial, bw_ms, cw_ms);
    ++trials;
    if (bw_ms < 300) ++prompt;
  }
  EXPECT_EQ(prompt, trials);
}

}  // namespace
}  // namespace etcdlock::testing
