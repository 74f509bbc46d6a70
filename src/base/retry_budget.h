// RetryBudget: how one call retries transient etcd failures (an unavailable
// member, a leader change), as LockOptions say: at most max_retries of them
// (0: until the deadline), with a pause that doubles from retry_interval up to
// max_retry_interval and is jittered, so that the clients of one outage do not
// all retry in the same instant when etcd comes back.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "base/clock.h"

namespace etcdlock::detail {

// What LockOptions, SemaphoreOptions and ElectionOptions say about retries.
struct RetryPolicy {
  std::chrono::milliseconds interval{100};
  int max_retries = 0;
  std::chrono::milliseconds max_interval{2000};
};

class RetryBudget {
 public:
  // `seed` picks the jitter; each budget gets its own by default.
  explicit RetryBudget(RetryPolicy policy, std::uint64_t seed = fresh_seed());

  // After a transient failure: when to try again, or nullopt when the
  // retries or the time until `deadline` are used up.
  std::optional<SteadyTime> next(SteadyTime deadline);
  int failures() const { return failures_; }

  // The pause after the n-th failure (n from 1): the base interval doubled
  // n - 1 times, at most max_interval; the pause is drawn uniformly from its
  // upper half, [ceiling / 2, ceiling]. Exposed for tests.
  std::chrono::milliseconds ceiling(int failure) const;
  std::chrono::milliseconds pause(int failure);

 private:
  static std::uint64_t fresh_seed();

  const RetryPolicy policy_;
  std::uint64_t random_;  // splitmix64 state
  int failures_ = 0;
};

}  // namespace etcdlock::detail
