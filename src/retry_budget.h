// RetryBudget: how one call retries transient etcd failures (an unavailable
// member, a leader change), as LockOptions say: a pause of retry_interval
// between attempts, and at most max_retries of them (0: until the deadline).
#pragma once

#include <optional>

#include "clock.h"
#include "etcdlock/options.h"

namespace etcdlock::detail {

class RetryBudget {
 public:
  explicit RetryBudget(const LockOptions& options) : options_(options) {}

  // After a transient failure: when to try again, or nullopt when the
  // retries or the time until `deadline` are used up.
  std::optional<SteadyTime> next(SteadyTime deadline) {
    ++failures_;
    const auto resume = SteadyClock::now() + options_.retry_interval;
    if (options_.max_retries > 0 && failures_ > options_.max_retries) return std::nullopt;
    if (resume >= deadline) return std::nullopt;
    return resume;
  }
  int failures() const { return failures_; }

 private:
  const LockOptions& options_;
  int failures_ = 0;
};

}  // namespace etcdlock::detail
