// SessionEvents: the listeners of a manager's session changes, and their
// calls, one at a time and in order, on a notifier thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <thread>

#include "etcdlock/session_state.h"
#include "etcdlock/subscription.h"
#include "base/mutex.h"
#include "base/notifier.h"

namespace etcdlock::detail {

// Thread-safe. publish() takes only a mutex and may be called under others.
class SessionEvents {
 public:
  explicit SessionEvents(Notifier& notifier) : notifier_(notifier) {}

  void publish(SessionEvent event);
  Subscription subscribe(SessionListener listener);

 private:
  // Shared with the delivering task and the subscriptions, which may outlive
  // this object.
  struct State {
    Mutex mu;
    std::condition_variable_any idle;
    std::map<std::uint64_t, SessionListener> listeners ETCDLOCK_GUARDED_BY(mu);
    std::uint64_t next_id ETCDLOCK_GUARDED_BY(mu) = 1;
    std::deque<SessionEvent> pending ETCDLOCK_GUARDED_BY(mu);
    bool delivering ETCDLOCK_GUARDED_BY(mu) = false;
    std::uint64_t calling ETCDLOCK_GUARDED_BY(mu) = 0;  // the listener being called
    std::thread::id calling_thread ETCDLOCK_GUARDED_BY(mu);
  };
  static void deliver(const std::shared_ptr<State>& state);

  Notifier& notifier_;
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace etcdlock::detail
