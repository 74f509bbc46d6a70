// The counters behind LockManager::metrics(): per lock (kind and name) and
// per manager, as atomics that the code paths add to without a lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/histogram.h"
#include "base/mutex.h"
#include "etcdlock/metrics.h"

namespace etcdlock::detail {

// Why a hold ended involuntarily.
enum class LossCause {
  lease,        // the lease expired, was revoked, or passed its local deadline
  deleted,      // the key was deleted (a force unlock)
  closed,       // the manager closed
  unconfirmed,  // a write that gave it up went unanswered: it may be gone in etcd already
};

// One lock's, election's, semaphore's or read-write lock's counters.
struct PrimitiveCounters {
  std::atomic<std::uint64_t> acquisitions{0}, try_failures{0}, timeouts{0}, cancellations{0};
  std::atomic<std::uint64_t> losses_lease{0}, losses_deleted{0}, losses_closed{0}, losses_unconfirmed{0};
  std::atomic<std::int64_t> waiting{0};
  AtomicHistogram wait, hold;

  void lost(LossCause cause) noexcept;
  LockMetrics snapshot(std::string kind, std::string name) const;
};

// A manager's lock counters. Thread-safe; a mutex only where a name's
// counters are made.
class PrimitiveCounterRegistry {
 public:
  // `enabled` false: counters() gives none, and nothing is counted.
  PrimitiveCounterRegistry(bool enabled, std::size_t max_names) : enabled_(enabled), max_names_(max_names) {}

  // The counters of `kind` `name`: its own while fewer than the limit of
  // names are counted, else those shared by the names past it. nullptr when
  // metrics are off.
  std::shared_ptr<PrimitiveCounters> counters(std::string_view kind, std::string_view name);
  std::vector<LockMetrics> snapshot() const;
  bool enabled() const { return enabled_; }

 private:
  const bool enabled_;
  const std::size_t max_names_;
  mutable Mutex mu_;
  // By kind, then name ("" for the names past the limit).
  std::map<std::pair<std::string, std::string>, std::shared_ptr<PrimitiveCounters>> counters_ ETCDLOCK_GUARDED_BY(mu_);
};

}  // namespace etcdlock::detail
