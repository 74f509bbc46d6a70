// Occupancy: how many are inside a critical section now, and the most that
// ever were at once; what a test of mutual exclusion (or of a limit) asserts.
#pragma once

#include <atomic>

namespace etcdlock::testing {

class Occupancy {
 public:
  // Returns how many are inside, this one included.
  int enter() {
    const int now = ++inside_;
    for (int seen = most_.load(); now > seen && !most_.compare_exchange_weak(seen, now);) {
    }
    return now;
  }
  void leave() { --inside_; }
  int inside() const { return inside_.load(); }
  int most() const { return most_.load(); }

 private:
  std::atomic<int> inside_{0};
  std::atomic<int> most_{0};
};

}  // namespace etcdlock::testing
