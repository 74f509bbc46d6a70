#include "turn.h"

namespace etcdlock::detail {

Turn::Turn(std::shared_ptr<LockContext> context, std::string what)
    : context_(std::move(context)), what_(std::move(what)) {}

bool Turn::take(SteadyTime deadline, const std::stop_token& cancel, bool wait) {
  State& state = *state_;
  std::stop_callback on_closed(context_->closed_token(), [&state] {
    { MutexLock lock(state.mu); }
    state.changed.notify_all();
  });
  MutexLock lock(state.mu);
  const auto free = [&]() ETCDLOCK_REQUIRES(state.mu) {
    return (state.owner == std::thread::id() && !state.delete_pending) || context_->closed();
  };
  if (!free()) {
    if (!wait) return false;
    const bool turn = deadline == SteadyTime::max() ? state.changed.wait(lock, cancel, free)
                                                    : state.changed.wait_until(lock, cancel, deadline, free);
    context_->check_open();
    if (!turn && cancel.stop_requested()) throw Error(errc::cancelled, "the wait for " + what_ + " was cancelled");
    if (!turn) return false;
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

void Turn::remove_entry(const QueueEntry& entry, std::int64_t lease_id) {
  if (context_->closed()) return;  // the lease revoke takes every entry
  try {
    if (entry.revision != 0) {
      auto txn = while_created_at(entry.key, entry.revision);
      txn.add_success()->mutable_request_delete_range()->set_key(entry.key);
      context_->client().txn(txn, context_->client().command_deadline());
      return;
    }
  } catch (const Error& error) {
    if (error.value() != errc::unavailable) {
      context_->log()(LogLevel::error, "could not delete a queue entry", {{"key", entry.key}, {"error", error.what()}});
      return;
    }
  }
  {
    MutexLock lock(state_->mu);
    state_->delete_pending = true;
  }
  context_->pending_deletes().add(entry, lease_id, [weak = std::weak_ptr<State>(state_)] {
    if (const auto state = weak.lock()) {
      {
        MutexLock lock(state->mu);
        state->delete_pending = false;
      }
      state->changed.notify_all();
    }
  });
}

}  // namespace etcdlock::detail
