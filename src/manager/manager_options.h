// Validation of a manager's and a lock's options, with messages that name the
// bad value.
#pragma once

#include <string_view>

#include "etcdlock/options.h"

namespace etcdlock::detail {

// The options with defaults filled in (the owner). Throws Error:
// invalid_argument, invalid_key (the prefix).
ManagerOptions validated(ManagerOptions options);
// Throw Error(errc::invalid_argument) naming the lock or election.
void validate(const LockOptions& options, std::string_view name);
void validate(const ElectionOptions& options, std::string_view name);
void validate(const SemaphoreOptions& options, std::string_view name);

}  // namespace etcdlock::detail
