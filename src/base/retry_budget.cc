#include "base/retry_budget.h"

#include <algorithm>
#include <atomic>

namespace etcdlock::detail {

RetryBudget::RetryBudget(RetryPolicy policy, std::uint64_t seed) : policy_(policy), random_(seed) {}

std::uint64_t RetryBudget::fresh_seed() {
  // Differs between processes (the clock) and between budgets of one process
  // (the counter); it need not be unpredictable, only spread.
  static std::atomic<std::uint64_t> counter{0};
  const auto now = static_cast<std::uint64_t>(SteadyClock::now().time_since_epoch().count());
  return now ^ (counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15ULL);
}

std::chrono::milliseconds RetryBudget::ceiling(int failure) const {
  auto ceiling = policy_.interval;
  for (int i = 1; i < failure && ceiling < policy_.max_interval; ++i) ceiling *= 2;
  return std::min(ceiling, std::max(policy_.max_interval, policy_.interval));
}

std::chrono::milliseconds RetryBudget::pause(int failure) {
  // splitmix64: a few operations, and no shared state between threads.
  random_ += 0x9e3779b97f4a7c15ULL;
  std::uint64_t z = random_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  const auto high = ceiling(failure).count();
  const auto low = high / 2;
  return std::chrono::milliseconds(low + static_cast<std::int64_t>(z % static_cast<std::uint64_t>(high - low + 1)));
}

std::optional<SteadyTime> RetryBudget::next(SteadyTime deadline) {
  ++failures_;
  if (policy_.max_retries > 0 && failures_ > policy_.max_retries) return std::nullopt;
  const auto resume = SteadyClock::now() + pause(failures_);
  if (resume >= deadline) return std::nullopt;
  return resume;
}

}  // namespace etcdlock::detail
