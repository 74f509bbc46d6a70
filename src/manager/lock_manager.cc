#include "etcdlock/lock_manager.h"

#include "manager/manager_impl.h"

namespace etcdlock {

LockManager::LockManager(ManagerOptions options) : impl_(std::make_unique<detail::ManagerImpl>(std::move(options))) {}

LockManager::~LockManager() = default;

std::shared_ptr<Lock> LockManager::get_lock(std::string_view name, LockOptions options) {
  return impl_->get_lock(name, options);
}

std::shared_ptr<MultiLock> LockManager::get_multi_lock(std::span<const std::string_view> names, LockOptions options) {
  return impl_->get_multi_lock(names, options);
}

std::shared_ptr<Election> LockManager::get_election(std::string_view name, ElectionOptions options) {
  return impl_->get_election(name, options);
}

std::shared_ptr<Semaphore> LockManager::get_semaphore(std::string_view name, std::int64_t limit,
                                                      SemaphoreOptions options) {
  return impl_->get_semaphore(name, limit, options);
}

std::shared_ptr<SharedLock> LockManager::get_shared_lock(std::string_view name, LockOptions options) {
  return impl_->get_shared_lock(name, options);
}

std::optional<LockInfo> LockManager::info(std::string_view name) { return impl_->info(name); }

std::vector<LockInfo> LockManager::list(std::string_view name_prefix) { return impl_->list(name_prefix); }

std::vector<Deadlock> LockManager::deadlocks(std::string_view name_prefix) { return impl_->deadlocks(name_prefix); }

bool LockManager::force_unlock(std::string_view name) { return impl_->force_unlock(name); }

bool LockManager::revoke_lease(std::int64_t lease_id) { return impl_->revoke_lease(lease_id); }

std::int64_t LockManager::lease_id() const { return impl_->lease_id(); }

SessionState LockManager::state() const { return impl_->state(); }

std::chrono::milliseconds LockManager::time_left() const { return impl_->time_left(); }

Subscription LockManager::subscribe(SessionListener listener) { return impl_->subscribe(std::move(listener)); }

Subscription LockManager::watch(std::string_view name_prefix, LockListener listener) {
  return impl_->watch(name_prefix, std::move(listener));
}

ManagerMetrics LockManager::metrics() const { return impl_->metrics(); }

void LockManager::close() noexcept { impl_->close(); }

}  // namespace etcdlock
