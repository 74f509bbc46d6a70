// AtomicHistogram: a histogram that threads add to without a lock.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>

#include "etcdlock/metrics.h"

namespace etcdlock::detail {

// Thread-safe; observe() is a few relaxed atomic adds.
class AtomicHistogram {
 public:
  // Upper bounds in milliseconds, from a quarter of a millisecond to a minute.
  static constexpr std::array<double, 16> kBoundsMs{0.25, 0.5, 1,   2,   4,    8,    16,    32,
                                                    64,   128, 256, 512, 1024, 4096, 16384, 65536};

  void observe(std::chrono::nanoseconds duration) noexcept {
    const double ms = std::chrono::duration<double, std::milli>(duration).count();
    std::size_t bucket = 0;
    while (bucket < kBoundsMs.size() && ms > kBoundsMs[bucket]) ++bucket;
    buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
    sum_us_.fetch_add(static_cast<std::uint64_t>(ms * 1000), std::memory_order_relaxed);
  }

  Histogram snapshot() const {
    Histogram histogram;
    std::uint64_t running = 0;
    for (std::size_t i = 0; i < kBoundsMs.size(); ++i) {
      running += buckets_[i].load(std::memory_order_relaxed);
      histogram.upper_bounds_ms.push_back(kBoundsMs[i]);
      histogram.cumulative_counts.push_back(running);
    }
    histogram.count = running + buckets_[kBoundsMs.size()].load(std::memory_order_relaxed);
    histogram.sum_ms = static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1000;
    return histogram;
  }

 private:
  std::array<std::atomic<std::uint64_t>, kBoundsMs.size() + 1> buckets_{};  // the last: above every bound
  std::atomic<std::uint64_t> sum_us_{0};
};

}  // namespace etcdlock::detail
