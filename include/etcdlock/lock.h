// Lock: one named distributed lock, shared by every thread of the process that
// asks its LockManager for that name.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>

#include "etcdlock/lock_hold.h"
#include "etcdlock/timed_lock_functions.h"

namespace etcdlock {

namespace detail {
class LockImpl;
}

// A distributed lock on etcd that meets the standard TimedLockable requirements,
// so std::unique_lock, std::scoped_lock and std::lock_guard work with it.
//
// Ownership is per thread, with a hold count: the thread that locked must
// unlock, and threads of one process exclude one another as with
// std::recursive_timed_mutex. Only the first lock of a hold goes to etcd, and
// only the last unlock. Waiting processes are served in FIFO order.
//
// The etcd key is "<prefix>/<name>/<lease id in hex>", etcd's own layout, so
// etcdlock, Go's concurrency.Mutex and `etcdctl lock <prefix>/<name>` exclude
// one another on the same name.
//
// Thread-safe. Obtained from LockManager::get_lock(); may outlive the manager,
// after whose close() every acquiring call throws errc::closed.
class Lock : public detail::TimedLockFunctions<Lock> {
 public:
  // Locks are made by LockManager::get_lock().
  explicit Lock(std::shared_ptr<detail::LockImpl> impl);
  ~Lock();
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Blocks until this thread holds the lock. Transient etcd failures are
  // retried as LockOptions say. Throws Error: unavailable, closed,
  // lock_already_held (non-reentrant relock), lock_expired (relock of a hold
  // that was lost), permission_denied.
  void lock();
  // As lock(), and throws Error(errc::cancelled) once `cancel` is requested;
  // a cancelled wait leaves no key in etcd.
  void lock(std::stop_token cancel);

  // Never waits in the queue: true when this thread now holds the lock; false
  // when another holder has it. One round trip to etcd while etcd answers;
  // transient failures are retried within ManagerOptions::command_timeout.
  // With etcd frozen or unreachable it throws Error(errc::unavailable) after
  // about one command timeout (somewhat more when a new lease must be granted
  // first). With etcd slow to answer it may take up to about two: a write on
  // its way is given a command timeout to be answered (one left unanswered
  // would be in doubt), and an entry it made is removed before it returns.
  // Throws as lock().
  [[nodiscard]] bool try_lock();

  // try_lock_for(timeout[, cancel]), try_lock_until(deadline) and
  // lock_for(timeout) wait in the queue until the deadline, in any clock:
  // see timed_lock_functions.h.

  // Asynchronous acquisition: no thread waits, however many acquisitions are
  // pending. `handler` is called once, on an etcdlock notifier thread, with
  // the hold as an object (LockHold) or with an error: errc::lock_timeout
  // (the deadline passed), errc::cancelled (`cancel` was requested; the wait
  // leaves no key in etcd), errc::closed, errc::unavailable (after the
  // retries LockOptions allow), errc::permission_denied. A hold won as the
  // cancel came is delivered, as with lock(). The handler may call any
  // etcdlock function, but should hand long work elsewhere: loss signals
  // share its threads. For Asio's completion tokens (use_awaitable,
  // use_future, deferred), see etcdlock/asio.h.
  using AcquireHandler = std::function<void(std::error_code, LockHold)>;
  void async_lock(AcquireHandler handler, std::stop_token cancel = {});
  void async_lock_until(std::chrono::steady_clock::time_point deadline, AcquireHandler handler,
                        std::stop_token cancel = {});
  template <class Rep, class Period>
  void async_lock_for(const std::chrono::duration<Rep, Period>& timeout, AcquireHandler handler,
                      std::stop_token cancel = {}) {
    async_lock_until(detail::deadline_after(timeout), std::move(handler), std::move(cancel));
  }

  // Ends one level of this thread's hold; the last level deletes the key in
  // etcd. Never throws: safe in destructors. Misuse and failures are logged.
  void unlock() noexcept;
  // As unlock(), reporting errc::lock_not_held (this thread holds nothing),
  // errc::lock_expired (the hold had already been lost; it is ended all the
  // same) and errc::unavailable (etcd did not answer the delete: the hold is
  // ended here all the same, its lost token is requested, since the delete
  // may have happened and the next holder be in, and the key is removed in
  // the background).
  void unlock(std::error_code& ec) noexcept;

  // This process holds the lock now, by any thread (an IsLocked() in Go-style
  // lock APIs).
  bool held() const;
  bool held_by_this_thread() const;

  // The lock's name, as given to get_lock().
  const std::string& name() const;
  // The etcd key of this process's hold or place in the queue, or of its next
  // attempt when it has neither.
  std::string key() const;

  // During a hold, a token for that hold (as Done() of a Go session): its stop is
  // requested when the hold ends involuntarily (the lease expired, was revoked
  // or could not be renewed before its local deadline; the key was deleted, as
  // by a force unlock; the manager closed). A normal unlock does not request
  // it. Outside a hold, a token with stop_possible() == false. Loss is
  // signalled before etcd can expire the lease and let another holder in.
  std::stop_token lost_token() const;
  // The current hold, or else the last one, ended involuntarily.
  bool lost() const;

  // The create revision of the hold's key: it strictly increases from one
  // holder of the name to the next. 0 when not held.
  std::int64_t fencing_token() const;
  // Write to etcd only while this hold is valid: one Txn that compares the
  // hold key's create revision. True when committed; false when the hold is
  // gone, so a holder that paused past its lease cannot overwrite the work of
  // the next one. Throws Error(errc::unavailable).
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  friend class detail::TimedLockFunctions<Lock>;
  bool try_lock_until_steady(detail::SteadyTime deadline, std::stop_token cancel);
  void lock_until_steady(detail::SteadyTime deadline);

  std::shared_ptr<detail::LockImpl> impl_;
};

}  // namespace etcdlock
