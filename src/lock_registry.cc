#include "lock_registry.h"

#include "lock_impl.h"
#include "text.h"
#include "mutex.h"

namespace etcdlock::detail {

std::shared_ptr<Lock> LockRegistry::get(std::string_view name, const LockOptions& options) {
  MutexLock lock(mu_);
  auto& entry = locks_[std::string(name)];
  if (auto existing = entry.lock.lock()) {
    if (entry.impl.lock()->options() != options) {
      throw Error(errc::invalid_argument, "lock " + quote_value(name) + " is already in use with other LockOptions");
    }
    return existing;
  }
  // A lock whose last reference just went may still be finishing; reuse its
  // state rather than have two states race on the same etcd key.
  auto impl = entry.impl.lock();
  if (!impl || impl->options() != options) {
    impl = std::make_shared<LockImpl>(context_, std::string(name), options);
  }
  auto created = std::make_shared<Lock>(impl);
  entry = {created, impl};
  // Now and then, forget the names no one uses any more.
  if (locks_.size() > 64 && locks_.size() % 64 == 0) {
    std::erase_if(locks_, [](const auto& item) { return item.second.impl.expired(); });
  }
  return created;
}

}  // namespace etcdlock::detail
