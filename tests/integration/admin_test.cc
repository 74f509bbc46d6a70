// Admin operations: info, list, force unlock and revoke, on holders of every kind.
#include <gtest/gtest.h>

#include <thread>

#include "child_process.h"
#include "etcdlock/version.h"
#include "keys/holder_value.h"
#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class Admin : public LockTest {};

TEST_F(Admin, InfoDescribesTheHolderAndCountsWaiters) {
  auto admin = manager();
  EXPECT_EQ(admin->info("free"), std::nullopt);
  auto options = this->options();
  options.owner = "billing-worker-7";
  LockManager holder(options);
  auto held = holder.get_lock("jobs");
  const auto before = std::chrono::system_clock::now();
  held->lock();
  auto waiter_manager = manager();
  auto waiting = waiter_manager->get_lock("jobs");
  std::thread waiter([&] { std::lock_guard guard(*waiting); });
  ASSERT_TRUE(eventually([&] { return entries("jobs") == 2; }));

  const auto info = admin->info("jobs");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->name, "jobs");
  EXPECT_EQ(info->key, held->key());
  EXPECT_EQ(info->owner, "billing-worker-7");
  EXPECT_EQ(info->lease_id, holder.lease_id());
  EXPECT_EQ(info->fencing_token, held->fencing_token());
  EXPECT_GE(info->created_at, std::chrono::floor<std::chrono::milliseconds>(before));
  EXPECT_LE(info->created_at, std::chrono::system_clock::now());
  EXPECT_GT(info->ttl_remaining, 0s);
  EXPECT_LE(info->ttl_remaining, 5s);
  EXPECT_EQ(info->waiters, 1u);
  held->unlock();
  waiter.join();
}

TEST_F(Admin, ListGivesOneSortedRowPerHeldLock) {
  auto holder = manager();
  std::vector<std::shared_ptr<Lock>> holds;
  for (const char* name : {"b", "a", "a/b", "c/d"}) {
    holds.push_back(holder->get_lock(name));
    holds.back()->lock();
  }
  auto admin = manager();
  const auto rows = admin->list();
  ASSERT_EQ(rows.size(), 4u);
  std::vector<std::string> names;
  for (const auto& row : rows) names.push_back(row.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a", "a/b", "b", "c/d"}));
  const auto only_a = admin->list("a");
  ASSERT_EQ(only_a.size(), 2u);
  EXPECT_EQ(only_a[0].name, "a");
  EXPECT_EQ(only_a[1].name, "a/b");
  EXPECT_EQ(admin->list("zzz").size(), 0u);
}

TEST_F(Admin, HoldersFromEtcdctlAppearWithAnUnknownOwner) {
  ChildProcess etcdctl({"etcdctl", "--endpoints=" + etcd_.endpoints_csv(), "lock", prefix_ + "/from-etcdctl", "--",
                        "sh", "-c", "echo held; sleep 30"});
  ASSERT_EQ(etcdctl.read_line(), "held");
  auto admin = manager();
  const auto info = admin->info("from-etcdctl");
  ASSERT_TRUE(info);
  EXPECT_EQ(info->owner, "unknown");
  EXPECT_GT(info->ttl_remaining, 0s);
  EXPECT_EQ(info->created_at, std::chrono::system_clock::time_point{});
  const auto rows = admin->list();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].name, "from-etcdctl");
  EXPECT_EQ(rows[0].owner, "unknown");
  // And an admin can free it.
  EXPECT_TRUE(admin->force_unlock("from-etcdctl"));
  auto lock = admin->get_lock("from-etcdctl");
  EXPECT_TRUE(lock->try_lock());
  lock->unlock();
}

TEST_F(Admin, ForceUnlockRemovesOnlyTheHolder) {
  auto holder = manager();
  auto held = holder->get_lock("x");
  auto untouched = holder->get_lock("y");
  held->lock();
  untouched->lock();
  auto waiter_manager = manager();
  auto waiting = waiter_manager->get_lock("x");
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    waiting->lock();
    acquired = true;
  });
  ASSERT_TRUE(eventually([&] { return entries("x") == 2; }));
  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("x"));
  waiter.join();
  EXPECT_TRUE(acquired);
  EXPECT_TRUE(waiting->held());
  EXPECT_EQ(entries("x"), 1) << "the waiter's entry was removed too";
  EXPECT_TRUE(eventually([&] { return !held->held(); }));
  EXPECT_TRUE(untouched->held()) << "force unlock touched the holder's other lock";
  EXPECT_TRUE(untouched->guarded_put(prefix_ + "-data/y", "ok"));
  EXPECT_FALSE(admin->force_unlock("free-name"));
  waiting->unlock();
  untouched->unlock();
}

TEST_F(Admin, GuardedPutIsRefusedAfterAForceUnlock) {
  auto holder = manager();
  auto held = holder->get_lock("x");
  held->lock();
  const auto data = prefix_ + "-data/counter";
  EXPECT_TRUE(held->guarded_put(data, "1"));
  EXPECT_EQ(get(raw_, data).kvs(0).value(), "1");
  auto admin = manager();
  ASSERT_TRUE(admin->force_unlock("x"));
  // Refused by etcd even before this process hears of the loss: the compare
  // on the hold key's create revision fails.
  EXPECT_FALSE(held->guarded_put(data, "2") && held->held());
  EXPECT_EQ(get(raw_, data).kvs(0).value(), "1");
  EXPECT_TRUE(eventually([&] { return !held->held(); }));
  EXPECT_FALSE(held->guarded_put(data, "3"));
  EXPECT_FALSE(held->guarded_delete(data));
  EXPECT_EQ(get(raw_, data).kvs(0).value(), "1");
}

TEST_F(Admin, RevokeSessionEndsEveryHoldOfThatOwner) {
  auto holder = manager();
  auto a = holder->get_lock("a");
  auto b = holder->get_lock("b");
  a->lock();
  b->lock();
  auto admin = manager();
  ASSERT_TRUE(admin->revoke_lease(holder->lease_id()));
  EXPECT_TRUE(eventually([&] { return !a->held() && !b->held(); }));
  EXPECT_EQ(all_keys(), 0);
  EXPECT_FALSE(admin->revoke_lease(123456789));
}

TEST_F(Admin, RevokeSessionActsOnlyInsideThePrefix) {
  auto options = this->options();
  options.prefix = prefix_ + "-elsewhere";
  LockManager other_namespace(options);
  auto lock = other_namespace.get_lock("x");
  lock->lock();
  auto admin = manager();
  try {
    admin->revoke_lease(other_namespace.lease_id());
    ADD_FAILURE() << "revoked a lease of another prefix";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), errc::invalid_argument);
  }
  EXPECT_TRUE(lock->held());
  lock->unlock();
}

TEST_F(Admin, ForeignDataUnderThePrefixIsTolerated) {
  put(raw_, prefix_ + "/odd/not-a-lease-id", "not json");
  put(raw_, prefix_ + "/odd2/ffff", std::string(512 * 1024, '{'));
  put(raw_, prefix_ + "/no-slash-value", "x");
  auto admin = manager();
  const auto rows = admin->list();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].owner, "unknown");
  EXPECT_EQ(rows[1].owner, "unknown");
  auto lock = admin->get_lock("odd");
  EXPECT_FALSE(lock->try_lock()) << "a foreign entry holds the name, as etcd's recipe sees it";
}

}  // namespace
}  // namespace etcdlock::testing
