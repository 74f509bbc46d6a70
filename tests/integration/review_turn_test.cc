// Adversarial review of 713da1b 1967bc5 48170a1 6eaf1fa 773cb2e (memory per
// held lock): the Turn's waiting thread waits on a condition variable of its
// own stack and registers its close() callback with mu_ released; Lock::key()
// keeps the last key only outside a hold; loss callbacks without std::function.
// Against real etcd.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "lock_fixture.h"
#include "queue_entries.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class ReviewTurn : public LockTest {
 protected:
  // The name comes free: a try_lock succeeds within 10 s (an entry left
  // behind is removed in the background meanwhile), and no key is left.
  void expect_free(Lock& lock, const std::string& name) {
    const auto from = Clock::now();
    int tries = 0;
    bool got = false;
    while (!got && Clock::now() - from < 10s) {
      ++tries;
      got = lock.try_lock();
      if (!got) {
        if (tries == 1) {
          std::fprintf(stderr, "first try_lock failed; entries in etcd: %lld; held by this process: %d\n",
                       static_cast<long long>(entries(name)), static_cast<int>(lock.held()));
        }
        std::this_thread::sleep_for(20ms);
      }
    }
    std::fprintf(
        stderr, "try_lock: %s after %d tries, %lld ms; entries now %lld\n", got ? "got" : "NOT got", tries,
        static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - from).count()),
        static_cast<long long>(entries(name)));
    ASSERT_TRUE(got);
    EXPECT_EQ(lock.key(), queue_entries(raw_, prefix_ + "/" + name + "/").at(0).key());
    lock.unlock();
    EXPECT_TRUE(eventually([&] { return all_keys() == 0; }, 5s)) << all_keys();
  }
};

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

// Threads that must all end within `limit`; on a hang the process is ended
// (the hung threads cannot be joined), with what hung on stderr.
struct Watched {
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<std::atomic<bool>>> done;
  std::vector<std::string> labels;
  template <class F>
  void start(std::string label, F f) {
    auto flag = std::make_shared<std::atomic<bool>>(false);
    done.push_back(flag);
    labels.push_back(std::move(label));
    threads.emplace_back([flag, f = std::move(f)]() mutable {
      f();
      flag->store(true);
    });
  }
  void finish(std::chrono::milliseconds limit, const std::string& where) {
    const auto until = Clock::now() + limit;
    for (;;) {
      bool all = true;
      for (const auto& d : done) all = all && d->load();
      if (all) break;
      if (Clock::now() > until) {
        std::fprintf(stderr, "HANG at %s: not done after %lld ms:", where.c_str(),
                     static_cast<long long>(limit.count()));
        for (std::size_t i = 0; i < done.size(); ++i) {
          if (!done[i]->load()) std::fprintf(stderr, " [%s]", labels[i].c_str());
        }
        std::fprintf(stderr, "\n");
        std::fflush(stderr);
        // REVIEW_TURN_STACKS=1: the threads' stacks, from gdb, before exiting.
        if (std::getenv("REVIEW_TURN_STACKS")) {
          const auto command = "gdb -p " + std::to_string(::getpid()) +
                               " -batch -ex 'thread apply all bt 14' 2>/dev/null | grep -E '^(Thread|#)' 1>&2";
          if (std::system(command.c_str()) != 0) std::fprintf(stderr, "gdb failed\n");
        }
        std::_Exit(42);
      }
      std::this_thread::sleep_for(2ms);
    }
    for (auto& t : threads) t.join();
    threads.clear();
    done.clear();
    labels.clear();
  }
};

// A thread of this process holds the lock; kWaiters threads wait for its turn
// with a cancel token. Then, at once, the token is cancelled and the manager
// closed. A waiter that the cancel wakes leaves take() holding mu_ and, with
// it held, destroys its close() stop_callback, which waits for that callback if
// close() is running it, and the callback waits for mu_.
TEST_F(ReviewTurn, CancelRacingCloseLeavesNoThreadHung) {
  const int kRounds = env_int("REVIEW_TURN_ROUNDS", 60);
  const int kWaiters = 6;
  std::mt19937 rng(1234);
  for (int round = 0; round < kRounds; ++round) {
    auto m = manager(20s);
    const auto name = "c" + std::to_string(round);
    auto lock = m->get_lock(name);
    lock->lock();
    std::stop_source cancel;
    std::atomic<int> outcome_cancelled{0}, outcome_closed{0}, outcome_other{0}, outcome_got{0};
    Watched waiters;
    for (int i = 0; i < kWaiters; ++i) {
      waiters.start("waiter " + std::to_string(i), [&, lock] {
        try {
          if (lock->try_lock_for(30s, cancel.get_token())) {
            ++outcome_got;
            lock->unlock();
          } else {
            ++outcome_other;
          }
        } catch (const Error& e) {
          if (e.code() == errc::cancelled) {
            ++outcome_cancelled;
          } else if (e.code() == errc::closed) {
            ++outcome_closed;
          } else {
            ++outcome_other;
          }
        }
      });
    }
    std::this_thread::sleep_for(30ms);  // all in take()
    std::barrier go(2);
    const auto skew = std::chrono::microseconds(rng() % 60);
    Watched racers;
    racers.start("cancel", [&] {
      go.arrive_and_wait();
      cancel.request_stop();
    });
    racers.start("close", [&] {
      go.arrive_and_wait();
      std::this_thread::sleep_for(skew);
      m->close();
    });
    racers.finish(20s, "round " + std::to_string(round) + " (cancel/close)");
    waiters.finish(20s, "round " + std::to_string(round) + " (waiters)");
    EXPECT_EQ(outcome_got.load(), 0);
    EXPECT_EQ(outcome_cancelled + outcome_closed + outcome_other, kWaiters);
    std::error_code ec;
    lock->unlock(ec);
  }
  EXPECT_EQ(all_keys(), 0);
}

// The same race with deadlines instead of a cancel: waiters whose deadline
// expires as close() runs.
TEST_F(ReviewTurn, DeadlineRacingCloseLeavesNoThreadHung) {
  const int kRounds = env_int("REVIEW_TURN_ROUNDS", 60);
  const int kWaiters = 6;
  std::mt19937 rng(99);
  for (int round = 0; round < kRounds; ++round) {
    auto m = manager(20s);
    const auto name = "d" + std::to_string(round);
    auto lock = m->get_lock(name);
    lock->lock();
    Watched waiters;
    const auto deadline = Clock::now() + 60ms;
    for (int i = 0; i < kWaiters; ++i) {
      waiters.start("waiter " + std::to_string(i), [&, lock] {
        try {
          if (lock->try_lock_until(deadline)) lock->unlock();
        } catch (const Error&) {
        }
      });
    }
    std::this_thread::sleep_until(deadline - std::chrono::microseconds(rng() % 400));
    Watched closer;
    closer.start("close", [&] { m->close(); });
    closer.finish(20s, "round " + std::to_string(round) + " (close)");
    waiters.finish(20s, "round " + std::to_string(round) + " (waiters)");
    std::error_code ec;
    lock->unlock(ec);
  }
  EXPECT_EQ(all_keys(), 0);
}

// Threads, asynchronous acquisitions and a multi-lock of one manager on one
// name, with deadlines and cancels: never two inside; every thread returns;
// the name ends free and without keys.
TEST_F(ReviewTurn, ThreadsAsyncAndMultiLockExcludeOneAnother) {
  const int kSeconds = env_int("REVIEW_TURN_SECONDS", 8);
  auto m = manager(20s);
  auto lock = m->get_lock("x");
  auto multi = m->get_multi_lock({"x", "y"});
  std::atomic<int> inside{0}, overlaps{0}, entries_in{0};
  std::atomic<bool> stop{false};
  std::atomic<int> pending_async{0};
  const auto enter = [&] {
    if (inside.fetch_add(1) != 0) ++overlaps;
    ++entries_in;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    inside.fetch_sub(1);
  };
  Watched threads;
  for (int t = 0; t < 4; ++t) {
    threads.start("thread " + std::to_string(t), [&, t] {
      std::mt19937 rng(t);
      while (!stop) {
        try {
          std::stop_source cancel;
          std::jthread canceller;
          if (rng() % 3 == 0) {
            canceller = std::jthread([&cancel, us = rng() % 3000] {
              std::this_thread::sleep_for(std::chrono::microseconds(us));
              cancel.request_stop();
            });
          }
          if (lock->try_lock_for(std::chrono::microseconds(rng() % 5000), cancel.get_token())) {
            enter();
            lock->unlock();
          }
        } catch (const Error& e) {
          if (e.code() != errc::cancelled) {
            ADD_FAILURE() << e.what();
            return;
          }
        }
      }
    });
  }
  threads.start("multi", [&] {
    std::mt19937 rng(77);
    while (!stop) {
      try {
        if (multi->try_lock_for(std::chrono::microseconds(rng() % 8000))) {
          enter();
          multi->unlock();
        }
      } catch (const Error& e) {
        ADD_FAILURE() << e.what();
        return;
      }
    }
  });
  threads.start("async", [&] {
    std::mt19937 rng(55);
    while (!stop) {
      if (pending_async.load() >= 3) {
        std::this_thread::sleep_for(1ms);
        continue;
      }
      ++pending_async;
      std::stop_source cancel;
      lock->async_lock_for(
          std::chrono::microseconds(rng() % 8000),
          [&](std::error_code ec, LockHold hold) {
            if (!ec) {
              enter();
              hold.release();
            }
            --pending_async;
          },
          rng() % 4 == 0 ? cancel.get_token() : std::stop_token());
      if (rng() % 4 == 0) cancel.request_stop();
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(kSeconds));
  stop = true;
  threads.finish(30s, "exclusion stress");
  ASSERT_TRUE(eventually([&] { return pending_async.load() == 0; }, 20s)) << pending_async.load();
  std::fprintf(stderr, "entries=%d overlaps=%d\n", entries_in.load(), overlaps.load());
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_GT(entries_in.load(), 10);
  expect_free(*lock, "x");
}

// Grants racing cancels and deadlines among threads only: the holder passes
// the turn as often as it can; every waiter returns and no grant is lost
// (a lost grant would leave the turn busy: the last try_lock fails).
TEST_F(ReviewTurn, GrantsRacingCancelsAndDeadlinesLoseNoTurn) {
  const int kSeconds = env_int("REVIEW_TURN_SECONDS", 8);
  auto m = manager(20s);
  auto lock = m->get_lock("g");
  std::atomic<bool> stop{false};
  std::atomic<int> inside{0}, overlaps{0}, got{0}, cancelled{0}, timed_out{0};
  Watched threads;
  for (int t = 0; t < 6; ++t) {
    threads.start("thread " + std::to_string(t), [&, t] {
      std::mt19937 rng(100 + t);
      while (!stop) {
        std::stop_source cancel;
        std::jthread canceller([&cancel, us = rng() % 400] {
          std::this_thread::sleep_for(std::chrono::microseconds(us));
          cancel.request_stop();
        });
        try {
          if (lock->try_lock_for(std::chrono::microseconds(rng() % 400), cancel.get_token())) {
            if (inside.fetch_add(1) != 0) ++overlaps;
            ++got;
            inside.fetch_sub(1);
            lock->unlock();
          } else {
            ++timed_out;
          }
        } catch (const Error& e) {
          if (e.code() == errc::cancelled) {
            ++cancelled;
          } else {
            ADD_FAILURE() << e.what();
            return;
          }
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(kSeconds));
  stop = true;
  threads.finish(30s, "grants racing cancels");
  std::fprintf(stderr, "got=%d cancelled=%d timed_out=%d overlaps=%d\n", got.load(), cancelled.load(), timed_out.load(),
               overlaps.load());
  EXPECT_EQ(overlaps.load(), 0);
  expect_free(*lock, "g");
}

// Loss signals: the lost token (and a callback on it) fires on close(), on the
// key's deletion and on the lease's revoke, for a thread's hold and an
// asynchronous one.
TEST_F(ReviewTurn, LossSignalsStillFire) {
  enum class Cause { close, force_unlock, revoke };
  for (const auto cause : {Cause::close, Cause::force_unlock, Cause::revoke}) {
    for (const bool async : {false, true}) {
      auto m = manager(20s);
      auto admin = manager(20s);
      const std::string name = "l" + std::to_string(static_cast<int>(cause)) + (async ? "a" : "t");
      auto lock = m->get_lock(name);
      LockHold hold;
      std::stop_token token;
      if (async) {
        std::promise<LockHold> got;
        lock->async_lock([&](std::error_code ec, LockHold h) {
          ASSERT_FALSE(ec);
          got.set_value(std::move(h));
        });
        hold = got.get_future().get();
        token = hold.lost_token();
      } else {
        lock->lock();
        token = lock->lost_token();
      }
      std::atomic<int> called{0};
      std::stop_callback on_lost(token, [&] { ++called; });
      const auto key = lock->key();
      EXPECT_EQ(queue_entries(raw_, prefix_ + "/" + name + "/").at(0).key(), key);
      switch (cause) {
        case Cause::close:
          m->close();
          break;
        case Cause::force_unlock:
          EXPECT_TRUE(admin->force_unlock(name));
          break;
        case Cause::revoke: {
          const auto entry = queue_entries(raw_, prefix_ + "/" + name + "/").at(0);
          EXPECT_TRUE(admin->revoke_lease(entry.lease()));
          break;
        }
      }
      EXPECT_TRUE(eventually([&] { return called.load() == 1; }, 10s))
          << "cause " << static_cast<int>(cause) << " async " << async;
      EXPECT_TRUE(token.stop_requested());
      std::error_code ec;
      if (async) {
        hold.release(ec);
      } else {
        lock->unlock(ec);
      }
      EXPECT_EQ(ec, make_error_code(errc::lock_expired)) << ec.message();
      EXPECT_EQ(lock->key(), key) << "key() after the lost hold's unlock";
      EXPECT_TRUE(eventually([&] { return entries(name) == 0; }, 10s));
    }
  }
}

// Lock::key() while another thread of the process holds, releases and
// re-acquires: it is always the hold's key (one lease: one key), and after a
// failed try against another manager it is the attempt's key with nothing left
// in etcd.
TEST_F(ReviewTurn, KeyIsRightDuringHoldReleaseAndFailedTry) {
  auto m = manager(20s);
  auto other = manager(20s);
  auto lock = m->get_lock("k");
  auto theirs = other->get_lock("k");
  lock->lock();
  const auto mine = lock->key();
  ASSERT_EQ(queue_entries(raw_, prefix_ + "/k/").at(0).key(), mine);
  lock->unlock();
  EXPECT_EQ(lock->key(), mine);
  std::atomic<bool> stop{false};
  std::atomic<int> wrong{0}, reads{0};
  std::thread reader([&] {
    while (!stop) {
      if (lock->key() != mine) ++wrong;
      ++reads;
    }
  });
  for (int i = 0; i < 200; ++i) {
    lock->lock();
    lock->unlock();
  }
  stop = true;
  reader.join();
  EXPECT_EQ(wrong.load(), 0) << "of " << reads.load();
  theirs->lock();
  EXPECT_FALSE(lock->try_lock());
  EXPECT_EQ(lock->key(), mine);
  EXPECT_EQ(entries("k"), 1);
  theirs->unlock();
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }, 5s));
}

}  // namespace
}  // namespace etcdlock::testing
