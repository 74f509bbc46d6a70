// The wait in the queue: FIFO hand-over at depth, waiters that leave from the
// middle, holders that are deleted before their key watch starts, and queues
// shared with etcdctl lock.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "child_process.h"
#include "cued_holder.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

class Queue : public LockTest {
 protected:
  // Records who held, in order, and whether two ever held at once.
  struct Turns {
    std::mutex mu;
    std::vector<int> order;
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};

    void hold(int who, std::chrono::milliseconds how_long) {
      if (inside.fetch_add(1) != 0) ++overlaps;
      {
        std::lock_guard lock(mu);
        order.push_back(who);
      }
      std::this_thread::sleep_for(how_long);
      inside.fetch_sub(1);
    }
    std::vector<int> seen() {
      std::lock_guard lock(mu);
      return order;
    }
  };

  // Starts a waiter on `lock` and returns once its entry is in the queue.
  std::jthread queue_up(Lock& lock, int who, Turns& turns, std::chrono::milliseconds hold = 20ms) {
    const auto before = entries("x");
    std::jthread waiter([&lock, who, &turns, hold] {
      if (!lock.try_lock_for(60s)) {
        ADD_FAILURE() << "waiter " << who << " timed out";
        return;
      }
      turns.hold(who, hold);
      lock.unlock();
    });
    EXPECT_TRUE(eventually([&] { return entries("x") == before + 1; })) << "waiter " << who << " did not queue";
    return waiter;
  }

  // Puts "x"'s queue in the state where `holder`, once admitted, is
  // admitted by a note: its predecessor `first` waited too, so first's
  // release hands over in one Txn and the note comes with the delete (a
  // holder admitted by its own read after the delete, which a note in a
  // second write may trail, learns no successor).
  struct NoteChain {
    explicit NoteChain(Queue& test)
        : zero_manager(test.manager()),
          zero(locked(zero_manager->get_lock("x"))),
          first_manager(test.manager()),
          first_lock(first_manager->get_lock("x")),
          first(*first_lock),
          test_(test) {}
    // Then first holds after waiting, and the holder waits behind it.
    bool holder_queued() {
      if (!eventually([&] { return test_.entries("x") == 2; })) return false;
      zero->unlock();
      if (!first.wait_held(std::chrono::seconds(10))) return false;
      holder_manager = test_.manager();
      holder_lock = holder_manager->get_lock("x");
      holder.emplace(*holder_lock);
      return eventually([&] { return test_.entries("x") == 2; });
    }
    // Once the holder's successors queued: first releases, the holder holds.
    bool admit_holder() {
      first.release();
      return holder->wait_held(std::chrono::seconds(10));
    }

    std::unique_ptr<LockManager> zero_manager;
    std::shared_ptr<Lock> zero;
    std::unique_ptr<LockManager> first_manager;
    std::shared_ptr<Lock> first_lock;
    CuedHolder first;
    std::unique_ptr<LockManager> holder_manager;
    std::shared_ptr<Lock> holder_lock;
    std::optional<CuedHolder> holder;

   private:
    static std::shared_ptr<Lock> locked(std::shared_ptr<Lock> lock) {
      lock->lock();
      return lock;
    }
    Queue& test_;
  };

  static std::uint64_t requests(LockManager& manager, const std::string& call) {
    const auto requests = manager.metrics().requests;
    const auto found = requests.find(call);
    return found == requests.end() ? 0 : found->second;
  }

  // The reads and Txns that `holder`'s release sent through `manager`,
  // counted once the hold's key check and the inbox's clearing of its note
  // (HandOverInbox::kNoteLinger, 1 s) are over.
  struct Sent {
    std::uint64_t ranges = 0;
    std::uint64_t txns = 0;
  };
  static Sent release_counted(CuedHolder& holder, LockManager& manager) {
    std::this_thread::sleep_for(1500ms);
    const auto ranges = requests(manager, "Range");
    const auto txns = requests(manager, "Txn");
    holder.release();
    return {requests(manager, "Range") - ranges, requests(manager, "Txn") - txns};
  }
};

TEST_F(Queue, SixtyFourManagersTakeTurnsInOrderWithoutOverlap) {
  constexpr int kManagers = 64;
  auto holder = manager(10s);
  auto held = holder->get_lock("x");
  held->lock();
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<Lock>> locks;
  for (int i = 0; i < kManagers; ++i) {
    managers.push_back(manager(10s));
    locks.push_back(managers.back()->get_lock("x"));
  }
  Turns turns;
  std::vector<std::jthread> waiters;
  for (int i = 0; i < kManagers; ++i) waiters.push_back(queue_up(*locks[i], i, turns, 2ms));
  held->unlock();
  waiters.clear();  // joins
  std::vector<int> expected(kManagers);
  for (int i = 0; i < kManagers; ++i) expected[i] = i;
  EXPECT_EQ(turns.seen(), expected);
  EXPECT_EQ(turns.overlaps.load(), 0);
  EXPECT_EQ(entries("x"), 0);
}

// A waiter in the middle of the queue loses its lease: the one behind it now
// waits for the one ahead of it, and nobody is stranded.
TEST_F(Queue, WaiterInTheMiddleWhoseLeaseIsRevokedStrandsNoOne) {
  auto holder = manager();
  auto held = holder->get_lock("x");
  held->lock();
  std::vector<std::unique_ptr<LockManager>> managers;
  std::vector<std::shared_ptr<Lock>> locks;
  for (int i = 0; i < 5; ++i) {
    managers.push_back(manager());
    locks.push_back(managers.back()->get_lock("x"));
  }
  Turns turns;
  std::vector<std::jthread> waiters;
  for (int i = 0; i < 5; ++i) waiters.push_back(queue_up(*locks[i], i, turns, 100ms));
  ASSERT_TRUE(holder->revoke_lease(managers[2]->lease_id()));
  held->unlock();
  waiters.clear();
  const auto order = turns.seen();
  ASSERT_EQ(order.size(), 5u) << "a waiter never got the lock";
  std::vector<int> others;
  for (int who : order) {
    if (who != 2) others.push_back(who);
  }
  EXPECT_EQ(others, (std::vector<int>{0, 1, 3, 4})) << "the waiters that kept their places kept their order";
  EXPECT_EQ(turns.overlaps.load(), 0);
}

// The predecessor gives up (timeout) while its successor waits: the successor
// now waits for the holder, and gets the lock when the holder releases.
TEST_F(Queue, PredecessorThatTimesOutHandsItsPlaceOn) {
  auto holder = manager();
  auto held = holder->get_lock("x");
  held->lock();
  auto quitter_manager = manager();
  auto quitter = quitter_manager->get_lock("x");
  std::atomic<bool> quitter_result{true};
  std::jthread quitting([&] { quitter_result = quitter->try_lock_for(700ms); });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  auto patient_manager = manager();
  auto patient = patient_manager->get_lock("x");
  std::atomic<bool> acquired{false};
  Steady::time_point acquired_at;
  std::jthread waiting([&] {
    if (patient->try_lock_for(20s)) {
      acquired_at = Steady::now();
      acquired = true;
      patient->unlock();
    }
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
  quitting.join();
  EXPECT_FALSE(quitter_result);
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; })) << "the quitter left its entry";
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(acquired) << "acquired while the holder still held";
  const auto released_at = Steady::now();
  held->unlock();
  waiting.join();
  ASSERT_TRUE(acquired);
  EXPECT_LT(acquired_at - released_at, 2s);
}

// A waiter behind an etcdlock holder counts on the holder's note and
// watches the holder only after QueueWait::kPredecessorWatchDelay; a holder
// deleted without a note before then (a force unlock) is seen by that
// watch, which starts from the waiter's read, not from when it is created.
TEST_F(Queue, AWaiterWhoseHolderGoesWithoutANoteIsLetInByItsLaterWatch) {
  auto holder = manager();
  auto held = holder->get_lock("x");
  auto waiter_manager = manager();
  auto waiter = waiter_manager->get_lock("x");
  for (int trial = 0; trial < 3; ++trial) {
    held->lock();
    std::atomic<bool> acquired{false};
    std::jthread waiting([&] {
      if (waiter->try_lock_for(20s)) {
        acquired = true;
        waiter->unlock();
      }
    });
    ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
    ASSERT_TRUE(holder->force_unlock("x"));
    waiting.join();
    EXPECT_TRUE(acquired) << "trial " << trial;
    std::error_code ec;
    held->unlock(ec);
    EXPECT_EQ(ec, errc::lock_expired);
  }
}

// A hold deleted before its key watch has started (it starts after a short
// delay, so that brief holds cost no watch) still learns of the delete.
TEST_F(Queue, ForceUnlockOfAHoldYoungerThanItsWatchIsSignalled) {
  auto holder = manager();
  auto admin = manager();
  auto lock = holder->get_lock("x");
  for (int trial = 0; trial < 5; ++trial) {
    lock->lock();
    const auto lost = lock->lost_token();
    ASSERT_TRUE(admin->force_unlock("x"));  // within a few ms of the acquisition
    EXPECT_TRUE(eventually([&] { return lost.stop_requested(); }, 3s)) << "trial " << trial;
    EXPECT_FALSE(lock->held());
    std::error_code ec;
    lock->unlock(ec);
    EXPECT_EQ(ec, errc::lock_expired);
  }
  // Released before anyone could tell it: the unlock tells.
  lock->lock();
  const auto lost = lock->lost_token();
  ASSERT_TRUE(admin->force_unlock("x"));
  std::error_code ec;
  lock->unlock(ec);
  EXPECT_TRUE(ec == errc::lock_expired || lost.stop_requested());
  EXPECT_TRUE(lost.stop_requested()) << "an unlock that found the hold gone left its token unrequested";
}

// A holder that waited learns its successor from the read that confirms its
// note, so its release is one Txn that deletes its entry and leaves the
// successor its note: no read of the queue.
TEST_F(Queue, AReleaseHandsOverToTheSuccessorItsConfirmingReadFoundWithoutReadingTheQueue) {
  NoteChain chain(*this);
  ASSERT_TRUE(chain.holder_queued());
  Turns turns;
  auto successor_manager = manager();
  auto successor = successor_manager->get_lock("x");
  auto successor_waits = queue_up(*successor, 1, turns);
  ASSERT_TRUE(chain.admit_holder());
  const auto sent = release_counted(*chain.holder, *chain.holder_manager);
  EXPECT_EQ(sent.ranges, 0u) << "the release read the queue";
  EXPECT_EQ(sent.txns, 1u) << "the note was not in the release's Txn";
  successor_waits.join();
  EXPECT_EQ(turns.seen(), (std::vector<int>{1}));
  EXPECT_EQ(turns.overlaps.load(), 0);
}

// The successor that the holder's confirming read found leaves before the
// release: the release's Txn finds it gone and reads who is first now, and
// that one gets its note in a second write.
TEST_F(Queue, WhenTheSuccessorAHolderKnewLeftTheReleaseNotesTheNextOne) {
  NoteChain chain(*this);
  ASSERT_TRUE(chain.holder_queued());
  auto quitter_manager = manager();
  auto quitter = quitter_manager->get_lock("x");
  std::jthread quitting([&] { EXPECT_FALSE(quitter->try_lock_for(3s)); });
  ASSERT_TRUE(eventually([&] { return entries("x") == 3; }));
  Turns turns;
  auto next_manager = manager();
  auto next = next_manager->get_lock("x");
  auto next_waits = queue_up(*next, 1, turns);
  ASSERT_TRUE(chain.admit_holder());
  quitting.join();  // its wait ran out while the holder held
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; })) << "the quitter left its entry";
  const auto sent = release_counted(*chain.holder, *chain.holder_manager);
  EXPECT_EQ(sent.ranges, 0u) << "the release read the queue";
  EXPECT_EQ(sent.txns, 2u) << "no note to the entry that holds now";
  next_waits.join();
  EXPECT_EQ(turns.seen(), (std::vector<int>{1}));
  EXPECT_EQ(turns.overlaps.load(), 0);
}

// etcdlock and etcdctl waiters in one queue, each served in turn.
TEST_F(Queue, MixedQueueOfEtcdlockAndEtcdctlWaitersIsServedInOrder) {
  auto holder = manager();
  auto held = holder->get_lock("x");
  held->lock();
  Turns turns;
  auto etcdctl = [&](int who) {
    auto child = std::make_unique<ChildProcess>(
        std::vector<std::string>{"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/x", "--", "sh",
                                 "-c", "echo held " + std::to_string(who) + "; sleep 0.2"});
    return child;
  };
  const auto before = entries("x");
  auto first_tool = etcdctl(1);
  ASSERT_TRUE(eventually([&] { return entries("x") == before + 1; }));
  auto second_manager = manager();
  auto second = second_manager->get_lock("x");
  auto second_waiter = queue_up(*second, 2, turns, 200ms);
  auto third_tool = etcdctl(3);
  ASSERT_TRUE(eventually([&] { return entries("x") == before + 3; }));
  auto fourth_manager = manager();
  auto fourth = fourth_manager->get_lock("x");
  auto fourth_waiter = queue_up(*fourth, 4, turns, 50ms);

  held->unlock();
  ASSERT_EQ(first_tool->read_line(10s), "held 1");
  EXPECT_TRUE(turns.seen().empty()) << "an etcdlock waiter went ahead of etcdctl";
  EXPECT_EQ(first_tool->wait(), 0);
  ASSERT_TRUE(eventually([&] { return turns.seen().size() == 1; }));
  EXPECT_EQ(turns.seen(), (std::vector<int>{2}));
  ASSERT_EQ(third_tool->read_line(10s), "held 3");
  EXPECT_EQ(turns.seen(), (std::vector<int>{2})) << "the last waiter went ahead of etcdctl";
  EXPECT_EQ(third_tool->wait(), 0);
  second_waiter.join();
  fourth_waiter.join();
  EXPECT_EQ(turns.seen(), (std::vector<int>{2, 4}));
  EXPECT_EQ(turns.overlaps.load(), 0);
  EXPECT_EQ(entries("x"), 0);
}

// A waiter whose entry is deleted under it (an admin, an operator) says so
// once, naming the key, queues again and gets the lock; nothing is left over.
TEST_F(Queue, AWaiterWhoseEntryIsDeletedLogsItOnceAndQueuesAgain) {
  struct Logged {
    LogLevel level;
    std::string message;
    std::vector<std::pair<std::string, std::string>> fields;  // copied: a field's name is a view
  };
  std::mutex log_mu;
  std::vector<Logged> log;
  auto logging = options();
  logging.log_sink = [&](LogLevel level, std::string_view message, std::span<const LogField> fields) {
    std::lock_guard lock(log_mu);
    Logged entry{level, std::string(message), {}};
    for (const auto& [name, value] : fields) entry.fields.emplace_back(name, value);
    log.push_back(std::move(entry));
  };
  const auto logged = [&](std::string_view message) {
    std::lock_guard lock(log_mu);
    std::vector<Logged> found;
    for (const auto& entry : log) {
      if (entry.message == message) found.push_back(entry);
    }
    return found;
  };
  auto holder_manager = manager();
  auto held = holder_manager->get_lock("x");
  held->lock();
  const auto holder_key = held->key();
  LockManager waiter_manager(logging);
  auto waiting = waiter_manager.get_lock("x");
  std::atomic<bool> got{false};
  std::jthread waiter([&] {
    waiting->lock();
    got = true;
    waiting->unlock();
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  const auto queued = keys_under(raw_, prefix_ + "/x/");
  ASSERT_EQ(queued.size(), 2u);
  ASSERT_EQ(queued[0], holder_key);
  const auto waiter_key = queued[1];
  ASSERT_EQ(erase(raw_, waiter_key), 1);
  held->unlock();
  ASSERT_TRUE(eventually([&] { return got.load(); }, 10s)) << "the waiter did not queue again";
  waiter.join();
  const auto lost = logged("queue entry lost while waiting; queueing again");
  ASSERT_EQ(lost.size(), 1u);
  EXPECT_EQ(lost[0].level, LogLevel::info);
  EXPECT_EQ(lost[0].fields, (std::vector<std::pair<std::string, std::string>>{{"name", "x"}, {"key", waiter_key}}));
  EXPECT_TRUE(logged("could not hand a leftover entry to its removal").empty());
  EXPECT_TRUE(eventually([&] { return entries("x") == 0; }));
}

}  // namespace
}  // namespace etcdlock::testing
