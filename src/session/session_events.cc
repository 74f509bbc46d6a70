#include "session/session_events.h"

#include <vector>

namespace etcdlock::detail {

bool SessionEvents::queue(State& state, Pending pending) {
  state.pending.push_back(std::move(pending));
  if (state.delivering) return false;
  state.delivering = true;
  return true;
}

void SessionEvents::publish(SessionEvent event) {
  {
    MutexLock lock(state_->mu);
    state_->last = event;
    const auto sequence = state_->next_sequence++;
    if (state_->listeners.empty()) return;
    if (!queue(*state_, {std::move(event), sequence, 0})) return;
  }
  notifier_.post([state = state_] { deliver(state); });
}

void SessionEvents::deliver(const std::shared_ptr<State>& state) {
  for (;;) {
    Pending pending;
    std::vector<std::pair<std::uint64_t, SessionListener>> listeners;
    {
      MutexLock lock(state->mu);
      if (state->pending.empty()) {
        state->delivering = false;
        return;
      }
      pending = std::move(state->pending.front());
      state->pending.pop_front();
      for (const auto& [id, listener] : state->listeners) {
        const bool addressed = pending.only != 0 ? id == pending.only : pending.sequence >= listener.since;
        if (addressed) listeners.emplace_back(id, listener.call);
      }
    }
    for (const auto& [id, listener] : listeners) {
      {
        MutexLock lock(state->mu);
        if (!state->listeners.contains(id)) continue;  // cancelled meanwhile
        state->calling = id;
        state->calling_thread = std::this_thread::get_id();
      }
      listener(pending.event);
      {
        MutexLock lock(state->mu);
        state->calling = 0;
      }
      state->idle.notify_all();
    }
  }
}

Subscription SessionEvents::subscribe(SessionListener listener, std::chrono::milliseconds time_left) {
  std::uint64_t id = 0;
  bool post = false;
  {
    MutexLock lock(state_->mu);
    id = state_->next_id++;
    state_->listeners.emplace(id, Listener{std::move(listener), state_->next_sequence});
    if (state_->last) {
      SessionEvent first = *state_->last;
      if (first.state == SessionState::suspect) first.time_left = time_left;
      first.replaced = false;  // a replacement is a change, reported when it happens
      post = queue(*state_, {std::move(first), 0, id});
    }
  }
  if (post) notifier_.post([state = state_] { deliver(state); });
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
