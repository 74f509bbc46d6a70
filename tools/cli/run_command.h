// `etcdlock run`: hold a lock while a command runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "etcdlock/options.h"

namespace etcdlock::cli {

struct RunOptions {
  std::string name;
  std::optional<std::chrono::milliseconds> timeout;  // empty: wait as long as it takes
  bool try_once = false;                             // give up at once when another holder has it
  std::int64_t permits = 0;                          // > 0: a semaphore's permit instead of the lock
  std::chrono::milliseconds kill_after{2'500};       // SIGTERM to SIGKILL, once the lock is lost
  std::vector<std::string> command;
};

// Acquires the lock, runs the command with the lock's environment variables
// under supervision (supervision.h: stopped if the lock is lost, signals
// forwarded, killed if etcdlock dies), and releases the lock once the command
// and all it started are gone. Returns the exit status for the process (see
// exit_codes.h): the command's own, even when etcd did not answer the release.
int run_under_lock(const ManagerOptions& manager_options, const RunOptions& options);

}  // namespace etcdlock::cli
