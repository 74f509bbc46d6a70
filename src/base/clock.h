// The clocks etcdlock measures time with.
//
// Deadlines that callers give and waits on condition variables use the steady
// clock (SteadyTime, from etcdlock/deadline.h). The lease's local deadline
// uses BootClock instead: the steady clock (CLOCK_MONOTONIC) stops while the
// machine is suspended, but etcd's clock does not, so a session measured on it
// would outlive its lease after a suspend.
#pragma once

#include <time.h>

#include <chrono>

#include "etcdlock/deadline.h"

namespace etcdlock::detail {

using SteadyClock = std::chrono::steady_clock;

// CLOCK_BOOTTIME: monotonic, and counting the time spent suspended.
struct BootClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<BootClock>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    timespec now{};
    clock_gettime(CLOCK_BOOTTIME, &now);
    return time_point(std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec));
  }
};

using BootTime = BootClock::time_point;

}  // namespace etcdlock::detail
