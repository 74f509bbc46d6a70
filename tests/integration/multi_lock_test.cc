// MultiLock (issue 25): several names held as one, by one enqueue Txn.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "child_process.h"
#include "expect_error.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class MultiLockTest : public LockTest {
 protected:
  std::string key_of(const std::string& name, const LockManager& manager) const {
    return detail::queue_key(prefix_ + "/" + name + "/", manager.lease_id());
  }
};

// Per name: a holder count that notices overlap, and the fencing tokens seen,
// which must strictly increase from one holder to the next.
struct Resource {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::mutex mu;
  std::int64_t last_token = 0;
  int token_regressions = 0;
  long counter = 0;

  void enter(std::int64_t token) {
    if (inside.fetch_add(1) != 0) ++overlaps;
    {
      std::lock_guard lock(mu);
      if (token <= last_token) ++token_regressions;
      last_token = token;
    }
    const long seen = counter;  // deliberately not atomic: overlap loses updates
    std::this_thread::yield();
    counter = seen + 1;
    inside.fetch_sub(1);
  }
};

TEST_F(MultiLockTest, TwoManagersAskingInOppositeOrdersNeitherDeadlockNorOverlap) {
  constexpr int kRounds = 500;  // per manager: 1,000 acquisitions in all
  auto a = manager();
  auto b = manager();
  auto xy = a->get_multi_lock({"x", "y"});
  auto yx = b->get_multi_lock({"y", "x"});
  std::map<std::string, Resource> resources;
  resources["x"];
  resources["y"];
  std::atomic<int> done{0};
  const auto work = [&](MultiLock& lock) {
    for (int round = 0; round < kRounds; ++round) {
      std::lock_guard guard(lock);
      for (const auto& name : lock.names()) resources[name].enter(lock.fencing_token(name));
      if (round % 100 == 0) {
        // The fenced counter: a write that commits only while both keys stand.
        ASSERT_TRUE(lock.guarded_put(prefix_ + "-data/counter", std::to_string(round)));
      }
    }
    ++done;
  };
  std::jthread first([&] { work(*xy); });
  std::jthread second([&] { work(*yx); });
  // A deadlock would leave both threads waiting for ever.
  ASSERT_TRUE(eventually([&] { return done.load() == 2; }, 150s)) << "no progress: deadlock?";
  for (auto& [name, resource] : resources) {
    EXPECT_EQ(resource.overlaps.load(), 0) << name;
    EXPECT_EQ(resource.token_regressions, 0) << name;
    EXPECT_EQ(resource.counter, 2 * kRounds) << name;
  }
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
}

TEST_F(MultiLockTest, ThreadsWithOverlappingSetsAndAPlainLockDoNotDeadlock) {
  auto shared = manager();
  auto xy = shared->get_multi_lock({"x", "y"});
  auto yz = shared->get_multi_lock({"z", "y"});
  auto y = shared->get_lock("y");
  std::map<std::string, Resource> resources;
  for (const auto* name : {"x", "y", "z"}) resources[name];
  std::atomic<int> done{0};
  std::vector<std::jthread> threads;
  for (MultiLock* lock : {xy.get(), yz.get(), xy.get()}) {
    threads.emplace_back([&, lock] {
      for (int round = 0; round < 40; ++round) {
        std::lock_guard guard(*lock);
        for (const auto& name : lock->names()) resources[name].enter(lock->fencing_token(name));
      }
      ++done;
    });
  }
  threads.emplace_back([&] {
    for (int round = 0; round < 40; ++round) {
      std::lock_guard guard(*y);
      resources["y"].enter(y->fencing_token());
    }
    ++done;
  });
  ASSERT_TRUE(eventually([&] { return done.load() == 4; }, 120s)) << "no progress: deadlock?";
  for (auto& [name, resource] : resources) {
    EXPECT_EQ(resource.overlaps.load(), 0) << name;
    EXPECT_EQ(resource.token_regressions, 0) << name;
  }
}

TEST_F(MultiLockTest, OneSetWhateverTheOrderAndNamesAreChecked) {
  auto m = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  EXPECT_EQ(xy, m->get_multi_lock({"y", "x"}));
  EXPECT_EQ(xy->names(), (std::vector<std::string>{"x", "y"}));
  expect_error(errc::invalid_argument, "\"x\"", [&] { (void)m->get_multi_lock({"x", "y", "x"}); });
  expect_error(errc::invalid_key, "\"/bad\"", [&] { (void)m->get_multi_lock({"x", "/bad"}); });
  expect_error(errc::invalid_argument, "at least one", [&] { (void)m->get_multi_lock({}); });
  // One Txn puts every entry, within etcd's default limit of 128 operations.
  std::vector<std::string> many;
  for (int i = 0; i < 65; ++i) many.push_back("n" + std::to_string(i));
  const std::vector<std::string_view> views(many.begin(), many.end());
  expect_error(errc::invalid_argument, "at most 64 names", [&] { (void)m->get_multi_lock(views); });
  EXPECT_NO_THROW((void)m->get_multi_lock(std::span(views).first(64)));
  const auto election = m->get_election("e");
  expect_error(errc::invalid_argument, "\"e\"", [&] { (void)m->get_multi_lock({"x", "e"}); });
}

TEST_F(MultiLockTest, OneTxnGivesEveryNameOneTokenAndGuardedWritesCompareThemAll) {
  auto m = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  EXPECT_EQ(xy->fencing_token(), 0);
  xy->lock();
  EXPECT_TRUE(xy->held());
  EXPECT_TRUE(xy->held_by_this_thread());
  const auto x = get(raw_, key_of("x", *m));
  const auto y = get(raw_, key_of("y", *m));
  ASSERT_EQ(x.kvs_size(), 1);
  ASSERT_EQ(y.kvs_size(), 1);
  EXPECT_EQ(x.kvs(0).create_revision(), y.kvs(0).create_revision());
  EXPECT_EQ(xy->fencing_token("x"), x.kvs(0).create_revision());
  EXPECT_EQ(xy->fencing_token("y"), y.kvs(0).create_revision());
  expect_error(errc::invalid_argument, "\"z\"", [&] { (void)xy->fencing_token("z"); });
  EXPECT_TRUE(xy->guarded_put(prefix_ + "-data/k", "v"));
  // Reentrant, as Lock: one more level, no request to etcd.
  xy->lock();
  xy->unlock();
  EXPECT_TRUE(xy->held());
  xy->unlock();
  EXPECT_FALSE(xy->held());
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
  EXPECT_FALSE(xy->guarded_put(prefix_ + "-data/k", "w"));
  std::error_code ec;
  xy->unlock(ec);
  EXPECT_EQ(ec, errc::lock_not_held);
}

TEST_F(MultiLockTest, APlainLockOfTheSameManagerAndTheMultiLockExcludeEachOther) {
  auto m = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  auto y = m->get_lock("y");
  xy->lock();
  // The same thread: an error, not a wait for itself.
  expect_error(errc::lock_already_held, "\"y\"", [&] { y->lock(); });
  std::jthread([&] { EXPECT_FALSE(y->try_lock()); }).join();
  std::atomic<bool> got{false};
  std::jthread other([&] {
    std::lock_guard guard(*y);
    got = true;
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(got.load());
  xy->unlock();
  other.join();
  EXPECT_TRUE(got.load());
  y->lock();
  expect_error(errc::lock_already_held, "\"y\"", [&] { xy->lock(); });
  std::jthread([&] { EXPECT_FALSE(xy->try_lock()); }).join();
  y->unlock();
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
}

TEST_F(MultiLockTest, ExcludesAndIsExcludedByLocksOfOtherManagers) {
  auto a = manager();
  auto b = manager();
  auto xy = a->get_multi_lock({"x", "y"});
  auto y = b->get_lock("y");
  std::atomic<bool> y_locked{false};
  std::atomic<bool> release_y{false};
  std::jthread y_holder([&] {
    y->lock();
    y_locked = true;
    while (!release_y) std::this_thread::sleep_for(5ms);
    y->unlock();
  });
  ASSERT_TRUE(eventually([&] { return y_locked.load(); }));
  EXPECT_FALSE(xy->try_lock());
  EXPECT_EQ(entries("x"), 0) << "a failed try left an entry";
  EXPECT_EQ(entries("y"), 1);
  std::jthread releaser([&] {
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(entries("x"), 1) << "the waiting multi-lock queues in x too";
    release_y = true;
  });
  const auto started = std::chrono::steady_clock::now();
  xy->lock();
  EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms) << "acquired while y was held";
  EXPECT_TRUE(xy->held());
  std::jthread([&] { EXPECT_FALSE(y->try_lock()); }).join();
  // Another thread holds nothing: its unlock is ignored.
  std::jthread([&] { xy->unlock(); }).join();
  EXPECT_TRUE(xy->held());
  std::atomic<bool> y_got{false};
  std::jthread y_waiter([&] {
    y->lock();
    y_got = true;
    y->unlock();
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(y_got.load()) << "y acquired while the multi-lock held it";
  xy->unlock();
  y_waiter.join();
  EXPECT_TRUE(y_got.load());
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
}

// The multi-lock counts on the note of y's holder, an etcdlock Lock, and
// watches that holder only after QueueWait::kPredecessorWatchDelay; a holder
// deleted without a note before then (a force unlock) is seen by that watch,
// which starts from the multi-lock's read, not from when it is created.
TEST_F(MultiLockTest, AWaiterWhoseHolderGoesWithoutANoteIsLetInByItsLaterWatch) {
  auto a = manager();
  auto b = manager();
  auto xy = a->get_multi_lock({"x", "y"});
  auto y = b->get_lock("y");
  for (int trial = 0; trial < 3; ++trial) {
    y->lock();
    std::atomic<bool> acquired{false};
    std::jthread waiting([&] {
      if (xy->try_lock_for(20s)) {
        acquired = true;
        xy->unlock();
      }
    });
    ASSERT_TRUE(eventually([&] { return entries("y") == 2; }));
    ASSERT_TRUE(b->force_unlock("y"));
    waiting.join();
    EXPECT_TRUE(acquired) << "trial " << trial;
    std::error_code ec;
    y->unlock(ec);
    EXPECT_EQ(ec, errc::lock_expired);
  }
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
}

TEST_F(MultiLockTest, ExcludesAndIsExcludedByEtcdctlLock) {
  auto m = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  {
    ChildProcess etcdctl({"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/y", "--", "sh", "-c",
                          "echo held; sleep 1"});
    ASSERT_EQ(etcdctl.read_line(), "held");
    EXPECT_FALSE(xy->try_lock());
    ASSERT_TRUE(xy->try_lock_for(20s));
    EXPECT_EQ(entries("y"), 1) << "acquired while etcdctl's key was still there";
    EXPECT_EQ(etcdctl.wait(), 0);
  }
  ChildProcess etcdctl(
      {"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/y", "--", "sh", "-c", "echo held"});
  EXPECT_EQ(etcdctl.read_line(700ms), std::nullopt) << "etcdctl got the lock while we held it";
  xy->unlock();
  EXPECT_EQ(etcdctl.read_line(), "held");
  EXPECT_EQ(etcdctl.wait(), 0);
}

TEST_F(MultiLockTest, LossOfOneNameFiresTheTokenAndReleasesTheOthers) {
  auto m = manager();
  auto admin = manager();
  auto xy = m->get_multi_lock({"x", "y"});
  xy->lock();
  const auto lost = xy->lost_token();
  ASSERT_TRUE(lost.stop_possible());
  EXPECT_FALSE(lost.stop_requested());
  ASSERT_TRUE(admin->force_unlock("y"));
  EXPECT_TRUE(eventually([&] { return lost.stop_requested(); }));
  EXPECT_TRUE(xy->lost());
  EXPECT_FALSE(xy->held());
  EXPECT_EQ(xy->fencing_token("x"), 0);
  EXPECT_FALSE(xy->guarded_put(prefix_ + "-data/k", "v"));
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; })) << "the other name's entry stayed";
  // Someone else can take x now, while the loser has not unlocked yet.
  auto other = admin->get_lock("x");
  EXPECT_TRUE(other->try_lock_for(5s));
  std::error_code ec;
  xy->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  other->unlock();
  // And the set can be taken again.
  EXPECT_TRUE(xy->try_lock_for(5s));
  xy->unlock();
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 0);
}

TEST_F(MultiLockTest, TimedOutCancelledAndFailedTriesLeaveNoKey) {
  auto a = manager();
  auto b = manager();
  auto xy = a->get_multi_lock({"x", "y"});
  auto y = b->get_lock("y");
  y->lock();
  EXPECT_FALSE(xy->try_lock());
  EXPECT_FALSE(xy->try_lock_for(300ms));
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 1);
  std::stop_source cancel;
  std::jthread canceller([&] {
    std::this_thread::sleep_for(300ms);
    cancel.request_stop();
  });
  expect_error(errc::cancelled, "\"x\"", [&] { xy->lock(cancel.get_token()); });
  expect_error(errc::lock_timeout, "\"y\"", [&] { xy->lock_for(200ms); });
  EXPECT_EQ(entries("x"), 0);
  EXPECT_EQ(entries("y"), 1);
  y->unlock();
  EXPECT_TRUE(xy->try_lock());
  xy->unlock();
  EXPECT_EQ(all_keys(), 0);
}

TEST_F(MultiLockTest, WaitersOfEachNameAreHandedTheLockInTurn) {
  auto a = manager();
  auto b = manager();
  auto c = manager();
  auto xy = a->get_multi_lock({"x", "y"});
  auto x = b->get_lock("x");
  auto yz = c->get_multi_lock({"y", "z"});
  xy->lock();
  std::atomic<int> order{0};
  int x_at = 0;
  int yz_at = 0;
  std::jthread x_waiter([&] {
    x->lock();
    x_at = ++order;
    x->unlock();
  });
  std::jthread yz_waiter([&] {
    yz->lock();
    yz_at = ++order;
    yz->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2 && entries("y") == 2; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(order.load(), 0);
  xy->unlock();
  x_waiter.join();
  yz_waiter.join();
  EXPECT_GT(x_at, 0);
  EXPECT_GT(yz_at, 0);
  EXPECT_FALSE(xy->lost());
  EXPECT_FALSE(yz->lost());
  for (const auto* name : {"x", "y", "z"}) EXPECT_EQ(entries(name), 0) << name;
}

// info() and list() name a multi-lock's set on each of its entries, so an
// operator who looks at one name learns what else that holder holds.
TEST_F(MultiLockTest, InfoNamesTheSetOfAMultiLocksEntries) {
  auto m = manager();
  auto other = manager();
  auto xy = m->get_multi_lock({"y", "x"});
  xy->lock();
  auto waiter = other->get_lock("x");
  std::jthread waits([&] { std::lock_guard guard(*waiter); });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  const auto x = m->info("x");
  ASSERT_TRUE(x);
  ASSERT_EQ(x->queue.size(), 2u);
  EXPECT_EQ(x->queue[0].multi_lock_names, (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(x->queue[1].multi_lock_names.empty()) << "a Lock's entry names no set";
  for (const auto& row : m->list()) {
    EXPECT_EQ(row.queue.front().multi_lock_names, (std::vector<std::string>{"x", "y"})) << row.name;
  }
  xy->unlock();
}

}  // namespace
}  // namespace etcdlock::testing
