#include "etcd/auth_token.h"

#include <utility>

namespace etcdlock::detail::etcd {

std::string AuthToken::get(SteadyTime deadline, const std::function<std::string()>& fetch) {
  {
    MutexLock lock(mu_);
    for (;;) {
      if (!token_.empty()) return token_;
      if (!fetching_) break;
      if (!fetch_ended_.wait_until(lock, deadline,
                                   [&]() ETCDLOCK_REQUIRES(mu_) { return !fetching_ || !token_.empty(); })) {
        throw Error(errc::unavailable, "timed out waiting for another call's authentication with etcd");
      }
      // A failed fetch leaves no token: then this caller tries itself.
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
  }
}

void AuthToken::forget(const std::string& token) {
  MutexLock lock(mu_);
  if (token_ == token) token_.clear();
}

void AuthToken::abandon_waiters(const Error& error) noexcept {
  std::vector<Waiter> waiters;
  {
    MutexLock lock(mu_);
    if (!abandoned_) abandoned_.emplace(error);
    waiters.swap(waiters_);
  }
  for (auto& waiter : waiters) waiter.then({}, &error);
}

void AuthToken::fetched(const std::string& token, const Error* error) noexcept {
  std::vector<Waiter> told;
  std::function<void()> next_fetch;
  {
    MutexLock lock(mu_);
    fetching_ = false;
    if (!error) {
      token_ = token;
      told.swap(waiters_);
    } else {
      // Unanswered, not refused (a wrong password is wrong for everyone):
      // who has not had a fetch of its own and still has time gets one.
      const bool unanswered = error->value() == errc::unavailable && !abandoned_;
      const auto now = SteadyClock::now();
      std::vector<Waiter> still_waiting;
      for (auto& waiter : waiters_) {
        auto& to = unanswered && !waiter.fetched_for && waiter.deadline > now ? still_waiting : told;
        to.push_back(std::move(waiter));
      }
      waiters_ = std::move(still_waiting);
      if (!waiters_.empty()) {
        waiters_.front().fetched_for = true;
        next_fetch = waiters_.front().start_fetch;
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
