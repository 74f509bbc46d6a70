#include "session/session_events.h"

namespace etcdlock::detail {

void SessionEvents::publish(SessionEvent event) {
  {
    MutexLock lock(state_->mu);
    if (state_->listeners.empty()) return;
    state_->pending.push_back(std::move(event));
    if (state_->delivering) return;
    state_->delivering = true;
  }
  notifier_.post([state = state_] { deliver(state); });
}

void SessionEvents::deliver(const std::shared_ptr<State>& state) {
  for (;;) {
    SessionEvent event;
    std::vector<std::pair<std::uint64_t, SessionListener>> listeners;
    {
      MutexLock lock(state->mu);
      if (state->pending.empty()) {
        state->delivering = false;
        return;
      }
      event = std::move(state->pending.front());
      state->pending.pop_front();
      listeners.assign(state->listeners.begin(), state->listeners.end());
    }
    for (const auto& [id, listener] : listeners) {
      {
        MutexLock lock(state->mu);
        if (!state->listeners.contains(id)) continue;  // cancelled meanwhile
        state->calling = id;
        state->calling_thread = std::this_thread::get_id();
      }
      listener(event);
      {
        MutexLock lock(state->mu);
        state->calling = 0;
      }
      state->idle.notify_all();
    }
  }
}

Subscription SessionEvents::subscribe(SessionListener listener) {
  std::uint64_t id = 0;
  {
    MutexLock lock(state_->mu);
    id = state_->next_id++;
    state_->listeners.emplace(id, std::move(listener));
  }
  return Subscription([state = state_, id] {
    MutexLock lock(state->mu);
    state->listeners.erase(id);
    // A call under way on another thread finishes before the cancel returns.
    if (state->calling_thread != std::this_thread::get_id()) {
      state->idle.wait(lock, [&]() ETCDLOCK_REQUIRES(state->mu) { return state->calling != id; });
    }
  });
}

}  // namespace etcdlock::detail
