#include "etcdlock/lock_manager.h"

#include "manager_core.h"

namespace etcdlock {

LockManager::LockManager(ManagerOptions options) : core_(detail::ManagerCore::create(std::move(options))) {}

LockManager::~LockManager() { close(); }

std::shared_ptr<Lock> LockManager::get_lock(std::string_view name, LockOptions options) {
  return core_->get_lock(name, options);
}

void LockManager::close() noexcept { core_->close(); }

}  // namespace etcdlock
