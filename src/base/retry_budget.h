// RetryBudget: how one call retries transient etcd failures (an unavailable
// member, a leader change), as LockOptions say: a pause of retry_interval
// between attempts, and at most max_retries of them (0: until the deadline).
#pragma once

#include <optional>

#include "base/clock.h"

namespace etcdlock::detail {

// What LockOptions and ElectionOptions say about retries.
struct RetryPolicy {
  std::chrono::milliseconds interval{100};
  int max_retries = 0;
};

class RetryBudget {
 public:
  explicit RetryBudget(RetryPolicy policy) : policy_(policy) {}

  // After a transient failure: when to try again, or nullopt when the
  // retries or the time until `deadline` are used up.
  std::optional<SteadyTime> next(SteadyTime deadline) {
    ++failures_;
    const auto resume = SteadyClock::now() + policy_.interval;
    if (policy_.max_retries > 0 && failures_ > policy_.max_retries) return std::nullopt;
    if (resume >= deadline) return std::nullopt;
    return resume;
  }
  int failures() const { return failures_; }

 private:
  const RetryPolicy policy_;
  int failures_ = 0;
};

}  // namespace etcdlock::detail
