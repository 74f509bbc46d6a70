// AuthToken: one fetch for every caller, blocking or not, and nobody waits
// for it past their deadline or after the client gives up on them.
#include "etcd/auth_token.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace etcdlock::detail::etcd {
namespace {

using namespace std::chrono_literals;

SteadyTime in(std::chrono::milliseconds ms) { return SteadyClock::now() + ms; }

TEST(AuthToken, ConcurrentBlockingCallersShareOneFetch) {
  AuthToken token;
  std::atomic<int> fetches{0};
  std::promise<void> release;
  const auto released = release.get_future().share();
  std::vector<std::future<std::string>> got;
  for (int i = 0; i < 4; ++i) {
    got.push_back(std::async(std::launch::async, [&] {
      return token.get(in(5000ms), [&] {
        ++fetches;
        released.wait();
        return std::string("t1");
      });
    }));
  }
  std::this_thread::sleep_for(100ms);
  release.set_value();
  for (auto& each : got) EXPECT_EQ(each.get(), "t1");
  EXPECT_EQ(fetches.load(), 1);
}

TEST(AuthToken, AWaiterGivesUpAtItsDeadlineAndTheFetchGoesOn) {
  AuthToken token;
  std::promise<void> release;
  auto fetching = std::async(std::launch::async, [&] {
    return token.get(in(5000ms), [&] {
      release.get_future().wait();
      return std::string("t1");
    });
  });
  std::this_thread::sleep_for(50ms);
  const auto began = SteadyClock::now();
  try {
    token.get(in(100ms), [] { return std::string("never"); });
    FAIL() << "waited past its deadline";
  } catch (const Error& error) {
    EXPECT_EQ(error.value(), errc::unavailable);
  }
  EXPECT_LT(SteadyClock::now() - began, 2000ms);
  release.set_value();
  EXPECT_EQ(fetching.get(), "t1");
}

TEST(AuthToken, AFailedFetchLetsTheNextCallerTry) {
  AuthToken token;
  EXPECT_THROW(token.get(in(1000ms), []() -> std::string { throw Error(errc::permission_denied, "bad password"); }),
               Error);
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("t2"); }), "t2");
}

TEST(AuthToken, AsynchronousCallersWaitForTheFetchUnderWay) {
  AuthToken token;
  int started = 0;
  std::vector<std::string> told;
  for (int i = 0; i < 3; ++i) {
    token.get_async(
        in(5000ms), [&] { ++started; },
        [&](const std::string& value, const Error* error) { told.push_back(error ? "error" : value); });
  }
  EXPECT_EQ(started, 1);
  EXPECT_TRUE(told.empty());
  token.fetched("t3", nullptr);
  EXPECT_EQ(told, (std::vector<std::string>{"t3", "t3", "t3"}));
  // Once had, the token is given at once.
  token.get_async(
      in(5000ms), [&] { ++started; }, [&](const std::string& value, const Error*) { told.push_back(value); });
  EXPECT_EQ(started, 1);
  EXPECT_EQ(told.back(), "t3");
}

TEST(AuthToken, ABlockingCallerWaitsForAnAsynchronousFetch) {
  AuthToken token;
  token.get_async(
      in(5000ms), [] {}, [](const std::string&, const Error*) {});
  auto blocking =
      std::async(std::launch::async, [&] { return token.get(in(5000ms), [] { return std::string("own"); }); });
  std::this_thread::sleep_for(50ms);
  token.fetched("shared", nullptr);
  EXPECT_EQ(blocking.get(), "shared");
}

TEST(AuthToken, AbandonTellsTheWaitersOfAnotherThreadsFetchAtOnce) {
  AuthToken token;
  std::promise<void> release;
  auto blocking = std::async(std::launch::async, [&] {
    return token.get(in(5000ms), [&] {
      release.get_future().wait();
      return std::string("late");
    });
  });
  std::this_thread::sleep_for(50ms);
  int started = 0;
  std::vector<std::string> told;
  token.get_async(
      in(5000ms), [&] { ++started; },
      [&](const std::string& value, const Error* error) { told.push_back(error ? "error" : value); });
  EXPECT_EQ(started, 0);
  token.abandon_waiters(Error(errc::closed, "shutting down"));
  EXPECT_EQ(told, (std::vector<std::string>{"error"}));
  release.set_value();
  EXPECT_EQ(blocking.get(), "late");
  EXPECT_EQ(told.size(), 1U);
}

// Its call is still registered with the client: drain_async() waits for the
// fetch (which it cancels), and the fetch's end tells the waiter, once.
TEST(AuthToken, AbandonLeavesAWaiterToItsOwnFetch) {
  AuthToken token;
  std::vector<std::string> told;
  token.get_async(
      in(5000ms), [] {},
      [&](const std::string& value, const Error* error) {
        told.push_back(error ? std::string(to_string(error->value())) : value);
      });
  token.abandon_waiters(Error(errc::closed, "shutting down"));
  EXPECT_TRUE(told.empty());
  token.fetched("late", nullptr);  // answered after all: the client closes anyway
  EXPECT_EQ(told, (std::vector<std::string>{"CLOSED"}));
  token.fetched("later", nullptr);
  EXPECT_EQ(told.size(), 1U);
}

TEST(AuthToken, AbandonedTokenFailsLaterCallersAtOnce) {
  AuthToken token;
  token.abandon_waiters(Error(errc::closed, "shutting down"));
  int started = 0;
  std::optional<errc> told;
  token.get_async(
      in(5000ms), [&] { ++started; },
      [&](const std::string&, const Error* error) {
        if (error) told = error->value();
      });
  EXPECT_EQ(started, 0);
  EXPECT_EQ(told, errc::closed);
}

// The old client let every caller run its own Authenticate; sharing one must
// not fail a caller with a long deadline because a caller with a short one
// (the keep-alive's) gave up. The next fetch is the latest deadline's.
TEST(AuthToken, AnUnansweredFetchIsFollowedByOneForTheLatestDeadline) {
  AuthToken token;
  std::vector<int> started;
  std::vector<std::string> told;
  const std::chrono::milliseconds deadlines[] = {1000ms, 3000ms, 5000ms};
  for (int i = 0; i < 3; ++i) {
    token.get_async(
        in(deadlines[i]), [&, i] { started.push_back(i); },
        [&, i](const std::string& value, const Error* error) {
          told.push_back(std::to_string(i) + (error ? ":error" : ":" + value));
        });
  }
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(started, (std::vector<int>{0, 2}));
  EXPECT_EQ(told, (std::vector<std::string>{"0:error"}));
  token.fetched({}, &unanswered);
  EXPECT_EQ(started, (std::vector<int>{0, 2, 1}));
  EXPECT_EQ(told, (std::vector<std::string>{"0:error", "2:error"}));
  token.fetched("t4", nullptr);
  EXPECT_EQ(told, (std::vector<std::string>{"0:error", "2:error", "1:t4"}));
}

// A thread that waits fetches next, as it did before asynchronous callers
// shared its fetch; what it fetches serves them.
TEST(AuthToken, AWaitingThreadFetchesNextAfterAnUnansweredFetch) {
  AuthToken token;
  int started = 0;
  // The two continuations run on two threads (this one tells the first, the
  // fetching thread the second), perhaps at once.
  std::mutex told_mu;
  std::set<std::string> told;
  for (int i = 0; i < 2; ++i) {
    token.get_async(
        in(5000ms), [&] { ++started; },
        [&, i](const std::string& value, const Error* error) {
          const std::lock_guard<std::mutex> lock(told_mu);
          told.insert(std::to_string(i) + (error ? ":error" : ":" + value));
        });
  }
  auto blocking =
      std::async(std::launch::async, [&] { return token.get(in(5000ms), [] { return std::string("own"); }); });
  std::this_thread::sleep_for(100ms);  // waiting for the fetch under way
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(blocking.get(), "own");
  EXPECT_EQ(started, 1);
  const std::lock_guard<std::mutex> lock(told_mu);
  EXPECT_EQ(told, (std::set<std::string>{"0:error", "1:own"}));
}

// The client's start of a fetch while it drains: abandon_waiters() first,
// then the start fails at once, before returning.
TEST(AuthToken, AFetchChosenAfterAFailureAndAbandonedBeforeItStartsTellsItsWaiterOnce) {
  AuthToken token;
  std::vector<std::string> told;
  const auto record = [&](const std::string& value, const Error* error) {
    told.push_back(error ? std::string(to_string(error->value())) : value);
  };
  token.get_async(
      in(5000ms), [] {}, record);
  token.get_async(
      in(5000ms),
      [&] {
        token.abandon_waiters(Error(errc::closed, "shutting down"));
        EXPECT_EQ(told.size(), 1U);  // the chosen waiter stays for its fetch
        const Error cancelled(errc::unavailable, "cancelled");
        token.fetched({}, &cancelled);
      },
      record);
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(told, (std::vector<std::string>{"UNAVAILABLE", "CLOSED"}));
}

TEST(AuthToken, ARefusalOrAPassedDeadlineIsNotTriedAgain) {
  AuthToken token;
  int started = 0, errors = 0;
  const auto count = [&](const std::string&, const Error* error) { errors += error != nullptr; };
  token.get_async(
      in(5000ms), [&] { ++started; }, count);
  token.get_async(
      in(5000ms), [&] { ++started; }, count);
  const Error refused(errc::permission_denied, "wrong password");
  token.fetched({}, &refused);
  EXPECT_EQ(started, 1);
  EXPECT_EQ(errors, 2);

  token.get_async(
      in(5000ms), [&] { ++started; }, count);
  token.get_async(
      SteadyClock::now(), [&] { ++started; }, count);  // its deadline has passed
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(started, 2);
  EXPECT_EQ(errors, 4);
}

TEST(AuthToken, AStartThatThrowsEndsTheFetch) {
  AuthToken token;
  int errors = 0;
  token.get_async(
      in(5000ms), [] { throw Error(errc::invalid_argument, "no such member"); },
      [&](const std::string&, const Error* error) { errors += error != nullptr; });
  EXPECT_EQ(errors, 1);
  // Not left fetching: the next caller starts its own.
  int started = 0;
  token.get_async(
      in(5000ms), [&] { ++started; }, [](const std::string&, const Error*) {});
  EXPECT_EQ(started, 1);
}

TEST(AuthToken, ForgettingAReplacedTokenKeepsTheNewOne) {
  AuthToken token;
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("old"); }), "old");
  token.forget("old");
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("new"); }), "new");
  token.forget("old");  // a call sent with the old one was refused late
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("newer"); }), "new");
}

}  // namespace
}  // namespace etcdlock::detail::etcd
