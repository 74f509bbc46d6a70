// The manager's life: bad input, close, unavailable etcd, a lost lease.
#include <gtest/gtest.h>

#include <thread>

#include "expect_error.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class LockLifecycle : public LockTest {};

TEST_F(LockLifecycle, BadNamesThrowInvalidKeyNamingThem) {
  auto manager = this->manager();
  for (const std::string name : {"", "/a", "a/", "a//b", "/"}) {
    expect_error(errc::invalid_key, "\"" + name + "\"", [&] { manager->get_lock(name); });
  }
  expect_error(errc::invalid_key, "NUL", [&] { manager->get_lock(std::string("a\0b", 3)); });
  expect_error(errc::invalid_key, "2048 bytes", [&] { manager->get_lock(std::string(2048, 'n')); });
  expect_error(errc::invalid_key, "UTF-8", [&] { manager->get_lock("\xff\xfe"); });
  EXPECT_NO_THROW(manager->get_lock("名前/ok"));
}

TEST_F(LockLifecycle, BadOptionsThrowNamingTheValue) {
  auto with = [&](auto change) {
    auto options = this->options();
    change(options);
    return options;
  };
  expect_error(errc::invalid_argument, "ttl of 0 s", [&] { LockManager m(with([](auto& o) { o.ttl = 0s; })); });
  expect_error(errc::invalid_argument, "ttl of -5 s", [&] { LockManager m(with([](auto& o) { o.ttl = -5s; })); });
  expect_error(errc::invalid_argument, "ttl of 1000000000 s",
               [&] { LockManager m(with([](auto& o) { o.ttl = 1'000'000'000s; })); });
  expect_error(errc::invalid_argument, "no etcd endpoints",
               [&] { LockManager m(with([](auto& o) { o.endpoints.clear(); })); });
  expect_error(errc::invalid_argument, "\"http://\"",
               [&] { LockManager m(with([](auto& o) { o.endpoints = {"http://"}; })); });
  expect_error(errc::invalid_argument, "\"garbage\"",
               [&] { LockManager m(with([](auto& o) { o.endpoints = {"garbage"}; })); });
  expect_error(errc::invalid_key, "prefix \"a//b\"", [&] { LockManager m(with([](auto& o) { o.prefix = "a//b"; })); });
  expect_error(errc::invalid_argument, "dial_timeout",
               [&] { LockManager m(with([](auto& o) { o.dial_timeout = 0ms; })); });
  // The owner is written into every entry's value, a JSON document: bytes
  // that are not UTF-8 would fail each acquisition instead of the manager.
  expect_error(errc::invalid_argument, "owner \"\\xff\\xfe\" is not valid UTF-8",
               [&] { LockManager m(with([](auto& o) { o.owner = "\xff\xfe"; })); });
  auto manager = this->manager();
  expect_error(errc::invalid_argument, "retry_interval of 0 ms",
               [&] { manager->get_lock("x", LockOptions{.retry_interval = 0ms}); });
  expect_error(errc::invalid_argument, "max_retries of -1",
               [&] { manager->get_lock("x", LockOptions{.max_retries = -1}); });
  expect_error(errc::invalid_argument, "max_retry_interval of 0 ms for lock \"x\"",
               [&] { manager->get_lock("x", LockOptions{.max_retry_interval = 0ms}); });
}

TEST_F(LockLifecycle, CloseReleasesEverythingAndWakesWaiters) {
  auto closing = manager();
  auto other = manager();
  std::vector<std::shared_ptr<Lock>> holds;
  for (const char* name : {"p", "q", "r"}) {
    holds.push_back(closing->get_lock(name));
    holds.back()->lock();
  }
  auto blocker = other->get_lock("busy");
  blocker->lock();
  auto waiting = closing->get_lock("busy");
  std::optional<errc> failure;
  std::thread waiter([&] {
    try {
      waiting->lock();
    } catch (const Error& error) {
      failure = error.value();
    }
  });
  ASSERT_TRUE(eventually([&] { return entries("busy") == 2; }));
  auto p = closing->get_lock("p");
  const auto lost = p->lost_token();
  EXPECT_FALSE(lost.stop_requested());
  closing->close();
  waiter.join();
  EXPECT_EQ(failure, errc::closed);
  EXPECT_TRUE(lost.stop_requested());
  EXPECT_FALSE(p->held());
  EXPECT_EQ(all_keys(), 1) << "only the other manager's hold may remain";
  expect_error(errc::closed, "closed", [&] { closing->get_lock("new"); });
  expect_error(errc::closed, "closed", [&] { p->lock(); });
  std::error_code ec;
  p->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  closing->close();  // idempotent
  blocker->unlock();
  EXPECT_EQ(all_keys(), 0);
}

TEST_F(LockLifecycle, LockOutlivingItsManagerThrowsClosed) {
  std::shared_ptr<Lock> lock;
  {
    auto manager = this->manager();
    lock = manager->get_lock("x");
    lock->lock();
  }
  EXPECT_FALSE(lock->held());
  expect_error(errc::closed, "closed", [&] { (void)lock->try_lock(); });
  EXPECT_EQ(all_keys(), 0);
}

TEST_F(LockLifecycle, UnreachableEtcdAtStartIsUnavailable) {
  auto options = this->options();
  options.endpoints = {"127.0.0.1:" + std::to_string(free_port())};
  options.dial_timeout = 300ms;
  const auto started = std::chrono::steady_clock::now();
  expect_error(errc::unavailable, options.endpoints[0], [&] { LockManager m(options); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
}

TEST_F(LockLifecycle, EtcdGoneWhileLockingIsUnavailableAfterRetries) {
  auto options = this->options();
  options.command_timeout = 300ms;
  LockManager manager(options);
  auto lock = manager.get_lock("x", LockOptions{.retry_interval = 50ms, .max_retries = 3});
  etcd_.member(0).kill();
  const auto started = std::chrono::steady_clock::now();
  expect_error(errc::unavailable, etcd_.endpoints()[0], [&] { lock->lock(); });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_FALSE(lock->held());
}

TEST_F(LockLifecycle, RevokedLeaseEndsTheHoldAndANewLeaseServesTheNextLock) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  const auto lost = lock->lost_token();
  const auto old_key = lock->key();
  const auto lease = get(raw_, old_key).kvs(0).lease();
  ASSERT_TRUE(raw_.lease_revoke(lease, in(5s)));
  ASSERT_TRUE(eventually([&] { return lost.stop_requested(); }));
  EXPECT_FALSE(lock->held());
  EXPECT_TRUE(lock->lost());
  EXPECT_EQ(lock->fencing_token(), 0);
  expect_error(errc::lock_expired, "lost", [&] { lock->lock(); });
  std::error_code ec;
  lock->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  lock->lock();
  EXPECT_NE(lock->key(), old_key) << "the new hold must use a new lease";
  EXPECT_TRUE(lock->held());
  lock->unlock();
}

TEST_F(LockLifecycle, DeletedKeyEndsTheHold) {
  auto manager = this->manager();
  auto lock = manager->get_lock("x");
  lock->lock();
  const auto lost = lock->lost_token();
  std::atomic<int> fired{0};
  std::stop_callback count(lost, [&] { ++fired; });
  erase(raw_, lock->key());
  ASSERT_TRUE(eventually([&] { return lost.stop_requested(); }));
  EXPECT_FALSE(lock->held());
  // The stop is requested before the signalling thread runs the callbacks: wait for ours.
  EXPECT_TRUE(eventually([&] { return fired.load() > 0; }));
  EXPECT_EQ(fired.load(), 1);
  std::error_code ec;
  lock->unlock(ec);
  EXPECT_EQ(ec, errc::lock_expired);
  EXPECT_FALSE(lock->lost_token().stop_possible());
}

}  // namespace
}  // namespace etcdlock::testing
