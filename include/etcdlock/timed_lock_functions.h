// The timed functions of the std TimedLockable requirements, in every clock and
// duration, written once for each exclusive lock type (Lock, MultiLock).
#pragma once

#include <chrono>
#include <stop_token>
#include <utility>

#include "etcdlock/deadline.h"

namespace etcdlock::detail {

// Derived (which befriends this class) provides
//   bool try_lock_until_steady(SteadyTime deadline, std::stop_token cancel);
//   void lock_until_steady(SteadyTime deadline);
template <class Derived>
class TimedLockFunctions {
 public:
  // Waits in the queue until the deadline: true when acquired, false on
  // timeout, which leaves no key in etcd. Throws as Derived::lock(). The
  // deadline bounds the wait, not a write already on its way: the request
  // that queues is given ManagerOptions::command_timeout from its send to be
  // answered (an unanswered one would leave a key in doubt), and an entry it
  // made is removed before this returns. So with etcd slow to answer it may
  // return after the deadline, by up to about two command timeouts; with
  // etcd answering at once, by about two round trips.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return self().try_lock_until_steady(deadline_after(timeout), {});
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return self().try_lock_until_steady(to_steady(deadline), {});
  }
  // As try_lock_for, and throws Error(errc::cancelled) once `cancel` is
  // requested; a cancelled wait leaves no key in etcd.
  template <class Rep, class Period>
  [[nodiscard]] bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout, std::stop_token cancel) {
    return self().try_lock_until_steady(deadline_after(timeout), std::move(cancel));
  }
  // As try_lock_for, but a timeout throws Error(errc::lock_timeout) (what
  // Go-style lock APIs call LockWithTimeout).
  template <class Rep, class Period>
  void lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    self().lock_until_steady(deadline_after(timeout));
  }

 protected:
  TimedLockFunctions() = default;
  ~TimedLockFunctions() = default;

 private:
  Derived& self() { return static_cast<Derived&>(*this); }
};

}  // namespace etcdlock::detail
