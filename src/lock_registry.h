// LockRegistry: the factory that gives every caller the same Lock for the
// same name, for as long as anyone holds it. One object per name is what
// makes reentrancy and the exclusion of a process's threads work.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "etcdlock/lock.h"
#include "etcdlock/options.h"
#include "lock_context.h"
#include "mutex.h"

namespace etcdlock::detail {

class LockImpl;

// Thread-safe.
class LockRegistry {
 public:
  explicit LockRegistry(std::shared_ptr<LockContext> context) : context_(std::move(context)) {}

  // The Lock named `name`, made when no one holds it. Throws
  // Error(errc::invalid_argument) when it is in use with other options.
  std::shared_ptr<Lock> get(std::string_view name, const LockOptions& options);

 private:
  struct Entry {
    std::weak_ptr<Lock> lock;
    std::weak_ptr<LockImpl> impl;
  };

  const std::shared_ptr<LockContext> context_;
  Mutex mu_;
  std::unordered_map<std::string, Entry> locks_ ETCDLOCK_GUARDED_BY(mu_);
};

}  // namespace etcdlock::detail
