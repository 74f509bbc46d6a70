#include "base/worker.h"

#include <string>

#include "base/mutex.h"
#include "base/thread_name.h"

namespace etcdlock::detail {

Worker::Worker(std::string_view role) {
  thread_ = std::thread([state = state_, role = std::string(role)] {
    name_this_thread(role);
    run(state);
  });
}

Worker::~Worker() { stop(); }

std::uint64_t Worker::post_at(SteadyTime when, Task task) {
  std::uint64_t id = 0;
  bool wake = false;
  {
    MutexLock lock(state_->mu);
    if (state_->stopping) return 0;
    id = state_->next_id++;
    state_->due.emplace(std::pair(when, id), std::move(task));
    state_->when.emplace(id, when);
    // A hold posts a task due in 50 ms and usually cancels it soon after:
    // waking the thread for each would cost a context switch per hold.
    wake = when < state_->wakes_at;
  }
  if (wake) state_->wake.notify_one();
  return id;
}

void Worker::cancel(std::uint64_t id) {
  MutexLock lock(state_->mu);
  const auto found = state_->when.find(id);
  if (found == state_->when.end()) return;
  state_->due.erase(std::pair(found->second, id));
  state_->when.erase(found);
}

void Worker::stop() {
  std::map<std::pair<SteadyTime, std::uint64_t>, Task> dropped;
  {
    MutexLock lock(state_->mu);
    state_->stopping = true;
    dropped.swap(state_->due);
    state_->when.clear();
  }
  state_->wake.notify_all();
  dropped.clear();  // what the tasks captured goes here, not under the mutex
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();  // it holds the state it needs
  } else {
    thread_.join();
  }
}

void Worker::run(const std::shared_ptr<State>& state) {
  MutexLock lock(state->mu);
  while (!state->stopping) {
    if (state->due.empty()) {
      state->wakes_at = SteadyTime::max();
      state->wake.wait(lock);
      continue;
    }
    const auto next = state->due.begin();
    // A copy: while this waits, the task may be cancelled and its entry erased.
    const SteadyTime due = next->first.first;
    if (due > SteadyClock::now()) {
      state->wakes_at = due;
      state->wake.wait_until(lock, due);
      continue;
    }
    state->wakes_at = SteadyClock::now();  // awake: later posts need no wake-up
    Task task = std::move(next->second);
    state->when.erase(next->first.second);
    state->due.erase(next);
    lock.unlock();
    task();
    task = nullptr;
    lock.lock();
  }
}

}  // namespace etcdlock::detail
