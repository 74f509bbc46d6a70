// ManagerImpl: what stands behind a LockManager: the context its locks share,
// the registry of locks by name, and the admin operations.
#pragma once

#include <atomic>
#include <cstdint>
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
#include "manager/registry.h"
#include "observe/admin.h"
#include "queue/primitive_context.h"

namespace etcdlock::detail {

// Thread-safe.
class ManagerImpl {
 public:
  // Validates the options, connects and grants the first lease. Throws Error.
  explicit ManagerImpl(ManagerOptions options);
  ~ManagerImpl();

  std::shared_ptr<Lock> get_lock(std::string_view name, const LockOptions& options);
  std::shared_ptr<MultiLock> get_multi_lock(std::span<const std::string_view> names, const LockOptions& options);
  std::shared_ptr<Election> get_election(std::string_view name, const ElectionOptions& options);
  std::shared_ptr<Semaphore> get_semaphore(std::string_view name, std::int64_t limit, const SemaphoreOptions& options);
  std::shared_ptr<SharedLock> get_shared_lock(std::string_view name, const LockOptions& options);
  std::optional<LockInfo> info(std::string_view name);
  std::vector<LockInfo> list(std::string_view name_prefix);
  std::vector<Deadlock> deadlocks(std::string_view name_prefix);
  bool force_unlock(std::string_view name);
  bool revoke_lease(std::int64_t lease_id);
  std::int64_t lease_id() const;
  SessionState state() const;
  std::chrono::milliseconds time_left() const;
  Subscription subscribe(SessionListener listener);
  Subscription watch(std::string_view name_prefix, LockListener listener);
  ManagerMetrics metrics() const;
  void close() noexcept;

 private:
  const ManagerOptions options_;
  const std::shared_ptr<PrimitiveContext> context_;
  Registry registry_;
  Admin admin_;
  // What the last deadlocks() found (metrics.h): cycles, and waits of this
  // manager's lease in them.
  std::atomic<std::int64_t> deadlock_cycles_{0};
  std::atomic<std::int64_t> deadlocked_waits_{0};
};

}  // namespace etcdlock::detail
