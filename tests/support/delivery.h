// Delivery: what an asynchronous acquisition handed its handler (an error,
// a hold object), recorded for a test that waits for it on its own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

namespace etcdlock::testing {

// `Hold`: LockHold, MultiLockHold, Permit, ...
template <typename Hold>
class Delivery {
 public:
  using Clock = std::chrono::steady_clock;

  // A handler for the acquisition; the Delivery must outlive its call.
  auto handler() {
    return [this](std::error_code ec, Hold hold) {
      std::lock_guard lock(mu_);
      ++calls_;
      error_ = ec;
      hold_ = std::move(hold);
      at_ = Clock::now();
      on_thread_ = std::this_thread::get_id();
      changed_.notify_all();
    };
  }
  // True once the handler was called, within `timeout`.
  bool wait(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return calls_ > 0; });
  }
  bool done() {
    std::lock_guard lock(mu_);
    return calls_ > 0;
  }
  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::error_code error() {
    std::lock_guard lock(mu_);
    return error_;
  }
  Hold take() {
    std::lock_guard lock(mu_);
    return std::move(hold_);
  }
  Clock::time_point at() {
    std::lock_guard lock(mu_);
    return at_;
  }
  std::thread::id thread() {
    std::lock_guard lock(mu_);
    return on_thread_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int calls_ = 0;
  std::error_code error_;
  Hold hold_;
  Clock::time_point at_;
  std::thread::id on_thread_;
};

}  // namespace etcdlock::testing
