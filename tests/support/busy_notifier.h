// BusyNotifier: fills a manager's notifier with loss callbacks that block, so
// that a test can see which call requests a lost token itself (on time) and
// which leaves it to the notifier (late, while the notifier is busy).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "etcdlock/etcdlock.h"
#include "wire_helpers.h"

namespace etcdlock::testing {

// Declare it after the manager it fills: it goes first, and lets the
// callbacks end before the manager's close() waits for them, even when a
// test stops at a failed assertion.
class BusyNotifier {
 public:
  // The notifier's threads (its kMaxThreads).
  static constexpr int kThreads = 8;

  // Takes every notifier thread of `manager`: holds kThreads locks there,
  // each with a loss callback that blocks until release(), and has `admin`
  // (another manager) force-unlock them. Check with ASSERT_NO_FATAL_FAILURE.
  void occupy(LockManager& manager, LockManager& admin) {
    for (int i = 0; i < kThreads; ++i) {
      auto lock = manager.get_lock("busy" + std::to_string(i));
      lock->lock();
      blockers_.push_back(std::make_unique<Blocker>(lock->lost_token(), std::function<void()>([this] {
                                                      ++blocked_;
                                                      while (!go_)
                                                        std::this_thread::sleep_for(std::chrono::milliseconds(5));
                                                    })));
      busy_.push_back(std::move(lock));
    }
    for (int i = 0; i < kThreads; ++i) ASSERT_TRUE(admin.force_unlock("busy" + std::to_string(i)));
    ASSERT_TRUE(eventually([&] { return blocked_.load() == kThreads; })) << blocked_.load() << " callbacks blocked";
  }

  // Lets the callbacks end, and ends the busy holds. Idempotent.
  void release() {
    go_ = true;
    blockers_.clear();
    for (auto& lock : busy_) {
      std::error_code ignored;
      lock->unlock(ignored);
    }
    busy_.clear();
  }

  ~BusyNotifier() { release(); }

 private:
  using Blocker = std::stop_callback<std::function<void()>>;
  std::atomic<int> blocked_{0};
  std::atomic<bool> go_{false};
  std::vector<std::unique_ptr<Blocker>> blockers_;
  std::vector<std::shared_ptr<Lock>> busy_;
};

}  // namespace etcdlock::testing
