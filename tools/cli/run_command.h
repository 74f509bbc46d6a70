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
  std::string name;                                  // the first of `names`, for messages
  std::vector<std::string> names;                    // several: held together, as a MultiLock
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

// `run`'s positional words, once CLI11 has dropped the "--" that ends the
// names: the names, then the command, split where `argv` has its first "--"
// (the words after it are the command). Without a "--", the first word is
// the name and the rest the command, as before several names were allowed.
// False when there is no name or no command.
bool split_run_words(const std::vector<std::string>& words, int argc, const char* const* argv,
                     std::vector<std::string>& names, std::vector<std::string>& command);

// Remembers the process's arguments for split_run_words (main calls it).
void note_arguments(int argc, char** argv);

}  // namespace etcdlock::cli
