#include "etcd/auth_token.h"

#include <algorithm>
#include <utility>

namespace etcdlock::detail::etcd {
namespace {

// An asynchronous caller waits through this many unanswered fetches: the
// one under way when it came, and one more (its own, or another's made for
// a later deadline). A blocking caller gets as many.
constexpr int kUnansweredFetchesPerCaller = 2;

}  // namespace

std::string AuthToken::get(SteadyTime deadline, const std::function<std::string()>& fetch) {
  {
    MutexLock lock(mu_);
    for (;;) {
      if (!token_.empty()) return token_;
      if (!fetching_) break;
      // Counted until the wait ends, however it ends: fetched() leaves the
      // next fetch to a thread that waits.
      struct Waiting {
        int& count;
        explicit Waiting(int& waiters) : count(++waiters) {}
        ~Waiting() { --count; }
        Waiting(const Waiting&) = delete;
        Waiting& operator=(const Waiting&) = delete;
      };
      bool ended = false;
      {
        const Waiting waiting(blocking_waiters_);
        ended = fetch_ended_.wait_until(lock, deadline,
                                        [&]() ETCDLOCK_REQUIRES(mu_) { return !fetching_ || !token_.empty(); });
      }
      if (!ended) throw Error(errc::unavailable, "timed out waiting for another call's authentication with etcd");
      // A failed fetch leaves no token: then this caller tries itself (even
      // past its deadline, at once failing: fetched() left the asynchronous
      // callers to it).
    }
    fetching_ = true;
    fetch_deadline_ = deadline;
  }
  std::string token;
  try {
    token = fetch();
  } catch (const Error& error) {
    fetched({}, &error);
    throw;
  } catch (const std::exception& error) {
    fetch_failed("authentication with etcd failed", error.what());
    throw;
  } catch (...) {  // whatever it was, the fetch has ended
    fetch_failed("authentication with etcd failed");
    throw;
  }
  fetched(token, nullptr);
  return token;
}

void AuthToken::get_async(SteadyTime deadline, Then then) noexcept {
  std::string token;
  std::optional<Error> failure;
  try {
    MutexLock lock(mu_);
    if (abandoned_) {
      failure = abandoned_;
    } else if (!token_.empty()) {
      token = token_;
    } else {
      // What may run out of memory comes before `then` moves in: a throw
      // here leaves it to be told below.
      waiters_.reserve(waiters_.size() + 1);
      const bool fetch_now = !fetching_;
      waiters_.push_back(Waiter{deadline, std::move(then), fetch_now});
      if (!fetch_now) return;  // the fetch under way tells it
      fetching_ = true;
      fetch_deadline_ = deadline;
    }
  } catch (const std::exception& error) {
    failure.emplace(errc::unavailable, std::string("could not wait for an auth token: ") + error.what());
  }
  if (failure) return then({}, &*failure);
  if (!token.empty()) return then(token, nullptr);
  start(deadline);
}

void AuthToken::start(SteadyTime deadline) noexcept {
  try {
    start_fetch_(deadline);
  } catch (const Error& error) {
    fetched({}, &error);
  } catch (const std::exception& error) {
    fetch_failed("could not ask etcd for an auth token", error.what());
  } catch (...) {
    fetch_failed("could not ask etcd for an auth token");
  }
}

void AuthToken::fetch_failed(const char* why, const char* detail) noexcept {
  const Error failed(errc::unavailable, detail ? std::string(why) + ": " + detail : std::string(why));
  fetched({}, &failed);
}

void AuthToken::forget(const std::string& token) {
  MutexLock lock(mu_);
  if (token_ == token) token_.clear();
}

int AuthToken::blocking_waiters() const {
  MutexLock lock(mu_);
  return blocking_waiters_;
}

void AuthToken::abandon_waiters(const Error& error) noexcept {
  std::vector<Waiter> told;
  {
    MutexLock lock(mu_);
    if (!abandoned_) abandoned_.emplace(error);
    // A waiter whose own fetch is under way, or chosen by fetched() and not
    // started yet, stays: its call is still registered with the client, so
    // drain_async() waits for the fetch's end, which tells it. Told now, its
    // call would end, drain_async() return and the client go before the
    // chosen fetch starts (helper-47's review).
    std::vector<Waiter> stay;
    for (auto& waiter : waiters_) (waiter.fetched_for ? stay : told).push_back(std::move(waiter));
    waiters_ = std::move(stay);
  }
  for (auto& waiter : told) waiter.then({}, &error);
}

void AuthToken::fetched(const std::string& token, const Error* error) noexcept {
  std::vector<Waiter> told;
  std::optional<SteadyTime> next_fetch;  // for this deadline
  std::optional<Error> abandoned;
  {
    MutexLock lock(mu_);
    fetching_ = false;
    // Kept even once the waiters are abandoned: a thread blocked in get()
    // takes it rather than authenticating again (helper-48's review).
    if (!error) token_ = token;
    if (abandoned_) {
      told.swap(waiters_);
      abandoned = abandoned_;
      error = &*abandoned;
    } else if (!error) {
      told.swap(waiters_);
    } else if (error->value() != errc::unavailable) {
      told.swap(waiters_);  // refused: the answer for everyone
    } else {
      // Unanswered: who has no time left, or waited through enough of
      // them, is told; the others wait for one more.
      const auto now = SteadyClock::now();
      std::vector<Waiter> still_waiting;
      for (auto& waiter : waiters_) {
        waiter.fetched_for = false;
        // The fetch under way when it came counts; after it, only one made
        // with as much time as its own (not a waiting thread's shorter one).
        if (waiter.unanswered == 0 || fetch_deadline_ >= waiter.deadline) ++waiter.unanswered;
        const bool waits_on = waiter.unanswered < kUnansweredFetchesPerCaller && waiter.deadline > now;
        (waits_on ? still_waiting : told).push_back(std::move(waiter));
      }
      waiters_ = std::move(still_waiting);
      // A blocking caller that waits fetches next (the condition variable
      // below wakes it); otherwise the one with the most time does, and the
      // others wait for it: one more Authenticate, not one per call.
      if (blocking_waiters_ == 0 && !waiters_.empty()) {
        auto& latest = *std::max_element(waiters_.begin(), waiters_.end(),
                                         [](const Waiter& a, const Waiter& b) { return a.deadline < b.deadline; });
        latest.fetched_for = true;
        next_fetch = latest.deadline;
        fetching_ = true;
        fetch_deadline_ = latest.deadline;
      }
    }
    // Under the mutex: a blocking waiter may return, and its client go, as
    // soon as the mutex is free.
    fetch_ended_.notify_all();
  }
  for (auto& waiter : told) waiter.then(error ? std::string() : token, error);
  if (next_fetch) start(*next_fetch);
}

}  // namespace etcdlock::detail::etcd
