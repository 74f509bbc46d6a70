// The lease keeper's wait: until an instant of the boot clock, or a wake-up.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "base/boot_alarm.h"

namespace etcdlock::detail {
namespace {

using namespace std::chrono_literals;

TEST(BootAlarm, ReturnsOnceItsInstantHasPassed) {
  BootAlarm alarm;
  const auto until = BootClock::now() + 30ms;
  alarm.wait_until(until);
  EXPECT_GE(BootClock::now(), until);
}

TEST(BootAlarm, ReturnsAtOnceForAnInstantPassedAlready) {
  BootAlarm alarm;
  const auto start = BootClock::now();
  alarm.wait_until(start - 1s);
  alarm.wait_until(BootTime{});  // the boot itself: zero must not disarm the timer
  EXPECT_LT(BootClock::now() - start, 5s);
}

TEST(BootAlarm, AWakeUpBeforeTheWaitIsNotLost) {
  BootAlarm alarm;
  alarm.wake();
  const auto start = BootClock::now();
  alarm.wait_until(start + 1h);
  EXPECT_LT(BootClock::now() - start, 5s);
  // Taken by that wait: the next one waits for its instant.
  const auto until = BootClock::now() + 20ms;
  alarm.wait_until(until);
  EXPECT_GE(BootClock::now(), until);
}

TEST(BootAlarm, AWakeUpFromAnotherThreadEndsTheWait) {
  BootAlarm alarm;
  auto waiting = std::async(std::launch::async, [&] { alarm.wait_until(BootClock::now() + 1h); });
  std::this_thread::sleep_for(20ms);
  alarm.wake();
  EXPECT_EQ(waiting.wait_for(5s), std::future_status::ready);
}

TEST(BootAlarm, AnEarlierInstantReplacesALaterOne) {
  BootAlarm alarm;
  const auto start = BootClock::now();
  alarm.wait_until(start + 10ms);
  // The timer was armed for start + 10 ms and fired; arming it for an hour
  // and then for now must not leave the hour in place.
  alarm.wake();
  alarm.wait_until(start + 1h);
  alarm.wait_until(BootClock::now() + 10ms);
  EXPECT_LT(BootClock::now() - start, 5s);
}

}  // namespace
}  // namespace etcdlock::detail
