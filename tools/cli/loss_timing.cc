#include "loss_timing.h"

#include <algorithm>
#include <stdexcept>

#include "duration.h"
#include "etcdlock/options.h"
#include "supervision.h"

namespace etcdlock::cli {

std::chrono::milliseconds longest_kill_after(std::chrono::seconds ttl) {
  return std::max(std::chrono::milliseconds(0), loss_margin(ttl) - 2 * kSupervisionTick);
}

LossTiming parse_loss_timing(const std::string& ttl, const std::string& kill_after) {
  const auto given_ttl = parse_duration(ttl);
  if (given_ttl < std::chrono::seconds(1) || given_ttl > std::chrono::hours(24)) {
    throw std::invalid_argument("--ttl " + ttl + " is out of range: the lease TTL must be from 1s to 24h");
  }
  LossTiming timing;
  timing.ttl = std::chrono::ceil<std::chrono::seconds>(given_ttl);
  const auto longest = longest_kill_after(timing.ttl);
  if (kill_after.empty()) {
    timing.kill_after = std::min(loss_margin(timing.ttl) / 2, longest);
    return timing;
  }
  timing.kill_after = parse_duration(kill_after);
  if (timing.kill_after > longest) {
    throw std::invalid_argument("--kill-after " + kill_after + " is too long for a TTL of " +
                                std::to_string(timing.ttl.count()) + "s: the lease of a lost lock can expire in etcd " +
                                std::to_string(loss_margin(timing.ttl).count()) +
                                " ms after the loss, and the command must be dead by then; use at most " +
                                std::to_string(longest.count()) + "ms, or a longer --ttl");
  }
  return timing;
}

}  // namespace etcdlock::cli
