// Worker: one thread for a manager's background chores. Some work may block on
// etcd and must not run on the watch hub's thread (checking a holder's key
// after a watch gap, retrying a delete that failed); some is due later
// (starting a holder's watch once a hold has lasted a moment).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string_view>
#include <thread>
#include <utility>

#include "base/clock.h"
#include "base/mutex.h"

namespace etcdlock::detail {

// Thread-safe. Tasks run one at a time, in the order of their due times.
class Worker {
 public:
  using Task = std::function<void()>;

  // `role` names its thread ("etcdlock-<role>").
  explicit Worker(std::string_view role = "worker");
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
  // Drops every task not started and joins the thread (unless called from it).
  // Idempotent.
  void stop();

 private:
  // Shared with the thread, which outlives the Worker when a task destroys it.
  struct State {
    Mutex mu;
    std::condition_variable_any wake;
    std::map<std::pair<SteadyTime, std::uint64_t>, Task> due ETCDLOCK_GUARDED_BY(mu);
    std::map<std::uint64_t, SteadyTime> when ETCDLOCK_GUARDED_BY(mu);
    std::uint64_t next_id ETCDLOCK_GUARDED_BY(mu) = 1;
    // When the thread wakes next by itself: a task due later needs no wake-up.
    SteadyTime wakes_at ETCDLOCK_GUARDED_BY(mu) = SteadyTime::max();
    bool stopping ETCDLOCK_GUARDED_BY(mu) = false;
  };
  static void run(const std::shared_ptr<State>& state);

  const std::shared_ptr<State> state_ = std::make_shared<State>();
  std::thread thread_;
};

}  // namespace etcdlock::detail
