// SharedLockHold: one side of a SharedLock (reading or writing) that an
// object owns, not a thread: what an asynchronous acquisition
// (SharedLock::async_lock, async_lock_shared) yields.
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
struct AsyncSharedHold;
}

// A read or write hold of a SharedLock, held until released or lost;
// released on destruction. Move-only; a default-constructed one holds
// nothing. Any thread may use it. Each hold has an entry of its own in the
// lock's queue, so holds of this process exclude one another as those of
// other processes do: a writer alone, readers together. Moved over another,
// it releases what that one held first; `if (hold)` says it holds a side,
// lost or not, until release().
class SharedLockHold : public detail::OwnedHold<SharedLockHold, detail::AsyncSharedHold> {
 public:
  SharedLockHold() = default;

  // Holds a side, and the hold was not lost.
  bool held() const;
  // The write side (else the read side); false without a hold.
  bool writing() const;

  // Deletes the hold's key, letting the next waiters in. Never throws.
  void release() noexcept { end(); }
  // As release(), reporting errc::lock_not_held (nothing held),
  // errc::lock_expired (it had been lost) and errc::unavailable (etcd did
  // not answer: released here all the same, the lost token is requested and
  // the key removed in the background).
  void release(std::error_code& ec) noexcept { end(ec); }

  // Requested when the hold ends involuntarily, before etcd could let a
  // conflicting holder in. Without a hold, stop_possible() == false.
  std::stop_token lost_token() const;
  bool lost() const;
  // The create revision of the hold's key; 0 without a hold or once lost.
  std::int64_t fencing_token() const;
  // The lock's name, and the etcd key of the hold; empty without one.
  std::string name() const;
  std::string key() const;
  // Writes to etcd only while this hold stands: true when committed. Throws
  // Error: unavailable; lock_not_held without a hold.
  bool guarded_put(std::string_view key, std::string_view value);
  bool guarded_delete(std::string_view key);

 private:
  friend class SharedLock;
  friend class detail::OwnedHold<SharedLockHold, detail::AsyncSharedHold>;
  explicit SharedLockHold(std::shared_ptr<detail::AsyncSharedHold> state) noexcept : OwnedHold(std::move(state)) {}
  static void end_hold(std::shared_ptr<detail::AsyncSharedHold> state, std::error_code& ec) noexcept;
};

}  // namespace etcdlock
