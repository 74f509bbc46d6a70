// LockManager: the connection to etcd and the one lease that all of a process's
// locks share.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "etcdlock/deadlock.h"
#include "etcdlock/election.h"
#include "etcdlock/lock.h"
#include "etcdlock/lock_event.h"
#include "etcdlock/lock_info.h"
#include "etcdlock/metrics.h"
#include "etcdlock/multi_lock.h"
#include "etcdlock/options.h"
#include "etcdlock/semaphore.h"
#include "etcdlock/session_state.h"
#include "etcdlock/shared_lock.h"
#include "etcdlock/subscription.h"

namespace etcdlock {

namespace detail {
class ManagerImpl;
}

// Owns the connection to etcd, one session (a lease kept alive in the
// background, one renewal at a time) and one watch stream, however many locks
// it hands out.
//
// Thread-safe. Create one per process and etcd prefix, and share it.
//
// Threads: the manager runs its own threads for the watch stream, the session
// and background work, and notifier threads that run the callbacks of lost
// tokens (std::stop_callback). A loss callback may call any etcdlock function,
// close() included; one that blocks delays only the loss signals queued behind
// it (more notifier threads are started, up to eight). One exception to the
// thread: an unlock(), resign() or permit release() that finds its hold lost,
// or cannot learn whether its delete happened, requests the lost token itself
// before it returns, so its callbacks may run in that call, on the caller's
// thread, once the call has given back all it held (the callback may take the
// same lock again).
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

  // The multi-lock on every name of `names` (see multi_lock.h): the same
  // object for the same set, in whatever order the names come, as long as
  // anyone holds a reference to it. Each name is validated as get_lock()'s,
  // and is a lock of this manager from then on (with the same options).
  // Makes no request to etcd. Throws Error: invalid_key (naming the name),
  // invalid_argument (no names, more than 64 (one Txn within etcd's default
  // --max-txn-ops puts them all), a name given twice, a name in use as
  // another kind or with other options), closed.
  std::shared_ptr<MultiLock> get_multi_lock(std::span<const std::string_view> names, LockOptions options = {});
  std::shared_ptr<MultiLock> get_multi_lock(std::initializer_list<std::string_view> names, LockOptions options = {}) {
    return get_multi_lock(std::span<const std::string_view>(names.begin(), names.size()), options);
  }

  // The election `name`: the same object for the same name as long as anyone
  // holds a reference to it. Its candidates share the name's queue with
  // etcd's Go Election and `etcdctl elect <prefix>/<name>`. A name is a lock
  // or an election in one manager, not both. Makes no request to etcd.
  // Throws Error: invalid_key, invalid_argument (the name is in use as a lock
  // or with other options), closed.
  std::shared_ptr<Election> get_election(std::string_view name, ElectionOptions options = {});

  // The semaphore `name` with at most `limit` permits held at once, across
  // all processes: the same object for the same name as long as anyone holds
  // a reference to it. The limit goes with every permit's key in etcd; a
  // process that asks for another limit while permits are held with the
  // first gets errc::invalid_argument when it acquires. Makes no request to
  // etcd. Throws Error: invalid_key, invalid_argument (a limit outside 1 to
  // Semaphore::kMaxLimit, or the name in use as another kind or with other
  // options, also while permits taken with the other options are held), closed.
  std::shared_ptr<Semaphore> get_semaphore(std::string_view name, std::int64_t limit, SemaphoreOptions options = {});

  // The read-write lock `name`: the same object for the same name as long as
  // anyone holds a reference to it. `options.reentrant` lets a thread take
  // its side again. Makes no request to etcd. Throws as get_lock().
  std::shared_ptr<SharedLock> get_shared_lock(std::string_view name, LockOptions options = {});

  // The holder of the lock `name` and its queue, or nullopt when no one holds
  // or waits. Two reads of etcd: the queue, the holder's lease. Throws Error:
  // invalid_key, unavailable, closed.
  std::optional<LockInfo> info(std::string_view name);
  // One row per lock with a holder or waiter whose name starts with
  // `name_prefix` ("jobs/", or "" for all), sorted by name; one read of the
  // queues, and one per lease of their first entries. Which of the waiters
  // are deadlocked with one another: deadlocks(). Throws Error:
  // invalid_key (a bad prefix), unavailable, closed.
  std::vector<LockInfo> list(std::string_view name_prefix = "");
  // The deadlocks among the locks whose names start with `name_prefix`, from
  // one read of their queues: cycles of leases, each waiting for the next,
  // that nothing outside the cycle can break (see deadlock.h for how they
  // are found and what they mean: a cycle is between managers, whose threads
  // share a lease). Empty when there are none. A cycle through a name outside
  // `name_prefix` is not seen. Updates this manager's deadlock metrics.
  // Throws Error: invalid_key (a bad prefix), unavailable, closed.
  std::vector<Deadlock> deadlocks(std::string_view name_prefix = "");
  // Calls `listener` on each change in the queues of the locks whose names
  // start with `name_prefix`, from now on, in etcd's order, one call at a
  // time, on a notifier thread: entries that queue, acquire, release or
  // leave, of any holder (this manager's or another's, etcdctl's, Go's).
  // Follows one watch on etcd, resumed across reconnects; a compaction that
  // makes it miss changes makes it read the queues again and report the
  // difference. A release or leave costs one lease lookup (lease_ended).
  // Until the Subscription goes. The listener must not throw. Throws Error:
  // invalid_key, invalid_argument (an empty listener), unavailable, closed.
  [[nodiscard]] Subscription watch(std::string_view name_prefix, LockListener listener);

  // Admin: deletes exactly the current holder's key of `name`, whoever holds
  // it; the next waiter gets the lock and the holder's lost token fires. The
  // delete compares the key's create revision, so a concurrent hand-over never
  // makes it remove the next holder. The holder's other locks are untouched.
  // True when a holder was removed. Logged as a warning. When the first entry
  // of the queue is one of a longer name ("a/b" under "a", whose keys count
  // in the queue of "a" as in etcd's recipe), throws Error(errc::invalid_argument)
  // naming it: that entry holds the other name.
  bool force_unlock(std::string_view name);
  // Admin: revokes a lease, ending every hold and wait of the manager whose
  // session it is (for a crashed or stuck owner). True when the lease existed.
  // Logged. Only a lease with a lock under this manager's prefix: others
  // throw Error(errc::invalid_argument).
  bool revoke_lease(std::int64_t lease_id);

  // The lease of this manager's session; 0 after close().
  std::int64_t lease_id() const;
  // The health of this manager's session.
  SessionState state() const;
  // How long until the session's local deadline, when every hold on it ends
  // unless a renewal is answered first; zero once it has passed.
  std::chrono::milliseconds time_left() const;
  // Calls `listener` first with the session's state now (its lease, and the
  // time left when suspect; replaced is false), then on each change of the session, in order,
  // one call at a time, on a notifier thread: healthy → suspect (renewals
  // failing, with the time left) → healthy again, or → lost → healthy (a new
  // lease, replaced), and closed. Until the Subscription goes. The listener
  // must not throw.
  // Throws Error: invalid_argument (an empty listener), closed.
  [[nodiscard]] Subscription subscribe(SessionListener listener);
  // What this manager counted (see metrics.h).
  ManagerMetrics metrics() const;

  // Ends every hold (each lost token fires, before close() returns), revokes
  // the lease (a lost one too, so that no entry of a lost hold waits for its
  // expiry), tells the new head of each lock's queue it held or waited in
  // that its turn came (as unlock() does; at most one command timeout for
  // all), wakes every waiter with errc::closed and joins the manager's
  // threads. Idempotent: a second call returns once the first is done. Safe
  // from a loss callback (which then does not wait for a close() already
  // under way on another thread). Every call on the manager or its locks
  // afterwards throws errc::closed.
  void close() noexcept;

 private:
  std::unique_ptr<detail::ManagerImpl> impl_;
};

}  // namespace etcdlock
