// BootAlarm: one thread's wait until an instant of the boot clock, or until
// another thread wakes it.
//
// A condition variable's timed wait counts CLOCK_MONOTONIC, which stops while
// the machine is suspended: a wait for a lease's local deadline would end as
// much later as the machine slept, while etcd's clock ran on. Waiting in short
// slices bounds that, at the cost of a wake-up per slice of every idle
// process. A timerfd on CLOCK_BOOTTIME needs neither: it fires on resume when
// its instant passed meanwhile, and moving it to another instant (a renewal
// answered) is a system call that wakes no thread.
#pragma once

#include "base/clock.h"

namespace etcdlock::detail {

// For one waiting thread; wake() from any thread. Not copyable.
class BootAlarm {
 public:
  // Throws Error(errc::unavailable) when the system gives no descriptor.
  BootAlarm();
  ~BootAlarm();
  BootAlarm(const BootAlarm&) = delete;
  BootAlarm& operator=(const BootAlarm&) = delete;

  // Returns once `until` has passed on the boot clock, or once wake() has been
  // called since the last return (a wake() before this call counts: none is
  // lost between a check under the caller's mutex and this wait).
  void wait_until(BootTime until);
  void wake() noexcept;

 private:
  int timer_fd_ = -1;
  int wake_fd_ = -1;
};

}  // namespace etcdlock::detail
