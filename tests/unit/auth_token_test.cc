// AuthToken: one fetch for every caller, blocking or not. A blocking caller
// waits for another's fetch no longer than its deadline; an asynchronous one
// until that fetch ends (no timer: the client's calls come with one command
// timeout each), or until the client gives up on it.
#include "etcd/auth_token.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
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

// An AuthToken whose asynchronous fetches only count: the test ends them.
AuthToken counting(int& started) {
  return AuthToken([&started](SteadyTime) { ++started; });
}

// Returns once `count` threads wait in get() for the fetch under way.
void await_blocking_waiters(const AuthToken& token, int count) {
  const auto give_up = in(10000ms);
  while (token.blocking_waiters() < count) {
    ASSERT_LT(SteadyClock::now(), give_up) << "no thread came to wait";
    std::this_thread::sleep_for(1ms);
  }
}

// Runs `token.get()` on another thread with a fetch that returns `value`
// once released; returns when the fetch has begun.
struct BlockingFetch {
  std::promise<void> began;
  std::promise<void> release;
  std::future<std::string> result;

  BlockingFetch(AuthToken& token, std::string value) {
    result = std::async(std::launch::async, [this, &token, value] {
      return token.get(in(5000ms), [this, value] {
        began.set_value();
        release.get_future().wait();
        return value;
      });
    });
    began.get_future().wait();
  }
  // Released, if the test did not: a failed test ends instead of hanging.
  ~BlockingFetch() {
    try {
      release.set_value();
    } catch (const std::future_error&) {
    }
  }
  BlockingFetch(const BlockingFetch&) = delete;
  BlockingFetch& operator=(const BlockingFetch&) = delete;
};

TEST(AuthToken, ConcurrentBlockingCallersShareOneFetch) {
  int started = 0;
  AuthToken token = counting(started);
  std::atomic<int> fetches{0};
  BlockingFetch first(token, "t1");
  std::vector<std::future<std::string>> got;
  for (int i = 0; i < 3; ++i) {
    got.push_back(std::async(std::launch::async, [&] {
      return token.get(in(5000ms), [&] {
        ++fetches;
        return std::string("own");
      });
    }));
  }
  await_blocking_waiters(token, 3);
  first.release.set_value();
  EXPECT_EQ(first.result.get(), "t1");
  for (auto& each : got) EXPECT_EQ(each.get(), "t1");
  EXPECT_EQ(fetches.load(), 0);
  EXPECT_EQ(started, 0);
}

TEST(AuthToken, AWaiterGivesUpAtItsDeadlineAndTheFetchGoesOn) {
  int started = 0;
  AuthToken token = counting(started);
  BlockingFetch fetching(token, "t1");
  const auto began = SteadyClock::now();
  try {
    token.get(in(100ms), [] { return std::string("never"); });
    FAIL() << "waited past its deadline";
  } catch (const Error& error) {
    EXPECT_EQ(error.value(), errc::unavailable);
  }
  EXPECT_LT(SteadyClock::now() - began, 2000ms);
  EXPECT_EQ(token.blocking_waiters(), 0);
  fetching.release.set_value();
  EXPECT_EQ(fetching.result.get(), "t1");
}

TEST(AuthToken, AFailedFetchLetsTheNextCallerTry) {
  int started = 0;
  AuthToken token = counting(started);
  EXPECT_THROW(token.get(in(1000ms), []() -> std::string { throw Error(errc::permission_denied, "bad password"); }),
               Error);
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("t2"); }), "t2");
}

// Whatever a fetch throws, it has ended: the next caller is not left to
// wait for it (helper-48's review).
TEST(AuthToken, AFetchThrowingAnythingEndsIt) {
  int started = 0;
  AuthToken token = counting(started);
  EXPECT_THROW(token.get(in(1000ms), []() -> std::string { throw 42; }), int);
  EXPECT_EQ(token.get(in(200ms), [] { return std::string("t2"); }), "t2");
}

TEST(AuthToken, AsynchronousCallersWaitForTheFetchUnderWay) {
  int started = 0;
  AuthToken token = counting(started);
  std::vector<std::string> told;
  for (int i = 0; i < 3; ++i) {
    token.get_async(in(5000ms),
                    [&](const std::string& value, const Error* error) { told.push_back(error ? "error" : value); });
  }
  EXPECT_EQ(started, 1);
  EXPECT_TRUE(told.empty());
  token.fetched("t3", nullptr);
  EXPECT_EQ(told, (std::vector<std::string>{"t3", "t3", "t3"}));
  // Once had, the token is given at once.
  token.get_async(in(5000ms), [&](const std::string& value, const Error*) { told.push_back(value); });
  EXPECT_EQ(started, 1);
  EXPECT_EQ(told.back(), "t3");
}

TEST(AuthToken, ABlockingCallerWaitsForAnAsynchronousFetch) {
  int started = 0;
  AuthToken token = counting(started);
  token.get_async(in(5000ms), [](const std::string&, const Error*) {});
  auto blocking =
      std::async(std::launch::async, [&] { return token.get(in(5000ms), [] { return std::string("own"); }); });
  await_blocking_waiters(token, 1);
  token.fetched("shared", nullptr);
  EXPECT_EQ(blocking.get(), "shared");
}

TEST(AuthToken, AbandonTellsTheWaitersOfAnotherThreadsFetchAtOnce) {
  int started = 0;
  AuthToken token = counting(started);
  BlockingFetch blocking(token, "late");
  std::vector<std::string> told;
  token.get_async(in(5000ms),
                  [&](const std::string& value, const Error* error) { told.push_back(error ? "error" : value); });
  EXPECT_EQ(started, 0);
  token.abandon_waiters(Error(errc::closed, "shutting down"));
  EXPECT_EQ(told, (std::vector<std::string>{"error"}));
  blocking.release.set_value();
  EXPECT_EQ(blocking.result.get(), "late");
  EXPECT_EQ(told.size(), 1U);
}

// A token fetched after the client abandoned its asynchronous waiters still
// serves the threads blocked in get(): they do not authenticate again, one
// after another (helper-48's review).
TEST(AuthToken, ATokenFetchedAfterAbandonServesTheBlockingCallers) {
  int started = 0;
  AuthToken token = counting(started);
  BlockingFetch first(token, "shared");
  std::atomic<int> fetches{0};
  auto second = std::async(std::launch::async, [&] {
    return token.get(in(5000ms), [&] {
      ++fetches;
      return std::string("own");
    });
  });
  await_blocking_waiters(token, 1);
  token.abandon_waiters(Error(errc::closed, "shutting down"));
  first.release.set_value();
  EXPECT_EQ(first.result.get(), "shared");
  EXPECT_EQ(second.get(), "shared");
  EXPECT_EQ(fetches.load(), 0);
}

// Its call is still registered with the client: drain_async() waits for the
// fetch (which it cancels), and the fetch's end tells the waiter, once.
TEST(AuthToken, AbandonLeavesAWaiterToItsOwnFetch) {
  int started = 0;
  AuthToken token = counting(started);
  std::vector<std::string> told;
  token.get_async(in(5000ms), [&](const std::string& value, const Error* error) {
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
  int started = 0;
  AuthToken token = counting(started);
  token.abandon_waiters(Error(errc::closed, "shutting down"));
  std::optional<errc> told;
  token.get_async(in(5000ms), [&](const std::string&, const Error* error) {
    if (error) told = error->value();
  });
  EXPECT_EQ(started, 0);
  EXPECT_EQ(told, errc::closed);
}

// Records, in order, the deadline each asynchronous fetch was started for.
struct FetchLog {
  std::vector<SteadyTime> deadlines;
  AuthToken token{[this](SteadyTime deadline) { deadlines.push_back(deadline); }};
};

// The old client let every caller run its own Authenticate; sharing one must
// not fail a caller with a long deadline because a caller with a short one
// (the keep-alive's) gave up. The next fetch is the latest deadline's, and
// serves everyone.
TEST(AuthToken, AnUnansweredFetchIsFollowedByOneForTheLatestDeadline) {
  FetchLog log;
  std::vector<std::string> told;
  const SteadyTime deadlines[] = {in(1000ms), in(5000ms), in(3000ms)};
  for (int i = 0; i < 3; ++i) {
    log.token.get_async(deadlines[i], [&, i](const std::string& value, const Error* error) {
      told.push_back(std::to_string(i) + (error ? ":error" : ":" + value));
    });
  }
  const Error unanswered(errc::unavailable, "deadline exceeded");
  log.token.fetched({}, &unanswered);
  EXPECT_EQ(log.deadlines, (std::vector<SteadyTime>{deadlines[0], deadlines[1]}));
  EXPECT_TRUE(told.empty());
  log.token.fetched("t4", nullptr);
  EXPECT_EQ(told, (std::vector<std::string>{"0:t4", "1:t4", "2:t4"}));
}

// A member that fails at once is not asked again and again until the
// deadlines pass: a caller waits through two unanswered fetches at most
// (helper-48's review: the caller with the most time failed first, while the
// others were given fetch after fetch).
TEST(AuthToken, ACallerWaitsThroughTwoUnansweredFetchesAtMost) {
  FetchLog log;
  std::vector<std::string> told;
  const auto record = [&](int i) {
    return [&told, i](const std::string& value, const Error* error) {
      told.push_back(std::to_string(i) + (error ? ":error" : ":" + value));
    };
  };
  log.token.get_async(in(4000ms), record(0));
  log.token.get_async(in(5000ms), record(1));
  const Error unanswered(errc::unavailable, "connection refused");
  log.token.fetched({}, &unanswered);
  log.token.get_async(in(3000ms), record(2));  // comes during the second fetch
  log.token.fetched({}, &unanswered);
  EXPECT_EQ(told, (std::vector<std::string>{"0:error", "1:error"}));
  ASSERT_EQ(log.deadlines.size(), 3U);  // the third for the one that came late
  log.token.fetched({}, &unanswered);
  EXPECT_EQ(told, (std::vector<std::string>{"0:error", "1:error", "2:error"}));
  EXPECT_EQ(log.deadlines.size(), 3U);
}

// A thread that waits fetches next, as it did before asynchronous callers
// shared its fetch; what it fetches serves them.
TEST(AuthToken, AWaitingThreadFetchesNextAfterAnUnansweredFetch) {
  int started = 0;
  AuthToken token = counting(started);
  // The continuations run on the fetching thread, not this one.
  std::mutex told_mu;
  std::set<std::string> told;
  for (int i = 0; i < 2; ++i) {
    token.get_async(in(5000ms), [&, i](const std::string& value, const Error* error) {
      const std::lock_guard<std::mutex> lock(told_mu);
      told.insert(std::to_string(i) + (error ? ":error" : ":" + value));
    });
  }
  auto blocking =
      std::async(std::launch::async, [&] { return token.get(in(5000ms), [] { return std::string("own"); }); });
  await_blocking_waiters(token, 1);
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(blocking.get(), "own");
  EXPECT_EQ(started, 1);
  const std::lock_guard<std::mutex> lock(told_mu);
  EXPECT_EQ(told, (std::set<std::string>{"0:own", "1:own"}));
}

// The client's start of a fetch while it drains: abandon_waiters() first,
// then the start fails at once, before returning.
TEST(AuthToken, AFetchChosenAfterAFailureAndAbandonedBeforeItStartsTellsItsWaiterOnce) {
  std::vector<std::string> told;
  int started = 0;
  AuthToken* self = nullptr;
  AuthToken token([&](SteadyTime) {
    if (++started == 1) return;  // the first fetch: ended below
    self->abandon_waiters(Error(errc::closed, "shutting down"));
    EXPECT_EQ(told.size(), 1U);  // the chosen waiter stays for its fetch
    const Error cancelled(errc::unavailable, "cancelled");
    self->fetched({}, &cancelled);
  });
  self = &token;
  const auto record = [&](const std::string& value, const Error* error) {
    told.push_back(error ? std::string(to_string(error->value())) : value);
  };
  token.get_async(in(4000ms), record);
  token.get_async(in(5000ms), record);
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(started, 2);
  EXPECT_EQ(told, (std::vector<std::string>{"CLOSED", "CLOSED"}));
}

TEST(AuthToken, ARefusalOrAPassedDeadlineIsNotTriedAgain) {
  int started = 0, errors = 0;
  AuthToken token = counting(started);
  const auto count = [&](const std::string&, const Error* error) { errors += error != nullptr; };
  token.get_async(in(5000ms), count);
  token.get_async(in(5000ms), count);
  const Error refused(errc::permission_denied, "wrong password");
  token.fetched({}, &refused);
  EXPECT_EQ(started, 1);
  EXPECT_EQ(errors, 2);

  token.get_async(in(5000ms), count);
  token.get_async(SteadyClock::now(), count);  // its deadline has passed
  const Error unanswered(errc::unavailable, "deadline exceeded");
  token.fetched({}, &unanswered);
  EXPECT_EQ(errors, 3);   // only the one out of time
  EXPECT_EQ(started, 3);  // the other waits for one more
  token.fetched({}, &unanswered);
  EXPECT_EQ(errors, 4);
  EXPECT_EQ(started, 3);
}

TEST(AuthToken, AStartThatThrowsEndsTheFetch) {
  int started = 0;
  AuthToken token([&](SteadyTime) {
    if (++started == 1) throw Error(errc::invalid_argument, "no such member");
  });
  int errors = 0;
  token.get_async(in(5000ms), [&](const std::string&, const Error* error) { errors += error != nullptr; });
  EXPECT_EQ(errors, 1);
  // Not left fetching: the next caller starts its own.
  token.get_async(in(5000ms), [](const std::string&, const Error*) {});
  EXPECT_EQ(started, 2);
}

TEST(AuthToken, ForgettingAReplacedTokenKeepsTheNewOne) {
  int started = 0;
  AuthToken token = counting(started);
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("old"); }), "old");
  token.forget("old");
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("new"); }), "new");
  token.forget("old");  // a call sent with the old one was refused late
  EXPECT_EQ(token.get(in(1000ms), [] { return std::string("newer"); }), "new");
}

// ---- helper-49's review of 3adac30 ----

// In 3adac30 an asynchronous caller with time to spare was failed after two
// unanswered fetches neither of which was made for its deadline: the
// keep-alive's that it came during, then that of a thread that waited with
// little time left (fetched() leaves the next fetch to a waiting thread).
// The header promises "the fetch it waited for, then its own".
TEST(AuthTokenReview, AnAsynchronousCallerIsNotFailedByAnotherThreadsShortFetch) {
  int started = 0;
  AuthToken token = counting(started);
  std::promise<void> first_began, release_first;
  auto first = std::async(std::launch::async, [&] {
    try {
      token.get(in(5000ms), [&]() -> std::string {
        first_began.set_value();
        release_first.get_future().wait();
        throw Error(errc::unavailable, "deadline exceeded (the keep-alive's 2 s)");
      });
    } catch (const Error&) {
    }
  });
  first_began.get_future().wait();
  std::mutex told_mu;
  std::vector<std::string> told;
  token.get_async(in(30000ms), [&](const std::string& value, const Error* error) {
    const std::lock_guard<std::mutex> lock(told_mu);
    told.push_back(error ? std::string("error: ") + error->what() : value);
  });
  // A thread with little time left waits too; when the fetch under way ends
  // it fetches next, and its deadline is past by then (or nearly): its fetch
  // fails at once.
  auto second = std::async(std::launch::async, [&] {
    try {
      token.get(in(5000ms), []() -> std::string { throw Error(errc::unavailable, "deadline exceeded (at once)"); });
    } catch (const Error&) {
    }
  });
  await_blocking_waiters(token, 1);
  release_first.set_value();
  first.get();
  second.get();
  const std::lock_guard<std::mutex> lock(told_mu);
  // 3adac30: told {"error: ..."} with started == 0: no fetch was ever made
  // for the 30 s caller.
  EXPECT_TRUE(told.empty()) << "told: " << (told.empty() ? "" : told[0]);
  EXPECT_EQ(started, 1) << "no fetch was made for the asynchronous caller's deadline";
}

// Randomized: blocking and asynchronous callers, forget(), fetches that end
// on another thread, at once, or throw; then abandon as drain_async() does.
// Checks: every continuation runs exactly once; at most one fetch at a time;
// after abandon, every continuation runs once the fetches under way end (no
// hang); nothing runs in the token after the "client" drained.
TEST(AuthTokenReview, StressEveryContinuationOnceOneFetchAtATimeNoHang) {
  for (int round = 0; round < 30; ++round) {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<SteadyTime> pending_fetches;  // started, not yet ended
    bool draining = false;
    int registered = 0;  // as Client::async_calls_
    std::atomic<int> in_fetch{0}, max_in_fetch{0};
    std::atomic<int> told_twice{0};
    std::atomic<std::uint64_t> rng_seed{static_cast<std::uint64_t>(round) * 7919 + 1};
    auto rnd = [&](int n) {
      std::uint64_t x = rng_seed.fetch_add(0x9E3779B97F4A7C15ULL);
      x ^= x >> 33;
      x *= 0xff51afd7ed558ccdULL;
      x ^= x >> 33;
      return static_cast<int>(x % static_cast<std::uint64_t>(n));
    };
    auto enter_fetch = [&] {
      const int now = ++in_fetch;
      int seen = max_in_fetch.load();
      while (now > seen && !max_in_fetch.compare_exchange_weak(seen, now)) {
      }
    };
    AuthToken* self = nullptr;
    AuthToken token([&](SteadyTime deadline) {
      {
        std::unique_lock<std::mutex> lock(mu);
        if (draining) {  // as authenticate_async() when draining_
          lock.unlock();
          enter_fetch();
          --in_fetch;
          const Error closed(errc::closed, "closing");
          self->fetched({}, &closed);
          return;
        }
      }
      enter_fetch();
      const int how = rnd(10);
      if (how == 0) {
        --in_fetch;
        throw Error(errc::unavailable, "refused at once");
      }
      if (how == 1) {
        --in_fetch;
        const Error e(errc::unavailable, "failed at once");
        self->fetched({}, &e);
        return;
      }
      std::lock_guard<std::mutex> lock(mu);
      ++registered;  // the Authenticate's own registration
      pending_fetches.push_back(deadline);
      cv.notify_all();
    });
    self = &token;
    // The "server": ends asynchronous fetches on its thread.
    std::atomic<bool> stop{false};
    std::thread server([&] {
      std::unique_lock<std::mutex> lock(mu);
      for (;;) {
        cv.wait_for(lock, 1ms, [&] { return stop.load() || !pending_fetches.empty(); });
        if (pending_fetches.empty()) {
          if (stop) return;
          continue;
        }
        pending_fetches.pop_back();
        const bool cancelled = draining;
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::microseconds(rnd(2000)));
        --in_fetch;
        const int how = rnd(4);
        if (cancelled || how == 0) {
          const Error e(errc::unavailable, "cancelled or deadline exceeded");
          token.fetched({}, &e);
        } else if (how == 1) {
          const Error e(errc::permission_denied, "refused");
          token.fetched({}, &e);
        } else {
          token.fetched("tok" + std::to_string(rnd(3)), nullptr);
        }
        lock.lock();
        --registered;
        cv.notify_all();
      }
    });
    constexpr int kCalls = 300;
    std::vector<std::atomic<int>> told(kCalls);
    std::atomic<int> next_call{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < 3; ++t) {
      callers.emplace_back([&] {
        for (;;) {
          const int id = next_call++;
          if (id >= kCalls) return;
          {
            std::lock_guard<std::mutex> lock(mu);
            if (draining) {
              ++told[id];  // start_async's closed path
              continue;
            }
            registered += 2;  // the call, and authorize_async's `pending`
          }
          token.get_async(in(std::chrono::milliseconds(rnd(20))), [&, id](const std::string& value, const Error*) {
            if (++told[id] > 1) ++told_twice;
            if (!value.empty() && rnd(3) == 0) token.forget(value);
            std::lock_guard<std::mutex> lock(mu);
            --registered;
            cv.notify_all();
          });
          {
            std::lock_guard<std::mutex> lock(mu);
            --registered;
            cv.notify_all();
          }
          if (rnd(4) == 0) std::this_thread::sleep_for(std::chrono::microseconds(rnd(500)));
        }
      });
    }
    std::atomic<bool> blocking_stop{false};
    std::vector<std::thread> blocking;
    for (int t = 0; t < 2; ++t) {
      blocking.emplace_back([&] {
        while (!blocking_stop) {
          try {
            const auto got = token.get(in(std::chrono::milliseconds(rnd(10))), [&]() -> std::string {
              enter_fetch();
              std::this_thread::sleep_for(std::chrono::microseconds(rnd(1000)));
              --in_fetch;
              const int how = rnd(4);
              if (how == 0) throw Error(errc::unavailable, "deadline exceeded");
              if (how == 1) throw 42;
              return "btok" + std::to_string(rnd(3));
            });
            if (rnd(3) == 0) token.forget(got);
          } catch (...) {
          }
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rnd(30)));
    // drain_async(): draining, cancel, abandon, wait.
    {
      std::lock_guard<std::mutex> lock(mu);
      draining = true;
    }
    token.abandon_waiters(Error(errc::closed, "closing"));
    {
      std::unique_lock<std::mutex> lock(mu);
      const bool drained = cv.wait_for(lock, 10s, [&] { return registered == 0; });
      ASSERT_TRUE(drained) << "drain hangs: " << registered << " registrations left, round " << round;
    }
    for (auto& c : callers) c.join();
    {
      std::unique_lock<std::mutex> lock(mu);
      const bool drained = cv.wait_for(lock, 10s, [&] { return registered == 0; });
      ASSERT_TRUE(drained) << "drain hangs (2): " << registered << " left, round " << round;
    }
    blocking_stop = true;
    for (auto& b : blocking) b.join();
    stop = true;
    server.join();
    int never = 0;
    for (auto& t : told) never += t.load() == 0;
    EXPECT_EQ(never, 0) << "round " << round;
    EXPECT_EQ(told_twice.load(), 0) << "round " << round;
    EXPECT_LE(max_in_fetch.load(), 1) << "round " << round;
  }
}

}  // namespace
}  // namespace etcdlock::detail::etcd
