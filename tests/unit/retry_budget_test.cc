// RetryBudget: pauses that double from the base up to the bound, jittered
// within the upper half of each ceiling, and a count of retries that stops.
#include "base/retry_budget.h"

#include <gtest/gtest.h>

#include <set>

namespace etcdlock::detail {
namespace {

using namespace std::chrono_literals;

TEST(RetryBudget, CeilingDoublesFromTheBaseUpToTheBound) {
  const RetryBudget budget({.interval = 100ms, .max_retries = 0, .max_interval = 1000ms}, 1);
  EXPECT_EQ(budget.ceiling(1), 100ms);
  EXPECT_EQ(budget.ceiling(2), 200ms);
  EXPECT_EQ(budget.ceiling(4), 800ms);
  EXPECT_EQ(budget.ceiling(5), 1000ms);
  EXPECT_EQ(budget.ceiling(1000), 1000ms);
}

TEST(RetryBudget, ABaseLongerThanTheBoundStaysTheBase) {
  const RetryBudget budget({.interval = 5s, .max_retries = 0, .max_interval = 2s}, 1);
  EXPECT_EQ(budget.ceiling(1), 5s);
  EXPECT_EQ(budget.ceiling(10), 5s);
}

TEST(RetryBudget, PausesAreJitteredWithinTheUpperHalf) {
  RetryBudget budget({.interval = 100ms, .max_retries = 0, .max_interval = 2s}, 42);
  std::set<std::chrono::milliseconds> seen;
  for (int i = 0; i < 200; ++i) {
    const auto pause = budget.pause(3);  // ceiling 400 ms
    EXPECT_GE(pause, 200ms);
    EXPECT_LE(pause, 400ms);
    seen.insert(pause);
  }
  EXPECT_GT(seen.size(), 50u) << "the pauses are spread, not one value";
}

TEST(RetryBudget, BudgetsWithDifferentSeedsDoNotMoveInLockstep) {
  RetryBudget a({.interval = 100ms, .max_retries = 0, .max_interval = 2s}, 1);
  RetryBudget b({.interval = 100ms, .max_retries = 0, .max_interval = 2s}, 2);
  int same = 0;
  for (int i = 1; i <= 20; ++i) same += a.pause(i) == b.pause(i) ? 1 : 0;
  EXPECT_LT(same, 5);
}

TEST(RetryBudget, MaxRetriesStopsAndZeroIsUnlimited) {
  const auto far = SteadyClock::now() + 24h;
  RetryBudget limited({.interval = 1ms, .max_retries = 2, .max_interval = 1ms});
  EXPECT_TRUE(limited.next(far));
  EXPECT_TRUE(limited.next(far));
  EXPECT_FALSE(limited.next(far));
  EXPECT_EQ(limited.failures(), 3);
  RetryBudget unlimited({.interval = 1ms, .max_retries = 0, .max_interval = 1ms});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(unlimited.next(far));
}

TEST(RetryBudget, NoRetryStartsAfterTheDeadline) {
  RetryBudget budget({.interval = 1s, .max_retries = 0, .max_interval = 1s});
  EXPECT_FALSE(budget.next(SteadyClock::now() + 100ms));
}

}  // namespace
}  // namespace etcdlock::detail
