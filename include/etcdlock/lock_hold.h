// LockHold: a hold of a Lock that an object owns, not a thread: what an
// asynchronous acquisition (Lock::async_lock) yields.
#pragma once

#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>

#include "etcdlock/owned_hold.h"

namespace etcdlock {

namespace detail {
struct AsyncLockHold;
}

// One hold of a Lock, held until released or lost; released on destruction.
// Move-only; a default-constructed LockHold holds nothing.
//
// It may be released, and its functions called, from any thread: a coroutine
// that resumes elsewhere releases what it took. While it is held, no other
// holder of this process (a thread in Lock::lock(), another asynchronous
// acquisition) gets the lock: they wait for it in FIFO order, then in etcd's
// queue. Lock::held() is true meanwhile, Lock::held_by_this_thread() false
// on every thread, and Lock::unlock() releases nothing of it.
//
// Moved over another, it releases what that one held first; `if (hold)`
// says it holds, lost or not, until release().
class LockHold : public detail::OwnedHold<LockHold, detail::AsyncLockHold> {
 public:
  LockHold() = default;

  // Holds the lock, and the hold was not lost.
  bool held() const;

  // Deletes the key in etcd, handing the lock to the next waiter. Never
  // throws; failures are logged.
  void release() noexcept { end(); }
  // As release(), reporting errc::lock_not_held (nothing held),
  // errc::lock_expired (the hold had been lost; it is ended all the same) and
  // errc::unavailable (etcd did not answer the delete: the hold is ended here
  // all the same, its lost token is requested, since the delete may have
  // happened and the next holder be in, and the key is removed in the
  // background).
  void release(std::error_code& ec) noexcept { end(ec); }

  // Requested when the hold ends involuntarily (the lease expired, was
  // revoked or could not be renewed before its local deadline; the key was
  // deleted; the manager closed), before etcd could let another holder in.
  // Without a hold, a token with stop_possible() == false.
  std::stop_token lost_token() const;
  bool lost() const;
  // The create revision of the hold's key: it strictly increases from one
  // holder of the name to the next. 0 without a hold.
  std::int64_t fencing_token() const;
  // The lock's name, and the etcd key of the hold; empty without a hold.
  std::string name() const;
  std::string key() const;
  // Writes to etcd only while this hold stands (one Txn that compares its
  // key's create revision): true when committed, false when the hold is gone
  // or lost. Throws Error: unavailable; lock_not_held without a hold.
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  friend class Lock;
  friend class detail::OwnedHold<LockHold, detail::AsyncLockHold>;
  explicit LockHold(std::shared_ptr<detail::AsyncLockHold> state) noexcept : OwnedHold(std::move(state)) {}
  static void end_hold(std::shared_ptr<detail::AsyncLockHold> state, std::error_code& ec) noexcept;
};

}  // namespace etcdlock
