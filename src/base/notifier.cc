#include "base/notifier.h"

#include <algorithm>

#include "base/thread_name.h"

namespace etcdlock::detail {

Notifier::~Notifier() { stop(); }

void Notifier::post(std::function<void()> signal) {
  {
    MutexLock lock(state_->mu);
    if (!state_->stopping) {
      state_->queue.push_back(std::move(signal));
      // A thread for every queued signal, as far as the limit allows: one
      // that waits may not have woken yet to take the signal before.
      if (state_->queue.size() > state_->waiting_threads && state_->threads.size() < kMaxThreads) {
        state_->threads.emplace_back([state = state_] {
          name_this_thread("notify");
          run(state);
        });
      }
      state_->wake.notify_one();
      return;
    }
  }
  signal();
}

bool Notifier::on_notifier_thread() const {
  MutexLock lock(state_->mu);
  return std::any_of(state_->threads.begin(), state_->threads.end(),
                     [](const std::thread& thread) { return thread.get_id() == std::this_thread::get_id(); });
}

void Notifier::drain() {
  const std::size_t own = on_notifier_thread() ? 1 : 0;
  MutexLock lock(state_->mu);
  state_->idle.wait(lock,
                    [&]() ETCDLOCK_REQUIRES(state_->mu) { return state_->queue.empty() && state_->running <= own; });
}

void Notifier::stop() {
  drain();
  std::vector<std::thread> threads;
  {
    MutexLock lock(state_->mu);
    state_->stopping = true;
    threads.swap(state_->threads);
  }
  state_->wake.notify_all();
  for (auto& thread : threads) {
    if (thread.get_id() == std::this_thread::get_id()) {
      thread.detach();  // it holds the state it needs
    } else {
      thread.join();
    }
  }
}

void Notifier::run(const std::shared_ptr<State>& state) {
  MutexLock lock(state->mu);
  for (;;) {
    ++state->waiting_threads;
    state->wake.wait(lock, [&]() ETCDLOCK_REQUIRES(state->mu) { return state->stopping || !state->queue.empty(); });
    --state->waiting_threads;
    if (state->queue.empty()) return;  // stopping
    auto signal = std::move(state->queue.front());
    state->queue.pop_front();
    ++state->running;
    lock.unlock();
    signal();
    signal = nullptr;  // what it captured goes here, not under the mutex
    lock.lock();
    --state->running;
    state->idle.notify_all();
  }
}

}  // namespace etcdlock::detail
