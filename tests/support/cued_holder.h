// CuedHolder: a Lock taken and given up by a thread of its own, on cue (a
// Lock is held by the thread that locked it), for tests that need a holder
// whose release they time.
#pragma once

#include <chrono>
#include <future>
#include <thread>

#include "etcdlock/lock.h"

namespace etcdlock::testing {

class CuedHolder {
 public:
  explicit CuedHolder(Lock& lock)
      : thread_([this, &lock] {
          lock.lock();
          held_.set_value();
          release_.get_future().wait();
          lock.unlock();
          released_.set_value();
        }) {}
  ~CuedHolder() {
    if (!cued_) release();
  }
  CuedHolder(const CuedHolder&) = delete;
  CuedHolder& operator=(const CuedHolder&) = delete;

  bool wait_held(std::chrono::seconds bound) { return held_future_.wait_for(bound) == std::future_status::ready; }
  // Unlocks, and returns once unlock() returned.
  void release() {
    cued_ = true;
    release_.set_value();
    released_.get_future().wait();
  }

 private:
  std::promise<void> held_;
  std::future<void> held_future_ = held_.get_future();
  std::promise<void> release_;
  std::promise<void> released_;
  bool cued_ = false;
  std::jthread thread_;
};

}  // namespace etcdlock::testing
