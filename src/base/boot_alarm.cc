#include "base/boot_alarm.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "etcdlock/error.h"

namespace etcdlock::detail {
namespace {

[[noreturn]] void fail(const char* what) {
  throw Error(errc::unavailable, std::string("cannot create the lease's timer: ") + what + ": " + strerror(errno));
}

// Takes what a descriptor has to read, so that poll() blocks again.
void drain(int fd) {
  std::uint64_t count = 0;
  while (read(fd, &count, sizeof count) < 0 && errno == EINTR) {
  }
}

}  // namespace

BootAlarm::BootAlarm() {
  timer_fd_ = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC | TFD_NONBLOCK);
  if (timer_fd_ < 0) fail("timerfd_create");
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    close(timer_fd_);
    fail("eventfd");
  }
}

BootAlarm::~BootAlarm() {
  close(timer_fd_);
  close(wake_fd_);
}

void BootAlarm::wait_until(BootTime until) {
  const auto since_boot = until.time_since_epoch();
  itimerspec spec{};
  if (since_boot.count() > 0) {
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_boot);
    spec.it_value.tv_sec = seconds.count();
    spec.it_value.tv_nsec = static_cast<long>((since_boot - seconds).count());
  }
  // An all-zero value would disarm the timer: an instant at or before boot
  // has passed, and 1 ns after boot has too.
  if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  if (timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) {
    // Cannot happen for a valid descriptor and value; a short wait keeps the
    // caller's loop going rather than blocking it for good.
    pollfd wake{wake_fd_, POLLIN, 0};
    if (poll(&wake, 1, 1) > 0) drain(wake_fd_);
    return;
  }
  pollfd fds[2] = {{timer_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  while (poll(fds, 2, -1) < 0 && errno == EINTR) {
  }
  if ((fds[0].revents & POLLIN) != 0) drain(timer_fd_);
  if ((fds[1].revents & POLLIN) != 0) drain(wake_fd_);
}

void BootAlarm::wake() noexcept {
  const std::uint64_t one = 1;
  while (write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

}  // namespace etcdlock::detail
