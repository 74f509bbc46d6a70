// Strand: calls run one at a time, in the order they were queued, on notifier
// threads. It delivers an observer's events (an election's leader changes, a
// watch of locks) to an application callback, which may call back into
// etcdlock, block, or end its own subscription.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "base/mutex.h"
#include "base/notifier.h"

namespace etcdlock::detail {

// Thread-safe.
class Strand {
 public:
  explicit Strand(Notifier& notifier) : notifier_(notifier) {}
  // stop().
  ~Strand();
  Strand(const Strand&) = delete;
  Strand& operator=(const Strand&) = delete;

  // Queues `call`. Takes only the strand's mutex and runs nothing, so it may
  // be called under the caller's own locks, which is how callers on several
  // threads keep their calls in order. When it returns true, the caller must
  // call run_queued() once it has released its locks.
  [[nodiscard]] bool queue(std::function<void()> call);
  // Runs the queued calls on a notifier thread.
  void run_queued();
  // Drops the calls not started and waits for the one under way, unless it
  // is called from that one. No call starts afterwards. Idempotent.
  void stop() noexcept;

 private:
  // Shared with the running task, which may outlive the strand when a call
  // destroys its owner.
  struct State {
    Mutex mu;
    std::condition_variable_any idle;
    std::deque<std::function<void()>> calls ETCDLOCK_GUARDED_BY(mu);
    bool running ETCDLOCK_GUARDED_BY(mu) = false;
    std::thread::id running_thread ETCDLOCK_GUARDED_BY(mu);
    bool stopped ETCDLOCK_GUARDED_BY(mu) = false;
  };
  static void run(const std::shared_ptr<State>& state);

  Notifier& notifier_;
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace etcdlock::detail
