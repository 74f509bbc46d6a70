#include "run_command.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "duration.h"
#include "error_exit.h"
#include "etcdlock/etcdlock.h"
#include "exit_codes.h"
#include "loss_timing.h"
#include "subcommand.h"
#include "supervision.h"

namespace etcdlock::cli {
namespace {

int g_argc = 0;
const char* const* g_argv = nullptr;

// What the command runs under: a hold of the lock, or a semaphore's permit.
struct Holding {
  std::stop_token lost;
  std::vector<std::string> variables;  // for the command's environment
  std::function<void(std::error_code&)> release;
};

// Takes `acquire` as RunOptions say (try once, until a timeout, or for as
// long as it takes); SIGINT and the like cancel the wait. Returns kExitOk
// when held, else the exit status.
template <class Acquire>
int take(const RunOptions& options, const sigset_t& signals, Acquire acquire) {
  int status = kExitOk;
  try {
    const int interrupted_by = interruptible(signals, [&](std::stop_token cancel) {
      if (acquire(cancel)) return;
      std::cerr << "etcdlock: " << (options.permits > 0 ? "semaphore \"" : "lock \"") << options.name << "\" "
                << (options.names.size() > 1 ? "(or another of its names) " : "")
                << (options.try_once ? "is held by another owner" : "was not acquired in time") << "\n";
      status = options.try_once ? kExitNotAcquired : kExitTimeout;
    });
    if (interrupted_by != 0) return 128 + interrupted_by;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
  return status;
}

// A Lock or a MultiLock, as RunOptions say.
template <class Lockable>
bool acquire(Lockable& lock, const RunOptions& options, std::stop_token cancel) {
  if (options.try_once) return lock.try_lock();
  if (options.timeout) return lock.try_lock_for(*options.timeout, cancel);
  lock.lock(cancel);
  return true;
}

// The lock, with its variables named as etcdctl lock names them too.
int hold_lock(LockManager& manager, const RunOptions& options, const sigset_t& signals, Holding& holding) {
  auto lock = manager.get_lock(options.name);
  const int status = take(options, signals, [&](std::stop_token cancel) { return acquire(*lock, options, cancel); });
  if (status != kExitOk) return status;
  const auto token = std::to_string(lock->fencing_token());
  holding = {lock->lost_token(),
             {"ETCDLOCK_NAME=" + lock->name(), "ETCDLOCK_KEY=" + lock->key(), "ETCDLOCK_FENCING_TOKEN=" + token,
              "ETCD_LOCK_KEY=" + lock->key(), "ETCD_LOCK_REV=" + token},
             [lock](std::error_code& ec) { lock->unlock(ec); }};
  return kExitOk;
}

// Several names at once, as one MultiLock. The command gets the first name and
// key as one name's would be, and each as ETCDLOCK_NAME_<i> and
// ETCDLOCK_KEY_<i> (i from 1, the names sorted), ETCDLOCK_NAMES their count;
// the fencing token is every name's.
int hold_multi_lock(LockManager& manager, const RunOptions& options, const sigset_t& signals, Holding& holding) {
  const std::vector<std::string_view> names(options.names.begin(), options.names.end());
  auto lock = manager.get_multi_lock(names);
  const int status = take(options, signals, [&](std::stop_token cancel) { return acquire(*lock, options, cancel); });
  if (status != kExitOk) return status;
  const auto token = std::to_string(lock->fencing_token());
  const auto keys = lock->keys();
  holding = {
      lock->lost_token(),
      {"ETCDLOCK_NAME=" + lock->names().front(), "ETCDLOCK_KEY=" + keys.front(), "ETCDLOCK_FENCING_TOKEN=" + token,
       "ETCD_LOCK_KEY=" + keys.front(), "ETCD_LOCK_REV=" + token, "ETCDLOCK_NAMES=" + std::to_string(keys.size())},
      [lock](std::error_code& ec) { lock->unlock(ec); }};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    holding.variables.push_back("ETCDLOCK_NAME_" + std::to_string(i + 1) + "=" + lock->names()[i]);
    holding.variables.push_back("ETCDLOCK_KEY_" + std::to_string(i + 1) + "=" + keys[i]);
  }
  return kExitOk;
}

// One of `options.permits` permits: at most that many commands at once.
int hold_permit(LockManager& manager, const RunOptions& options, const sigset_t& signals, Holding& holding) {
  auto semaphore = manager.get_semaphore(options.name, options.permits);
  auto permit = std::make_shared<Permit>();
  const int status = take(options, signals, [&](std::stop_token cancel) {
    std::optional<Permit> taken;
    if (options.try_once) {
      taken = semaphore->try_acquire_permit();
    } else if (options.timeout) {
      taken = semaphore->try_acquire_permit_for(*options.timeout, cancel);
    } else {
      taken = semaphore->acquire_permit(cancel);
    }
    if (taken) *permit = std::move(*taken);
    return taken.has_value();
  });
  if (status != kExitOk) return status;
  holding = {permit->lost_token(),
             {"ETCDLOCK_NAME=" + options.name, "ETCDLOCK_KEY=" + permit->key(),
              "ETCDLOCK_FENCING_TOKEN=" + std::to_string(permit->fencing_token()), "ETCD_LOCK_KEY=" + permit->key(),
              "ETCD_LOCK_REV=" + std::to_string(permit->fencing_token()),
              "ETCDLOCK_PERMITS=" + std::to_string(options.permits)},
             [permit](std::error_code& ec) { permit->release(ec); }};
  return kExitOk;
}

// The command's status stands whatever the release says: it ran to its end
// under the hold. A release etcd did not answer is given up here all the
// same (the key goes in the background, or with the lease).
void report_release(const std::error_code& ec, const std::string& what, int status) {
  if (ec == errc::unavailable) {
    std::cerr << "etcdlock: etcd did not answer the release of the " << what
              << "; it is released here, and its key removed in the background or when its lease expires\n";
  } else if (ec == errc::lock_expired && status != kExitLockLost) {
    std::cerr << "etcdlock: the " << what << " was lost as the command ended\n";
  }
}

}  // namespace

int run_under_lock(const ManagerOptions& manager_options, const RunOptions& options) {
  const sigset_t signals = block_handled_signals();
  try {
    LockManager manager(manager_options);
    Holding holding;
    const bool several = options.names.size() > 1;
    const int taken = options.permits > 0 ? hold_permit(manager, options, signals, holding)
                      : several           ? hold_multi_lock(manager, options, signals, holding)
                                          : hold_lock(manager, options, signals, holding);
    if (taken != kExitOk) return taken;
    std::string what = (options.permits > 0 ? "permit of \"" : "lock \"") + options.name + "\"";
    if (several) {
      what = "locks";
      for (const auto& name : options.names) what += " \"" + name + "\"";
    }
    Child child;
    int status = spawn(options.command, holding.variables, child);
    if (status == kExitOk) {
      const auto still_held = [&] {
        return !holding.lost.stop_requested() && manager.time_left() > std::chrono::milliseconds(0);
      };
      status = supervise(child, signals, {holding.lost, still_held, what, options.kill_after, kExitLockLost});
    }
    // The command and all it started are gone: only now may the next holder in.
    std::error_code ec;
    holding.release(ec);
    report_release(ec, what, status);
    return status;
  } catch (const Error& error) {
    std::cerr << "etcdlock: " << error.what() << "\n";
    return exit_status_for(error);
  }
}

void note_arguments(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
}

bool split_run_words(const std::vector<std::string>& words, int argc, const char* const* argv,
                     std::vector<std::string>& names, std::vector<std::string>& command) {
  std::size_t after_separator = 0;
  bool separator = false;
  for (int i = 1; i < argc; ++i) {
    if (separator) {
      ++after_separator;
    } else if (std::string_view(argv[i]) == "--") {
      separator = true;
    }
  }
  const std::size_t name_count = separator ? words.size() - std::min(after_separator, words.size()) : 1;
  if (name_count == 0 || name_count >= words.size()) return false;
  names.assign(words.begin(), words.begin() + static_cast<std::ptrdiff_t>(name_count));
  command.assign(words.begin() + static_cast<std::ptrdiff_t>(name_count), words.end());
  return true;
}

Subcommand add_run(CLI::App& app) {
  struct Flags {
    RunOptions run;
    std::vector<std::string> words, unused;
    std::string ttl = "30s", timeout, kill_after;
  };
  auto flags = std::make_shared<Flags>();
  auto* command =
      app.add_subcommand("run", "hold a lock while a command runs: etcdlock run NAME [NAME...] -- CMD [ARGS...]");
  // CLI11 drops the "--" and fills "name" with every word; split_run_words
  // splits them again. "command" stays empty: as a positional still wanting
  // a word, it keeps the "--" in this subcommand.
  command->add_option("name", flags->words, "the lock's name, or several names to hold together")->required();
  command->add_option("command", flags->unused, "the command and its arguments, after --")->expected(1, -1);
  command->add_option("--ttl", flags->ttl, "the lease TTL: how long the lock outlives a crash of etcdlock")
      ->check(kDuration)
      ->capture_default_str();
  command->add_option("--timeout", flags->timeout, "give up (exit 75) if not acquired within this time")
      ->check(kDuration);
  command->add_flag("--try", flags->run.try_once, "give up at once (exit 73) if another owner holds the lock");
  command
      ->add_option("-n,--permits", flags->run.permits,
                   "hold one of N permits of a semaphore instead: at most N commands at once, across hosts")
      ->check(CLI::Range(1, 1'000'000));
  command
      ->add_option("--kill-after", flags->kill_after,
                   "after a lost lock, SIGKILL the command this long after SIGTERM (default: half the lease's "
                   "loss margin, a tenth of the TTL; at most the margin, so that it dies before its lease can)")
      ->check(kDuration);
  command->footer(
      "The command gets ETCDLOCK_NAME, ETCDLOCK_KEY and ETCDLOCK_FENCING_TOKEN, and ETCD_LOCK_KEY and\n"
      "ETCD_LOCK_REV as etcdctl lock sets them (ETCD_LOCK_REV is the fencing token); with -n N, the\n"
      "permit's key and token, and ETCDLOCK_PERMITS=N. SIGINT, SIGTERM, SIGHUP and SIGQUIT are\n"
      "forwarded to its process group, Ctrl-Z stops it with etcdlock, and it dies with etcdlock. The\n"
      "lock is released once it and every process it started have exited.\n"
      "With several names (etcdlock run A B -- CMD), every one is held at once or none, taken by one\n"
      "enqueue so that commands naming them in any order cannot deadlock; each name's key is the one\n"
      "`etcdctl lock <prefix>/NAME` uses. The command then gets the first (sorted) name's\n"
      "ETCDLOCK_NAME and ETCDLOCK_KEY, ETCDLOCK_NAMES=N, ETCDLOCK_NAME_i and ETCDLOCK_KEY_i for i\n"
      "from 1 to N, and the fencing token, which every name shares. Losing any name stops the\n"
      "command as losing the lock does.");
  return {command, [flags](ManagerOptions options) {
            RunOptions run = flags->run;
            if (!split_run_words(flags->words, g_argc, g_argv, run.names, run.command)) {
              std::cerr << "etcdlock: run needs a name and a command: etcdlock run NAME [NAME...] -- CMD\n";
              return kExitUsage;
            }
            run.name = run.names.front();
            if (run.permits > 0 && run.names.size() > 1) {
              std::cerr << "etcdlock: -n/--permits takes one name\n";
              return kExitUsage;
            }
            try {
              const auto timing = parse_loss_timing(flags->ttl, flags->kill_after);
              options.ttl = timing.ttl;
              run.kill_after = timing.kill_after;
            } catch (const std::invalid_argument& error) {
              std::cerr << "etcdlock: " << error.what() << "\n";
              return kExitUsage;
            }
            if (!flags->timeout.empty()) run.timeout = parse_duration(flags->timeout);
            return run_under_lock(options, run);
          }};
}

}  // namespace etcdlock::cli
