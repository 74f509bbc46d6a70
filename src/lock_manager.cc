#include "etcdlock/lock_manager.h"

#include "manager_core.h"
#include "session.h"

namespace etcdlock {

LockManager::LockManager(ManagerOptions options) : core_(detail::ManagerCore::create(std::move(options))) {}

LockManager::~LockManager() { close(); }

std::shared_ptr<Lock> LockManager::get_lock(std::string_view name, LockOptions options) {
  return core_->get_lock(name, options);
}

std::optional<LockInfo> LockManager::info(std::string_view name) {
  core_->check_open();
  return core_->admin().info(name);
}

std::vector<LockInfo> LockManager::list(std::string_view name_prefix) {
  core_->check_open();
  return core_->admin().list(name_prefix);
}

bool LockManager::force_unlock(std::string_view name) {
  core_->check_open();
  return core_->admin().force_unlock(name);
}

bool LockManager::revoke_session(std::int64_t lease_id) {
  core_->check_open();
  return core_->admin().revoke_session(lease_id);
}

std::int64_t LockManager::lease_id() const {
  const auto session = core_->current_session();
  return session ? session->lease_id() : 0;
}

SessionState LockManager::state() const { return core_->state(); }

void LockManager::close() noexcept { core_->close(); }

}  // namespace etcdlock
