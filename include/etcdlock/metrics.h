// What a LockManager counts about itself and its locks: a snapshot in plain
// structs, from LockManager::metrics(). The counters are atomics updated on
// the way (no lock is taken to count an acquisition), so reading them costs
// the hot path nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "etcdlock/session_state.h"

namespace etcdlock {

// Observations in buckets, as Prometheus keeps them: cumulative counts of
// observations at or below each upper bound, then the count and sum of all.
struct Histogram {
  std::vector<double> upper_bounds_ms;
  std::vector<std::uint64_t> cumulative_counts;  // one per upper bound
  std::uint64_t count = 0;
  double sum_ms = 0;
};

// One lock, election, semaphore or read-write lock of this manager.
struct LockMetrics {
  std::string kind;  // "lock", "election", "semaphore", "shared lock"
  // The name; empty for the sum of the names past ManagerOptions::metrics_names.
  std::string name;
  std::uint64_t acquisitions = 0;   // holds taken in etcd (a reentrant relock is none)
  std::uint64_t try_failures = 0;   // tries that found it held
  std::uint64_t timeouts = 0;       // waits that reached their deadline
  std::uint64_t cancellations = 0;  // waits whose stop_token was requested
  // Holds that ended involuntarily, by cause.
  std::uint64_t losses_lease = 0;    // the lease expired, was revoked, or passed its local deadline
  std::uint64_t losses_deleted = 0;  // the key was deleted (a force unlock)
  std::uint64_t losses_closed = 0;   // the manager closed
  // A write that gave it up (an unlock, a resign, a release, a downgrade)
  // went unanswered, so whether it still stands in etcd is unknown.
  std::uint64_t losses_unconfirmed = 0;
  std::int64_t waiting = 0;  // threads of this process waiting in etcd now
  Histogram wait;            // from the call to the hold
  Histogram hold;            // from the hold to its end
};

struct ManagerMetrics {
  SessionState state = SessionState::healthy;
  std::chrono::milliseconds time_left{0};  // until the session's local deadline
  Histogram keepalive_rtt;                 // from a renewal to its answer
  std::uint64_t renewals_failed = 0;       // renewals unanswered in time
  std::uint64_t leases_replaced = 0;       // sessions that replaced a lost one
  std::uint64_t watch_stream_restarts = 0;
  std::map<std::string, std::uint64_t> requests;  // by etcd call: "Range", "Txn", "LeaseGrant", ...
  std::map<std::string, std::uint64_t> errors;    // by code: "UNAVAILABLE", "PERMISSION_DENIED", ...
  std::vector<LockMetrics> locks;                 // by kind, then name
  // Deadlocks, as the last LockManager::deadlocks() of this manager found
  // them (0 before any call): the cycles under the prefix it read, and the
  // waits of this manager's lease that close one (each a member of a cycle
  // with this manager's lease). They are gauges of what was seen at that
  // read, not kept current: a process that wants them fresh for a scrape
  // calls deadlocks() on a timer. A manager stuck in a cycle sees itself.
  std::int64_t deadlock_cycles = 0;
  std::int64_t deadlocked_waits = 0;
};

}  // namespace etcdlock
