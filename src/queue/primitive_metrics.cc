#include "queue/primitive_metrics.h"

namespace etcdlock::detail {

void PrimitiveCounters::lost(LossCause cause) noexcept {
  switch (cause) {
    case LossCause::lease:
      ++losses_lease;
      break;
    case LossCause::deleted:
      ++losses_deleted;
      break;
    case LossCause::closed:
      ++losses_closed;
      break;
    case LossCause::unconfirmed:
      ++losses_unconfirmed;
      break;
  }
}

LockMetrics PrimitiveCounters::snapshot(std::string kind, std::string name) const {
  LockMetrics metrics;
  metrics.kind = std::move(kind);
  metrics.name = std::move(name);
  metrics.acquisitions = acquisitions.load(std::memory_order_relaxed);
  metrics.try_failures = try_failures.load(std::memory_order_relaxed);
  metrics.timeouts = timeouts.load(std::memory_order_relaxed);
  metrics.cancellations = cancellations.load(std::memory_order_relaxed);
  metrics.losses_lease = losses_lease.load(std::memory_order_relaxed);
  metrics.losses_deleted = losses_deleted.load(std::memory_order_relaxed);
  metrics.losses_closed = losses_closed.load(std::memory_order_relaxed);
  metrics.losses_unconfirmed = losses_unconfirmed.load(std::memory_order_relaxed);
  metrics.waiting = waiting.load(std::memory_order_relaxed);
  metrics.wait = wait.snapshot();
  metrics.hold = hold.snapshot();
  return metrics;
}

std::shared_ptr<PrimitiveCounters> PrimitiveCounterRegistry::counters(std::string_view kind, std::string_view name) {
  if (!enabled_) return nullptr;
  MutexLock lock(mu_);
  const std::pair<std::string, std::string> key{std::string(kind), std::string(name)};
  if (const auto found = counters_.find(key); found != counters_.end()) return found->second;
  const bool room = counters_.size() < max_names_;
  auto& slot = counters_[room ? key : std::pair<std::string, std::string>{std::string(kind), ""}];
  if (!slot) slot = std::make_shared<PrimitiveCounters>();
  return slot;
}

std::vector<LockMetrics> PrimitiveCounterRegistry::snapshot() const {
  std::vector<LockMetrics> locks;
  MutexLock lock(mu_);
  for (const auto& [key, counters] : counters_) locks.push_back(counters->snapshot(key.first, key.second));
  return locks;
}

}  // namespace etcdlock::detail
