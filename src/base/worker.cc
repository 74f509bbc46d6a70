#include "base/worker.h"

#include <exception>
#include <string>

#include "base/mutex.h"
#include "base/thread_name.h"

namespace etcdlock::detail {

Worker::Worker(std::string_view role, std::size_t max_threads)
    : state_(std::make_shared<State>(role, max_threads < 1 ? 1 : max_threads)) {
  MutexLock lock(state_->mu);
  start_thread(state_);
}

Worker::~Worker() { stop(); }

std::uint64_t Worker::post_at(SteadyTime when, Task task) {
  MutexLock lock(state_->mu);
  if (state_->stopping) return 0;
  const std::uint64_t id = state_->next_id++;
  state_->due.emplace(std::pair(when, id), std::move(task));
  state_->when.emplace(id, when);
  if (!state_->has_timekeeper) {
    find_a_thread(state_);
  } else if (state_->called_in > state_->calls_pending && when <= SteadyClock::now()) {
    // An idle thread runs it, and the timekeeper keeps its role: handing
    // that on would wake one more thread.
    ++state_->calls_pending;
    state_->work.notify_one();
  } else if (when < state_->wakes_at) {
    // A hold posts a task due in 50 ms and usually cancels it soon after:
    // the alarm moves, and the timekeeper sleeps on.
    state_->wakes_at = when;
    state_->timer.set(when);
  }
  return id;
}

void Worker::cancel(std::uint64_t id) {
  MutexLock lock(state_->mu);
  const auto found = state_->when.find(id);
  if (found == state_->when.end()) return;
  const bool was_first = state_->due.begin()->first == std::pair(found->second, id);
  state_->due.erase(std::pair(found->second, id));
  state_->when.erase(found);
  if (was_first && state_->has_timekeeper && !state_->stopping) {
    // Its alarm would wake the timekeeper for nothing: the next task's time,
    // or none.
    state_->wakes_at = state_->due.empty() ? SteadyTime::max() : state_->due.begin()->first.first;
    state_->timer.set(state_->wakes_at);
  }
}

void Worker::stop() {
  std::map<std::pair<SteadyTime, std::uint64_t>, Task> dropped;
  std::vector<std::thread> threads;
  {
    MutexLock lock(state_->mu);
    state_->stopping = true;
    dropped.swap(state_->due);
    state_->when.clear();
    threads.swap(state_->threads);
  }
  state_->timer.set(SteadyTime::min());  // rings now: the timekeeper sees `stopping`
  state_->work.notify_all();
  dropped.clear();  // what the tasks captured goes here, not under the mutex
  for (auto& thread : threads) {
    if (thread.get_id() == std::this_thread::get_id()) {
      thread.detach();  // it holds the state it needs
    } else {
      thread.join();
    }
  }
}

void Worker::find_a_thread(const std::shared_ptr<State>& state) {
  if (state->due.empty() || state->stopping) return;
  if (state->has_timekeeper) {
    // It wakes by the first due time, unless that came after it began to wait.
    const SteadyTime first = state->due.begin()->first.first;
    if (first < state->wakes_at) {
      state->wakes_at = first;
      state->timer.set(first);
    }
    return;
  }
  if (state->starting > 0) return;  // a thread on its way looks first
  if (state->called_in > state->calls_pending) {
    ++state->calls_pending;  // that thread is taken: the next call needs another
    state->work.notify_one();
  } else if (state->threads.size() < state->max_threads) {
    try {
      start_thread(state);
    } catch (const std::exception&) {
      // No thread to spare (the system's limit): every thread is in a task,
      // and the first one done sees to it, as at max_threads.
    }
  }
  // Else every thread is in a task, and the first one done sees to it.
}

void Worker::start_thread(const std::shared_ptr<State>& state) {
  ++state->starting;
  try {
    state->threads.emplace_back([state, role = state->role] {
      name_this_thread(role);
      run(state);
    });
  } catch (...) {
    // Left raised, `starting` would keep find_a_thread from waking an idle
    // thread ever again.
    --state->starting;
    throw;
  }
}

void Worker::run(const std::shared_ptr<State>& state) {
  MutexLock lock(state->mu);
  --state->starting;
  while (!state->stopping) {
    if (!state->due.empty() && state->due.begin()->first.first <= SteadyClock::now()) {
      const auto next = state->due.begin();
      Task task = std::move(next->second);
      state->when.erase(next->first.second);
      state->due.erase(next);
      // This task may block: what else is waiting, now or later, needs
      // another thread to keep its time.
      find_a_thread(state);
      lock.unlock();
      task();
      task = nullptr;  // what it captured goes here, not under the mutex
      lock.lock();
      continue;
    }
    if (!state->has_timekeeper) {
      state->has_timekeeper = true;
      state->wakes_at = state->due.empty() ? SteadyTime::max() : state->due.begin()->first.first;
      state->timer.set(state->wakes_at);
      // Others move the alarm under the mutex while this waits without it.
      lock.unlock();
      state->timer.wait();
      lock.lock();
      state->has_timekeeper = false;
      continue;
    }
    ++state->called_in;
    state->work.wait(lock);
    --state->called_in;
    if (state->calls_pending > 0) --state->calls_pending;
  }
}

}  // namespace etcdlock::detail
