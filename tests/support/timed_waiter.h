// A waiter on a thread of its own that records when it got the lock: what the
// tests of close() and of hand-over notes measure (a waiter let in by a note
// gets in at once; one left to its deferred watch, about 500 ms later).
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "etcdlock/lock.h"

namespace etcdlock::testing {

inline long ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

struct Waiting {
  std::promise<std::chrono::steady_clock::time_point> in_at;  // a default time point when it never got in
  std::future<std::chrono::steady_clock::time_point> got = in_at.get_future();
  std::jthread thread;
};

// Starts `w`'s thread: it waits up to 20 s for `lock`, holds it for `hold`,
// and unlocks. `inside` counts holders of the name across managers, and
// `overlaps` how often one came in while another was inside.
inline void wait_on(std::shared_ptr<Lock> lock, Waiting& w, std::atomic<int>* inside = nullptr,
                    std::atomic<int>* overlaps = nullptr,
                    std::chrono::milliseconds hold = std::chrono::milliseconds(30)) {
  w.thread = std::jthread([lock, &w, inside, overlaps, hold] {
    try {
      if (lock->try_lock_for(std::chrono::seconds(20))) {
        const auto at = std::chrono::steady_clock::now();
        if (inside && inside->fetch_add(1) != 0 && overlaps) ++*overlaps;
        std::this_thread::sleep_for(hold);
        if (inside) inside->fetch_sub(1);
        lock->unlock();
        w.in_at.set_value(at);
        return;
      }
    } catch (...) {
    }
    w.in_at.set_value({});
  });
}

}  // namespace etcdlock::testing
