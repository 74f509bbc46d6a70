// etcdlock/asio.h: Lock's asynchronous acquisition with each of Asio's
// completion tokens (a callback, use_future, use_awaitable, deferred), the
// handler on its own executor, and cancellation through a cancellation slot.
#include "etcdlock/asio.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <future>
#include <map>
#include <thread>

#include "lock_fixture.h"

namespace etcdlock::testing {
namespace {

using namespace std::chrono_literals;

class AsioLock : public LockTest {
 protected:
  // Runs `io` on a thread of its own until the test ends.
  void run_io() {
    io_thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    work_.reset();
    if (io_thread_.joinable()) io_thread_.join();
  }

  ::asio::io_context io_;
  std::optional<::asio::executor_work_guard<::asio::io_context::executor_type>> work_{io_.get_executor()};
  std::thread io_thread_;
};

TEST_F(AsioLock, CallbackRunsOnItsExecutor) {
  auto manager = this->manager();
  auto lock = manager->get_lock("jobs");
  run_io();
  std::promise<bool> on_io;
  etcdlock::asio::async_lock(*lock, ::asio::bind_executor(io_, [&](std::error_code ec, LockHold hold) {
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_TRUE(hold.held());
    on_io.set_value(io_.get_executor().running_in_this_thread());
  }));
  auto result = on_io.get_future();
  ASSERT_EQ(result.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(result.get());
  // The hold goes with the handler, which has set the promise before it
  // returns: its release may still be under way here.
  EXPECT_TRUE(eventually([&] { return entries("jobs") == 0; }));
}

TEST_F(AsioLock, UseFutureGivesTheHoldOrThrowsTheError) {
  auto first = manager();
  auto second = manager();
  auto lock = first->get_lock("jobs");
  auto hold = etcdlock::asio::async_lock(*lock, ::asio::use_future).get();
  EXPECT_TRUE(hold.held());
  auto timed_out = etcdlock::asio::async_lock_for(*second->get_lock("jobs"), 300ms, ::asio::use_future);
  try {
    (void)timed_out.get();
    FAIL() << "acquired a held lock";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code(), errc::lock_timeout);
  }
  EXPECT_EQ(entries("jobs"), 1);
  hold.release();
  EXPECT_EQ(entries("jobs"), 0);
}

TEST_F(AsioLock, CoroutinesTakeTurnsWithCoAwait) {
  auto first = manager();
  auto second = manager();
  std::vector<std::int64_t> tokens;
  const auto job = [&](std::shared_ptr<Lock> lock) -> ::asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      auto hold = co_await etcdlock::asio::async_lock(*lock, ::asio::use_awaitable);
      EXPECT_TRUE(io_.get_executor().running_in_this_thread());
      tokens.push_back(hold.fencing_token());
      ::asio::steady_timer pause(io_, 20ms);
      co_await pause.async_wait(::asio::use_awaitable);
      EXPECT_TRUE(hold.held());
    }  // each hold released as it goes out of scope, on the io thread
  };
  ::asio::co_spawn(io_, job(first->get_lock("jobs")), ::asio::detached);
  ::asio::co_spawn(io_, job(second->get_lock("jobs")), ::asio::detached);
  work_.reset();
  io_.run();  // until both coroutines end
  ASSERT_EQ(tokens.size(), 6u);
  EXPECT_TRUE(std::is_sorted(tokens.begin(), tokens.end()));
  EXPECT_EQ(entries("jobs"), 0);
}

// Coroutines on one io_context take overlapping sets of names, in both
// orders, with co_await: none deadlocks, and each name's tokens increase.
TEST_F(AsioLock, MultiLocksWithCoAwait) {
  auto first = manager();
  auto second = manager();
  std::map<std::string, std::vector<std::int64_t>> tokens;
  const auto job = [&](std::shared_ptr<MultiLock> lock) -> ::asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) {
      auto hold = co_await etcdlock::asio::async_lock(*lock, ::asio::use_awaitable);
      EXPECT_TRUE(io_.get_executor().running_in_this_thread());
      for (const auto& name : hold.names()) tokens[name].push_back(hold.fencing_token(name));
      ::asio::steady_timer pause(io_, 10ms);
      co_await pause.async_wait(::asio::use_awaitable);
      EXPECT_TRUE(hold.held());
    }
  };
  ::asio::co_spawn(io_, job(first->get_multi_lock({"x", "y"})), ::asio::detached);
  ::asio::co_spawn(io_, job(second->get_multi_lock({"y", "x"})), ::asio::detached);
  ::asio::co_spawn(io_, job(second->get_multi_lock({"y", "z"})), ::asio::detached);
  work_.reset();
  io_.run();  // until every coroutine ends
  EXPECT_EQ(tokens["x"].size(), 6u);
  EXPECT_EQ(tokens["y"].size(), 9u);
  EXPECT_EQ(tokens["z"].size(), 3u);
  for (const auto& [name, seen] : tokens) {
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << name;
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << name << ": a token twice";
  }
  for (const auto* name : {"x", "y", "z"}) EXPECT_EQ(entries(name), 0) << name;
}

TEST_F(AsioLock, DeferredStartsWhenInvoked) {
  auto manager = this->manager();
  auto lock = manager->get_lock("jobs");
  auto operation = etcdlock::asio::async_lock(*lock, ::asio::experimental::deferred);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(entries("jobs"), 0);  // nothing started yet
  auto hold = std::move(operation)(::asio::use_future).get();
  EXPECT_TRUE(hold.held());
  EXPECT_EQ(entries("jobs"), 1);
}

TEST_F(AsioLock, CancellationSlotCancelsTheWaitAndLeavesNoKey) {
  auto first = manager();
  auto second = manager();
  auto held = first->get_lock("jobs");
  held->lock();
  run_io();
  ::asio::cancellation_signal cancel;
  std::promise<std::error_code> result;
  etcdlock::asio::async_lock(
      *second->get_lock("jobs"),
      ::asio::bind_cancellation_slot(cancel.slot(), ::asio::bind_executor(io_, [&](std::error_code ec, LockHold hold) {
                                       EXPECT_FALSE(hold);
                                       result.set_value(ec);
                                     })));
  for (int i = 0; i < 500 && entries("jobs") < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(entries("jobs"), 2);
  // A slot is emitted on the handler's executor.
  ::asio::post(io_, [&] { cancel.emit(::asio::cancellation_type::terminal); });
  auto cancelled = result.get_future();
  ASSERT_EQ(cancelled.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(cancelled.get(), errc::cancelled);
  EXPECT_EQ(entries("jobs"), 1);
  held->unlock();
}

TEST_F(AsioLock, ATimerThatWinsAnOrCancelsTheLock) {
  using namespace ::asio::experimental::awaitable_operators;
  auto first = manager();
  auto second = manager();
  auto held = first->get_lock("jobs");
  held->lock();
  bool timer_won = false;
  const auto job = [&]() -> ::asio::awaitable<void> {
    ::asio::steady_timer timer(io_, 300ms);
    auto winner = co_await (etcdlock::asio::async_lock(*second->get_lock("jobs"), ::asio::use_awaitable) ||
                            timer.async_wait(::asio::use_awaitable));
    timer_won = winner.index() == 1;
  };
  ::asio::co_spawn(io_, job(), ::asio::detached);
  work_.reset();
  io_.run();
  EXPECT_TRUE(timer_won);
  // The lock's wait was cancelled by the operator, and left no key.
  for (int i = 0; i < 500 && entries("jobs") > 1; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(entries("jobs"), 1);
  held->unlock();
}

TEST_F(AsioLock, PermitsWithCoAwait) {
  auto manager = this->manager();
  auto pool = manager->get_semaphore("pool", 2);
  int at_once = 0;
  int most = 0;
  const auto worker = [&]() -> ::asio::awaitable<void> {
    auto permit = co_await etcdlock::asio::async_acquire_permit(*pool, ::asio::use_awaitable);
    EXPECT_TRUE(permit.held());
    most = std::max(most, ++at_once);
    ::asio::steady_timer pause(io_, 50ms);
    co_await pause.async_wait(::asio::use_awaitable);
    --at_once;
  };
  for (int i = 0; i < 5; ++i) ::asio::co_spawn(io_, worker(), ::asio::detached);
  work_.reset();
  io_.run();
  EXPECT_EQ(most, 2);
  EXPECT_EQ(entries("pool"), 0);
  // A deadline that has passed makes it one try, as try_acquire_permit_for(0).
  auto immediate = etcdlock::asio::async_acquire_permit_for(*pool, 0ms, ::asio::use_future).get();
  EXPECT_TRUE(immediate.held());
}

TEST_F(AsioLock, CampaignWithCoAwait) {
  auto manager = this->manager();
  auto election = manager->get_election("scheduler");
  std::string leader_value;
  const auto candidate = [&]() -> ::asio::awaitable<void> {
    auto leadership = co_await etcdlock::asio::async_campaign(*election, "host-7", ::asio::use_awaitable);
    EXPECT_TRUE(leadership.is_leader());
    leader_value = election->leader()->value;
  };
  ::asio::co_spawn(io_, candidate(), ::asio::detached);
  work_.reset();
  io_.run();
  EXPECT_EQ(leader_value, "host-7");
  EXPECT_EQ(entries("scheduler"), 0);
}

TEST_F(AsioLock, SharedLockSidesWithUseFuture) {
  auto manager = this->manager();
  auto table = manager->get_shared_lock("table");
  auto reading = etcdlock::asio::async_lock_shared(*table, ::asio::use_future).get();
  EXPECT_TRUE(reading.held());
  EXPECT_FALSE(reading.writing());
  auto writer = etcdlock::asio::async_lock_for(*table, 300ms, ::asio::use_future);
  try {
    (void)writer.get();
    FAIL() << "a writer beside a reader";
  } catch (const std::system_error& error) {
    EXPECT_EQ(error.code(), errc::lock_timeout);
  }
  reading.release();
  auto writing = etcdlock::asio::async_lock(*table, ::asio::use_future).get();
  EXPECT_TRUE(writing.writing());
  writing.release();
  EXPECT_EQ(entries("table"), 0);
}

}  // namespace
}  // namespace etcdlock::testing
