// MultiLock: several named locks held as one, by one enqueue.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "etcdlock/multi_lock_hold.h"
#include "etcdlock/timed_lock_functions.h"

namespace etcdlock {

namespace detail {
class MultiLockImpl;
}

// Holds every lock of a set of names at once, or none of them; meets the
// standard TimedLockable requirements, as Lock does.
//
// Taking two locks one after another deadlocks when two processes ask for them
// in opposite orders, and holds one while it waits for the other. A MultiLock
// puts an entry into the queue of every name in one Txn, so all its entries
// get one create revision, and each waits only for the entries created before
// it: whatever order anyone names the locks in, no cycle of waits can form.
// It holds once its entry is first in every queue; FIFO per name.
//
// Losing one name: the lost token is requested first (its callbacks run on a
// notifier thread, and may unlock, lock again or drop this object), then the
// other names' entries are removed, unless the owner unlocks first. unlock()
// never waits for a loss callback.
//
// Each name keeps its own key, "<prefix>/<name>/<lease id in hex>", so a
// MultiLock on {X, Y} excludes and is excluded by a Lock on X or Y, Go's
// concurrency.Mutex and `etcdctl lock <prefix>/X`, as those exclude one
// another. In this process, a MultiLock takes each name's local turn (the one
// its Lock uses) in the order of the sorted names, so threads asking for
// {X, Y} and {Y, X} do not deadlock, and a thread holding Lock X shuts out a
// MultiLock on {X, Y} and the other way round. While a MultiLock holds X,
// the Lock X of the same manager says held() == false.
//
// Reentrancy: as Lock, per thread with a hold count when LockOptions::reentrant
// (the default), else a relock throws errc::lock_already_held. A thread that
// holds one of the names otherwise (its Lock, another MultiLock) gets
// errc::lock_already_held instead of waiting for itself.
//
// Loss: the hold is lost when any of its names is (a lease ended, a key was
// deleted, the manager closed); the lost token fires, and the entries of the
// other names are removed in the background. unlock() then reports
// errc::lock_expired.
//
// Thread-safe. Obtained from LockManager::get_multi_lock(); may outlive the
// manager, after whose close() every acquiring call throws errc::closed.
class MultiLock : public detail::TimedLockFunctions<MultiLock> {
 public:
  // Multi-locks are made by LockManager::get_multi_lock().
  explicit MultiLock(std::shared_ptr<detail::MultiLockImpl> impl);
  ~MultiLock();
  MultiLock(const MultiLock&) = delete;
  MultiLock& operator=(const MultiLock&) = delete;

  // As Lock::lock(): blocks until this thread holds every name.
  void lock();
  void lock(std::stop_token cancel);
  // As Lock::try_lock(): never waits in a queue. One Txn when every name is
  // free; when one is taken, a read of its queue and a delete per name, so
  // that no entry is left.
  [[nodiscard]] bool try_lock();
  // try_lock_for, try_lock_until and lock_for: as Lock's (timed_lock_functions.h).

  // Asynchronous acquisition, as Lock::async_lock: no thread waits. The
  // names' local turns are taken in their sorted order, as lock() takes
  // them, then one Txn enqueues every name. `handler` is called once, on an
  // etcdlock notifier thread, with the hold as an object (MultiLockHold) or
  // an error: errc::lock_timeout, errc::cancelled (the wait leaves no key in
  // etcd), errc::closed, errc::unavailable (after the retries LockOptions
  // allow), errc::permission_denied. An empty handler throws
  // Error(errc::invalid_argument). For Asio's completion tokens, see
  // etcdlock/asio.h.
  using AcquireHandler = std::function<void(std::error_code, MultiLockHold)>;
  void async_lock(AcquireHandler handler, std::stop_token cancel = {});
  void async_lock_until(std::chrono::steady_clock::time_point deadline, AcquireHandler handler,
                        std::stop_token cancel = {});
  template <class Rep, class Period>
  void async_lock_for(const std::chrono::duration<Rep, Period>& timeout, AcquireHandler handler,
                      std::stop_token cancel = {}) {
    async_lock_until(detail::deadline_after(timeout), std::move(handler), std::move(cancel));
  }

  // As Lock::unlock(): the last level deletes every entry in one Txn.
  void unlock() noexcept;
  void unlock(std::error_code& ec) noexcept;

  // This process holds every name now, by any thread.
  bool held() const;
  bool held_by_this_thread() const;

  // The names, sorted, as validated by get_multi_lock().
  const std::vector<std::string>& names() const;
  // The etcd keys of the hold or the last attempt, per name (as names()).
  std::vector<std::string> keys() const;

  // As Lock::lost_token(): requested when any name's hold is lost.
  std::stop_token lost_token() const;
  bool lost() const;

  // The fencing token of `name` (its key's create revision) during a hold,
  // else 0. One Txn created every key, so all names have the same token; it
  // strictly increases from one holder of a name to the next. Throws
  // Error(errc::invalid_argument) for a name not in the set.
  std::int64_t fencing_token(std::string_view name) const;
  // The common token of every name; 0 when not held.
  std::int64_t fencing_token() const;
  // As Lock::guarded_put: one Txn that compares the create revision of every
  // name's key.
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  friend class detail::TimedLockFunctions<MultiLock>;
  bool try_lock_until_steady(detail::SteadyTime deadline, std::stop_token cancel);
  void lock_until_steady(detail::SteadyTime deadline);

  std::shared_ptr<detail::MultiLockImpl> impl_;
};

}  // namespace etcdlock
