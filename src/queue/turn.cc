#include "queue/turn.h"

namespace etcdlock::detail {

Turn::Turn(std::shared_ptr<PrimitiveContext> context, std::string what)
    : context_(std::move(context)), what_(std::move(what)) {}

bool Turn::take(SteadyTime deadline, const std::stop_token& cancel, bool wait) {
  std::stop_callback on_closed(context_->closed_token(), [this] {
    { MutexLock lock(mu_); }
    changed_.notify_all();
  });
  MutexLock lock(mu_);
  const auto free = [&]() ETCDLOCK_REQUIRES(mu_) { return owner_ == std::thread::id() || context_->closed(); };
  if (!free()) {
    // Another thread of this process holds or is acquiring.
    if (!wait) return false;
    if (deadline == SteadyTime::max()) {
      changed_.wait(lock, cancel, free);
    } else {
      changed_.wait_until(lock, cancel, deadline, free);
    }
    context_->check_open();
    if (cancel.stop_requested()) throw Error(errc::cancelled, "the wait for " + what_ + " was cancelled");
    if (!free()) return false;
  }
  context_->check_open();
  owner_ = std::this_thread::get_id();
  return true;
}

void Turn::give_back() {
  {
    MutexLock lock(mu_);
    owner_ = {};
  }
  changed_.notify_all();
}

bool Turn::owned_by_this_thread() const {
  MutexLock lock(mu_);
  return owner_ == std::this_thread::get_id();
}

}  // namespace etcdlock::detail
