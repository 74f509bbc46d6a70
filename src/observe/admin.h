// Admin operations on the locks under one prefix: inspect, list, force unlock
// and revoke. They read etcd directly and work on any holder, whether an
// etcdlock manager, Go's concurrency.Mutex or `etcdctl lock`.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/logger.h"
#include "etcd/client.h"
#include "etcdlock/deadlock.h"
#include "etcdlock/lock_info.h"

namespace etcdlock::detail {

// Thread-safe: it holds no state of its own.
class Admin {
 public:
  Admin(const etcd::Client& client, const Logger& log, std::string prefix)
      : client_(client), log_(log), prefix_(std::move(prefix)) {}

  std::optional<LockInfo> info(std::string_view name) const;
  std::vector<LockInfo> list(std::string_view name_prefix) const;
  // The cycles among the queues of the names under `name_prefix` (deadlocks.h).
  std::vector<Deadlock> deadlocks(std::string_view name_prefix) const;
  bool force_unlock(std::string_view name) const;
  bool revoke_lease(std::int64_t lease_id) const;

 private:
  using Leases = std::map<std::int64_t, std::int64_t>;  // lease -> TTL left

  SteadyTime deadline() const;
  // Every key under the names that start with `name_prefix`, oldest first, with values.
  ::etcdserverpb::RangeResponse read_under(std::string_view name_prefix) const;
  // The row of the lock `name` from its queue's entries, oldest first.
  // `ttls` caches the TTL of each lease, so that many holds of one manager
  // cost one lookup.
  LockInfo describe(std::string name, std::span<const mvccpb::KeyValue* const> entries, Leases& ttls) const;

  const etcd::Client& client_;
  const Logger& log_;
  const std::string prefix_;
};

}  // namespace etcdlock::detail
