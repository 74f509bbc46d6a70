#include "base/strand.h"

namespace etcdlock::detail {

Strand::~Strand() { stop(); }

bool Strand::queue(std::function<void()> call) {
  MutexLock lock(state_->mu);
  if (state_->stopped) return false;
  state_->calls.push_back(std::move(call));
  if (state_->running) return false;
  state_->running = true;
  return true;
}

void Strand::run_queued() {
  notifier_.post([state = state_] { run(state); });
}

void Strand::run(const std::shared_ptr<State>& state) {
  for (;;) {
    std::function<void()> call;
    {
      MutexLock lock(state->mu);
      if (state->stopped || state->calls.empty()) {
        state->running = false;
        state->running_thread = {};
        state->idle.notify_all();
        return;
      }
      call = std::move(state->calls.front());
      state->calls.pop_front();
      state->running_thread = std::this_thread::get_id();
    }
    call();
  }
}

void Strand::stop() noexcept {
  std::deque<std::function<void()>> dropped;  // destroyed outside the mutex: they may own anything
  MutexLock lock(state_->mu);
  state_->stopped = true;
  dropped.swap(state_->calls);
  if (state_->running_thread != std::this_thread::get_id()) {
    state_->idle.wait(lock, [&]() ETCDLOCK_REQUIRES(state_->mu) { return !state_->running; });
  }
}

}  // namespace etcdlock::detail
