// What an operator sees of the locks: every queue entry in info() and list(),
// and each change of the queues as it happens (LockManager::watch), across a
// compaction that makes the watch miss changes.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "expect_error.h"
#include "lock_fixture.h"
#include "tcp_proxy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Kind = LockEvent::Kind;

class LockActivity : public LockTest {
 protected:
  std::unique_ptr<LockManager> manager_owned_by(const std::string& owner) {
    auto options = this->options();
    options.owner = owner;
    return std::make_unique<LockManager>(options);
  }

  int etcd_port() const {
    const auto endpoint = etcd_.endpoints()[0];
    return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  }
  // A manager whose connections go through `link`, to be cut.
  std::unique_ptr<LockManager> manager_through(const TcpProxy& link) {
    auto through = options();
    through.endpoints = {link.endpoint()};
    return std::make_unique<LockManager>(through);
  }

  // Writes elsewhere, then discards all history up to now.
  void compact() {
    std::int64_t revision = 0;
    for (int i = 0; i < 20; ++i) revision = put(raw_, prefix_ + "-filler", std::to_string(i));
    raw_.compact(revision, in(5s));
  }
};

// Records what a watch reports.
class Recorder {
 public:
  LockListener listener() {
    return [this](const LockEvent& event) {
      std::lock_guard lock(mu_);
      seen_.push_back(event);
    };
  }
  std::vector<LockEvent> events() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::size_t size() const {
    std::lock_guard lock(mu_);
    return seen_.size();
  }
  // "acquired jobs by owner-a", one per event, in order.
  std::vector<std::string> lines() const {
    std::vector<std::string> result;
    for (const auto& event : events()) {
      result.push_back(std::string(to_string(event.kind)) + " " + event.name + " by " + event.entry.owner +
                       (event.lease_ended ? " (lease ended)" : ""));
    }
    return result;
  }

 private:
  mutable std::mutex mu_;
  std::vector<LockEvent> seen_;
};

std::vector<bool> holds_of(const LockInfo& info) {
  std::vector<bool> holds;
  for (const auto& entry : info.queue) holds.push_back(entry.holds);
  return holds;
}

TEST_F(LockActivity, InfoListsEveryEntryOfTheQueueInOrder) {
  auto first = manager_owned_by("first");
  auto second = manager_owned_by("second");
  auto held = first->get_lock("jobs");
  held->lock();
  auto waiting = second->get_lock("jobs");
  std::thread waiter([&] { std::lock_guard guard(*waiting); });
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));

  auto admin = manager();
  const auto info = admin->info("jobs");
  ASSERT_TRUE(info);
  ASSERT_EQ(info->queue.size(), 2u);
  EXPECT_EQ(info->waiters, 1u);
  EXPECT_EQ(holds_of(*info), (std::vector<bool>{true, false}));
  EXPECT_EQ(info->queue[0].key, held->key());
  EXPECT_EQ(info->queue[0].owner, "first");
  EXPECT_EQ(info->queue[0].fencing_token, held->fencing_token());
  EXPECT_EQ(info->queue[1].owner, "second");
  EXPECT_EQ(info->queue[1].lease_id, second->lease_id());
  EXPECT_GT(info->queue[1].fencing_token, info->queue[0].fencing_token);
  EXPECT_GT(info->queue[1].created_at, std::chrono::system_clock::time_point{});
  held->unlock();
  waiter.join();
}

TEST_F(LockActivity, ListTellsWhoHoldsASemaphoreAndAReadWriteLock) {
  std::vector<std::unique_ptr<LockManager>> managers;
  for (const char* owner : {"p1", "p2", "p3"}) managers.push_back(manager_owned_by(owner));
  std::vector<Permit> permits;
  permits.push_back(managers[0]->get_semaphore("pool", 2)->acquire_permit());
  permits.push_back(managers[1]->get_semaphore("pool", 2)->acquire_permit());
  auto third = managers[2]->get_semaphore("pool", 2);
  std::jthread permit_waiter([&](std::stop_token stop) {
    try {
      auto permit = third->acquire_permit(stop);
    } catch (const Error&) {
      // cancelled at the end of the test
    }
  });

  // Read-write lock: reader, reader, writer, reader. The last reader waits
  // behind the writer.
  std::vector<std::unique_ptr<LockManager>> rw_managers;
  for (const char* owner : {"r1", "r2", "w", "r3"}) rw_managers.push_back(manager_owned_by(owner));
  auto r1 = rw_managers[0]->get_shared_lock("table");
  auto r2 = rw_managers[1]->get_shared_lock("table");
  auto writer = rw_managers[2]->get_shared_lock("table");
  auto r3 = rw_managers[3]->get_shared_lock("table");
  r1->lock_shared();
  r2->lock_shared();
  ASSERT_TRUE(eventually([&] { return entries("pool") == 3; }));
  std::thread writing([&] {
    writer->lock();
    writer->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("table") == 3; }));
  std::thread reading([&] {
    r3->lock_shared();
    r3->unlock_shared();
  });
  ASSERT_TRUE(eventually([&] { return entries("table") == 4; }));

  auto admin = manager();
  const auto rows = admin->list();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].name, "pool");
  EXPECT_EQ(holds_of(rows[0]), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(rows[0].waiters, 1u);
  EXPECT_EQ(rows[0].queue[2].owner, "p3");
  EXPECT_EQ(rows[1].name, "table");
  EXPECT_EQ(holds_of(rows[1]), (std::vector<bool>{true, true, false, false}));
  EXPECT_EQ(rows[1].waiters, 2u);
  EXPECT_EQ(rows[1].queue[2].owner, "w");
  EXPECT_EQ(admin->list("po").size(), 1u);
  EXPECT_EQ(admin->list("table/").size(), 0u) << "\"table/\" is a directory of names, not the name \"table\"";

  permit_waiter.request_stop();
  permit_waiter.join();
  permits.clear();
  r1->unlock_shared();
  r2->unlock_shared();
  writing.join();
  reading.join();
}

TEST_F(LockActivity, BadPrefixesAndListenersAreRefusedByName) {
  auto admin = manager();
  expect_error(errc::invalid_key, "\"/jobs\"", [&] { (void)admin->list("/jobs"); });
  expect_error(errc::invalid_key, "\"a//b\"", [&] { (void)admin->list("a//b"); });
  expect_error(errc::invalid_key, "\"/jobs\"", [&] { (void)admin->watch("/jobs", [](const LockEvent&) {}); });
  expect_error(errc::invalid_argument, "listener", [&] { (void)admin->watch("", LockListener{}); });
  expect_error(errc::invalid_argument, "listener", [&] { (void)admin->subscribe(SessionListener{}); });
  EXPECT_NO_THROW((void)admin->list("jobs/"));
}

TEST_F(LockActivity, WatchReportsEachEntryThatQueuesHoldsAndGoes) {
  auto watcher = manager();
  Recorder recorder;
  auto subscription = watcher->watch("jobs", recorder.listener());
  auto a = manager_owned_by("a");
  auto b = manager_owned_by("b");
  auto c = manager_owned_by("c");
  auto elsewhere = a->get_lock("other");
  elsewhere->lock();  // outside the watched names: not reported
  auto held = a->get_lock("jobs");
  held->lock();
  auto waiting = b->get_lock("jobs");
  std::thread waiter([&] { waiting->lock(); });
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));
  const auto warm_up = c->get_lock("warm-up");  // c's lease first, so that its timed try queues however slow
  warm_up->lock();
  warm_up->unlock();
  auto impatient = c->get_lock("jobs");
  EXPECT_FALSE(impatient->try_lock_for(300ms));
  held->unlock();
  waiter.join();
  b->close();  // b's lease goes, and with it b's hold

  const std::vector<std::string> expected{"acquired jobs by a",
                                          "queued jobs by b",
                                          "queued jobs by c",
                                          "left jobs by c",
                                          "released jobs by a",
                                          "acquired jobs by b",
                                          "released jobs by b (lease ended)"};
  ASSERT_TRUE(eventually([&] { return recorder.size() >= expected.size(); }))
      << ::testing::PrintToString(recorder.lines());
  std::this_thread::sleep_for(200ms);  // nothing more comes
  EXPECT_EQ(recorder.lines(), expected);
  const auto events = recorder.events();
  for (std::size_t i = 1; i < events.size(); ++i) EXPECT_GE(events[i].revision, events[i - 1].revision);
  EXPECT_EQ(events[0].entry.fencing_token, events[4].entry.fencing_token);
  EXPECT_TRUE(events[0].entry.holds);
  EXPECT_FALSE(events[1].entry.holds);
  EXPECT_TRUE(events[5].entry.holds);
  elsewhere->unlock();
}

TEST_F(LockActivity, WatchReportsHoldersFromEtcdctlAndItsOwnManager) {
  auto watcher = manager();
  Recorder recorder;
  auto subscription = watcher->watch("", recorder.listener());
  auto lock = watcher->get_lock("mine");
  lock->lock();
  lock->unlock();
  ASSERT_TRUE(put(raw_, prefix_ + "/theirs/694d7a1c2b3e0f11", "not an etcdlock value") > 0);
  ASSERT_TRUE(eventually([&] { return recorder.size() == 3; })) << ::testing::PrintToString(recorder.lines());
  EXPECT_EQ(recorder.lines(), (std::vector<std::string>{"acquired mine by " + recorder.events()[0].entry.owner,
                                                        "released mine by " + recorder.events()[0].entry.owner,
                                                        "acquired theirs by unknown"}));
  EXPECT_EQ(recorder.events()[2].entry.created_at, std::chrono::system_clock::time_point{});
}

// Changes that fall in a watch gap (the connection down, history compacted)
// are read back and reported as what differs, once.
TEST_F(LockActivity, WatchCatchesUpAcrossACompactedGap) {
  TcpProxy link(etcd_port());
  auto watcher_manager = manager_through(link);
  auto& watcher = *watcher_manager;
  Recorder recorder;
  auto subscription = watcher.watch("", recorder.listener());
  auto a = manager_owned_by("a");
  auto first = a->get_lock("x");
  first->lock();
  ASSERT_TRUE(eventually([&] { return recorder.size() == 1; }));

  link.cut();
  first->unlock();
  auto second = a->get_lock("y");
  second->lock();
  compact();
  link.restore();
  ASSERT_TRUE(eventually([&] { return recorder.size() >= 3; }, 15s)) << ::testing::PrintToString(recorder.lines());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(recorder.lines(), (std::vector<std::string>{"acquired x by a", "released x by a", "acquired y by a"}));

  // And it goes on from there.
  second->unlock();
  ASSERT_TRUE(eventually([&] { return recorder.size() == 4; })) << ::testing::PrintToString(recorder.lines());
  EXPECT_EQ(recorder.lines().back(), "released y by a");
}

// Two entries go during a compacted gap, the waiter first: the read after
// the gap reports the holder released and the waiter left, never the waiter
// holding on its way out.
TEST_F(LockActivity, EntriesThatWentInAGapAreReportedAsTheyWere) {
  TcpProxy link(etcd_port());
  auto watcher_manager = manager_through(link);
  auto& watcher = *watcher_manager;
  Recorder recorder;
  auto subscription = watcher.watch("", recorder.listener());
  put(raw_, prefix_ + "/x/11", "");  // a holder, as etcdctl lock leaves it
  put(raw_, prefix_ + "/x/ff", "");  // a waiter
  ASSERT_TRUE(eventually([&] { return recorder.size() == 2; })) << ::testing::PrintToString(recorder.lines());

  link.cut();
  erase(raw_, prefix_ + "/x/ff");
  erase(raw_, prefix_ + "/x/11");
  compact();
  link.restore();
  ASSERT_TRUE(eventually([&] { return recorder.size() >= 4; }, 15s)) << ::testing::PrintToString(recorder.lines());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(recorder.lines(), (std::vector<std::string>{"acquired x by unknown", "queued x by unknown",
                                                        "released x by unknown", "left x by unknown"}));
}

// A value that changed in a gap (a writer that took the read side) admits the
// readers behind it, as when the change is seen live.
TEST_F(LockActivity, ADowngradeInAGapAdmitsTheReadersBehind) {
  const std::string writer = R"({"owner":"w","mode":"write"})";
  const std::string downgraded = R"({"owner":"w","mode":"read"})";
  const std::string reader = R"({"owner":"r","mode":"read"})";
  TcpProxy link(etcd_port());
  auto watcher_manager = manager_through(link);
  auto& watcher = *watcher_manager;
  Recorder recorder;
  auto subscription = watcher.watch("", recorder.listener());
  put(raw_, prefix_ + "/t/11", writer);
  put(raw_, prefix_ + "/t/22", reader);
  ASSERT_TRUE(eventually([&] { return recorder.size() == 2; }));

  link.cut();
  put(raw_, prefix_ + "/t/11", downgraded);
  compact();
  link.restore();
  ASSERT_TRUE(eventually([&] { return recorder.size() >= 3; }, 15s)) << ::testing::PrintToString(recorder.lines());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(recorder.lines(), (std::vector<std::string>{"acquired t by w", "queued t by r", "acquired t by r"}));
  auto admin = manager();
  const auto info = admin->info("t");
  ASSERT_TRUE(info);
  EXPECT_EQ(holds_of(*info), (std::vector<bool>{true, true}));
}

// Whether a lease ended is asked when the change is seen, not when a slow
// listener gets to it: an unlock followed by close() is an unlock. (A close
// within milliseconds of the unlock may still be seen first: etcd cannot be
// asked about a lease as it was at a revision.) Each release reaches the
// listener after the close, so asking at delivery would say "ended".
TEST_F(LockActivity, AnUnlockBeforeACloseIsNotALeaseEndEvenForASlowListener) {
  auto watcher = manager();
  std::mutex mu;
  std::vector<bool> ended;
  auto subscription = watcher->watch("", [&](const LockEvent& event) {
    std::this_thread::sleep_for(400ms);  // each release waits behind an acquisition this long
    std::lock_guard lock(mu);
    if (event.kind == LockEvent::Kind::released) ended.push_back(event.lease_ended);
  });
  for (int i = 0; i < 3; ++i) {
    auto other = manager();
    auto lock = other->get_lock("job" + std::to_string(i));
    lock->lock();
    lock->unlock();
    std::this_thread::sleep_for(200ms);
    other->close();
  }
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    return ended.size() == 3;
  }));
  std::lock_guard lock(mu);
  EXPECT_EQ(ended, (std::vector<bool>{false, false, false}));
}

TEST_F(LockActivity, AListenerMayCallBackInAndCloseItsManager) {
  auto watcher = manager();
  std::atomic<bool> closed = false;
  std::mutex mu;
  std::vector<Subscription> more;
  auto subscription = watcher->watch("", [&](const LockEvent&) {
    try {
      (void)watcher->list();
      std::lock_guard lock(mu);
      if (more.size() < 2) more.push_back(watcher->watch("", [](const LockEvent&) {}));
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), errc::closed);
    }
    if (more.size() == 2 && !closed.exchange(true)) watcher->close();
  });
  auto other = manager();
  auto lock = other->get_lock("x");
  for (int i = 0; i < 3; ++i) {
    lock->lock();
    lock->unlock();
  }
  ASSERT_TRUE(eventually([&] { return closed.load(); }));
  subscription.cancel();
  std::lock_guard guard(mu);
  more.clear();
}

TEST_F(LockActivity, AListenerMayEndItsOwnWatch) {
  auto watcher = manager();
  std::atomic<int> calls = 0;
  Subscription subscription;
  std::mutex mu;
  {
    std::lock_guard guard(mu);
    subscription = watcher->watch("", [&](const LockEvent&) {
      ++calls;
      std::lock_guard inner(mu);
      subscription.cancel();  // from the call itself: returns at once
    });
  }
  auto lock = watcher->get_lock("x");
  for (int i = 0; i < 3; ++i) {
    lock->lock();
    lock->unlock();
  }
  ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(calls.load(), 1);
  std::lock_guard guard(mu);  // the listener's cancel() happened before what follows
  subscription.cancel();
}

TEST_F(LockActivity, AWatchOutlivingItsManagerEndsQuietly) {
  auto watcher = manager();
  Recorder recorder;
  auto subscription = watcher->watch("", recorder.listener());
  auto lock = watcher->get_lock("x");
  lock->lock();
  lock->unlock();
  ASSERT_TRUE(eventually([&] { return recorder.size() == 2; }));
  watcher->close();
  expect_error(errc::closed, "", [&] { (void)watcher->watch("", recorder.listener()); });
  watcher.reset();
  subscription.cancel();
}

}  // namespace
}  // namespace etcdlock::testing
