// AuthToken: one fetch for every caller, blocking or not, and nobody waits
// for it past their deadline or after the client gives up on them.
#include "etcd/auth_token.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
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

TEST(AuthToken, AbandonedWaitersAreToldOnceAndTheFetchEndsWithoutThem) {
  AuthToken token;
  int errors = 0, tokens = 0;
  token.get_async(
      in(5000ms), [] {}, [&](const std::string&, const Error* error) { ++(error ? errors : tokens); });
  token.abandon_waiters(Error(errc::closed, "shutting down"));
  EXPECT_EQ(errors, 1);
  token.fetched("late", nullptr);
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(tokens, 0);
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
// (the keep-alive's) gave up.
TEST(AuthToken, AnUnansweredFetchGivesEachWaiterAFetchOfItsOwn) {
  AuthToken token;
  int started = 0;
  std::vector<std::string> told;
  for (int i = 0; i < 3; ++i) {
    token.get_async(
        in(5000ms), [&] { ++started; },
        [&, i](const std::string& value, const Error* error) {
          told.push_back(std::to_string(i) + (error ? ":error" : ":" + value));
        });
  }
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(started, 2);
  EXPECT_EQ(told, (std::vector<std::string>{"0:error"}));
  token.fetched({}, &unanswered);
  EXPECT_EQ(started, 3);
  EXPECT_EQ(told, (std::vector<std::string>{"0:error", "1:error"}));
  token.fetched("t4", nullptr);
  EXPECT_EQ(told, (std::vector<std::string>{"0:error", "1:error", "2:t4"}));
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
