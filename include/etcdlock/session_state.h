// The health of a manager's lease, as LockManager::state() reports it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace etcdlock {

enum class SessionState {
  healthy,  // renewals are acknowledged
  suspect,  // renewals are failing; holds stand until the local deadline passes
  lost,     // the lease expired, was revoked, or its deadline passed; a new one replaces it when needed
  closed,   // the manager was closed
};

std::string_view to_string(SessionState state) noexcept;

// A change of a manager's session, as LockManager::subscribe() reports it.
struct SessionEvent {
  // healthy: a lease was granted (replaced says whether it replaced a lost
  // one), or renewals answer again after being suspect. suspect: renewals
  // fail. lost: the lease is gone, or its local deadline passed. closed.
  SessionState state = SessionState::healthy;
  std::int64_t lease_id = 0;
  // suspect: how long until the local deadline, when every hold ends.
  std::chrono::milliseconds time_left{0};
  bool replaced = false;
  std::string reason;  // suspect, lost: why
};

using SessionListener = std::function<void(const SessionEvent& event)>;

}  // namespace etcdlock
