// Names that nest ("a" and "a/b") against real etcd. The keys of "a/b" lie
// under the directory of "a"; etcd's recipe (Go's Mutex, `etcdctl lock`)
// counts them in the queue of "a", and so must etcdlock, so that no two tools
// disagree about who holds a name: "a" waits for the older entries of "a/b",
// "a/b" never waits for "a".
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "child_process.h"
#include "expect_error.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class NestedNames : public LockTest {};

TEST_F(NestedNames, AnOlderEntryOfALongerNameHoldsTheNameBack) {
  auto a = manager();
  auto b = manager();
  auto longer = a->get_lock("nest/b");
  longer->lock();
  auto outer = b->get_lock("nest");
  EXPECT_FALSE(outer->try_lock()) << "took \"nest\" while an older key of \"nest/b\" stood under its directory";
  EXPECT_EQ(entries("nest"), 1) << "a failed try_lock left a key";

  std::atomic<bool> acquired{false};
  std::jthread waiter([&] {
    outer->lock();
    acquired = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("nest") == 2; })) << "the waiter never queued";
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(acquired) << "\"nest\" acquired while \"nest/b\" held";

  const auto info = b->info("nest");
  ASSERT_TRUE(info.has_value());
  ASSERT_EQ(info->queue.size(), 2u);
  EXPECT_EQ(info->key, longer->key()) << "the queue's first entry is the longer name's";
  EXPECT_TRUE(info->queue[0].holds);
  EXPECT_FALSE(info->queue[1].holds) << "info says the waiter holds while an older entry stands";
  const auto rows = b->list();
  const auto row = std::find_if(rows.begin(), rows.end(), [](const LockInfo& r) { return r.name == "nest"; });
  ASSERT_NE(row, rows.end());
  EXPECT_EQ(row->waiters, 1u) << "list counts the queue of \"nest\" without the entry of \"nest/b\"";

  longer->unlock();
  waiter.join();
  EXPECT_TRUE(acquired);
  EXPECT_TRUE(outer->held());
  outer->unlock();
}

TEST_F(NestedNames, ALongerNameNeverWaitsForTheOuterName) {
  auto a = manager();
  auto b = manager();
  auto outer = a->get_lock("nest");
  outer->lock();
  auto longer = b->get_lock("nest/b");
  EXPECT_TRUE(longer->try_lock()) << "\"nest\" held back \"nest/b\", whose directory holds no key of it";
  longer->unlock();
  outer->unlock();
}

// The outer name's holder releases while a newer "nest/b" entry stands
// between it and the next waiter of "nest": the release must not hand over
// to that waiter (a note would admit it past "nest/b"); it gets the lock only
// when "nest/b" goes.
TEST_F(NestedNames, AReleaseHandsOverOnlyPastEveryOlderEntry) {
  auto a = manager();
  auto b = manager();
  auto c = manager();
  auto outer = a->get_lock("nest");
  outer->lock();
  auto longer = b->get_lock("nest/b");
  ASSERT_TRUE(longer->try_lock());
  auto next = c->get_lock("nest");
  std::atomic<bool> acquired{false};
  std::jthread waiter([&] {
    next->lock();
    acquired = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("nest") == 3; })) << "the waiter never queued";
  outer->unlock();
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(acquired) << "the waiter of \"nest\" got in past the older entry of \"nest/b\"";
  longer->unlock();
  waiter.join();
  EXPECT_TRUE(next->held());
  next->unlock();
}

TEST_F(NestedNames, EtcdctlAndEtcdlockAgreeAboutTheOuterName) {
  // etcdctl holds <prefix>/nest/b while its command runs.
  ChildProcess etcdctl({"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/nest/b", "--", "sh",
                        "-c", "echo held; sleep 1"});
  ASSERT_EQ(etcdctl.read_line(), "held");
  auto manager = this->manager();
  auto outer = manager->get_lock("nest");
  EXPECT_FALSE(outer->try_lock()) << "etcdctl lock " << prefix_ << "/nest would wait here; etcdlock did not";
  ASSERT_TRUE(outer->try_lock_for(20s));
  EXPECT_EQ(entries("nest"), 1) << "acquired while etcdctl's key under the directory was still there";
  EXPECT_EQ(etcdctl.wait(), 0);
  outer->unlock();
}

TEST_F(NestedNames, ForceUnlockOfTheOuterNameRefusesALongerNamesEntry) {
  auto a = manager();
  auto longer = a->get_lock("nest/b");
  longer->lock();
  auto admin = manager();
  expect_error(errc::invalid_argument, "\"nest/b\"", [&] { admin->force_unlock("nest"); });
  EXPECT_TRUE(longer->held());
  EXPECT_FALSE(longer->lost()) << "a force unlock of \"nest\" ended the hold of \"nest/b\"";
  EXPECT_EQ(entries("nest/b"), 1);
  longer->unlock();
}

TEST_F(NestedNames, WatchReportsTheOuterNameAcquiredOnlyWhenTheLongerNameGoes) {
  auto observer = manager();
  std::mutex mu;
  std::vector<std::pair<LockEvent::Kind, std::string>> seen;  // kind, key
  auto subscription = observer->watch("", [&](const LockEvent& event) {
    if (event.name != "nest") return;
    std::lock_guard lock(mu);
    seen.emplace_back(event.kind, event.entry.key);
  });
  auto a = manager();
  auto b = manager();
  auto longer = a->get_lock("nest/b");
  longer->lock();
  auto outer = b->get_lock("nest");
  std::jthread waiter([&] { outer->lock(); });
  ASSERT_TRUE(eventually([&] { return entries("nest") == 2; }));
  const auto outer_key = outer->key();
  const auto events_of_outer = [&] {
    std::lock_guard lock(mu);
    std::vector<LockEvent::Kind> kinds;
    for (const auto& [kind, key] : seen) {
      if (key == outer_key) kinds.push_back(kind);
    }
    return kinds;
  };
  ASSERT_TRUE(eventually([&] { return !events_of_outer().empty(); })) << "no event for the waiter of \"nest\"";
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(events_of_outer(), std::vector<LockEvent::Kind>{LockEvent::Kind::queued})
      << "the watch reported the waiter of \"nest\" as holding while \"nest/b\" held";
  longer->unlock();
  waiter.join();
  EXPECT_TRUE(eventually([&] {
    return events_of_outer() == std::vector<LockEvent::Kind>{LockEvent::Kind::queued, LockEvent::Kind::acquired};
  })) << "the watch never reported \"nest\" acquired once \"nest/b\" went";
  outer->unlock();
}

}  // namespace
}  // namespace etcdlock::testing
