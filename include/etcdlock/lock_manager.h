// LockManager: the connection to etcd and the one lease that all of a process's
// locks share.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "etcdlock/lock.h"
#include "etcdlock/lock_info.h"
#include "etcdlock/options.h"
#include "etcdlock/session_state.h"

namespace etcdlock {

namespace detail {
class ManagerCore;
}

// Owns one gRPC channel, one lease kept alive in the background, one keepalive
// stream and one watch stream, however many locks it hands out.
//
// Thread-safe. Create one per process and etcd prefix, and share it.
class LockManager {
 public:
  // Validates the options, connects and grants the lease. Throws Error:
  // invalid_argument (bad TTL, endpoints or timeouts, naming the value),
  // invalid_key (bad prefix), unavailable (no member answered within
  // dial_timeout).
  explicit LockManager(ManagerOptions options);
  // close().
  ~LockManager();
  LockManager(const LockManager&) = delete;
  LockManager& operator=(const LockManager&) = delete;

  // The lock named `name`: the same object for the same name as long as anyone
  // holds a reference to it, which is what makes reentrancy and the exclusion
  // of this process's threads work. Makes no request to etcd. Throws Error:
  // invalid_key (naming the name), invalid_argument (the name is in use with
  // other options), closed.
  std::shared_ptr<Lock> get_lock(std::string_view name, LockOptions options = {});

  // The holder of the lock `name`, or nullopt when it is free. Three reads of
  // etcd. Throws Error: invalid_key, unavailable, closed.
  std::optional<LockInfo> info(std::string_view name);
  // One row per held lock whose name starts with `name_prefix`, sorted by name.
  // Throws Error: unavailable, closed.
  std::vector<LockInfo> list(std::string_view name_prefix = "");

  // Admin: deletes exactly the current holder's key of `name`, whoever holds
  // it; the next waiter gets the lock and the holder's lost token fires. The
  // delete compares the key's create revision, so a concurrent hand-over never
  // makes it remove the next holder. The holder's other locks are untouched.
  // True when a holder was removed. Logged as a warning.
  bool force_unlock(std::string_view name);
  // Admin: revokes a lease, ending every hold and wait of the manager that owns
  // it (for a crashed or stuck owner). True when the lease existed. Logged.
  // Only a lease with a lock under this manager's prefix: others throw
  // Error(errc::invalid_argument).
  bool revoke_session(std::int64_t lease_id);

  // This manager's current lease; 0 after close().
  std::int64_t lease_id() const;
  // The health of this manager's lease.
  SessionState state() const;

  // Releases every held lock, revokes the lease, wakes every waiter with
  // errc::closed and joins the manager's threads. Idempotent; every call on the
  // manager or its locks afterwards throws errc::closed.
  void close() noexcept;

 private:
  std::shared_ptr<detail::ManagerCore> core_;
};

}  // namespace etcdlock
