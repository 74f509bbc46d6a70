#include "base/steady_alarm.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "etcdlock/error.h"

namespace etcdlock::detail {

SteadyAlarm::SteadyAlarm() {
  // std::chrono::steady_clock is CLOCK_MONOTONIC on Linux: the instants that
  // tasks are posted for mean the same to the kernel.
  fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (fd_ < 0) throw Error(errc::unavailable, std::string("cannot create a worker's timer: ") + strerror(errno));
}

SteadyAlarm::~SteadyAlarm() { close(fd_); }

void SteadyAlarm::set(SteadyTime when) noexcept {
  itimerspec spec{};  // all zero: disarmed
  if (when != SteadyTime::max()) {
    const auto since_epoch = when.time_since_epoch();
    if (since_epoch.count() > 0) {
      const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
      spec.it_value.tv_sec = seconds.count();
      spec.it_value.tv_nsec = static_cast<long>(std::chrono::nanoseconds(since_epoch - seconds).count());
    }
    // Zero would disarm: an instant at or before the clock's epoch has passed,
    // and so has 1 ns after it.
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  }
  // Fails only for a bad descriptor or value, neither of which this passes.
  timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void SteadyAlarm::wait() noexcept {
  pollfd ring{fd_, POLLIN, 0};
  while (poll(&ring, 1, -1) < 0 && errno == EINTR) {
  }
  // Taken so that the next wait blocks; a set() since the ring left nothing
  // to take (EAGAIN), which is as good.
  std::uint64_t rings = 0;
  while (read(fd_, &rings, sizeof rings) < 0 && errno == EINTR) {
  }
}

}  // namespace etcdlock::detail
