// SessionEvents: the listeners of a manager's session changes, and their
// calls, one at a time and in order, on a notifier thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "base/mutex.h"
#include "base/notifier.h"
#include "etcdlock/session_state.h"
#include "etcdlock/subscription.h"

namespace etcdlock::detail {

// Thread-safe. publish() takes only a mutex and may be called under others.
class SessionEvents {
 public:
  explicit SessionEvents(Notifier& notifier) : notifier_(notifier) {}

  void publish(SessionEvent event);
  // The listener's first call reports the state as of the last event
  // published (with `time_left` now, for a suspect session, and replaced
  // false, since that is a change), before any later change: a subscriber
  // learns where the session stands, then each change from there. Nothing
  // published yet: no first call.
  Subscription subscribe(SessionListener listener, std::chrono::milliseconds time_left);

 private:
  // An event to deliver: to every listener subscribed before it was
  // published, or, for a first call, to one listener alone.
  struct Pending {
    SessionEvent event;
    std::uint64_t sequence = 0;
    std::uint64_t only = 0;  // a listener's id, or 0: all
  };
  struct Listener {
    SessionListener call;
    std::uint64_t since = 0;  // the first sequence number it gets
  };
  // Shared with the delivering task and the subscriptions, which may outlive
  // this object.
  struct State {
    Mutex mu;
    std::condition_variable_any idle;
    std::map<std::uint64_t, Listener> listeners ETCDLOCK_GUARDED_BY(mu);
    std::uint64_t next_id ETCDLOCK_GUARDED_BY(mu) = 1;
    std::uint64_t next_sequence ETCDLOCK_GUARDED_BY(mu) = 1;
    std::optional<SessionEvent> last ETCDLOCK_GUARDED_BY(mu);
    std::deque<Pending> pending ETCDLOCK_GUARDED_BY(mu);
    bool delivering ETCDLOCK_GUARDED_BY(mu) = false;
    std::uint64_t calling ETCDLOCK_GUARDED_BY(mu) = 0;  // the listener being called
    std::thread::id calling_thread ETCDLOCK_GUARDED_BY(mu);
  };
  static void deliver(const std::shared_ptr<State>& state);
  // Queues `pending`; true when the caller must post a delivery.
  static bool queue(State& state, Pending pending) ETCDLOCK_REQUIRES(state.mu);

  Notifier& notifier_;
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace etcdlock::detail
