// The --ttl and --kill-after flags of run and elect, checked together: the
// TTL first, then a kill-after that fits in the TTL's loss margin, so that a
// command stopped on loss is dead before etcd can let the next holder in.
#pragma once

#include <chrono>
#include <string>

namespace etcdlock::cli {

struct LossTiming {
  std::chrono::seconds ttl{30};
  std::chrono::milliseconds kill_after{0};
};

// The longest kill-after that a TTL allows: its loss margin, less two ticks
// of the supervision loop that notices the loss and sends the signals.
std::chrono::milliseconds longest_kill_after(std::chrono::seconds ttl);

// `ttl` and `kill_after` as given on the command line (`kill_after` empty:
// not given, so half the loss margin, within the longest). Throws
// std::invalid_argument naming the flag and value at fault: a TTL below 1 s
// or above 24 h (etcdlock's range), a bad duration, a kill-after too long for
// the TTL. Never names a flag the user did not pass.
LossTiming parse_loss_timing(const std::string& ttl, const std::string& kill_after);

}  // namespace etcdlock::cli
