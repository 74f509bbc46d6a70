// A change in the queue of a lock, as LockManager::watch() reports it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "etcdlock/lock_info.h"

namespace etcdlock {

struct LockEvent {
  enum class Kind {
    queued,    // an entry joined the queue and waits
    acquired,  // an entry holds: it joined a free lock, or those ahead went
    released,  // a holder's entry went
    left,      // a waiter's entry went before it held (a timeout, a cancel)
  };

  Kind kind = Kind::queued;
  std::string name;  // the lock's name under the manager's prefix
  QueueEntryInfo entry;
  std::int64_t revision = 0;  // etcd's revision of the change
  // released, left: the entry went with its lease (its manager closed, or
  // the lease expired or was revoked), as etcd tells when asked right after
  // the change is seen. Otherwise the key itself was deleted: an unlock, or a
  // force unlock. Best effort: a lease that ends within milliseconds after
  // an unlock may already be reported as ended.
  bool lease_ended = false;
};

std::string_view to_string(LockEvent::Kind kind) noexcept;

using LockListener = std::function<void(const LockEvent& event)>;

}  // namespace etcdlock
