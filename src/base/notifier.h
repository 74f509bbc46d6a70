// Notifier: the threads that tell the application a hold was lost.
//
// Requesting stop on a hold's stop_source runs the application's stop
// callbacks on the requesting thread. Done on etcdlock's own threads, a
// callback that calls back in (close() joins those threads) would deadlock,
// and one that blocks would hold up every watch and renewal of the manager.
// So the requests run here: a callback may call any etcdlock function, and a
// blocking one holds up only the signals queued behind it, for which another
// thread is started (up to a limit).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "base/mutex.h"

namespace etcdlock::detail {

// Thread-safe.
class Notifier {
 public:
  Notifier() = default;
  // stop().
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Runs `signal` on a notifier thread, soon. After stop(), runs it at once
  // on the caller's thread.
  void post(std::function<void()> signal);
  // Returns once every signal posted so far has run, but for the caller's
  // own when the caller is one of them.
  void drain();
  // drain(), then ends the threads. Idempotent.
  void stop();

  // True on a notifier thread: in a loss callback.
  bool on_notifier_thread() const;

 private:
  // Shared with the threads, which outlive the Notifier when one of them
  // destroys it (a callback that drops the last reference to the manager).
  struct State {
    mutable Mutex mu;
    std::condition_variable_any wake;
    std::condition_variable_any idle;
    std::deque<std::function<void()>> queue ETCDLOCK_GUARDED_BY(mu);
    std::vector<std::thread> threads ETCDLOCK_GUARDED_BY(mu);
    std::size_t waiting_threads ETCDLOCK_GUARDED_BY(mu) = 0;  // threads that have not taken a signal yet
    std::size_t running ETCDLOCK_GUARDED_BY(mu) = 0;          // signals being run
    bool stopping ETCDLOCK_GUARDED_BY(mu) = false;
  };
  static void run(const std::shared_ptr<State>& state);

  static constexpr std::size_t kMaxThreads = 8;

  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace etcdlock::detail
