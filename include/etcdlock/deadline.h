// Conversion of the caller's timeouts and deadlines, in any clock, to the steady
// clock that etcdlock waits on. Saturates instead of overflowing, so
// try_lock_for(std::chrono::hours::max()) means "no deadline".
#pragma once

#include <chrono>
#include <type_traits>

namespace etcdlock::detail {

using SteadyTime = std::chrono::steady_clock::time_point;

template <class Rep, class Period>
SteadyTime deadline_after(const std::chrono::duration<Rep, Period>& timeout) {
  using Steady = std::chrono::steady_clock;
  const auto now = Steady::now();
  if (timeout <= timeout.zero()) return now;
  // Compare in floating point: the caller's duration may not fit Steady::duration.
  const std::chrono::duration<double, std::nano> wanted = timeout;
  const std::chrono::duration<double, std::nano> room = SteadyTime::max() - now;
  if (wanted >= room) return SteadyTime::max();
  return now + std::chrono::ceil<Steady::duration>(timeout);
}

template <class Clock, class Duration>
SteadyTime to_steady(const std::chrono::time_point<Clock, Duration>& deadline) {
  if (deadline == std::chrono::time_point<Clock, Duration>::max()) return SteadyTime::max();
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    return std::chrono::time_point_cast<std::chrono::steady_clock::duration>(deadline);
  } else {
    return deadline_after(deadline - Clock::now());
  }
}

}  // namespace etcdlock::detail
