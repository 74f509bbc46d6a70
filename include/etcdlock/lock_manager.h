// LockManager: the connection to etcd and the one lease that all of a process's
// locks share.
#pragma once

#include <memory>
#include <string_view>

#include "etcdlock/lock.h"
#include "etcdlock/options.h"

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

  // Releases every held lock, revokes the lease, wakes every waiter with
  // errc::closed and joins the manager's threads. Idempotent; every call on the
  // manager or its locks afterwards throws errc::closed.
  void close() noexcept;

 private:
  std::shared_ptr<detail::ManagerCore> core_;
};

}  // namespace etcdlock
