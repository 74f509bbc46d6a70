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

void AuthToken::get_async(const std::function<void()>& start_fetch, Then then) {
  std::string token;
  {
    MutexLock lock(mu_);
    if (token_.empty()) {
      waiters_.push_back(std::move(then));
      if (fetching_) return;  // the fetch under way calls it
      fetching_ = true;
    } else {
      token = token_;
    }
  }
  if (!token.empty()) return then(token, nullptr);
  start_fetch();
}

void AuthToken::forget(const std::string& token) {
  MutexLock lock(mu_);
  if (token_ == token) token_.clear();
}

void AuthToken::abandon_waiters(const Error& error) {
  std::vector<Then> waiters;
  {
    MutexLock lock(mu_);
    waiters.swap(waiters_);
  }
  for (auto& waiter : waiters) waiter({}, &error);
}

void AuthToken::fetched(const std::string& token, const Error* error) {
  std::vector<Then> waiters;
  {
    MutexLock lock(mu_);
    fetching_ = false;
    if (!error) token_ = token;
    waiters.swap(waiters_);
    // Under the mutex: a blocking waiter may return, and its client go, as
    // soon as the mutex is free.
    fetch_ended_.notify_all();
  }
  for (auto& waiter : waiters) waiter(token, error);
}

}  // namespace etcdlock::detail::etcd
