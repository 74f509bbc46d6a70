// The Lock API on one name: the std lock requirements, reentrancy, timeouts,
// cancellation and what each leaves in etcd.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "keys/holder_value.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class LockBasics : public LockTest {};

TEST_F(LockBasics, GetLockReturnsTheSameObjectForTheSameName) {
  auto manager = this->manager();
  auto first = manager->get_lock("jobs");
  auto second = manager->get_lock("jobs");
  EXPECT_EQ(first.get(), second.get());
  EXPECT_NE(first.get(), manager->get_lock("other").get());
  EXPECT_EQ(first->name(), "jobs");
  try {
    (void)manager->get_lock("jobs", LockOptions{.reentrant = false});
    FAIL() << "other options accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), errc::invalid_argument);
  }
}

TEST_F(LockBasics, HoldUsesEtcdsKeyLayoutAndDescribesItsHolder) {
  auto manager = this->manager();
  auto lock = manager->get_lock("jobs");
  lock->lock();
  EXPECT_TRUE(lock->held());
  EXPECT_TRUE(lock->held_by_this_thread());
  const auto key = lock->key();
  ASSERT_TRUE(key.starts_with(prefix_ + "/jobs/")) << key;
  const auto lease_hex = key.substr(prefix_.size() + 6);
  EXPECT_EQ(lease_hex.find_first_not_of("0123456789abcdef"), std::string::npos) << key;
  const auto stored = get(raw_, key);
  ASSERT_EQ(stored.kvs_size(), 1);
  EXPECT_EQ(std::to_string(stored.kvs(0).lease()).size() > 0, true);
  EXPECT_EQ(lock->fencing_token(), stored.kvs(0).create_revision());
  const auto holder = detail::decode_holder_value(stored.kvs(0).value());
  ASSERT_TRUE(holder) << stored.kvs(0).value();
  EXPECT_EQ(holder->owner, detail::default_owner());
  lock->unlock();
  EXPECT_FALSE(lock->held());
  EXPECT_EQ(lock->fencing_token(), 0);
  EXPECT_EQ(entries("jobs"), 0);
}

TEST_F(LockBasics, TryLockFailsWhileAnotherManagerHoldsAndLeavesNoKey) {
  auto holder = manager();
  auto other = manager();
  auto held = holder->get_lock("x");
  held->lock();
  auto contender = other->get_lock("x");
  EXPECT_FALSE(contender->try_lock());
  EXPECT_FALSE(contender->held());
  EXPECT_EQ(entries("x"), 1);
  held->unlock();
  EXPECT_TRUE(contender->try_lock());
  contender->unlock();
  EXPECT_EQ(entries("x"), 0);
}

TEST_F(LockBasics, UniqueLockWithATimeout) {
  auto holder = manager();
  auto other = manager();
  auto held = holder->get_lock("x");
  auto contender = other->get_lock("x");
  {
    std::unique_lock guard(*held, 2s);
    ASSERT_TRUE(guard.owns_lock());
    std::unique_lock waiting(*contender, 300ms);
    EXPECT_FALSE(waiting.owns_lock());
    EXPECT_EQ(entries("x"), 1) << "the timed-out waiter left its key";
  }
  std::unique_lock after(*contender, 5s);
  EXPECT_TRUE(after.owns_lock());
  std::lock_guard nested(*contender);  // reentrant on this thread
  EXPECT_TRUE(contender->held_by_this_thread());
}

TEST_F(LockBasics, LockForThrowsLockTimeout) {
  auto holder = manager();
  auto other = manager();
  auto held = holder->get_lock("x");
  held->lock();
  // The contender's session first: its lease grant (a first connection, slow
  // under ThreadSanitizer) is not what this timeout is to measure.
  other->get_lock("warm")->lock();
  other->get_lock("warm")->unlock();
  try {
    other->get_lock("x")->lock_for(200ms);
    FAIL() << "acquired a held lock";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), errc::lock_timeout);
    EXPECT_NE(std::string(error.what()).find("\"x\""), std::string::npos) << error.what();
  }
  EXPECT_EQ(entries("x"), 1);
}

TEST_F(LockBasics, TryLockUntilAnyClock) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  ASSERT_TRUE(lock->try_lock_until(std::chrono::system_clock::now() + 2s));
  lock->unlock();
  ASSERT_TRUE(lock->try_lock_for(std::chrono::hours::max()));
  lock->unlock();
}

TEST_F(LockBasics, ReentrantHoldCountsLevels) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  const auto token = lock->fencing_token();
  lock->lock();
  EXPECT_TRUE(lock->try_lock());
  EXPECT_EQ(lock->fencing_token(), token) << "a relock must not go to etcd";
  lock->unlock();
  lock->unlock();
  EXPECT_TRUE(lock->held());
  EXPECT_EQ(entries("x"), 1);
  lock->unlock();
  EXPECT_FALSE(lock->held());
  EXPECT_EQ(entries("x"), 0);
  std::error_code ec;
  lock->unlock(ec);
  EXPECT_EQ(ec, errc::lock_not_held);
}

TEST_F(LockBasics, NonReentrantRelockThrowsLockAlreadyHeld) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x", LockOptions{.reentrant = false});
  lock->lock();
  try {
    lock->lock();
    FAIL() << "relocked";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), errc::lock_already_held);
  }
  EXPECT_TRUE(lock->held());
  lock->unlock();
  EXPECT_EQ(entries("x"), 0);
}

TEST_F(LockBasics, UnlockFromAnotherThreadIsLockNotHeld) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  std::error_code ec;
  std::thread([&] {
    lock->unlock(ec);
    EXPECT_FALSE(lock->held_by_this_thread());
    EXPECT_TRUE(lock->held());
    EXPECT_FALSE(lock->try_lock()) << "another thread of this process holds it";
  }).join();
  EXPECT_EQ(ec, errc::lock_not_held);
  EXPECT_TRUE(lock->held());
  lock->unlock();
}

TEST_F(LockBasics, UnlockWithoutAHoldIsLoggedByTheDefaultSink) {
  auto defaults = options();
  defaults.log_sink = nullptr;  // the default: warnings and errors to stderr
  LockManager manager(defaults);
  auto lock = manager.get_lock("x");
  auto shared = manager.get_shared_lock("y");
  ::testing::internal::CaptureStderr();
  lock->unlock();
  shared->unlock_shared();
  const auto logged = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(logged.find("warning: unlock() by a thread that does not hold the lock; ignored name=x"), std::string::npos)
      << logged;
  EXPECT_NE(logged.find("unlock_shared() by a thread that does not hold that side"), std::string::npos) << logged;
  std::error_code ec;
  ::testing::internal::CaptureStderr();
  lock->unlock(ec);  // reported to the caller, not logged
  EXPECT_EQ(ec, errc::lock_not_held);
  EXPECT_EQ(::testing::internal::GetCapturedStderr().find("unlock()"), std::string::npos);
}

TEST_F(LockBasics, CancelledWaitThrowsAndLeavesNoKey) {
  auto holder = manager();
  auto other = manager();
  auto held = holder->get_lock("x");
  held->lock();
  auto contender = other->get_lock("x");
  std::stop_source cancel;
  std::optional<errc> failure;
  std::thread waiter([&] {
    try {
      contender->lock(cancel.get_token());
    } catch (const Error& error) {
      failure = error.value();
    }
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  cancel.request_stop();
  waiter.join();
  EXPECT_EQ(failure, errc::cancelled);
  EXPECT_EQ(entries("x"), 1);
  EXPECT_FALSE(contender->held());
}

TEST_F(LockBasics, CancelWhileAnotherLocalThreadHoldsIt) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  std::stop_source cancel;
  std::optional<errc> failure;
  std::thread waiter([&] {
    try {
      lock->lock(cancel.get_token());
    } catch (const Error& error) {
      failure = error.value();
    }
  });
  std::this_thread::sleep_for(100ms);
  cancel.request_stop();
  waiter.join();
  EXPECT_EQ(failure, errc::cancelled);
  EXPECT_TRUE(lock->held_by_this_thread());
  lock->unlock();
}

}  // namespace
}  // namespace etcdlock::testing
