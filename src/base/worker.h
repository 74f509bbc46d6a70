// Worker: one thread for a manager's background chores. Some work may block on
// etcd and must not run on the watch hub's thread (checking a holder's key
// after a watch gap, retrying a delete that failed); some is due later
// (starting a holder's watch once a hold has lasted a moment).
//
// A worker may also run on several threads (the steps of a manager's
// asynchronous acquisitions): then a task that blocks holds up only itself,
// and the tasks due meanwhile go to another thread, started on demand up to
// a limit.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/mutex.h"
#include "base/steady_alarm.h"

namespace etcdlock::detail {

// Thread-safe. Tasks start in the order of their due times; with one thread
// (the default) they run one at a time.
class Worker {
 public:
  using Task = std::function<void()>;

  // `role` names its threads ("etcdlock-<role>"). One thread starts at once;
  // up to `max_threads` in all, each started when a task is due and every
  // thread is busy with another. Throws Error(errc::unavailable) when the
  // system gives no timer or thread.
  explicit Worker(std::string_view role = "worker", std::size_t max_threads = 1);
  // stop().
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs `task` once `when` has come; returns an id for cancel(). After
  // stop(), the task is dropped.
  std::uint64_t post_at(SteadyTime when, Task task);
  std::uint64_t post(Task task) { return post_at(SteadyClock::now(), std::move(task)); }
  // Drops a task that has not started. A task may cancel others.
  void cancel(std::uint64_t id);
  // Drops every task not started and joins the threads (all but the caller's
  // own, when a task calls it). Idempotent.
  void stop();

 private:
  // Shared with the threads, which outlive the Worker when a task destroys it.
  //
  // An idle thread either keeps the time (at most one: it waits on `timer`
  // until the first task is due) or waits on `work` to be called in. So a
  // task due later wakes nobody (the alarm moves earlier, if it must, with a
  // system call), a task cancelled moves the alarm to the next one rather
  // than waking the timekeeper for nothing, and a task due now wakes one
  // thread.
  struct State {
    explicit State(std::string_view role, std::size_t max_threads) : role(role), max_threads(max_threads) {}
    const std::string role;
    const std::size_t max_threads;
    Mutex mu;
    SteadyAlarm timer;  // set under `mu`, to `wakes_at`
    std::condition_variable_any work;
    std::map<std::pair<SteadyTime, std::uint64_t>, Task> due ETCDLOCK_GUARDED_BY(mu);
    std::map<std::uint64_t, SteadyTime> when ETCDLOCK_GUARDED_BY(mu);
    std::uint64_t next_id ETCDLOCK_GUARDED_BY(mu) = 1;
    bool has_timekeeper ETCDLOCK_GUARDED_BY(mu) = false;
    // When the timekeeper wakes by itself: a task due later needs no wake-up.
    SteadyTime wakes_at ETCDLOCK_GUARDED_BY(mu) = SteadyTime::max();
    std::size_t called_in ETCDLOCK_GUARDED_BY(mu) = 0;      // threads waiting on `work`
    std::size_t calls_pending ETCDLOCK_GUARDED_BY(mu) = 0;  // of those, notified and not yet awake
    std::size_t starting ETCDLOCK_GUARDED_BY(mu) = 0;       // threads started, not yet looking at `due`
    std::vector<std::thread> threads ETCDLOCK_GUARDED_BY(mu);
    bool stopping ETCDLOCK_GUARDED_BY(mu) = false;
  };
  // Sees that the first task gets a thread: an idle one, or a new one while
  // the limit allows (else the first thread done with its task takes it).
  static void find_a_thread(const std::shared_ptr<State>& state) ETCDLOCK_REQUIRES(state->mu);
  // Throws what std::thread's constructor throws (std::system_error when the
  // system has no thread to give), leaving the state as it was.
  static void start_thread(const std::shared_ptr<State>& state) ETCDLOCK_REQUIRES(state->mu);
  static void run(const std::shared_ptr<State>& state);

  const std::shared_ptr<State> state_;
};

}  // namespace etcdlock::detail
