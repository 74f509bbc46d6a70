#include "etcd/auth_token.h"

#include <algorithm>
#include <utility>

namespace etcdlock::detail::etcd {

std::string AuthToken::get(SteadyTime deadline, const std::function<std::string()>& fetch) {
  {
    MutexLock lock(mu_);
    for (;;) {
      if (!token_.empty()) return token_;
      if (!fetching_) break;
      ++blocking_waiters_;
      const bool ended = fetch_ended_.wait_until(
          lock, deadline, [&]() ETCDLOCK_REQUIRES(mu_) { return !fetching_ || !token_.empty(); });
      --blocking_waiters_;
      if (!ended) throw Error(errc::unavailable, "timed out waiting for another call's authentication with etcd");
      // A failed fetch leaves no token: then this caller tries itself (even
      // past its deadline, at once failing: fetched() left the asynchronous
      // callers to it).
    }
    fetching_ = true;
  }
  std::string token;
  try {
    token = fetch();
  } catch (const Error& error) {
    fetched({}, &error);
    throw;
  } catch (const std::exception& error) {
    const Error failed(errc::unavailable, std::string("authentication with etcd failed: ") + error.what());
    fetched({}, &failed);
    throw;
  }
  fetched(token, nullptr);
  return token;
}

void AuthToken::get_async(SteadyTime deadline, std::function<void()> start_fetch, Then then) {
  std::string token;
  std::optional<Error> abandoned;
  {
    MutexLock lock(mu_);
    if (abandoned_) {
      abandoned = abandoned_;
    } else if (!token_.empty()) {
      token = token_;
    } else {
      const bool fetch_now = !fetching_;
      waiters_.push_back(Waiter{deadline, start_fetch, std::move(then), fetch_now});
      if (!fetch_now) return;  // the fetch under way tells it
      fetching_ = true;
    }
  }
  if (abandoned) return then({}, &*abandoned);
  if (!token.empty()) return then(token, nullptr);
  start(start_fetch);
}

void AuthToken::start(const std::function<void()>& start_fetch) noexcept {
  try {
    start_fetch();
  } catch (const Error& error) {
    fetched({}, &error);
  } catch (const std::exception& error) {
    const Error failed(errc::unavailable, std::string("could not ask etcd for an auth token: ") + error.what());
    fetched({}, &failed);
  } catch (...) {
    const Error failed(errc::unavailable, "could not ask etcd for an auth token");
    fetched({}, &failed);
  }
}

void AuthToken::forget(const std::string& token) {
  MutexLock lock(mu_);
  if (token_ == token) token_.clear();
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
  std::function<void()> next_fetch;
  std::optional<Error> abandoned;
  {
    MutexLock lock(mu_);
    fetching_ = false;
    if (abandoned_) {
      told.swap(waiters_);
      abandoned = abandoned_;
      error = &*abandoned;
    } else if (!error) {
      token_ = token;
      told.swap(waiters_);
    } else if (error->value() != errc::unavailable) {
      told.swap(waiters_);  // refused: the answer for everyone
    } else {
      // Unanswered: who had a fetch of their own, or has no time left, is
      // told; the others wait for one more.
      const auto now = SteadyClock::now();
      std::vector<Waiter> still_waiting;
      for (auto& waiter : waiters_) {
        (!waiter.fetched_for && waiter.deadline > now ? still_waiting : told).push_back(std::move(waiter));
      }
      waiters_ = std::move(still_waiting);
      // A blocking caller that waits fetches next (the condition variable
      // below wakes it); otherwise the one with the most time does, and the
      // others wait for it: one more Authenticate, not one per call.
      if (blocking_waiters_ == 0 && !waiters_.empty()) {
        auto& latest = *std::max_element(waiters_.begin(), waiters_.end(),
                                         [](const Waiter& a, const Waiter& b) { return a.deadline < b.deadline; });
        latest.fetched_for = true;
        next_fetch = std::move(latest.start_fetch);
        fetching_ = true;
      }
    }
    // Under the mutex: a blocking waiter may return, and its client go, as
    // soon as the mutex is free.
    fetch_ended_.notify_all();
  }
  for (auto& waiter : told) waiter.then(error ? std::string() : token, error);
  if (next_fetch) start(next_fetch);
}

}  // namespace etcdlock::detail::etcd
