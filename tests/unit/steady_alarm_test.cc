// A worker's timekeeper's wait: an instant any thread may move.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "base/steady_alarm.h"

namespace etcdlock::detail {
namespace {

using namespace std::chrono_literals;

TEST(SteadyAlarm, RingsOnceItsInstantHasPassed) {
  SteadyAlarm alarm;
  const auto when = SteadyClock::now() + 30ms;
  alarm.set(when);
  alarm.wait();
  EXPECT_GE(SteadyClock::now(), when);
}

TEST(SteadyAlarm, RingsAtOnceForAnInstantPassedAlready) {
  SteadyAlarm alarm;
  const auto start = SteadyClock::now();
  alarm.set(start - 1s);
  alarm.wait();
  alarm.set(SteadyTime::min());  // before the clock's epoch: must not disarm the timer
  alarm.wait();
  alarm.set(SteadyTime{});  // the epoch itself: zero must not disarm it either
  alarm.wait();
  EXPECT_LT(SteadyClock::now() - start, 5s);
}

TEST(SteadyAlarm, MovedEarlierByAnotherThreadItRingsThen) {
  SteadyAlarm alarm;
  alarm.set(SteadyClock::now() + 1h);
  auto waiting = std::async(std::launch::async, [&] { alarm.wait(); });
  std::this_thread::sleep_for(20ms);
  alarm.set(SteadyClock::now() + 10ms);
  EXPECT_EQ(waiting.wait_for(5s), std::future_status::ready);
}

TEST(SteadyAlarm, MovedLaterItDoesNotRingAtItsOldInstant) {
  SteadyAlarm alarm;
  const auto start = SteadyClock::now();
  alarm.set(start + 20ms);
  alarm.set(start + 300ms);  // a cancelled task: the next one's time
  alarm.wait();
  EXPECT_GE(SteadyClock::now(), start + 300ms);
}

TEST(SteadyAlarm, ARingNotWaitedForIsReplacedBySet) {
  SteadyAlarm alarm;
  const auto start = SteadyClock::now();
  alarm.set(start);
  std::this_thread::sleep_for(10ms);  // it has rung
  alarm.set(start + 200ms);
  alarm.wait();
  EXPECT_GE(SteadyClock::now(), start + 200ms);
}

TEST(SteadyAlarm, DisarmedItWaitsForASet) {
  SteadyAlarm alarm;
  alarm.set(SteadyTime::max());
  auto waiting = std::async(std::launch::async, [&] { alarm.wait(); });
  EXPECT_EQ(waiting.wait_for(100ms), std::future_status::timeout);
  alarm.set(SteadyTime::min());
  EXPECT_EQ(waiting.wait_for(5s), std::future_status::ready);
}

}  // namespace
}  // namespace etcdlock::detail
