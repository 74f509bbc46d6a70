// etcdlock/asio.h: the asynchronous acquisitions of Lock, MultiLock, Semaphore,
// Election and SharedLock with Asio's completion tokens (standalone Asio 1.22, Debian's libasio-dev; header-only,
// include it where Asio is used).
//
//   asio::awaitable<void> job(std::shared_ptr<etcdlock::Lock> lock) {
//     etcdlock::LockHold hold = co_await etcdlock::asio::async_lock(*lock, asio::use_awaitable);
//     ...                                     // hold.release(), or let it go out of scope
//   }
//
// Any completion token works, as with Asio's own operations: a callback
// void(std::error_code, etcdlock::LockHold) (etcdlock::MultiLockHold for a
// multi-lock, etcdlock::Permit for a permit, etcdlock::Leadership for a campaign, etcdlock::SharedLockHold for
// a read-write lock's side), asio::use_future,
// asio::use_awaitable, asio::experimental::deferred. The handler runs on its
// associated executor (a callback without one: on Asio's system executor),
// never on etcdlock's threads, and the operation keeps that executor's work
// until then: as with Asio's own operations, the execution context (an
// io_context) must outlive the operations it waits for. A cancellation slot (asio::bind_cancellation_slot,
// asio::experimental::awaitable_operators' ||, a coroutine's cancellation)
// cancels the wait as a std::stop_token does: the handler gets
// errc::cancelled and the wait leaves no key in etcd.
#pragma once

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>

#include "etcdlock/election.h"
#include "etcdlock/lock.h"
#include "etcdlock/multi_lock.h"
#include "etcdlock/semaphore.h"
#include "etcdlock/shared_lock.h"

namespace etcdlock::asio {

namespace detail {

// One pending acquisition of a `Result` (LockHold, Permit): the handler, its
// executor's work, and the stop source its cancellation slot requests.
template <typename Handler, typename Result>
class Operation : public std::enable_shared_from_this<Operation<Handler, Result>> {
 public:
  explicit Operation(Handler handler)
      : handler_(std::move(handler)),
        work_(::asio::make_work_guard(::asio::get_associated_executor(handler_))),
        stop_(std::make_shared<std::stop_source>()) {}

  // Starts `start(cancel, handler)`, an etcdlock asynchronous call.
  template <typename Start>
  void begin(Start&& start) {
    auto slot = ::asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) {
      slot.assign([stop = stop_](::asio::cancellation_type type) {
        if (type != ::asio::cancellation_type::none) stop->request_stop();
      });
    }
    std::forward<Start>(start)(stop_->get_token(),
                               [self = this->shared_from_this()](std::error_code ec, Result result) {
                                 self->complete(ec, std::move(result));
                               });
  }

 private:
  // On an etcdlock thread: the handler goes to its executor.
  void complete(std::error_code ec, Result result) {
    auto executor = work_.get_executor();
    ::asio::post(executor, [self = this->shared_from_this(), ec, result = std::move(result)]() mutable {
      ::asio::get_associated_cancellation_slot(self->handler_).clear();
      auto handler = std::move(self->handler_);
      self->work_.reset();
      std::move(handler)(ec, std::move(result));
    });
  }

  Handler handler_;
  ::asio::executor_work_guard<::asio::associated_executor_t<Handler>> work_;
  std::shared_ptr<std::stop_source> stop_;
};

// What the asynchronous lock of a Lock or a MultiLock yields.
template <typename Lockable>
struct HoldOf;
template <>
struct HoldOf<Lock> {
  using type = LockHold;
};
template <>
struct HoldOf<MultiLock> {
  using type = MultiLockHold;
};
template <typename Lockable>
concept AsyncLockable = requires {
  typename HoldOf<Lockable>::type;
};

// A Lock's or a MultiLock's async_lock_until, whose hold is `Hold`.
template <typename Lockable, typename Hold>
struct InitiateLock {
  template <typename Handler>
  void operator()(Handler&& handler, Lockable* lock, std::chrono::steady_clock::time_point deadline) const {
    auto operation = std::make_shared<Operation<std::decay_t<Handler>, Hold>>(std::forward<Handler>(handler));
    operation->begin([&](std::stop_token cancel, typename Lockable::AcquireHandler done) {
      lock->async_lock_until(deadline, std::move(done), std::move(cancel));
    });
  }
};

struct InitiatePermit {
  template <typename Handler>
  void operator()(Handler&& handler, Semaphore* semaphore, std::chrono::steady_clock::time_point deadline) const {
    auto operation = std::make_shared<Operation<std::decay_t<Handler>, Permit>>(std::forward<Handler>(handler));
    operation->begin([&](std::stop_token cancel, Semaphore::PermitHandler done) {
      semaphore->async_acquire_permit_until(deadline, std::move(done), std::move(cancel));
    });
  }
};

struct InitiateCampaign {
  template <typename Handler>
  void operator()(Handler&& handler, Election* election, std::string value,
                  std::chrono::steady_clock::time_point deadline) const {
    auto operation = std::make_shared<Operation<std::decay_t<Handler>, Leadership>>(std::forward<Handler>(handler));
    operation->begin([&](std::stop_token cancel, Election::CampaignHandler done) {
      election->async_campaign_until(std::move(value), deadline, std::move(done), std::move(cancel));
    });
  }
};

struct InitiateSharedLock {
  template <typename Handler>
  void operator()(Handler&& handler, SharedLock* lock, bool shared,
                  std::chrono::steady_clock::time_point deadline) const {
    auto operation = std::make_shared<Operation<std::decay_t<Handler>, SharedLockHold>>(std::forward<Handler>(handler));
    operation->begin([&](std::stop_token cancel, SharedLock::HoldHandler done) {
      if (shared) {
        lock->async_lock_shared_until(deadline, std::move(done), std::move(cancel));
      } else {
        lock->async_lock_until(deadline, std::move(done), std::move(cancel));
      }
    });
  }
};

}  // namespace detail

// Lock::async_lock_until (or MultiLock's) with a completion token; the lock
// must outlive the initiation (the operation keeps what it needs once started).
template <detail::AsyncLockable Lockable, typename CompletionToken>
auto async_lock_until(Lockable& lock, std::chrono::steady_clock::time_point deadline, CompletionToken&& token) {
  using Hold = typename detail::HoldOf<Lockable>::type;
  return ::asio::async_initiate<CompletionToken, void(std::error_code, Hold)>(detail::InitiateLock<Lockable, Hold>{},
                                                                              token, &lock, deadline);
}

// Lock::async_lock (or MultiLock's) with a completion token: waits without a deadline.
template <detail::AsyncLockable Lockable, typename CompletionToken>
auto async_lock(Lockable& lock, CompletionToken&& token) {
  return async_lock_until(lock, std::chrono::steady_clock::time_point::max(), std::forward<CompletionToken>(token));
}

// Lock::async_lock_for (or MultiLock's) with a completion token:
// errc::lock_timeout after `timeout`.
template <detail::AsyncLockable Lockable, typename Rep, typename Period, typename CompletionToken>
auto async_lock_for(Lockable& lock, const std::chrono::duration<Rep, Period>& timeout, CompletionToken&& token) {
  return async_lock_until(lock, ::etcdlock::detail::deadline_after(timeout), std::forward<CompletionToken>(token));
}

// Semaphore::async_acquire_permit_until with a completion token.
template <typename CompletionToken>
auto async_acquire_permit_until(Semaphore& semaphore, std::chrono::steady_clock::time_point deadline,
                                CompletionToken&& token) {
  return ::asio::async_initiate<CompletionToken, void(std::error_code, Permit)>(detail::InitiatePermit{}, token,
                                                                                &semaphore, deadline);
}

// Semaphore::async_acquire_permit with a completion token.
template <typename CompletionToken>
auto async_acquire_permit(Semaphore& semaphore, CompletionToken&& token) {
  return async_acquire_permit_until(semaphore, std::chrono::steady_clock::time_point::max(),
                                    std::forward<CompletionToken>(token));
}

// Semaphore::async_acquire_permit_for with a completion token.
template <typename Rep, typename Period, typename CompletionToken>
auto async_acquire_permit_for(Semaphore& semaphore, const std::chrono::duration<Rep, Period>& timeout,
                              CompletionToken&& token) {
  return async_acquire_permit_until(semaphore, ::etcdlock::detail::deadline_after(timeout),
                                    std::forward<CompletionToken>(token));
}

// Election::async_campaign_until with a completion token.
template <typename CompletionToken>
auto async_campaign_until(Election& election, std::string value, std::chrono::steady_clock::time_point deadline,
                          CompletionToken&& token) {
  return ::asio::async_initiate<CompletionToken, void(std::error_code, Leadership)>(
      detail::InitiateCampaign{}, token, &election, std::move(value), deadline);
}

// Election::async_campaign with a completion token.
template <typename CompletionToken>
auto async_campaign(Election& election, std::string value, CompletionToken&& token) {
  return async_campaign_until(election, std::move(value), std::chrono::steady_clock::time_point::max(),
                              std::forward<CompletionToken>(token));
}

// Election::async_campaign_for with a completion token.
template <typename Rep, typename Period, typename CompletionToken>
auto async_campaign_for(Election& election, std::string value, const std::chrono::duration<Rep, Period>& timeout,
                        CompletionToken&& token) {
  return async_campaign_until(election, std::move(value), ::etcdlock::detail::deadline_after(timeout),
                              std::forward<CompletionToken>(token));
}

// SharedLock's write side (async_lock_until) and read side
// (async_lock_shared_until) with a completion token.
template <typename CompletionToken>
auto async_lock_until(SharedLock& lock, std::chrono::steady_clock::time_point deadline, CompletionToken&& token) {
  return ::asio::async_initiate<CompletionToken, void(std::error_code, SharedLockHold)>(detail::InitiateSharedLock{},
                                                                                        token, &lock, false, deadline);
}
template <typename CompletionToken>
auto async_lock(SharedLock& lock, CompletionToken&& token) {
  return async_lock_until(lock, std::chrono::steady_clock::time_point::max(), std::forward<CompletionToken>(token));
}
template <typename CompletionToken>
auto async_lock_shared_until(SharedLock& lock, std::chrono::steady_clock::time_point deadline,
                             CompletionToken&& token) {
  return ::asio::async_initiate<CompletionToken, void(std::error_code, SharedLockHold)>(detail::InitiateSharedLock{},
                                                                                        token, &lock, true, deadline);
}
template <typename CompletionToken>
auto async_lock_shared(SharedLock& lock, CompletionToken&& token) {
  return async_lock_shared_until(lock, std::chrono::steady_clock::time_point::max(),
                                 std::forward<CompletionToken>(token));
}
template <typename Rep, typename Period, typename CompletionToken>
auto async_lock_for(SharedLock& lock, const std::chrono::duration<Rep, Period>& timeout, CompletionToken&& token) {
  return async_lock_until(lock, ::etcdlock::detail::deadline_after(timeout), std::forward<CompletionToken>(token));
}
template <typename Rep, typename Period, typename CompletionToken>
auto async_lock_shared_for(SharedLock& lock, const std::chrono::duration<Rep, Period>& timeout,
                           CompletionToken&& token) {
  return async_lock_shared_until(lock, ::etcdlock::detail::deadline_after(timeout),
                                 std::forward<CompletionToken>(token));
}

}  // namespace etcdlock::asio
