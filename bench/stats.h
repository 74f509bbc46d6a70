// Latency statistics for the benchmark, as the Go peer computes them:
// nearest-rank percentiles, in milliseconds.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

namespace etcdlock::bench {

using Duration = std::chrono::steady_clock::duration;

inline double round3(double value) { return std::round(value * 1000) / 1000; }
inline double to_ms(Duration d) { return round3(std::chrono::duration<double, std::milli>(d).count()); }

inline nlohmann::json summarize(std::vector<Duration> samples) {
  if (samples.empty()) return nullptr;
  std::sort(samples.begin(), samples.end());
  auto rank = [&](double p) {
    auto index = static_cast<long>(std::ceil(p * static_cast<double>(samples.size()))) - 1;
    index = std::clamp<long>(index, 0, static_cast<long>(samples.size()) - 1);
    return to_ms(samples[static_cast<std::size_t>(index)]);
  };
  Duration total{};
  for (const auto sample : samples) total += sample;
  return {{"n", samples.size()}, {"mean", to_ms(total / static_cast<long>(samples.size()))},
          {"p50", rank(0.50)},   {"p90", rank(0.90)},
          {"p99", rank(0.99)},   {"max", to_ms(samples.back())}};
}

}  // namespace etcdlock::bench
