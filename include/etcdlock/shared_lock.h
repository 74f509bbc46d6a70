// SharedLock: a fair read-write lock on etcd, meeting the standard
// SharedTimedLockable requirements for its readers and TimedLockable for its
// writers, so std::shared_lock and std::unique_lock work with it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>

#include "etcdlock/deadline.h"
#include "etcdlock/shared_lock_hold.h"

namespace etcdlock {

namespace detail {
class SharedLockImpl;
}

// Readers and writers queue in one FIFO order, by the create revision of
// their keys: a reader waits only for writers ahead of it, so consecutive
// readers hold together and a writer is never starved by readers that come
// after it; a writer waits for everyone ahead of it. Each hold, by any thread
// of any process, is an entry of its own on the manager's lease.
//
// Ownership is per thread. A thread that holds the write side may take the
// read side (a downgrade: its entry keeps its place and now reads, so readers
// behind it may join, and no writer can slip in between). A thread that
// holds the read side cannot take the write side: that upgrade fails at once
// with errc::lock_already_held, rather than wait for itself forever.
//
// Thread-safe. Obtained from LockManager::get_shared_lock(); may outlive the
// manager, after whose close() every acquiring call throws errc::closed.
class SharedLock {
 public:
  // SharedLocks are made by LockManager::get_shared_lock().
  explicit SharedLock(std::shared_ptr<detail::SharedLockImpl> impl);
  ~SharedLock();
  SharedLock(const SharedLock&) = delete;
  SharedLock& operator=(const SharedLock&) = delete;

  // The write side, as Lock's: blocks, or tries, or waits until a deadline.
  // Throws Error: cancelled, closed, unavailable, permission_denied,
  // lock_already_held (this thread holds the read side; or, without
  // reentrancy, the write side), lock_expired (relock of a lost hold).
  void lock();
  void lock(std::stop_token cancel);
  // Never waits in the queue; bounded by ManagerOptions::command_timeout, as
  // Lock::try_lock().
  [[nodiscard]] bool try_lock();
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout, std::stop_token cancel = {}) {
    return try_lock_until_steady(detail::deadline_after(timeout), std::move(cancel), /*shared=*/false);
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_lock_until_steady(detail::to_steady(deadline), {}, /*shared=*/false);
  }
  // The error_code overloads report as Lock::unlock(std::error_code&).
  void unlock() noexcept;
  void unlock(std::error_code& ec) noexcept;

  // The read side. Taken by the thread that holds the write side, it
  // downgrades that hold. Throws as lock(). A downgrade that etcd does not
  // answer may have let readers in already: the thread then holds neither
  // side (its lost token is requested; unlock() reports errc::lock_expired)
  // and errc::unavailable is thrown.
  void lock_shared();
  void lock_shared(std::stop_token cancel);
  [[nodiscard]] bool try_lock_shared();
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_shared_for(const std::chrono::duration<Rep, Period>& timeout,
                                         std::stop_token cancel = {}) {
    return try_lock_until_steady(detail::deadline_after(timeout), std::move(cancel), /*shared=*/true);
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_shared_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_lock_until_steady(detail::to_steady(deadline), {}, /*shared=*/true);
  }
  void unlock_shared() noexcept;
  void unlock_shared(std::error_code& ec) noexcept;

  // Asynchronous acquisition of the write side (async_lock) or the read side
  // (async_lock_shared), as Lock::async_lock: no thread waits, and `handler`
  // is called once, on an etcdlock notifier thread, with the hold as an
  // object or with an error (lock_timeout at the deadline, cancelled,
  // closed, unavailable, permission_denied); a wait that fails leaves no
  // key. For Asio's completion tokens, see etcdlock/asio.h.
  using HoldHandler = std::function<void(std::error_code, SharedLockHold)>;
  void async_lock(HoldHandler handler, std::stop_token cancel = {});
  void async_lock_until(std::chrono::steady_clock::time_point deadline, HoldHandler handler,
                        std::stop_token cancel = {});
  template <class Rep, class Period>
  void async_lock_for(const std::chrono::duration<Rep, Period>& timeout, HoldHandler handler,
                      std::stop_token cancel = {}) {
    async_lock_until(detail::deadline_after(timeout), std::move(handler), std::move(cancel));
  }
  void async_lock_shared(HoldHandler handler, std::stop_token cancel = {});
  void async_lock_shared_until(std::chrono::steady_clock::time_point deadline, HoldHandler handler,
                               std::stop_token cancel = {});
  template <class Rep, class Period>
  void async_lock_shared_for(const std::chrono::duration<Rep, Period>& timeout, HoldHandler handler,
                             std::stop_token cancel = {}) {
    async_lock_shared_until(detail::deadline_after(timeout), std::move(handler), std::move(cancel));
  }

  // This thread's hold: which side, if any, and not lost.
  bool held_exclusively_by_this_thread() const;
  bool held_shared_by_this_thread() const;
  // This thread's hold's lost token (see Lock::lost_token()), fencing token
  // (0 when none) and guarded writes.
  std::stop_token lost_token() const;
  std::int64_t fencing_token() const;
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

  const std::string& name() const;

 private:
  bool try_lock_until_steady(detail::SteadyTime deadline, std::stop_token cancel, bool shared);
  void async_acquire(bool shared, std::chrono::steady_clock::time_point deadline, HoldHandler handler,
                     std::stop_token cancel);

  std::shared_ptr<detail::SharedLockImpl> impl_;
};

}  // namespace etcdlock
