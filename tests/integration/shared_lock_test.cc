// The read-write lock against real etcd: readers share, writers exclude, FIFO
// between them, a writer may downgrade, a reader may not upgrade, and waits
// that end leave nothing behind.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include "expect_error.h"
#include "lock_fixture.h"
#include "occupancy.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class SharedLockTest : public LockTest {
 protected:
  // Starts `body` on a thread and returns once its entry is queued.
  std::jthread queued(std::function<void()> body) {
    const auto before = entries("rw");
    std::jthread thread(std::move(body));
    EXPECT_TRUE(eventually([&] { return entries("rw") == before + 1; }));
    return thread;
  }
};

TEST_F(SharedLockTest, ReadersShareAndWritersExclude) {
  constexpr int kManagers = 4;
  std::vector<std::unique_ptr<LockManager>> managers;
  for (int i = 0; i < kManagers; ++i) managers.push_back(manager());
  std::atomic<int> writers{0}, violations{0};
  Occupancy readers;
  std::vector<std::jthread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      auto lock = managers[t % kManagers]->get_shared_lock("rw");
      for (int round = 0; round < 4; ++round) {
        if ((t + round) % 4 == 0) {
          std::unique_lock guard(*lock);
          if (writers.fetch_add(1) != 0 || readers.inside() != 0) ++violations;
          std::this_thread::sleep_for(5ms);
          writers.fetch_sub(1);
        } else {
          std::shared_lock guard(*lock);
          readers.enter();
          if (writers.load() != 0) ++violations;
          std::this_thread::sleep_for(20ms);
          readers.leave();
        }
      }
    });
  }
  threads.clear();
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GE(readers.most(), 2) << "readers never held together";
  EXPECT_EQ(entries("rw"), 0);
}

// A reader that comes after a waiting writer waits behind it: writers are not
// starved by a stream of readers.
TEST_F(SharedLockTest, AReaderWaitsBehindAnEarlierWriter) {
  auto first_manager = manager();
  auto first = first_manager->get_shared_lock("rw");
  first->lock_shared();
  std::mutex mu;
  std::vector<std::string> order;
  auto record = [&](const std::string& who) {
    std::lock_guard lock(mu);
    order.push_back(who);
  };
  auto writer_manager = manager();
  auto writer = writer_manager->get_shared_lock("rw");
  auto writing = queued([&] {
    std::unique_lock guard(*writer);
    record("writer");
    std::this_thread::sleep_for(100ms);
  });
  auto reader_manager = manager();
  auto reader = reader_manager->get_shared_lock("rw");
  auto reading = queued([&] {
    std::shared_lock guard(*reader);
    record("later reader");
  });
  std::this_thread::sleep_for(200ms);
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(order.empty()) << "the later reader joined the first instead of waiting behind the writer";
  }
  first->unlock_shared();
  writing.join();
  reading.join();
  EXPECT_EQ(order, (std::vector<std::string>{"writer", "later reader"}));
}

TEST_F(SharedLockTest, AWriterDowngradesInPlace) {
  auto writer_manager = manager();
  auto rw = writer_manager->get_shared_lock("rw");
  rw->lock();
  const auto token = rw->fencing_token();
  std::atomic<bool> reader_in{false}, second_writer_in{false};
  auto reader_manager = manager();
  auto reader = reader_manager->get_shared_lock("rw");
  auto reading = queued([&] {
    std::shared_lock guard(*reader);
    reader_in = true;
  });
  auto other_manager = manager();
  auto other = other_manager->get_shared_lock("rw");
  auto writing = queued([&] {
    std::unique_lock guard(*other);
    second_writer_in = true;
  });
  rw->lock_shared();  // the downgrade
  EXPECT_TRUE(rw->held_shared_by_this_thread());
  EXPECT_FALSE(rw->held_exclusively_by_this_thread());
  EXPECT_EQ(rw->fencing_token(), token) << "the downgrade kept the entry";
  EXPECT_TRUE(eventually([&] { return reader_in.load(); }, 5s)) << "the reader behind did not join";
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(second_writer_in) << "a writer slipped in during the downgrade";
  rw->unlock_shared();
  writing.join();
  reading.join();
  EXPECT_TRUE(second_writer_in);
}

TEST_F(SharedLockTest, AnUpgradeFailsAtOnce) {
  auto manager = this->manager();
  auto rw = manager->get_shared_lock("rw");
  rw->lock_shared();
  const auto started = std::chrono::steady_clock::now();
  expect_error(errc::lock_already_held, "upgrading", [&] { rw->lock(); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
  EXPECT_TRUE(rw->held_shared_by_this_thread());
  rw->unlock_shared();
  std::error_code ec;
  rw->unlock(ec);
  EXPECT_EQ(ec, errc::lock_not_held);
  EXPECT_EQ(entries("rw"), 0);
}

TEST_F(SharedLockTest, CancelAndTimeoutLeaveNoKey) {
  auto writer_manager = manager();
  auto writer = writer_manager->get_shared_lock("rw");
  writer->lock();
  auto other_manager = manager();
  auto other = other_manager->get_shared_lock("rw");
  EXPECT_FALSE(other->try_lock_shared_for(300ms));
  EXPECT_FALSE(other->try_lock_for(300ms));
  EXPECT_FALSE(other->try_lock_shared());
  EXPECT_EQ(entries("rw"), 1);
  std::stop_source cancel;
  auto waiting =
      queued([&] { expect_error(errc::cancelled, "cancelled", [&] { other->lock_shared(cancel.get_token()); }); });
  cancel.request_stop();
  waiting.join();
  EXPECT_EQ(entries("rw"), 1);
  writer->unlock();
  EXPECT_EQ(entries("rw"), 0);
}

TEST_F(SharedLockTest, EachHoldHasItsLossAndFencingTokens) {
  auto manager = this->manager();
  auto admin = this->manager();
  auto rw = manager->get_shared_lock("rw");
  rw->lock_shared();
  EXPECT_GT(rw->fencing_token(), 0);
  EXPECT_TRUE(rw->guarded_put(prefix_ + "-x", "fresh"));
  const auto lost = rw->lost_token();
  ASSERT_TRUE(admin->revoke_lease(manager->lease_id()));
  EXPECT_TRUE(eventually([&] { return lost.stop_requested(); }, 5s));
  EXPECT_FALSE(rw->guarded_put(prefix_ + "-x", "stale"));
  std::error_code ec;
  rw->unlock_shared(ec);
  EXPECT_EQ(ec, errc::lock_expired);
}

}  // namespace
}  // namespace etcdlock::testing
