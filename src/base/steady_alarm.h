// SteadyAlarm: an instant of the steady clock that one thread waits for and
// any thread may move, without waking the waiter unless the new instant has
// passed.
//
// A worker's timekeeper waits for the first task due. A hold posts a task due
// in 50 ms and almost always cancels it a few milliseconds later; with a
// condition variable, moving the wait earlier means waking the timekeeper so
// that it waits again, and a cancelled task still wakes it at its old due
// time: two context switches per hold for nothing. A timerfd moves with one
// system call and fires only when its instant comes.
#pragma once

#include "base/clock.h"

namespace etcdlock::detail {

// Thread-safe: set() from any thread, wait() from one at a time.
class SteadyAlarm {
 public:
  // Disarmed. Throws Error(errc::unavailable) when the system gives no
  // descriptor.
  SteadyAlarm();
  ~SteadyAlarm();
  SteadyAlarm(const SteadyAlarm&) = delete;
  SteadyAlarm& operator=(const SteadyAlarm&) = delete;

  // Rings at `when`: at once if it has passed, never for SteadyTime::max().
  // Replaces the instant set before, and a ring not yet waited for.
  void set(SteadyTime when) noexcept;
  // Returns once the alarm has rung (since the last set() or return).
  void wait() noexcept;

 private:
  int fd_ = -1;
};

}  // namespace etcdlock::detail
