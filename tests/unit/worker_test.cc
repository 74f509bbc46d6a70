// The manager's background threads: the worker's timers, and the notifier that
// runs loss callbacks, which may call back in or block.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "base/notifier.h"
#include "base/worker.h"

namespace etcdlock::detail {
namespace {

using namespace std::chrono_literals;

TEST(Worker, RunsTasksInTheOrderTheyAreDue) {
  Worker worker;
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> done;
  const auto now = SteadyClock::now();
  worker.post_at(now + 60ms, [&] {
    std::lock_guard lock(mu);
    order.push_back(3);
    done.set_value();
  });
  worker.post_at(now + 20ms, [&] {
    std::lock_guard lock(mu);
    order.push_back(2);
  });
  worker.post([&] {
    std::lock_guard lock(mu);
    order.push_back(1);
  });
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  std::lock_guard lock(mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(Worker, CancelledTaskDoesNotRun) {
  Worker worker;
  std::atomic<bool> ran{false};
  const auto id = worker.post_at(SteadyClock::now() + 50ms, [&] { ran = true; });
  worker.cancel(id);
  std::promise<void> later;
  worker.post_at(SteadyClock::now() + 100ms, [&] { later.set_value(); });
  ASSERT_EQ(later.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(ran);
}

// The context switches of this process's threads named `comm`, summed.
long context_switches_of(const std::string& comm) {
  long total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream name(task.path() / "comm");
    std::string line;
    if (!std::getline(name, line) || line != comm) continue;
    std::ifstream status(task.path() / "status");
    while (std::getline(status, line)) {
      if (line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:")) {
        total += std::stol(line.substr(line.find(':') + 1));
      }
    }
  }
  return total;
}

// What every hold does: a task due in 50 ms (its key watch), cancelled a
// moment later. The timekeeper must sleep through all of it: it used to be
// woken to wait again for each post, and again at each cancelled due time.
TEST(Worker, TasksPostedAndCancelledBeforeTheyAreDueWakeNoThread) {
  Worker worker("alarm");
  std::promise<void> settled;
  worker.post([&] { settled.set_value(); });
  ASSERT_EQ(settled.get_future().wait_for(5s), std::future_status::ready);
  std::this_thread::sleep_for(20ms);  // back to its wait
  const long before = context_switches_of("etcdlock-alarm");
  // Spaced as one manager's holds are when many managers share a lock: each
  // task's due time passes before the next is posted.
  for (int i = 0; i < 20; ++i) {
    const auto id = worker.post_at(SteadyClock::now() + 50ms, [] {});
    std::this_thread::sleep_for(1ms);
    worker.cancel(id);
    std::this_thread::sleep_for(60ms);
  }
  const long woken = context_switches_of("etcdlock-alarm") - before;
  EXPECT_LT(woken, 10) << "the worker's thread was switched in " << woken << " times for 20 cancelled tasks";
}

TEST(Worker, StopDropsPendingTasksAndLaterPosts) {
  Worker worker;
  std::atomic<bool> ran{false};
  worker.post_at(SteadyClock::now() + 1h, [&] { ran = true; });
  worker.stop();
  EXPECT_EQ(worker.post([&] { ran = true; }), 0u);
  EXPECT_FALSE(ran);
}

TEST(Worker, WithOneThreadATaskWaitsForTheOneBeforeIt) {
  Worker worker;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<bool> second_ran{false};
  std::promise<void> first_started;
  worker.post([&, released] {
    first_started.set_value();
    released.wait();
  });
  ASSERT_EQ(first_started.get_future().wait_for(5s), std::future_status::ready);
  std::promise<void> second_done;
  worker.post([&] {
    second_ran = true;
    second_done.set_value();
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(second_ran) << "a one-thread worker ran two tasks at once";
  release.set_value();
  EXPECT_EQ(second_done.get_future().wait_for(5s), std::future_status::ready);
}

TEST(Worker, ABlockedTaskHoldsUpNeitherTasksDueNowNorTimers) {
  Worker worker("test", 3);
  std::promise<void> release;
  auto released = release.get_future().share();
  std::promise<void> blocked;
  worker.post([&, released] {
    blocked.set_value();
    released.wait();
  });
  ASSERT_EQ(blocked.get_future().wait_for(5s), std::future_status::ready);
  std::promise<void> now_done;
  std::promise<void> timer_done;
  const auto posted = SteadyClock::now();
  worker.post([&] { now_done.set_value(); });
  worker.post_at(posted + 50ms, [&] { timer_done.set_value(); });
  EXPECT_EQ(now_done.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(timer_done.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_LT(SteadyClock::now() - posted, 3s);
  release.set_value();
}

TEST(Worker, StartsNoMoreThreadsThanItsLimit) {
  constexpr int kLimit = 3;
  Worker worker("test", kLimit);
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::atomic<int> finished{0};
  for (int i = 0; i < 8; ++i) {
    worker.post([&, released] {
      const int now = ++running;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      released.wait();
      --running;
      ++finished;
    });
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(most.load(), kLimit) << "tasks that block should spread over every thread the limit allows, and no more";
  release.set_value();
  for (int i = 0; i < 500 && finished.load() < 8; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(finished.load(), 8);
  EXPECT_LE(most.load(), kLimit);
}

// Two tasks posted at once while one thread keeps the time and one idles:
// each gets a thread, though the first post's call to the idle thread has
// not woken it yet when the second comes.
TEST(Worker, TwoTasksPostedAtOnceWithTwoIdleThreadsBothStart) {
  Worker worker("test", 3);
  {
    // Two tasks in flight at once leave two threads idle after them.
    std::promise<void> release;
    auto released = release.get_future().share();
    std::atomic<int> started{0};
    for (int i = 0; i < 2; ++i) {
      worker.post([&, released] {
        ++started;
        released.wait();
      });
    }
    for (int i = 0; i < 500 && started.load() < 2; ++i) std::this_thread::sleep_for(10ms);
    ASSERT_EQ(started.load(), 2);
    release.set_value();
    std::this_thread::sleep_for(100ms);
  }
  std::promise<void> release;
  auto released = release.get_future().share();
  std::promise<void> second_ran;
  worker.post([released] { released.wait(); });
  worker.post([&] { second_ran.set_value(); });
  EXPECT_EQ(second_ran.get_future().wait_for(2s), std::future_status::ready)
      << "the second task waited behind the first, blocked one";
  release.set_value();
}

TEST(Worker, ATaskMayStopItsOwnWorkerOfSeveralThreads) {
  auto worker = std::make_unique<Worker>("test", 2);
  std::promise<void> done;
  worker->post([&] {
    worker->stop();
    done.set_value();
  });
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(worker->post([] {}), 0u);
  worker.reset();
}

TEST(Notifier, DrainWaitsForSignalsPostedBefore) {
  Notifier notifier;
  std::atomic<int> ran{0};
  for (int i = 0; i < 20; ++i) notifier.post([&] { ++ran; });
  notifier.drain();
  EXPECT_EQ(ran.load(), 20);
}

TEST(Notifier, ABlockedSignalDoesNotHoldUpTheOthers) {
  Notifier notifier;
  std::promise<void> release;
  auto released = release.get_future().share();
  std::promise<void> second;
  notifier.post([released] { released.wait_for(10s); });
  notifier.post([&] { second.set_value(); });
  EXPECT_EQ(second.get_future().wait_for(5s), std::future_status::ready);
  release.set_value();
}

TEST(Notifier, SignalsPostedTogetherDoNotWaitBehindABlockedOne) {
  for (int trial = 0; trial < 20; ++trial) {
    Notifier notifier;
    notifier.post([] {});
    notifier.drain();  // one thread now, idle
    std::promise<void> release;
    auto released = release.get_future().share();
    std::promise<void> second;
    notifier.post([released] { released.wait_for(10s); });
    notifier.post([&] { second.set_value(); });
    EXPECT_EQ(second.get_future().wait_for(5s), std::future_status::ready) << "trial " << trial;
    release.set_value();
  }
}

TEST(Notifier, ASignalMayDrainAndStopItsNotifier) {
  auto notifier = std::make_unique<Notifier>();
  std::promise<void> done;
  notifier->post([&] {
    EXPECT_TRUE(notifier->on_notifier_thread());
    notifier->drain();  // must not wait for itself
    notifier.reset();   // the last reference, dropped on its own thread
    done.set_value();
  });
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
}

TEST(Notifier, AfterStopSignalsRunOnTheCaller) {
  Notifier notifier;
  notifier.stop();
  bool ran = false;
  notifier.post([&] { ran = true; });
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace etcdlock::detail
