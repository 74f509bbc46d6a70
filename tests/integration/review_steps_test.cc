// Adversarial review of 95173a8 (several step threads per manager), against
// real etcd: deadlines behind stuck requests, close with steps blocked,
// exactly one outcome per acquisition, the worker's timers under load, and
// how many step threads a manager starts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/worker.h"
#include "lock_fixture.h"
#include "sanitizer.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class ReviewSteps : public LockTest {
 protected:
  // How late a 300 ms deadline of one name (or a cancel after 300 ms, with
  // `by_cancel`) is answered while `stuck` other names of its manager wait
  // in requests whose replies etcd never sends (command_timeout 3 s).
  Clock::duration answer_behind_stuck_names(int stuck, bool by_cancel = false);
};

long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

Clock::duration ReviewSteps::answer_behind_stuck_names(int stuck, bool by_cancel) {
  const auto endpoint = etcd_.endpoints().at(0);
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto through = options_through(link.endpoint());
  through.command_timeout = 3s;
  LockManager manager(through);
  auto holder = this->manager();
  auto other = holder->get_lock("late");
  other->lock();
  {
    auto warm = manager.get_lock("warm");
    warm->lock();
    warm->unlock();
  }
  link.hold_replies();
  std::atomic<int> stuck_done{0};
  std::vector<LockHold> kept;
  std::mutex kept_mu;
  for (int i = 0; i < stuck; ++i) {
    manager.get_lock("stuck" + std::to_string(i))->async_lock_for(20s, [&](std::error_code, LockHold hold) {
      std::lock_guard lock(kept_mu);
      kept.push_back(std::move(hold));
      ++stuck_done;
    });
  }
  std::this_thread::sleep_for(200ms);
  std::promise<Clock::time_point> late_done;
  std::stop_source cancel;
  const auto started = Clock::now();
  const auto late = [&](std::error_code ec, LockHold) {
    EXPECT_EQ(ec, by_cancel ? errc::cancelled : errc::lock_timeout) << ec.message();
    late_done.set_value(Clock::now());
  };
  if (by_cancel) {
    manager.get_lock("late")->async_lock(late, cancel.get_token());
    std::this_thread::sleep_for(300ms);
    cancel.request_stop();
  } else {
    manager.get_lock("late")->async_lock_for(300ms, late);
  }
  auto answered = late_done.get_future();
  const bool in_time = answered.wait_for(30s) == std::future_status::ready;
  link.resume_replies();
  EXPECT_TRUE(in_time);
  const auto took = in_time ? answered.get() - started : Clock::duration::max();
  EXPECT_TRUE(eventually([&] { return stuck_done.load() == stuck; }, 60s));
  {
    std::lock_guard lock(kept_mu);
    for (auto& hold : kept)
      if (hold) hold.release();
  }
  other->unlock();
  return took;
}

// Six names stuck, more than the four step threads: the seventh's first
// step would wait for one of them, a command timeout (3 s); its deadline
// needs no step, since nothing of it went to etcd yet.
TEST_F(ReviewSteps, ADeadlineBehindSixStuckNamesIsAnsweredOnTime) {
  const auto took = answer_behind_stuck_names(6);
  EXPECT_LT(took, 300ms + 1500ms) << "took " << ms(took) << " ms";
}

// Ten names stuck: with etcd unreachable every step thread is held, and the
// eleventh's first step would wait behind those due before it, about two
// command timeouts (5.8 s before its deadline was decided without a step).
TEST_F(ReviewSteps, ADeadlineBehindTenStuckNamesIsAnsweredOnTime) {
  const auto took = answer_behind_stuck_names(10);
  EXPECT_LT(took, 300ms + 1500ms) << "took " << ms(took) << " ms";
}

// The same for a cancel: answered by the cancelling thread.
TEST_F(ReviewSteps, ACancelBehindTenStuckNamesIsAnsweredAtOnce) {
  const auto took = answer_behind_stuck_names(10, /*by_cancel=*/true);
  EXPECT_LT(took, 300ms + 1500ms) << "took " << ms(took) << " ms";
}

// Close while steps are blocked in requests whose replies are held.
TEST_F(ReviewSteps, CloseWithStepsBlockedInHeldReplies) {
  const auto endpoint = etcd_.endpoints().at(0);
  TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  auto through = options_through(link.endpoint());
  through.command_timeout = 2s;
  auto manager = std::make_unique<LockManager>(through);
  {
    auto warm = manager->get_lock("warm");
    warm->lock();
    warm->unlock();
  }
  std::atomic<int> calls{0};
  std::mutex kept_mu;
  std::vector<LockHold> kept;
  link.hold_replies();
  for (int i = 0; i < 8; ++i) {
    manager->get_lock("n" + std::to_string(i))->async_lock([&](std::error_code, LockHold hold) {
      std::lock_guard lock(kept_mu);
      kept.push_back(std::move(hold));
      ++calls;
    });
  }
  std::this_thread::sleep_for(300ms);
  const auto started = Clock::now();
  auto closing = std::async(std::launch::async, [&] { manager->close(); });
  const bool closed = closing.wait_for(30s) == std::future_status::ready;
  link.resume_replies();
  ASSERT_TRUE(closed);
  EXPECT_LT(Clock::now() - started, 2 * 2s + 1s) << ms(Clock::now() - started);
  EXPECT_TRUE(eventually([&] { return calls.load() == 8; }, 10s)) << calls.load();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(calls.load(), 8);
  {
    std::lock_guard lock(kept_mu);
    kept.clear();
  }
  manager.reset();
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }, 30s)) << all_keys();
}

// Many acquisitions on a few names from two managers, with random deadlines
// and cancels: one outcome each, never two holders, nothing left.
TEST_F(ReviewSteps, ManyAcquisitionsExactlyOnceNeverTwoHoldersNothingLeft) {
  auto m1 = manager();
  auto m2 = manager();
  constexpr int kNames = 3;
  constexpr int kEach = 40;
  std::atomic<int> holding[kNames] = {};
  std::atomic<int> violations{0};
  std::mutex mu;
  std::map<int, int> calls;
  std::vector<std::unique_ptr<std::stop_source>> cancels;
  std::mt19937 rng(12345);
  std::atomic<int> delivered{0};
  for (int i = 0; i < kEach * kNames; ++i) {
    const int name = i % kNames;
    auto& m = (i % 2) ? m1 : m2;
    auto lock = m->get_lock("x" + std::to_string(name));
    cancels.push_back(std::make_unique<std::stop_source>());
    const auto deadline = std::chrono::milliseconds(rng() % 400);
    auto handler = [&, name, i](std::error_code ec, LockHold hold) {
      {
        std::lock_guard lock(mu);
        ++calls[i];
      }
      if (!ec && hold) {
        if (++holding[name] != 1) ++violations;
        std::this_thread::sleep_for(2ms);
        --holding[name];
        hold.release();
      }
      ++delivered;
    };
    if (rng() % 3 == 0) {
      lock->async_lock(handler, cancels.back()->get_token());
    } else {
      lock->async_lock_for(deadline, handler, cancels.back()->get_token());
    }
    if (rng() % 4 == 0) cancels[rng() % cancels.size()]->request_stop();
  }
  std::this_thread::sleep_for(300ms);
  for (auto& c : cancels) c->request_stop();
  ASSERT_TRUE(eventually([&] { return delivered.load() == kEach * kNames; }, 60s)) << delivered.load();
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(calls.size(), static_cast<size_t>(kEach * kNames));
    for (auto& [i, n] : calls) EXPECT_EQ(n, 1) << "acquisition " << i;
  }
  EXPECT_EQ(violations.load(), 0);
  EXPECT_TRUE(eventually([&] { return all_keys() == 0; }, 20s)) << all_keys();
}

// Worker with four threads: timed tasks posted from several threads, some
// blocking (never more than two at once), some cancelled: each task not
// cancelled runs once, never early, and late by little.
TEST(ReviewStepsWorker, TimedTasksRunOnceNeverEarlyAndOnTime) {
  using detail::SteadyClock;
#if ETCDLOCK_TEST_SANITIZED
  // Instrumented, beside other tests: a CI-like ThreadSanitizer run on
  // 2026-12-04 had 91 tasks past 40 ms, the worst at 57 ms, too close to a
  // task left behind another's 60 ms block to tell the two apart. Here the
  // bound only catches a lost wake-up; the ordinary build catches both.
  constexpr long kLateMs = 150;
#else
  constexpr long kLateMs = 40;
#endif
  detail::Worker worker("test", 4);
  constexpr int kPosters = 4, kEach = 300;
  std::atomic<int> ran{0}, early{0}, late{0}, blocking{0}, twice{0};
  std::atomic<long> worst{0};
  std::vector<std::atomic<int>> runs(kPosters * kEach);
  std::atomic<int> cancelled{0};
  std::vector<std::atomic<bool>> marked(kPosters * kEach);
  std::vector<std::thread> posters;
  for (int p = 0; p < kPosters; ++p) {
    posters.emplace_back([&, p] {
      std::mt19937 rng(p);
      for (int i = 0; i < kEach; ++i) {
        const int idx = p * kEach + i;
        const auto due = SteadyClock::now() + std::chrono::milliseconds(rng() % 30);
        const bool block = rng() % 10 == 0;
        const auto id = worker.post_at(due, [&, due, block, idx] {
          const auto now = SteadyClock::now();
          if (now < due) ++early;
          const long l = std::chrono::duration_cast<std::chrono::milliseconds>(now - due).count();
          long w = worst.load();
          while (l > w && !worst.compare_exchange_weak(w, l)) {
          }
          if (l > kLateMs) ++late;
          if (++runs[idx] > 1) ++twice;
          if (block && ++blocking <= 2) std::this_thread::sleep_for(60ms);
          if (block) --blocking;
          ++ran;
        });
        if (rng() % 7 == 0) {
          worker.cancel(id);
          ++cancelled;
          marked[idx] = true;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
      }
    });
  }
  for (auto& t : posters) t.join();
  std::this_thread::sleep_for(2s);
  int never = 0;
  for (std::size_t k = 0; k < runs.size(); ++k)
    if (runs[k].load() == 0 && !marked[k]) ++never;
  EXPECT_EQ(never, 0) << "tasks neither cancelled nor run";
  EXPECT_EQ(early.load(), 0);
  EXPECT_EQ(twice.load(), 0);
  EXPECT_EQ(late.load(), 0) << "worst " << worst.load() << " ms";
}

// Tasks that post tasks while another thread stops the worker; and a task
// that stops (or destroys) its worker while others run.
TEST(ReviewStepsWorker, StopWhileTasksPostTasks) {
  for (int round = 0; round < 200; ++round) {
    auto worker = std::make_shared<detail::Worker>("test", 4);
    std::atomic<int> ran{0};
    std::function<void(int)> chain = [&, w = worker.get()](int depth) {
      ++ran;
      if (depth < 50) {
        w->post([&, depth] { chain(depth + 1); });
        w->post_at(detail::SteadyClock::now() + 1ms, [&, depth] { chain(depth + 1); });
      }
      if (depth % 7 == 0) std::this_thread::sleep_for(1ms);
    };
    for (int i = 0; i < 4; ++i) worker->post([&] { chain(0); });
    std::this_thread::sleep_for(std::chrono::microseconds(round * 20));
    if (round % 2) {
      worker->stop();
    } else {
      std::promise<void> done;
      worker->post([&] {
        worker->stop();
        done.set_value();
      });
      done.get_future().wait_for(5s);
    }
    const int after = ran.load();
    std::this_thread::sleep_for(2ms);
    EXPECT_EQ(ran.load(), after) << "a task ran after stop() returned, round " << round;
    worker.reset();
  }
}

int step_threads() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "etcdlock-steps") ++n;
    if (std::getenv("SHOW_THREADS")) fprintf(stderr, "thread %s\n", name.c_str());
  }
  return n;
}

// A step thread starts only when a task is due while every step thread is
// in a task, or a timer has no thread to keep it (a deadline must not wait
// behind a step stuck in a request). Acquisitions that wait one after
// another, each with a deadline pending, never overlap their steps: one
// thread runs them and at most one more keeps the time. (Steps that
// overlap, as when a release wakes several waiters at once, may start
// more: up to four, kept until the manager closes.)
TEST_F(ReviewSteps, NoThirdStepThreadWhileStepsDoNotOverlap) {
  auto holder = manager();
  std::vector<std::shared_ptr<Lock>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(holder->get_lock("a" + std::to_string(i)));
    held.back()->lock();
  }
  auto m = manager();
  std::atomic<int> calls{0};
  for (int i = 0; i < 4; ++i) {
    m->get_lock("a" + std::to_string(i))->async_lock_for(20s, [&](std::error_code, LockHold h) {
      ++calls;
      if (h) h.release();
    });
    // Its entry is in the queue: its steps are done until a release.
    ASSERT_TRUE(eventually([&] { return entries("a" + std::to_string(i)) == 2; }));
    std::this_thread::sleep_for(100ms);  // and what its step does after the create's reply
  }
  EXPECT_LE(step_threads(), 2);
  for (auto& lock : held) lock->unlock();
  EXPECT_TRUE(eventually([&] { return calls.load() == 4; }, 20s));
  EXPECT_LE(step_threads(), 4);
}

// A release ahead while the waiter's replies are held: its deadline passes
// mid-request; afterwards one holder at most and nothing left.
TEST_F(ReviewSteps, HeldRepliesAcrossADeadlineLeaveNothing) {
  for (int round = 0; round < 6; ++round) {
    const auto endpoint = etcd_.endpoints().at(0);
    TcpProxy link(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
    auto through = options_through(link.endpoint());
    through.command_timeout = 1s;
    auto m = std::make_unique<LockManager>(through);
    auto holder = manager();
    const std::string name = "h" + std::to_string(round);
    auto held = holder->get_lock(name);
    held->lock();
    std::promise<std::error_code> a_done;
    LockHold a_hold;
    m->get_lock(name)->async_lock_for(std::chrono::milliseconds(600 + 100 * round),
                                      [&](std::error_code ec, LockHold h) {
                                        a_hold = std::move(h);
                                        a_done.set_value(ec);
                                      });
    std::promise<Clock::time_point> b_done;
    ASSERT_TRUE(eventually([&] { return entries(name) == 2; }));
    link.hold_replies();
    held->unlock();
    const auto started = Clock::now();
    m->get_lock("other")->async_lock_for(200ms, [&](std::error_code, LockHold h) {
      if (h) h.release();
      b_done.set_value(Clock::now());
    });
    auto bf = b_done.get_future();
    auto af = a_done.get_future();
    ASSERT_EQ(af.wait_for(20s), std::future_status::ready);
    link.resume_replies();
    const auto ec = af.get();
    ASSERT_EQ(bf.wait_for(20s), std::future_status::ready);
    EXPECT_LT(bf.get() - started, 1500ms);
    if (!ec) {
      EXPECT_TRUE(a_hold);
      EXPECT_FALSE(held->try_lock());
      a_hold.release();
    }
    EXPECT_TRUE(eventually([&] { return entries(name) == 0; }, 20s))
        << "round " << round << " ec " << ec.message() << " left " << entries(name);
    m.reset();
  }
}

}  // namespace
}  // namespace etcdlock::testing
