// MultiLockHold: a hold of a MultiLock that an object owns, not a thread:
// what an asynchronous acquisition (MultiLock::async_lock) yields.
#pragma once

#include <cstdint>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>

#include <vector>
#include "etcdlock/owned_hold.h"

namespace etcdlock {

namespace detail {
struct AsyncMultiLockHold;
}

// One hold of every name of a MultiLock, held until released or lost;
// released on destruction. Move-only; a default-constructed MultiLockHold
// holds nothing.
//
// As LockHold: it may be released, and its functions called, from any
// thread. While it is held, no other holder of this process gets any of its
// names (a thread in Lock::lock() or MultiLock::lock(), another asynchronous
// acquisition): they wait for them in FIFO order, then in etcd's queues.
// MultiLock::held() is true meanwhile, MultiLock::held_by_this_thread()
// false on every thread, and MultiLock::unlock() releases nothing of it.
// Moved over another, it releases what that one held first; `if (hold)`
// says it holds the names, lost or not, until release().
class MultiLockHold : public detail::OwnedHold<MultiLockHold, detail::AsyncMultiLockHold> {
 public:
  MultiLockHold() = default;

  // Holds the names, and the hold was not lost.
  bool held() const;

  // Deletes every entry in one Txn, handing each name to its next waiter.
  // Never throws; failures are logged.
  void release() noexcept { end(); }
  // As release(), reporting errc::lock_not_held (nothing held),
  // errc::lock_expired (the hold had been lost; it is ended all the same)
  // and errc::unavailable (etcd did not answer the delete: the hold is ended
  // here all the same, its lost token is requested, and the keys are removed
  // in the background).
  void release(std::error_code& ec) noexcept { end(ec); }

  // Requested when any name's hold ends involuntarily, before etcd could let
  // another holder of it in (as MultiLock::lost_token()). Without a hold, a
  // token with stop_possible() == false.
  std::stop_token lost_token() const;
  bool lost() const;
  // The names' common fencing token (one Txn created every key); 0 without
  // a hold or once it is lost. fencing_token(name) throws
  // Error(errc::invalid_argument) for a name not in the set.
  std::int64_t fencing_token() const;
  std::int64_t fencing_token(std::string_view name) const;
  // The names, sorted, and the etcd key of each; empty without a hold.
  std::vector<std::string> names() const;
  std::vector<std::string> keys() const;
  // Writes to etcd only while this hold stands (one Txn that compares every
  // key's create revision): true when committed, false when the hold is gone
  // or lost. Throws Error: unavailable; lock_not_held without a hold.
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  friend class MultiLock;
  friend class detail::OwnedHold<MultiLockHold, detail::AsyncMultiLockHold>;
  explicit MultiLockHold(std::shared_ptr<detail::AsyncMultiLockHold> state) noexcept : OwnedHold(std::move(state)) {}
  static void end_hold(std::shared_ptr<detail::AsyncMultiLockHold> state, std::error_code& ec) noexcept;
};

}  // namespace etcdlock
