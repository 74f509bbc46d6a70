// The health of a manager's lease, as LockManager::state() reports it.
#pragma once

#include <string_view>

namespace etcdlock {

enum class SessionState {
  healthy,  // renewals are acknowledged
  suspect,  // renewals are failing; holds stand until the local deadline passes
  lost,     // the lease expired, was revoked, or its deadline passed; a new one replaces it when needed
  closed,   // the manager was closed
};

std::string_view to_string(SessionState state) noexcept;

}  // namespace etcdlock
