#include "turn.h"

#include "entry_removal.h"

namespace etcdlock::detail {
namespace {

// How often a thread waiting for the turn looks again for a removal that
// another object of the same name left pending (one that was destroyed while
// etcd was unreachable): no completion tells it.
constexpr auto kPendingRemovalPoll = std::chrono::milliseconds(100);

}  // namespace

Turn::Turn(std::shared_ptr<LockContext> context, std::string what, std::string dir, std::string fence_key_base)
    : context_(std::move(context)), what_(std::move(what)), dir_(std::move(dir)), fence_(std::move(fence_key_base)) {}

bool Turn::take(SteadyTime deadline, const std::stop_token& cancel, bool wait) {
  State& state = *state_;
  std::stop_callback on_closed(context_->closed_token(), [&state] {
    { MutexLock lock(state.mu); }
    state.changed.notify_all();
  });
  MutexLock lock(state.mu);
  const auto free = [&]() ETCDLOCK_REQUIRES(state.mu) {
    return (state.owner == std::thread::id() && !state.removal_pending &&
            !context_->pending_deletes().pending_in(dir_)) ||
           context_->closed();
  };
  while (!free()) {
    // Another thread of this process holds or is acquiring, or an entry of
    // this name is still being removed.
    if (!wait) return false;
    const auto until = std::min(deadline, SteadyClock::now() + kPendingRemovalPoll);
    state.changed.wait_until(lock, cancel, until, free);
    context_->check_open();
    if (cancel.stop_requested()) throw Error(errc::cancelled, "the wait for " + what_ + " was cancelled");
    if (!free() && SteadyClock::now() >= deadline) return false;
  }
  context_->check_open();
  state.owner = std::this_thread::get_id();
  return true;
}

void Turn::give_back() {
  {
    MutexLock lock(state_->mu);
    state_->owner = {};
  }
  state_->changed.notify_all();
}

bool Turn::owned_by_this_thread() const {
  MutexLock lock(state_->mu);
  return state_->owner == std::this_thread::get_id();
}

void Turn::remove_entry(const QueueWait::Leftover& leftover, std::int64_t lease_id) {
  {
    MutexLock lock(state_->mu);
    state_->removal_pending = true;
  }
  const bool done = detail::remove_entry(*context_, fence_, leftover, lease_id, [weak = std::weak_ptr<State>(state_)] {
    if (const auto state = weak.lock()) {
      {
        MutexLock lock(state->mu);
        state->removal_pending = false;
      }
      state->changed.notify_all();
    }
  });
  if (!done) return;
  MutexLock lock(state_->mu);
  state_->removal_pending = false;
}

}  // namespace etcdlock::detail
