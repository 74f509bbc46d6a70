#include "etcdlock/deadline.h"

#include <gtest/gtest.h>

namespace etcdlock::detail {
namespace {

using namespace std::chrono_literals;

TEST(Deadline, SaturatesInsteadOfOverflowing) {
  EXPECT_EQ(deadline_after(std::chrono::hours::max()), SteadyTime::max());
  EXPECT_EQ(deadline_after(std::chrono::nanoseconds::max()), SteadyTime::max());
  const auto past = deadline_after(-5s);
  EXPECT_LE(past, std::chrono::steady_clock::now());
  const auto soon = deadline_after(100ms);
  EXPECT_GT(soon, std::chrono::steady_clock::now());
  EXPECT_LE(soon, std::chrono::steady_clock::now() + 100ms);
}

TEST(Deadline, OtherClocksConvert) {
  const auto converted = to_steady(std::chrono::system_clock::now() + 1s);
  const auto expected = std::chrono::steady_clock::now() + 1s;
  EXPECT_LT(std::chrono::abs(converted - expected), 100ms);
  EXPECT_EQ(to_steady(std::chrono::system_clock::time_point::max()), SteadyTime::max());
}

}  // namespace
}  // namespace etcdlock::detail
