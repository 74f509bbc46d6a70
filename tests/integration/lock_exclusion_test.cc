// Mutual exclusion across managers, threads and etcd's own lock tools.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "child_process.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class LockExclusion : public LockTest {};

// A critical section that notices overlap: a holder flag, and a counter
// updated with a deliberately non-atomic read-modify-write.
struct CriticalSection {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<long> counter{0};
  std::atomic<long> entries{0};

  void enter() {
    if (inside.fetch_add(1) != 0) ++overlaps;
    const long seen = counter.load();
    std::this_thread::yield();
    counter.store(seen + 1);
    ++entries;
    inside.fetch_sub(1);
  }
};

TEST_F(LockExclusion, ManagersWithTheirOwnLeasesNeverOverlap) {
  constexpr int kManagers = 4;
  constexpr int kRounds = 40;
  std::vector<std::unique_ptr<LockManager>> managers;
  for (int i = 0; i < kManagers; ++i) managers.push_back(manager());
  CriticalSection section;
  std::vector<std::thread> workers;
  for (int i = 0; i < kManagers; ++i) {
    workers.emplace_back([&, i] {
      auto lock = managers[i]->get_lock("counter");
      for (int round = 0; round < kRounds; ++round) {
        std::lock_guard guard(*lock);
        section.enter();
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(section.overlaps.load(), 0);
  EXPECT_EQ(section.counter.load(), kManagers * kRounds) << "lost updates";
  EXPECT_EQ(entries("counter"), 0);
}

TEST_F(LockExclusion, ThreadsOfOneProcessExcludeEachOther) {
  auto manager = this->manager();
  auto lock = manager->get_lock("counter");
  constexpr int kThreads = 8;
  constexpr int kRounds = 25;
  CriticalSection section;
  std::vector<std::thread> workers;
  for (int i = 0; i < kThreads; ++i) {
    workers.emplace_back([&] {
      for (int round = 0; round < kRounds; ++round) {
        std::lock_guard guard(*lock);
        EXPECT_TRUE(lock->held_by_this_thread());
        section.enter();
      }
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(section.overlaps.load(), 0);
  EXPECT_EQ(section.counter.load(), kThreads * kRounds);
  EXPECT_EQ(entries("counter"), 0);
}

TEST_F(LockExclusion, WaitersAreServedInArrivalOrder) {
  auto first = manager();
  auto second = manager();
  auto third = manager();
  auto held = first->get_lock("queue");
  held->lock();
  std::mutex order_mutex;
  std::vector<int> order;
  auto wait_then_record = [&](LockManager& manager, int id) {
    return std::thread([&, id] {
      auto lock = manager.get_lock("queue");
      std::lock_guard guard(*lock);
      std::lock_guard record(order_mutex);
      order.push_back(id);
    });
  };
  auto second_waiter = wait_then_record(*second, 2);
  ASSERT_TRUE(eventually([&] { return entries("queue") == 2; }));
  auto third_waiter = wait_then_record(*third, 3);
  ASSERT_TRUE(eventually([&] { return entries("queue") == 3; }));
  held->unlock();
  second_waiter.join();
  third_waiter.join();
  EXPECT_EQ(order, (std::vector<int>{2, 3}));
}

TEST_F(LockExclusion, FencingTokensIncreaseAcrossHolders) {
  auto a = manager();
  auto b = manager();
  std::int64_t last = 0;
  for (int round = 0; round < 20; ++round) {
    auto lock = (round % 2 ? a : b)->get_lock("fenced");
    std::lock_guard guard(*lock);
    EXPECT_GT(lock->fencing_token(), last);
    last = lock->fencing_token();
  }
}

// Names that nest ("a" and "a/b"): tests/integration/nested_names_test.cc.

TEST_F(LockExclusion, EtcdctlLockExcludesUs) {
  // etcdctl holds <prefix>/x while its command runs.
  ChildProcess etcdctl({"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/x", "--", "sh", "-c",
                        "echo held; sleep 1"});
  ASSERT_EQ(etcdctl.read_line(), "held");
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  EXPECT_FALSE(lock->try_lock());
  ASSERT_TRUE(lock->try_lock_for(20s));
  EXPECT_EQ(entries("x"), 1) << "acquired while etcdctl's key was still there";
  EXPECT_EQ(etcdctl.wait(), 0);
  lock->unlock();
}

TEST_F(LockExclusion, WeExcludeEtcdctlLock) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  ChildProcess etcdctl(
      {"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/x", "--", "sh", "-c", "echo held"});
  EXPECT_EQ(etcdctl.read_line(700ms), std::nullopt) << "etcdctl got the lock while we held it";
  lock->unlock();
  EXPECT_EQ(etcdctl.read_line(), "held");
  EXPECT_EQ(etcdctl.wait(), 0);
}

TEST_F(LockExclusion, ProcessThatDiesWithoutClosingLeavesNothingOnceTheTtlPasses) {
  ChildProcess holder({built_program("lock_holder"), etcd_.endpoints_csv(), prefix_, "crash", "2"});
  const auto line = holder.read_line();
  ASSERT_TRUE(line && line->starts_with("held ")) << line.value_or("no output");
  EXPECT_EQ(entries("crash"), 1);
  holder.signal(SIGKILL);
  holder.wait();
  auto manager = this->manager();
  auto lock = manager->get_lock("crash");
  ASSERT_TRUE(lock->try_lock_for(10s)) << "the dead process's lease did not expire";
  lock->unlock();
  EXPECT_EQ(entries("crash"), 0);
}

}  // namespace
}  // namespace etcdlock::testing
